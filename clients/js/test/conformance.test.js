// The conformance suite of docs/CONFORMANCE.md over TCP, against the real
// broker binary and servers these tests own on 127.0.0.1. Each test names
// its case.

import test from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, MAX_PAYLOAD, encodeFrame } from '../src/node.js';
import { startBroker, testServer, readFrames, frame, sleep, waitFor, notReplies } from './helpers.js';

const LIMIT = { timeout: 20000 };

async function withBroker(args, fn) {
  const b = await startBroker(...args);
  try {
    return await fn(b);
  } finally {
    await b.stop();
  }
}

/** Waits until the broker counts n open connections. */
async function waitClients(c, n) {
  await waitFor(`${n} clients`, async () => (await c.stats(0.01)).numClients === n);
}

test('C1: frames split at every byte by a real socket decode', LIMIT, async () => {
  const payloads = [Buffer.alloc(0), Buffer.from([0x01, 0x17, 0x0d, 0x00, 0x17]), Buffer.alloc(300, 0x0d), Buffer.from('{"up_time":1}')];
  const stream = Buffer.concat(payloads.map((p) => frame(p)));
  const srv = await testServer((sock) => {
    sock.setNoDelay(true);
    readFrames(sock, async () => {
      for (let i = 0; i < stream.length; i++) { // one byte at a time
        sock.write(stream.subarray(i, i + 1));
        await sleep(1);
      }
      for (let k = 1; k < stream.length; k++) { // and split at every point
        sock.write(stream.subarray(0, k));
        await sleep(1);
        sock.write(stream.subarray(k));
      }
      sock.write(frame('done'));
    });
  });
  const c = await connect(srv.addr);
  try {
    await c.send('go');
    const rounds = stream.length; // one byte-at-a-time round and length-1 split rounds
    for (let r = 0; r < rounds; r++) {
      for (const [i, want] of payloads.entries()) {
        const got = await c.receive({ timeout: 5000 });
        assert.deepEqual(Buffer.from(got), want, `round ${r}, frame ${i}`);
      }
    }
    assert.equal(Buffer.from(await c.receive({ timeout: 5000 })).toString(), 'done');
  } finally {
    await c.close();
    await srv.close();
  }
});

test('C2: many frames in one read', LIMIT, async () => {
  const srv = await testServer((sock) => readFrames(sock, () => {
    const all = [];
    for (let i = 0; i < 500; i++) all.push(frame(`m${i}`));
    sock.write(Buffer.concat(all));
  }));
  const c = await connect(srv.addr);
  try {
    await c.send('go');
    for (let i = 0; i < 500; i++) assert.equal(Buffer.from(await c.receive({ timeout: 5000 })).toString(), `m${i}`);
  } finally {
    await c.close();
    await srv.close();
  }
});

test('C3: a stream that breaks the frame format ends the connection with PROTOCOL', LIMIT, async () => {
  const cases = [
    ['bad end byte', Buffer.from([0x01, 0, 1, 0x78, 0x18]), {}],
    ['bad start byte', Buffer.from([0x17, 0, 1, 0x78, 0x17]), {}],
    ['payload over maxPayload', Buffer.concat([Buffer.from([0x01, 0, 11]), Buffer.alloc(11), Buffer.from([0x17])]), { maxPayload: 10 }],
  ];
  for (const [name, raw, opts] of cases) {
    const srv = await testServer((sock) => readFrames(sock, () => sock.write(Buffer.concat([frame('ok'), raw]))));
    const c = await connect(srv.addr, opts);
    try {
      const closed = once(c, 'close');
      await c.send('go');
      assert.equal(Buffer.from(await c.receive({ timeout: 5000 })).toString(), 'ok', `${name}: the good frame first`);
      await assert.rejects(c.receive({ timeout: 5000 }), { code: 'PROTOCOL' }, name);
      const [reason] = await closed;
      assert.equal(reason.code, 'PROTOCOL');
      assert.match(reason.message, /^hydrogen: protocol error from the broker/);
      await assert.rejects(c.send('x'), { code: 'PROTOCOL' });
      assert.equal(c.closed, true);
    } finally {
      await c.close();
      await srv.close();
    }
  }
});

