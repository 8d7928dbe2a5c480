// A child process of the wss case (C23): Node's WebSocket trusts only the
// CAs known when the process starts, so the test runs this with
// NODE_EXTRA_CA_CERTS naming its CA (or without, to see it refused).
//   node --experimental-websocket test/ws/wss-child.js URL TOKEN...
// connects to URL once with each token, sends a frame, and prints one JSON
// line for each: {identity, echo} or {code, reason, message}.

import { connect } from '../../src/node.js';

const [url, ...tokens] = process.argv.slice(2);
for (const credential of tokens) {
  try {
    const c = await connect(url, { credential, timeout: 10000 });
    try {
      await c.send(`over wss as ${c.identity}`);
      const echo = Buffer.from(await c.receive({ timeout: 10000 })).toString();
      const st = await c.stats(0.01);
      console.log(JSON.stringify({ identity: c.identity, transport: c.remote.transport, echo, msgRecv: st.msgRecv }));
    } finally {
      await c.close();
    }
  } catch (e) {
    console.log(JSON.stringify({ code: e.code, reason: e.reason, message: e.message }));
  }
}
