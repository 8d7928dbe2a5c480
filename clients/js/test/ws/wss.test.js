// C23: the JavaScript client over wss (the broker's --ws-addr with
// --tls-cert) with a credential, from Node and from headless Chromium.
// Node's WebSocket takes no CA option, so the client runs in a child
// process whose NODE_EXTRA_CA_CERTS names the test's CA; Chromium is told
// to trust the broker's key (--ignore-certificate-errors-spki-list).

import test from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeCertificates, makeTokens, TOKENS } from '../helpers.js';
import { startWsBroker, staticServer, dumpDom, pageResult, spkiHash } from './support.js';

const LIMIT = { timeout: 60000 };
const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'wss-child.js');

/** Runs wss-child.js with env added; resolves with its JSON lines. */
function runChild(env, url, ...tokens) {
  const flags = typeof WebSocket === 'function' && !process.execArgv.includes('--experimental-websocket') ? [] : ['--experimental-websocket'];
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [...flags, child, url, ...tokens], { env: { ...process.env, ...env }, timeout: 30000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`wss-child failed: ${err.message}\n${stderr}`));
      else resolve(stdout.trim().split('\n').map((l) => JSON.parse(l)));
    });
  });
}

test('C23: wss with a credential: accepted with the identity, refused with the reason; an untrusted certificate fails', LIMIT, async () => {
  const certs = makeCertificates();
  const b = await startWsBroker('--app', 'echo', '--tls-cert', certs.cert, '--tls-key', certs.key, '--auth-token-file', makeTokens());
  try {
    const url = b.ws.replace('ws://127.0.0.1', 'wss://localhost');
    const [ok, refused] = await runChild({ NODE_EXTRA_CA_CERTS: certs.ca }, url, TOKENS.alice, TOKENS.unknown);
    assert.deepEqual(ok, { identity: 'alice', transport: 'ws', echo: 'over wss as alice', msgRecv: 3 });
    assert.equal(refused.code, 'AUTH_REFUSED', refused.message);
    assert.equal(refused.reason, 'auth: credential refused');
    const [untrusted] = await runChild({ NODE_EXTRA_CA_CERTS: certs.otherCa }, url, TOKENS.alice);
    assert.equal(untrusted.code, 'IO', untrusted.message);
  } finally {
    await b.stop();
  }
});

test('C23 in a browser: wss with a credential, accepted and refused', { timeout: 90000 }, async () => {
  const certs = makeCertificates();
  const b = await startWsBroker('--app', 'echo', '--tls-cert', certs.cert, '--tls-key', certs.key, '--auth-token-file', makeTokens());
  const web = await staticServer();
  try {
    const ws = b.ws.replace('ws://127.0.0.1', 'wss://localhost');
    // The page comes from localhost too: the broker takes pages from its own host name.
    const page = `${web.origin.replace('127.0.0.1', 'localhost')}/test/ws/wss.html?ws=${encodeURIComponent(ws)}`
      + `&token=${encodeURIComponent(TOKENS.alice)}&bad=${encodeURIComponent(TOKENS.unknown)}`;
    const result = pageResult(await dumpDom(page, 60000, [`--ignore-certificate-errors-spki-list=${spkiHash(certs.cert)}`]));
    assert.equal(result.error, undefined, `the page failed: ${result.error}`);
    assert.deepEqual(result, {
      identity: 'alice',
      transport: 'ws',
      echo: 'over wss from a browser',
      msgRecv: 3,
      refused: { code: 'AUTH_REFUSED', reason: 'auth: credential refused' },
    });
  } finally {
    await web.close();
    await b.stop();
  }
});
