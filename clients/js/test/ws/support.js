// What the WebSocket tests share: the broker with its WebSocket listener
// (`broker serve --ws-addr`), and a static file server for the browser.

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { brokerBinary, startBroker, sleep } from '../helpers.js';

const jsRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** A port free on 127.0.0.1 a moment ago. */
export async function freePort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

/** Fails at once, and clearly, when the broker binary has no WebSocket listener yet. */
export function requireWsListener() {
  const r = spawnSync(brokerBinary(), ['help', 'serve'], { encoding: 'utf8' });
  const text = `${r.stdout}${r.stderr}`;
  if (!text.includes('ws-addr')) {
    throw new Error(`the broker binary (${brokerBinary()}) has no --ws-addr flag: its WebSocket listener is not in this build`);
  }
}

/**
 * The broker serving TCP on 127.0.0.1:0 and WebSocket on a free port;
 * resolves once both accept connections. ws is the ws:// URL.
 */
export async function startWsBroker(...args) {
  requireWsListener();
  const port = await freePort();
  const b = await startBroker('--ws-addr', `127.0.0.1:${port}`, ...args);
  const until = Date.now() + 10000;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) break;
    if (Date.now() > until) {
      await b.stop();
      throw new Error(`the broker's WebSocket listener did not accept on 127.0.0.1:${port}:\n${b.log()}`);
    }
    await sleep(20);
  }
  return Object.assign(b, { ws: `ws://127.0.0.1:${port}/` });
}

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };

/**
 * A static server on 127.0.0.1 for the client's sources (/src/...), the
 * test pages (/test/ws/...) and the example (/examples/...: files of
 * extraRoot). `hold` paths answer only once release(name) is called:
 * a page that loads /hold/NAME keeps its load event (and so --dump-dom)
 * waiting until the test releases it, or the page calls /release/NAME.
 */
export async function staticServer({ extraRoot } = {}) {
  const held = new Map();
  const released = new Set();
  const release = (name) => {
    released.add(name);
    for (const res of held.get(name) ?? []) res.end('');
    held.delete(name);
  };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    let m;
    if ((m = /^\/hold\/(\w+)$/.exec(url.pathname))) {
      res.writeHead(200, { 'content-type': 'image/gif', 'cache-control': 'no-store' });
      if (released.has(m[1])) res.end('');
      else held.set(m[1], [...(held.get(m[1]) ?? []), res]);
      return;
    }
    if ((m = /^\/release\/(\w+)$/.exec(url.pathname))) {
      release(m[1]);
      res.writeHead(204, { 'cache-control': 'no-store' }).end();
      return;
    }
    let file;
    if (url.pathname.startsWith('/src/') || url.pathname.startsWith('/test/ws/')) file = path.join(jsRoot, url.pathname);
    else if (extraRoot && url.pathname.startsWith('/examples/')) file = path.join(extraRoot, url.pathname.slice('/examples/'.length));
    const root = file && (file.startsWith(jsRoot + path.sep) || (extraRoot && file.startsWith(extraRoot + path.sep)));
    if (!root || !exists(file)) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
    createReadStream(file).pipe(res);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  return {
    origin: `http://127.0.0.1:${port}`,
    release,
    close: () => {
      for (const name of [...held.keys()]) release(name);
      server.closeAllConnections?.();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

function exists(f) {
  try {
    return statSync(f).isFile();
  } catch {
    return false;
  }
}

/** The DOM's <pre id="result"> as JSON. */
export function pageResult(html) {
  const m = /<pre id="result">([^<]*)<\/pre>/.exec(html);
  if (!m) throw new Error(`no result in the page:\n${html}`);
  return JSON.parse(m[1].replace(/&quot;/g, '"').replace(/&amp;/g, '&').replace(/&lt;/g, '<').replace(/&gt;/g, '>'));
}

/**
 * The base64 SHA-256 of a certificate's public key, for Chromium's
 * --ignore-certificate-errors-spki-list: the browser then trusts that one
 * key, as a test cannot install a CA in it.
 */
export function spkiHash(certFile) {
  const pub = execFileSync('openssl', ['x509', '-in', certFile, '-pubkey', '-noout']);
  const der = execFileSync('openssl', ['pkey', '-pubin', '-outform', 'der'], { input: pub });
  return createHash('sha256').update(der).digest('base64');
}

/** The headless Chromium command line of the tests, for a fresh profile directory. */
export function chromiumArgs(profileDir) {
  return ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', `--user-data-dir=${profileDir}`];
}

export const CHROMIUM = process.env.CHROMIUM ?? 'chromium';

/** Runs chromium --dump-dom on url (with extra flags); resolves with the DOM it printed. */
export function dumpDom(url, limitMs = 60000, extraArgs = []) {
  const profile = mkdtempSync(path.join(os.tmpdir(), 'hydrogen-chromium-'));
  return new Promise((resolve, reject) => {
    const p = spawn(CHROMIUM, [...chromiumArgs(profile), ...extraArgs, '--dump-dom', url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.setEncoding('utf8').on('data', (s) => { out += s; });
    p.stderr.setEncoding('utf8').on('data', (s) => { err += s; });
    const timer = setTimeout(() => p.kill('SIGKILL'), limitMs);
    p.on('error', (e) => { clearTimeout(timer); rmSync(profile, { recursive: true, force: true }); reject(e); });
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      rmSync(profile, { recursive: true, force: true });
      if (code !== 0) reject(new Error(`chromium exited ${code ?? signal}:\n${err.slice(-2000)}`));
      else resolve(out);
    });
  });
}

