// One side of the cross-client check of scripts/test-clients (case C19):
// node test/cross.js BROKER_ADDR NAME PEERS... — authenticates with
// $HYDROGEN_C19_TOKEN when it is set (the broker must know it as NAME),
// waits until every peer is connected, broadcasts "hello from NAME", and
// expects "hello from PEER" from each peer, in any order. Exits 0 when it
// has them all.

import { connect } from '../src/node.js';

const [addr, name, ...peers] = process.argv.slice(2);
const deadline = Date.now() + 30000;
const token = process.env.HYDROGEN_C19_TOKEN;
const c = await connect(addr, token ? { credential: token } : {});
try {
  if (token && c.identity !== name) throw new Error(`${name}: the broker knows this client as ${JSON.stringify(c.identity)}`);
  while ((await c.stats(0.05)).numClients < peers.length + 1) {
    if (Date.now() > deadline) throw new Error(`${name}: the peers did not all connect`);
  }
  await c.send(`hello from ${name}`);
  const want = new Set(peers.map((p) => `hello from ${p}`));
  while (want.size > 0) {
    const got = Buffer.from(await c.receive({ timeout: Math.max(1, deadline - Date.now()) })).toString();
    if (!want.delete(got)) throw new Error(`${name}: unexpected ${JSON.stringify(got)}`);
  }
  console.log(`${name}: heard from ${peers.join(', ')}`);
} finally {
  await c.close();
}
