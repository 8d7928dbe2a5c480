// Authentication (C20), TLS (C21) and both together (C22) against the real
// broker binary: `broker serve --auth-token-file`, `--tls-cert`/`--tls-key`
// and `--tls-client-ca`, with tokens and certificates made by the test.

import test from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect } from '../src/node.js';
import { startBroker, makeCertificates, makeTokens, TOKENS, waitFor } from './helpers.js';

const LIMIT = { timeout: 20000 };

async function withBroker(args, fn) {
  const b = await startBroker(...args);
  try {
    return await fn(b);
  } finally {
    await b.stop();
  }
}

const text = (p) => Buffer.from(p).toString();
const port = (addr) => Number(addr.slice(addr.lastIndexOf(':') + 1));

test('C20: a known token is accepted and the identity reported; a refused one gives AUTH_REFUSED and its connection is gone', LIMIT,
  () => withBroker(['--app', 'echo', '--auth-token-file', makeTokens()], async (b) => {
    const c = await connect(b.addr, { credential: TOKENS.alice });
    try {
      assert.equal(c.identity, 'alice');
      await c.send('hello');
      assert.equal(text(await c.receive({ timeout: 5000 })), 'hello', 'the answer is not delivered as a message');
      await assert.rejects(connect(b.addr, { credential: TOKENS.unknown }),
        (e) => e.code === 'AUTH_REFUSED' && e.reason === 'auth: credential refused' && /refused the credential: auth: credential refused/.test(e.message));
      await assert.rejects(connect(b.addr, { credential: Buffer.from(TOKENS.alice.slice(0, -1)) }), { code: 'AUTH_REFUSED' });
      // The broker counted both refusals and closed both connections.
      await waitFor('the refused connections to close', async () => (await c.stats(0.01)).numClients === 1);
      const st = await c.stats(0.01);
      assert.equal(st.extra.auth_failures, 2);
      assert.equal(st.extra.closed_handshake, 2);
    } finally {
      await c.close();
    }
  }));

test('C20: frames pipelined right behind the credential are served in order; after a refusal none is, and the close is reported', LIMIT,
  () => withBroker(['--app', 'echo', '--auth-token-file', makeTokens()], async (b) => {
    // A client that sends the credential itself, as its first message,
    // need not wait for the answer: what follows is held until it is accepted.
    const c = await connect(b.addr);
    try {
      for (const p of [TOKENS.alice, 'one', 'two', 'three']) await c.send(p);
      assert.deepEqual(JSON.parse(text(await c.receive({ timeout: 5000 }))), { auth: 'ok', identity: 'alice' });
      for (const want of ['one', 'two', 'three']) assert.equal(text(await c.receive({ timeout: 5000 })), want);
    } finally {
      await c.close();
    }
    // Refused: the answer, then the close; what was pipelined is dropped.
    // The broker closes with the pipelined frame unread when it came in a
    // read of its own, and the kernel then resets the connection: the end
    // is BROKER_CLOSED or, after a reset, IO.
    const r = await connect(b.addr);
    const closed = once(r, 'close');
    await Promise.all([r.send(TOKENS.unknown), r.send('one')]);
    assert.deepEqual(JSON.parse(text(await r.receive({ timeout: 5000 }))), { error: 'auth: credential refused' });
    const [reason] = await closed;
    assert.ok(reason.code === 'BROKER_CLOSED' || (reason.code === 'IO' && /ECONNRESET|EPIPE/.test(reason.message)), reason.message);
    await assert.rejects(r.receive({ timeout: 5000 }), (e) => e === reason, 'nothing pipelined behind a refused credential is served');
    await r.close();
  }));

test('C20: an identity that may not publish has each frame refused, and stays connected', LIMIT,
  () => withBroker(['--app', 'broadcast', '--auth-token-file', makeTokens()], async (b) => {
    const alice = await connect(b.addr, { credential: TOKENS.alice });
    const bob = await connect(b.addr, { credential: TOKENS.bob });
    try {
      assert.equal(bob.identity, 'bob');
      await waitFor('2 clients', async () => (await alice.stats(0.01)).numClients === 2);
      for (let i = 0; i < 2; i++) {
        await bob.send(`from bob ${i}`);
        assert.deepEqual(JSON.parse(text(await bob.receive({ timeout: 5000 }))), { refused: 'not allowed to publish' });
      }
      await alice.send('from alice');
      assert.equal(text(await bob.receive({ timeout: 5000 })), 'from alice', 'bob still receives');
      await assert.rejects(alice.receive({ timeout: 200 }), { code: 'TIMEOUT' }, "bob's frames reached no one");
      assert.equal((await alice.stats(0.01)).extra.frames_refused, 2);
    } finally {
      await alice.close();
      await bob.close();
    }
  }));

