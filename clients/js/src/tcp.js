// The TCP and TLS transport (Node only): frames over net.Socket or
// tls.TLSSocket, cut out of the byte stream by FrameDecoder.

import net from 'node:net';
import tls from 'node:tls';
import { Buffer } from 'node:buffer';
import { HydrogenError } from './errors.js';
import { FrameDecoder, encodeFrame } from './frame.js';

/** How long close() waits for the socket to flush before destroying it. */
const CLOSE_LINGER_MS = 2000;

const copyToBuffer = (src, a, b) => Buffer.from(src.subarray(a, b));
const allocBuffer = (n) => Buffer.allocUnsafe(n);

/**
 * Opens a TCP (or, with tlsOptions, TLS) connection.
 * @param {{host: string, port: number, tls?: object|null, timeout?: number, maxPayload: number}} o
 * @returns {Promise<TcpTransport>}
 */
export function openTcp(o) {
  return new Promise((resolve, reject) => {
    const where = `${o.host.includes(':') ? `[${o.host}]` : o.host}:${o.port}`;
    let sock;
    if (o.tls) {
      const opts = { host: o.host, port: o.port, ...o.tls };
      if (opts.servername === undefined && net.isIP(o.host) === 0) opts.servername = o.host;
      sock = tls.connect(opts);
    } else {
      sock = net.connect({ host: o.host, port: o.port });
    }
    let timer;
    const fail = (err) => {
      clearTimeout(timer);
      sock.removeAllListeners();
      sock.on('error', () => {});
      sock.destroy();
      reject(err);
    };
    if (o.timeout !== undefined) {
      timer = setTimeout(() => fail(new HydrogenError('TIMEOUT', `connect to ${where}: not connected within ${o.timeout} ms`)), o.timeout);
    }
    sock.once('error', (e) => fail(new HydrogenError('IO', `connect to ${where}: ${e.message}`, { cause: e })));
    sock.once(o.tls ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      sock.removeAllListeners();
      resolve(new TcpTransport(sock, o.maxPayload));
    });
  });
}

class TcpTransport {
  constructor(sock, maxPayload) {
    this.sock = sock;
    this.canPause = true;
    this.ended = false;
    this.onPayload = () => {};
    this.onEnd = () => {};
    this.dec = new FrameDecoder(maxPayload, copyToBuffer);
    sock.setNoDelay(true);
    sock.on('data', (chunk) => {
      if (this.ended) return;
      try {
        this.dec.feed(chunk, (p) => {
          if (!this.ended) this.onPayload(p);
        });
      } catch (e) {
        if (e !== this.dec.failed) throw e; // a listener's error is the listener's
        this.fail(e);
      }
    });
    sock.on('end', () => {
      const n = this.dec.buffered;
      this.fail(n > 0
        ? new HydrogenError('UNEXPECTED_EOF', `broker closed the connection inside a frame (${n} bytes of it read)`)
        : new HydrogenError('BROKER_CLOSED', 'broker closed the connection'));
    });
    sock.on('error', (e) => this.fail(new HydrogenError('IO', `connection failed: ${e.message}`, { cause: e })));
    sock.on('close', () => this.fail(new HydrogenError('BROKER_CLOSED', 'connection closed')));
  }

  fail(err) {
    if (this.ended) return;
    this.ended = true;
    this.sock.destroy();
    this.onEnd(err);
  }

  send(p) {
    return this.sock.write(encodeFrame(p, allocBuffer));
  }

  whenDrained() {
    return new Promise((resolve, reject) => {
      if (!this.sock.writableNeedDrain) {
        resolve();
        return;
      }
      const onDrain = () => { this.sock.off('close', onClose); resolve(); };
      const onClose = () => { this.sock.off('drain', onDrain); reject(new Error('closed')); };
      this.sock.once('drain', onDrain);
      this.sock.once('close', onClose);
    });
  }

  pause() {
    this.sock.pause();
  }

  resume() {
    this.sock.resume();
  }

  close() {
    this.ended = true;
    const sock = this.sock;
    if (sock.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => sock.destroy(), CLOSE_LINGER_MS);
      sock.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      sock.on('error', () => {});
      sock.resume(); // read (and drop) until the broker answers the FIN
      sock.end(); // what was sent is flushed first
    });
  }
}
