// The WebSocket transport, for browsers and for runtimes with a WebSocket
// global (Node 22, or Node 20 with --experimental-websocket). One binary
// message is one payload in each direction; the broker's WebSocket
// listener closes with 1009 for a payload over its --max-payload.

import { HydrogenError } from './errors.js';

/** bufferedAmount over which send() asks the caller to wait. */
const HIGH_WATER = 1 << 20;
const DRAIN_POLL_MS = 10;
const CLOSE_WAIT_MS = 2000;

const encoder = new TextEncoder();

const CLOSE_NAMES = {
  1000: 'normal closure',
  1001: 'going away',
  1002: 'protocol error',
  1003: 'unsupported data',
  1008: 'policy violation',
  1009: 'message too big',
  1011: 'internal error',
};

/**
 * @param {string} url ws:// or wss://
 * @param {{timeout?: number, maxPayload: number, WebSocket?: any}} o
 * @returns {Promise<WsTransport>}
 */
export function openWs(url, o) {
  const Impl = o.WebSocket ?? globalThis.WebSocket;
  if (typeof Impl !== 'function') {
    return Promise.reject(new HydrogenError('INVALID_ARGUMENT',
      'this runtime has no WebSocket (Node 20 needs --experimental-websocket; Node 22 and browsers have it), or pass options.WebSocket'));
  }
  return new Promise((resolve, reject) => {
    let ws;
    try {
      ws = new Impl(url);
    } catch (e) {
      reject(new HydrogenError('INVALID_ARGUMENT', `WebSocket ${url}: ${e.message}`, { cause: e }));
      return;
    }
    ws.binaryType = 'arraybuffer';
    let timer;
    const cleanup = () => {
      clearTimeout(timer);
      ws.onopen = ws.onerror = ws.onclose = null;
    };
    if (o.timeout !== undefined) {
      timer = setTimeout(() => {
        cleanup();
        ws.close();
        reject(new HydrogenError('TIMEOUT', `connect to ${url}: not open within ${o.timeout} ms`));
      }, o.timeout);
    }
    // A browser follows an error with a close, which carries the code; Node
    // 20's WebSocket may not (after a failed TLS handshake it stays
    // CONNECTING), so an error fails the connect at once.
    ws.onerror = (e) => {
      cleanup();
      if (ws.readyState === 0) {
        try {
          ws.close();
        } catch {
          // it is failing already
        }
      }
      const why = e && typeof e.message === 'string' && e.message !== '' ? `: ${e.message}` : '';
      reject(new HydrogenError('IO', `connect to ${url}: the WebSocket did not open (error${why})`));
    };
    ws.onclose = (e) => {
      cleanup();
      reject(new HydrogenError('IO', `connect to ${url}: the WebSocket did not open (close code ${e.code}${e.reason ? `: ${e.reason}` : ''})`, { wsCode: e.code, wsReason: e.reason }));
    };
    ws.onopen = () => {
      cleanup();
      resolve(new WsTransport(ws, o.maxPayload));
    };
  });
}

class WsTransport {
  constructor(ws, maxPayload) {
    this.ws = ws;
    this.canPause = false; // the WebSocket API has no flow control for received messages
    this.ended = false;
    this.onPayload = () => {};
    this.onEnd = () => {};
    this.closed = new Promise((resolve) => { this.markClosed = resolve; });
    ws.onmessage = (e) => {
      if (this.ended) return;
      const p = typeof e.data === 'string' ? encoder.encode(e.data) : new Uint8Array(e.data);
      if (p.length > maxPayload) {
        this.fail(new HydrogenError('PROTOCOL', `protocol error from the broker: a message of ${p.length} bytes, over the maximum of ${maxPayload}`));
        ws.close(1009, 'message too big');
        return;
      }
      this.onPayload(p);
    };
    ws.onerror = () => {};
    ws.onclose = (e) => {
      this.markClosed();
      const name = CLOSE_NAMES[e.code] ?? 'close';
      const what = `${e.code} ${name}${e.reason ? `: ${e.reason}` : ''}`;
      if (e.code === 1006) {
        this.fail(new HydrogenError('IO', `WebSocket connection lost without a close frame (${what})`, { wsCode: e.code, wsReason: e.reason }));
      } else {
        this.fail(new HydrogenError('BROKER_CLOSED', `broker closed the WebSocket (${what})`, { wsCode: e.code, wsReason: e.reason }));
      }
    };
  }

  fail(err) {
    if (this.ended) return;
    this.ended = true;
    this.onEnd(err);
  }

  send(p) {
    this.ws.send(p);
    return this.ws.bufferedAmount < HIGH_WATER;
  }

  whenDrained() {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.ended || this.ws.readyState !== 1) reject(new Error('closed'));
        else if (this.ws.bufferedAmount < HIGH_WATER) resolve();
        else setTimeout(check, DRAIN_POLL_MS);
      };
      check();
    });
  }

  pause() {}

  resume() {}

  close() {
    this.ended = true;
    if (this.ws.readyState === 3) return Promise.resolve();
    this.ws.close(1000, 'client closed');
    let timer;
    return Promise.race([
      this.closed,
      new Promise((resolve) => { timer = setTimeout(resolve, CLOSE_WAIT_MS); }),
    ]).then(() => clearTimeout(timer));
  }
}
