#!/usr/bin/env node
// A chat client over TCP, with the Node side of the JavaScript client: it
// waits until someone else is connected, says a few lines, prints what the
// others say, and stops after --for seconds (default: when the lines are
// said). Usage: node examples/web-chat/feed.js BROKER_TCP_ADDR [--for SECONDS]

import { connect } from '../../clients/js/src/node.js';

const [addr, flag, secs] = process.argv.slice(2);
if (!addr || (flag && flag !== '--for')) {
  console.error('usage: node feed.js HOST:PORT [--for SECONDS]');
  process.exit(2);
}
const c = await connect(addr);
c.on('message', (p) => console.log(`< ${Buffer.from(p).toString()}`));
const until = Date.now() + 30000;
while ((await c.stats(0.05)).numClients < 2) {
  if (Date.now() > until) {
    console.error('nobody else connected within 30 s');
    process.exit(1);
  }
}
for (const [name, text] of [['ada', 'Is the broker up?'], ['linus', 'Up, and answering telemetry on the same socket.'], ['ada', 'Then say hello, browser.']]) {
  await c.send(JSON.stringify({ name, text }));
  await new Promise((r) => setTimeout(r, 150));
}
if (secs) await new Promise((r) => setTimeout(r, Number(secs) * 1000));
await c.close();
