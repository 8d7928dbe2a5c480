// The credential option (C15) and TLS (C16), against servers these tests
// own on 127.0.0.1 that speak the broker's contract.

import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { connect } from '../src/node.js';
import { testServer, readFrames, frame, makeCertificates } from './helpers.js';

const LIMIT = { timeout: 20000 };

/**
 * A server that takes the first frame as the credential and answers as
 * answer(credential) says: a payload to send, null to close without
 * answering, or undefined to stay silent; `after` frames go in the same
 * write as the answer. Then it echoes.
 */
function authServer(answer, after = []) {
  const seen = [];
  return testServer((sock) => {
    let first = true;
    readFrames(sock, (p) => {
      if (!first) {
        sock.write(frame(p));
        return;
      }
      first = false;
      seen.push(Buffer.from(p).toString());
      const a = answer(Buffer.from(p).toString());
      if (a === null) sock.destroy();
      else if (a !== undefined) {
        sock.write(Buffer.concat([frame(a), ...after.map(frame)]));
        if (a.includes('"error"')) sock.end();
      }
    });
  }).then((srv) => Object.assign(srv, { seen }));
}

test('C15: an accepted credential is sent first, and connect resolves with the identity', LIMIT, async () => {
  const srv = await authServer((cred) => (cred === 'secret-token' ? '{"auth":"ok","identity":"alice"}' : '{"error":"unknown token"}'),
    ['right behind 1', 'right behind 2']);
  const c = await connect(srv.addr, { credential: 'secret-token' });
  try {
    assert.equal(c.identity, 'alice');
    assert.deepEqual(srv.seen, ['secret-token']);
    for (const want of ['right behind 1', 'right behind 2']) {
      assert.equal(Buffer.from(await c.receive({ timeout: 5000 })).toString(), want, 'frames in the read of the answer are messages, in order');
    }
    await c.send('after auth');
    assert.equal(Buffer.from(await c.receive({ timeout: 5000 })).toString(), 'after auth', 'the answer is not delivered as a message');
  } finally {
    await c.close();
    await srv.close();
  }
});

test('C15: a refused credential fails connect with the reason', LIMIT, async () => {
  const srv = await authServer(() => '{"error":"token expired"}');
  await assert.rejects(connect(srv.addr, { credential: 'eyJhbGciOiJIUzI1NiJ9.e30.x' }),
    (e) => e.code === 'AUTH_REFUSED' && e.reason === 'token expired' && /refused the credential: token expired/.test(e.message));
  await srv.close();
});

test('C15: a broker that closes without answering fails connect', LIMIT, async () => {
  const srv = await authServer(() => null);
  await assert.rejects(connect(srv.addr, { credential: 'x' }), (e) => e.code === 'BROKER_CLOSED' && /before answering the credential/.test(e.message));
  await srv.close();
});

test('C15: no answer within the timeout fails connect with TIMEOUT', LIMIT, async () => {
  const srv = await authServer(() => undefined);
  const t0 = Date.now();
  await assert.rejects(connect(srv.addr, { credential: 'x', timeout: 200 }), (e) => e.code === 'TIMEOUT' && /credential/.test(e.message));
  assert.ok(Date.now() - t0 < 5000);
  await srv.close();
});

test('C15: an answer of another shape fails connect with BAD_AUTH_REPLY', LIMIT, async () => {
  const srv = await authServer(() => 'welcome');
  await assert.rejects(connect(srv.addr, { credential: 'x' }), { code: 'BAD_AUTH_REPLY' });
  await srv.close();
});

test('C16: TLS with a trusted CA and the server name; an untrusted CA or a wrong name fails', LIMIT, async () => {
  const certs = makeCertificates();
  const srv = await testServer((sock) => readFrames(sock, (p) => sock.write(frame(p))), {
    createServer: (onConn) => tls.createServer({ cert: readFileSync(certs.cert), key: readFileSync(certs.key) }, onConn),
  });
  try {
    const ca = readFileSync(certs.ca);
    for (const [addr, opts] of [[`localhost:${srv.port}`, { tls: { ca } }], [`tls://127.0.0.1:${srv.port}`, { tls: { ca, servername: 'localhost' } }]]) {
      const c = await connect(addr, opts);
      assert.equal(c.remote.transport, 'tls');
      await c.send('over tls');
      assert.equal(Buffer.from(await c.receive({ timeout: 5000 })).toString(), 'over tls');
      await c.close();
    }
    await assert.rejects(connect(`localhost:${srv.port}`, { tls: { ca: readFileSync(certs.otherCa) } }), (e) => e.code === 'IO' && /certificate/i.test(e.message));
    await assert.rejects(connect(`localhost:${srv.port}`, { tls: true }), { code: 'IO' }, 'the system CAs do not know the test CA');
    await assert.rejects(connect(`127.0.0.1:${srv.port}`, { tls: { ca, servername: 'not-localhost' } }), (e) => e.code === 'IO' && /not-localhost|altnames/i.test(e.message));
  } finally {
    await srv.close();
  }
});