test('C4: 0- and 65,535-byte payloads round trip through --app echo', LIMIT, () => withBroker(['--app', 'echo'], async (b) => {
  const c = await connect(b.addr);
  try {
    const full = Buffer.alloc(MAX_PAYLOAD);
    for (let i = 0; i < full.length; i++) full[i] = (i * 7) & 0xff;
    const cases = [Buffer.alloc(0), full, Buffer.from([0x01, 0x17, 0x0d, 0x00, 0x17]), Buffer.from([0x0d, 0, 0, 0]), Buffer.from([0x0d, 0x3f, 0x80, 0, 0, 0])];
    for (const p of cases) {
      await c.send(p);
      const got = await c.receive({ timeout: 10000 });
      assert.ok(got instanceof Uint8Array);
      assert.equal(got.length, p.length);
      assert.ok(Buffer.from(got).equals(p), `${p.length} bytes came back changed`);
    }
    await c.send('a string is sent as UTF-8: é');
    assert.equal(Buffer.from(await c.receive({ timeout: 5000 })).toString(), 'a string is sent as UTF-8: é');
  } finally {
    await c.close();
  }
}));

test('C5: a payload over the maximum is refused locally and nothing is sent', LIMIT, () => withBroker(['--app', 'echo'], async (b) => {
  const c = await connect(b.addr);
  try {
    await assert.rejects(c.send(Buffer.alloc(MAX_PAYLOAD + 1)), (e) => e.code === 'PAYLOAD_TOO_LARGE' && /65536 bytes is over the maximum of 65535; nothing was sent/.test(e.message));
    await assert.rejects(c.send('x'.repeat(MAX_PAYLOAD + 1)), { code: 'PAYLOAD_TOO_LARGE' });
    await assert.rejects(c.send(Buffer.from([0x0d, 0x3f, 0x80, 0, 0])), { code: 'TELEMETRY_PAYLOAD' });
    await assert.rejects(c.send(12), { code: 'INVALID_ARGUMENT' });
    await c.send('after');
    assert.equal(Buffer.from(await c.receive({ timeout: 5000 })).toString(), 'after');
    // The broker counts exactly what was sent: "after" and this request.
    const s = await c.stats(0.01);
    assert.equal(s.msgRecv, 2);
    assert.equal(s.bytesRecv, 5 + 5);
    assert.equal(c.closed, false);
  } finally {
    await c.close();
  }
}));

test('C6: stats(span) returns the typed reply after the span', LIMIT, () => withBroker(['--app', 'echo'], async (b) => {
  const c = await connect(b.addr);
  try {
    const t0 = Date.now();
    const s = await c.stats(0.3);
    assert.ok(Date.now() - t0 >= 290, 'the reply came before its span');
    for (const k of ['upTime', 'bytesRecv', 'bytesSent', 'msgRecv', 'msgSent', 'numClients']) {
      assert.ok(Number.isInteger(s[k]) && s[k] >= 0, `${k} = ${s[k]}`);
    }
    assert.equal(s.numClients, 1);
    assert.equal(s.msgRecv, 1);
    assert.equal(s.bytesRecv, 5);
    assert.ok(s.resources.ram.bytesAvailable > 0 && s.resources.ram.bytesUsed > 0);
    assert.ok(s.resources.cpuOverall >= 0 && s.resources.cpuOverall <= 1);
    assert.ok(s.resources.cpuPerCore.length >= 1);
    s.resources.cpuPerCore.forEach((core, i) => {
      assert.equal(core.core, i);
      assert.ok(core.using >= 0 && core.using <= 1);
    });
    assert.ok('protocol_errors' in s.extra && 'process' in s.extra, 'extra fields kept');
    assert.equal(JSON.parse(s.raw).up_time, s.upTime);
  } finally {
    await c.close();
  }
}));

