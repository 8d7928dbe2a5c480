// What the tests share: the broker binary, servers the tests own on
// 127.0.0.1, a throwaway certificate authority.

import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeFrame, FrameDecoder } from '../src/node.js';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The repository root: the nearest directory above with a go.mod. */
export function repoRoot() {
  let dir = here;
  for (;;) {
    if (existsSync(path.join(dir, 'go.mod'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error('no go.mod above ' + here);
    dir = up;
  }
}

/**
 * The broker binary: $HYDROGEN_BROKER, or one built from the repository
 * into a temporary directory (test/run.js builds it once for the whole run
 * and sets the variable).
 */
export function brokerBinary() {
  if (process.env.HYDROGEN_BROKER) return process.env.HYDROGEN_BROKER;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hydrogen-js-'));
  const bin = path.join(dir, 'broker');
  execFileSync('go', ['build', '-o', bin, './cmd/broker'], { cwd: repoRoot(), stdio: 'inherit' });
  process.env.HYDROGEN_BROKER = bin;
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return bin;
}

/**
 * Runs `broker serve --addr 127.0.0.1:0 --log-format json ...args` and
 * resolves once it logs its "listening" line. Stop it with stop().
 */
export function startBroker(...args) {
  const bin = brokerBinary();
  const proc = spawn(bin, ['serve', '--addr', '127.0.0.1:0', '--log-format', 'json', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  let exited = null;
  const exit = new Promise((resolve) => proc.on('exit', (code, signal) => { exited = { code, signal }; resolve(exited); }));
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`broker did not log its address:\n${log}`)); }, 10000);
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (s) => {
      log += s;
      buf += s;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let rec;
        try { rec = JSON.parse(line); } catch { continue; }
        if (rec.msg === 'listening' && rec.addr) {
          clearTimeout(timer);
          resolve({
            addr: rec.addr,
            proc,
            log: () => log,
            exit,
            /** SIGTERM, and the exit status once it has gone. */
            async stop() {
              if (exited) return exited;
              proc.kill('SIGTERM');
              const t = setTimeout(() => proc.kill('SIGKILL'), 15000);
              const r = await exit;
              clearTimeout(t);
              return r;
            },
          });
        }
      }
    });
    exit.then(({ code, signal }) => { clearTimeout(timer); reject(new Error(`broker exited (${code ?? signal}) before listening:\n${log}`)); });
  });
}

/**
 * A server the test owns on 127.0.0.1: onConnection(sock) gets each
 * accepted socket. close() ends it and every connection.
 */
export async function testServer(onConnection, { createServer = net.createServer } = {}) {
  const socks = new Set();
  const server = createServer((sock) => {
    socks.add(sock);
    sock.on('close', () => socks.delete(sock));
    sock.on('error', () => {});
    onConnection(sock);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    port,
    addr: `127.0.0.1:${port}`,
    close() {
      for (const s of socks) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** Calls onFrame(payload) for each frame the socket receives. */
export function readFrames(sock, onFrame) {
  const dec = new FrameDecoder();
  sock.on('data', (chunk) => {
    try { dec.feed(chunk, onFrame); } catch { sock.destroy(); }
  });
}

export function frame(p) {
  return Buffer.from(encodeFrame(typeof p === 'string' ? Buffer.from(p) : p));
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits for cond() to be true, polling; fails after limit ms. */
export async function waitFor(what, cond, limit = 10000) {
  const until = Date.now() + limit;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/**
 * A throwaway certificate authority, a server certificate for localhost
 * and 127.0.0.1, and a client certificate (subject CN=carol) signed by it;
 * another CA that signed nothing the broker trusts, and a client
 * certificate (CN=mallory) signed by that one. Made once per process with
 * openssl in a temporary directory (removed at exit). Returns the PEM file
 * paths.
 */
export function makeCertificates() {
  if (certs) return certs;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hydrogen-tls-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  const ssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const issue = (name, subject, ca, ext) => {
    ssl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject);
    writeFileSync(path.join(dir, `${name}.cnf`), ext);
    ssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial',
      '-out', `${name}.pem`, '-days', '1', '-extfile', `${name}.cnf`);
  };
  ssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=hydrogen test CA');
  issue('server', '/CN=localhost', 'ca', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n');
  issue('client', '/CN=carol', 'ca', 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n');
  // A second CA that signed nothing the broker trusts: trusting it alone
  // must fail, and a client certificate it signed must be refused.
  ssl('req', '-x509', ...ec, '-keyout', 'other.key', '-out', 'other.pem', '-days', '1', '-subj', '/CN=another CA');
  issue('mallory', '/CN=mallory', 'other', 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n');
  const f = (name) => path.join(dir, name);
  certs = {
    dir,
    ca: f('ca.pem'),
    cert: f('server.pem'),
    key: f('server.key'),
    otherCa: f('other.pem'),
    clientCert: f('client.pem'),
    clientKey: f('client.key'),
    otherClientCert: f('mallory.pem'),
    otherClientKey: f('mallory.key'),
  };
  return certs;
}
let certs = null;

/**
 * A token file for `broker serve --auth-token-file` in a temporary
 * directory (removed at exit): alice may publish, bob may not.
 */
export function makeTokens() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hydrogen-tokens-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'tokens');
  writeFileSync(file, `${TOKENS.alice} alice\n${TOKENS.bob} bob publish=false\n`, { mode: 0o600 });
  return file;
}

/** The tokens of makeTokens(), and one the broker does not know. */
export const TOKENS = {
  alice: 'alice-token-7f3c9a1e5b2d4c6f',
  bob: 'bob-token-0e1d2c3b4a596877',
  unknown: 'nobody-token-0123456789abcdef',
};

/** Frames that must not be taken for a reply (as in the Go client's tests). */
export const notReplies = ['plain', '', '{}', '{"uptime":1}', '{"UP_TIME":1}', '{"nested":{"up_time":1}}',
  '{"error":"with company","code":1}', '{"error":42}', '{"error":null}', '{"error":["x"]}', '["up_time"]',
  '"up_time"', '{"up_time":1', '{"up_time":1}garbage', '{"error":"truncated"', '{"up_time":NaN}', '\xff{"up_time":1}'];