test('C21: TLS to the broker with the test CA, by name and by IP; an untrusted CA or a wrong name is refused', LIMIT, () => {
  const certs = makeCertificates();
  return withBroker(['--app', 'echo', '--tls-cert', certs.cert, '--tls-key', certs.key], async (b) => {
    const ca = readFileSync(certs.ca);
    for (const addr of [`localhost:${port(b.addr)}`, `tls://127.0.0.1:${port(b.addr)}`]) {
      const c = await connect(addr, { tls: { ca } });
      try {
        assert.equal(c.remote.transport, 'tls');
        await c.send(`over tls to ${addr}`);
        assert.equal(text(await c.receive({ timeout: 5000 })), `over tls to ${addr}`);
        assert.equal((await c.stats(0.01)).numClients, 1, 'telemetry travels inside TLS too');
      } finally {
        await c.close();
      }
    }
    await assert.rejects(connect(`localhost:${port(b.addr)}`, { tls: { ca: readFileSync(certs.otherCa) } }),
      (e) => e.code === 'IO' && /certificate/i.test(e.message));
    await assert.rejects(connect(`127.0.0.1:${port(b.addr)}`, { tls: { ca, servername: 'not-localhost' } }),
      (e) => e.code === 'IO' && /not-localhost|altnames/i.test(e.message));
  });
});

/**
 * Connecting with opts to a broker that requires a client certificate must
 * fail: at connect, or (TLS 1.3 verifies the client's certificate after
 * the client's handshake is done) at the first read.
 */
async function refusedByMutualTls(addr, opts) {
  let c;
  try {
    c = await connect(addr, opts);
  } catch (e) {
    assert.equal(e.code, 'IO', e.message);
    return;
  }
  try {
    await c.send('let me in');
    await assert.rejects(c.receive({ timeout: 5000 }), (e) => e.code === 'IO' || e.code === 'BROKER_CLOSED');
  } finally {
    await c.close();
  }
}

test('C21: mutual TLS: a certificate from the client CA is accepted; none, or another CA\'s, is refused', LIMIT, () => {
  const certs = makeCertificates();
  return withBroker(['--app', 'echo', '--tls-cert', certs.cert, '--tls-key', certs.key, '--tls-client-ca', certs.ca], async (b) => {
    const ca = readFileSync(certs.ca);
    const addr = `localhost:${port(b.addr)}`;
    const c = await connect(addr, { tls: { ca, cert: readFileSync(certs.clientCert), key: readFileSync(certs.clientKey) } });
    try {
      await c.send('with a client certificate');
      assert.equal(text(await c.receive({ timeout: 5000 })), 'with a client certificate');
    } finally {
      await c.close();
    }
    await refusedByMutualTls(addr, { tls: { ca } });
    await refusedByMutualTls(addr, { tls: { ca, cert: readFileSync(certs.otherClientCert), key: readFileSync(certs.otherClientKey) } });
    const probe = await connect(addr, { tls: { ca, cert: readFileSync(certs.clientCert), key: readFileSync(certs.clientKey) } });
    try {
      assert.equal((await probe.stats(0.01)).extra.closed_handshake, 2, 'the broker closed both in the handshake');
    } finally {
      await probe.close();
    }
  });
});

test('C22: TLS and a credential together: accepted with the identity, refused with the reason', LIMIT, () => {
  const certs = makeCertificates();
  return withBroker(['--app', 'echo', '--tls-cert', certs.cert, '--tls-key', certs.key, '--auth-token-file', makeTokens()], async (b) => {
    const tls = { ca: readFileSync(certs.ca) };
    const addr = `tls://localhost:${port(b.addr)}`;
    const c = await connect(addr, { tls, credential: TOKENS.alice });
    try {
      assert.equal(c.identity, 'alice');
      assert.equal(c.remote.transport, 'tls');
      await c.send('secret over tls');
      assert.equal(text(await c.receive({ timeout: 5000 })), 'secret over tls');
    } finally {
      await c.close();
    }
    await assert.rejects(connect(addr, { tls, credential: TOKENS.unknown }),
      (e) => e.code === 'AUTH_REFUSED' && e.reason === 'auth: credential refused');
    await assert.rejects(connect(addr, { tls: { ca: readFileSync(certs.otherCa) }, credential: TOKENS.alice }), { code: 'IO' },
      'the credential is not sent to a broker whose certificate is not trusted');
  });
});