test('C7: the telemetry reply is recognised among broadcasts on a busy connection', LIMIT, () => withBroker(['--app', 'broadcast'], async (b) => {
  const a = await connect(b.addr);
  const other = await connect(b.addr);
  try {
    await waitClients(a, 2);
    const sent = [...notReplies.filter((s) => !s.startsWith('\xff')), ...Array.from({ length: 300 }, (_, i) => `b-${i}`)];
    const pending = a.stats(0.5);
    await sleep(20); // the request is out; everything below arrives within its span
    for (const s of sent) await other.send(s);
    const st = await pending;
    assert.ok(Number.isInteger(st.upTime));
    assert.equal(st.numClients, 2);
    for (const want of sent) assert.equal(Buffer.from(await a.receive({ timeout: 5000 })).toString(), want);
    // Without a request outstanding, a reply-shaped frame is a message.
    await other.send('{"error":"just a message"}');
    assert.equal(Buffer.from(await a.receive({ timeout: 5000 })).toString(), '{"error":"just a message"}');
  } finally {
    await a.close();
    await other.close();
  }
}));

test('C8: a refused span gives BROKER_REFUSED with the reason, and the connection stays open', LIMIT, () => withBroker(['--app', 'echo', '--max-span', '2s'], async (b) => {
  const c = await connect(b.addr);
  try {
    for (const span of [0, -1, NaN, Infinity, 3]) {
      await assert.rejects(c.stats(span), (e) => e.code === 'BROKER_REFUSED' && typeof e.reason === 'string' && e.reason.length > 0, `span ${span}`);
    }
    await assert.rejects(c.stats('1'), { code: 'INVALID_ARGUMENT' });
    await c.send('still open');
    assert.equal(Buffer.from(await c.receive({ timeout: 5000 })).toString(), 'still open');
    assert.ok((await c.stats(0.01)).upTime >= 0);
  } finally {
    await c.close();
  }
}));

test('C9: one stats request is outstanding at a time; concurrent calls take turns', LIMIT, () => withBroker(['--app', 'echo'], async (b) => {
  const c = await connect(b.addr);
  try {
    const t0 = Date.now();
    const first = c.stats(0.3).then(() => Date.now() - t0);
    const second = c.stats(0.05).then(() => Date.now() - t0);
    const [t1, t2] = await Promise.all([first, second]);
    assert.ok(t1 >= 290, `first after ${t1} ms`);
    assert.ok(t2 >= t1 + 45, `second after ${t2} ms: it did not wait for the first (${t1} ms)`);
    // A timed-out call keeps its turn until its reply has come.
    await assert.rejects(c.stats(0.4, { timeout: 50 }), { code: 'TIMEOUT' });
    const t3 = Date.now();
    await c.stats(0.01);
    assert.ok(Date.now() - t3 >= 250, 'the next request went out before the timed-out one was answered');
  } finally {
    await c.close();
  }
}));

test('C10: a connection closed by the broker for a bad frame is reported with its reason', LIMIT, () => withBroker(['--app', 'echo', '--max-payload', '100'], async (b) => {
  const c = await connect(b.addr);
  const closed = once(c, 'close');
  const pending = c.receive();
  await c.send(Buffer.alloc(200)); // fine for the client, over the broker's maximum
  const [reason] = await closed;
  assert.equal(reason.code, 'BROKER_CLOSED');
  assert.match(reason.message, /broker closed the connection/);
  await assert.rejects(pending, { code: 'BROKER_CLOSED' });
  await assert.rejects(c.send('x'), { code: 'BROKER_CLOSED' });
  await assert.rejects(c.stats(1), { code: 'BROKER_CLOSED' });
  assert.equal(c.closeReason, reason);
  await c.close();
}));

test('C10: the broker shutting down is reported, after the frames it sent', LIMIT, async () => {
  const b = await startBroker('--app', 'echo');
  const c = await connect(b.addr);
  try {
    await c.send('before');
    await c.stats(0.01); // its reply comes after the echo, which now waits in the client
    const closed = once(c, 'close');
    const st = await b.stop();
    assert.equal(st.code, 0);
    const [reason] = await closed;
    assert.equal(reason.code, 'BROKER_CLOSED');
    const got = [];
    for await (const p of c) got.push(Buffer.from(p).toString()); // ends without throwing
    assert.deepEqual(got, ['before']);
  } finally {
    await c.close();
  }
});

