// The conformance cases over WebSocket, from Node (node --experimental-websocket),
// against the broker's --ws-addr listener. Run with `npm run test:ws`.

import test from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, MAX_PAYLOAD } from '../../src/node.js';
import { waitFor } from '../helpers.js';
import { startWsBroker } from './support.js';

const LIMIT = { timeout: 30000 };

async function withBroker(args, fn) {
  const b = await startWsBroker(...args);
  try {
    return await fn(b);
  } finally {
    await b.stop();
  }
}

const text = (p) => Buffer.from(p).toString();

test('WebSocket is there (node --experimental-websocket)', () => {
  assert.equal(typeof WebSocket, 'function', 'run these tests with npm run test:ws');
});

test('C4/WS: 0- and 65,535-byte payloads round trip through --app echo', LIMIT, () => withBroker(['--app', 'echo'], async (b) => {
  const c = await connect(b.ws);
  try {
    assert.equal(c.remote.transport, 'ws');
    const full = Buffer.alloc(MAX_PAYLOAD);
    for (let i = 0; i < full.length; i++) full[i] = (i * 7) & 0xff;
    for (const p of [Buffer.alloc(0), full, Buffer.from([0x01, 0x17, 0x0d, 0x00, 0x17]), Buffer.from([0x0d, 0, 0, 0])]) {
      await c.send(p);
      const got = await c.receive({ timeout: 10000 });
      assert.ok(Buffer.from(got).equals(p), `${p.length} bytes came back changed`);
    }
  } finally {
    await c.close();
  }
}));

test('C5/WS: a payload over the maximum is refused locally and nothing is sent', LIMIT, () => withBroker(['--app', 'echo'], async (b) => {
  const c = await connect(b.ws);
  try {
    await assert.rejects(c.send(Buffer.alloc(MAX_PAYLOAD + 1)), { code: 'PAYLOAD_TOO_LARGE' });
    await assert.rejects(c.send(Buffer.from([0x0d, 0x3f, 0x80, 0, 0])), { code: 'TELEMETRY_PAYLOAD' });
    await c.send('after');
    assert.equal(text(await c.receive({ timeout: 5000 })), 'after');
    const s = await c.stats(0.01);
    assert.equal(s.msgRecv, 2);
  } finally {
    await c.close();
  }
}));

test('C6/C7/WS: stats over WebSocket, recognised among broadcasts from a TCP client', LIMIT, () => withBroker(['--app', 'broadcast'], async (b) => {
  const ws = await connect(b.ws);
  const tcp = await connect(b.addr);
  try {
    await waitFor('2 clients', async () => (await ws.stats(0.01)).numClients === 2);
    const sent = ['{"error":"with company","code":1}', '{}', 'plain', ...Array.from({ length: 100 }, (_, i) => `b-${i}`)];
    const pending = ws.stats(0.5);
    for (const s of sent) await tcp.send(s);
    const st = await pending;
    assert.equal(st.numClients, 2);
    assert.ok('process' in st.extra);
    for (const want of sent) assert.equal(text(await ws.receive({ timeout: 5000 })), want);
  } finally {
    await ws.close();
    await tcp.close();
  }
}));

test('C8/WS: a refused span gives BROKER_REFUSED over WebSocket too', LIMIT, () => withBroker(['--app', 'echo'], async (b) => {
  const c = await connect(b.ws);
  try {
    await assert.rejects(c.stats(0), (e) => e.code === 'BROKER_REFUSED' && e.reason.length > 0);
    await c.send('open');
    assert.equal(text(await c.receive({ timeout: 5000 })), 'open');
  } finally {
    await c.close();
  }
}));

test('C10/WS: a payload over the broker\'s --max-payload closes with 1009, reported', LIMIT, () => withBroker(['--app', 'echo', '--max-payload', '100'], async (b) => {
  const c = await connect(b.ws);
  const closed = once(c, 'close');
  await c.send(Buffer.alloc(200));
  const [reason] = await closed;
  assert.equal(reason.code, 'BROKER_CLOSED');
  assert.equal(reason.wsCode, 1009);
  assert.match(reason.message, /1009 message too big/);
  await assert.rejects(c.send('x'), { code: 'BROKER_CLOSED' });
  await c.close();
}));

test('C10/WS: the broker shutting down is reported', LIMIT, async () => {
  const b = await startWsBroker('--app', 'echo');
  const c = await connect(b.ws);
  try {
    const closed = once(c, 'close');
    assert.equal((await b.stop()).code, 0);
    const [reason] = await closed;
    assert.ok(reason.code === 'BROKER_CLOSED' || reason.code === 'IO', `${reason.code}: ${reason.message}`);
  } finally {
    await c.close();
  }
});

test('C11/WS: close() fails later calls with CLOSED', LIMIT, () => withBroker(['--app', 'echo'], async (b) => {
  const c = await connect(b.ws);
  const pending = assert.rejects(c.receive(), { code: 'CLOSED' });
  await c.close();
  await pending;
  await assert.rejects(c.send('x'), { code: 'CLOSED' });
}));

test('C12/WS: 10,000 frames round trip in order', LIMIT, () => withBroker(['--app', 'echo'], async (b) => {
  const c = await connect(b.ws, { recvBuffer: 20000 });
  try {
    const n = 10000;
    const sending = (async () => { for (let i = 0; i < n; i++) await c.send(`frame ${i}`); })();
    let i = 0;
    for await (const p of c) {
      assert.equal(text(p), `frame ${i}`);
      if (++i === n) break;
    }
    await sending;
  } finally {
    await c.close();
  }
}));

test('C13/WS: broadcasts cross between WebSocket and TCP clients', LIMIT, () => withBroker(['--app', 'broadcast'], async (b) => {
  const ws = await connect(b.ws);
  const tcp = await connect(b.addr);
  try {
    await waitFor('2 clients', async () => (await tcp.stats(0.01)).numClients === 2);
    await tcp.send('tcp to ws');
    assert.equal(text(await ws.receive({ timeout: 5000 })), 'tcp to ws');
    await ws.send('ws to tcp');
    assert.equal(text(await tcp.receive({ timeout: 5000 })), 'ws to tcp');
    // A text message is taken as its UTF-8 bytes (a raw WebSocket: the client always sends binary).
    const raw = new WebSocket(b.ws);
    await once(raw, 'open');
    raw.send('texte é');
    assert.equal(text(await tcp.receive({ timeout: 5000 })), 'texte é');
    raw.close();
  } finally {
    await ws.close();
    await tcp.close();
  }
}));
