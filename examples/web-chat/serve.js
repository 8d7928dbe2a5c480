#!/usr/bin/env node
// Serves the chat page and the JavaScript client on 127.0.0.1 (node
// only, no dependencies): / is this directory, /hydrogen/ the client's
// src/. Usage: node examples/web-chat/serve.js [--port 8000]

import { createReadStream, statSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const client = path.resolve(here, '../../clients/js/src');
const args = process.argv.slice(2);
const port = args[0] === '--port' ? Number(args[1]) : 8000;
if (!Number.isInteger(port) || port < 0 || port > 65535 || (args.length && args[0] !== '--port')) {
  console.error('usage: node serve.js [--port PORT]');
  process.exit(2);
}

const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };
let held = [];
let released = false;

const server = http.createServer((req, res) => {
  const { pathname } = new URL(req.url, 'http://x');
  if (pathname === '/hold') { // see ?shot in chat.js
    res.writeHead(200, { 'content-type': 'image/gif', 'cache-control': 'no-store' });
    if (released) res.end();
    else held.push(res);
    return;
  }
  if (pathname === '/release') {
    released = true;
    for (const r of held) r.end();
    held = [];
    res.writeHead(204).end();
    return;
  }
  const [root, rel] = pathname.startsWith('/hydrogen/') ? [client, pathname.slice('/hydrogen/'.length)] : [here, pathname === '/' ? 'index.html' : pathname.slice(1)];
  const file = path.resolve(root, rel);
  let ok = file.startsWith(root + path.sep);
  try {
    ok = ok && statSync(file).isFile();
  } catch {
    ok = false;
  }
  if (!ok) {
    res.writeHead(404).end('not found');
    return;
  }
  res.writeHead(200, { 'content-type': types[path.extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
  createReadStream(file).pipe(res);
});

server.listen(port, '127.0.0.1', () => {
  console.log(`web chat on http://127.0.0.1:${server.address().port}/`);
});