test('C11: close() fails pending and later calls with CLOSED, once', LIMIT, () => withBroker(['--app', 'echo'], async (b) => {
  const c = await connect(b.addr);
  const reasons = [];
  c.on('close', (r) => reasons.push(r));
  const r1 = assert.rejects(c.receive(), { code: 'CLOSED' });
  const s1 = assert.rejects(c.stats(5), { code: 'CLOSED' });
  const p = c.close();
  assert.equal(c.close(), p, 'close is idempotent');
  await p;
  await r1;
  await s1;
  await assert.rejects(c.receive(), { code: 'CLOSED' });
  await assert.rejects(c.send('x'), { code: 'CLOSED' });
  await assert.rejects(c.stats(1), { code: 'CLOSED' });
  assert.equal(reasons.length, 1);
  assert.equal(reasons[0].code, 'CLOSED');
  const it = [];
  for await (const m of c) it.push(m);
  assert.equal(it.length, 0);
}));

test('C12: 10,000 frames round trip in order through --app echo', LIMIT, () => withBroker(['--app', 'echo'], async (b) => {
  const c = await connect(b.addr);
  try {
    const n = 10000;
    const sending = (async () => {
      for (let i = 0; i < n; i++) await c.send(`frame ${i}`);
    })();
    let i = 0;
    for await (const p of c) {
      assert.equal(Buffer.from(p).toString(), `frame ${i}`);
      if (++i === n) break;
    }
    await sending;
    assert.equal(i, n);
  } finally {
    await c.close();
  }
}));

test('C13: a broadcast from one client reaches the others (--app broadcast)', LIMIT, () => withBroker(['--app', 'broadcast'], async (b) => {
  const pub = await connect(b.addr);
  const subs = [await connect(b.addr), await connect(b.addr)];
  try {
    await waitClients(pub, 3);
    const got = subs.map((s) => once(s, 'message'));
    await pub.send('hello all');
    for (const g of got) assert.equal(Buffer.from((await g)[0]).toString(), 'hello all');
    await subs[0].send('second');
    assert.equal(Buffer.from(await pub.receive({ timeout: 5000 })).toString(), 'second', 'the publisher does not get its own frame');
  } finally {
    await Promise.all([pub.close(), ...subs.map((s) => s.close())]);
  }
}));

test('C14: receive with a timeout gives TIMEOUT and loses no frame', LIMIT, () => withBroker(['--app', 'echo'], async (b) => {
  const c = await connect(b.addr);
  try {
    const t0 = Date.now();
    await assert.rejects(c.receive({ timeout: 100 }), { code: 'TIMEOUT' });
    assert.ok(Date.now() - t0 >= 95);
    await c.send('next');
    assert.equal(Buffer.from(await c.receive({ timeout: 5000 })).toString(), 'next');
    await assert.rejects(c.receive({ timeout: 0 }), { code: 'INVALID_ARGUMENT' });
  } finally {
    await c.close();
  }
}));

test('C17: a client that does not receive stops reading, and the server is pushed back', LIMIT, async () => {
  const limit = 2048; // 2,048 frames of 64 KiB: 128 MiB
  let written = -1;
  const srv = await testServer((sock) => readFrames(sock, async () => {
    const f = Buffer.from(encodeFrame(Buffer.alloc(MAX_PAYLOAD)));
    for (let i = 0; i < limit; i++) {
      f.writeUInt32BE(i, 3);
      if (!sock.write(Buffer.from(f))) {
        const drained = await Promise.race([once(sock, 'drain').then(() => true), sleep(500).then(() => false)]);
        if (!drained) { written = i + 1; return; }
      }
    }
    written = limit;
  }));
  const c = await connect(srv.addr, { recvBuffer: 4 });
  try {
    await c.send('flood');
    await waitFor('the server to stall', () => written >= 0, 15000);
    assert.ok(written < limit, 'the server wrote every frame to a client that received none');
    for (let i = 0; i < written; i++) {
      const p = Buffer.from(await c.receive({ timeout: 5000 }));
      assert.equal(p.length, MAX_PAYLOAD);
      assert.equal(p.readUInt32BE(0), i);
    }
  } finally {
    await c.close();
    await srv.close();
  }
});

test('C18: connecting to a closed port fails with IO', LIMIT, async () => {
  const srv = await testServer(() => {});
  const addr = srv.addr;
  await srv.close();
  await assert.rejects(connect(addr), (e) => e.code === 'IO' && /ECONNREFUSED/.test(e.message));
  await assert.rejects(connect('127.0.0.1:1', { tls: 7 }), { code: 'INVALID_ARGUMENT' });
});
