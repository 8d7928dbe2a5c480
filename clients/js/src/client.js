// The client itself, over any transport that carries whole payloads: TCP
// or TLS (framed, src/tcp.js) or WebSocket (one message a payload,
// src/ws.js). defineClient makes the class over the event-emitter base of
// the platform: Node's EventEmitter, or a small one in browsers.

import { HydrogenError, ORDERLY_END } from './errors.js';
import { toBytes, checkPayload, telemetryRequest, isTelemetryRequest, MAX_PAYLOAD } from './frame.js';
import { recogniseReply, toStats, parseObject } from './stats.js';

const textDecoder = new TextDecoder();

/** Frames held for receive() before reading pauses (TCP) or the connection fails (WebSocket). */
export const DEFAULT_RECV_BUFFER = 1024;

/**
 * @typedef {object} Transport
 * @property {(p: Uint8Array) => boolean} send queues one payload; false once
 *   the transport's buffer is over its mark (wait for whenDrained)
 * @property {() => Promise<void>} whenDrained
 * @property {boolean} canPause
 * @property {() => void} pause
 * @property {() => void} resume
 * @property {() => Promise<void>} close ends the connection from this side
 * @property {(p: Uint8Array) => void} onPayload set by the client
 * @property {(err: HydrogenError) => void} onEnd set by the client; called once
 */

function checkTimeout(timeout, what) {
  if (timeout === undefined || timeout === null) return undefined;
  if (typeof timeout !== 'number' || !(timeout > 0) || !Number.isFinite(timeout)) {
    throw new HydrogenError('INVALID_ARGUMENT', `${what} timeout must be a positive number of milliseconds, not ${String(timeout)}`);
  }
  return timeout;
}

function checkOptionsObject(options, known, what) {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object') {
    throw new HydrogenError('INVALID_ARGUMENT', `${what} options must be an object`);
  }
  for (const k of Object.keys(options)) {
    if (!known.includes(k)) throw new HydrogenError('INVALID_ARGUMENT', `unknown ${what} option "${k}" (known: ${known.join(', ')})`);
  }
  return options;
}

export { checkTimeout, checkOptionsObject };

/**
 * Checks the credential option: a non-empty string (or bytes) of at most
 * 65,535 bytes that the broker would not take for a telemetry request.
 */
export function checkCredential(credential) {
  const p = toBytes(credential, 'credential');
  if (p.length === 0) throw new HydrogenError('INVALID_ARGUMENT', 'credential is empty');
  if (p.length > MAX_PAYLOAD) {
    throw new HydrogenError('INVALID_ARGUMENT', `credential of ${p.length} bytes is over the maximum payload of ${MAX_PAYLOAD}`);
  }
  if (isTelemetryRequest(p)) {
    throw new HydrogenError('INVALID_ARGUMENT', 'credential has the shape of a telemetry request (5 bytes starting with 0x0D)');
  }
  return p;
}

/**
 * @template {new (...args: any[]) => any} B
 * @param {B} Base an EventEmitter-like class: on, once, off, emit, listenerCount
 */
export function defineClient(Base) {
  return class Client extends Base {
    /** @type {Transport} */ #t;
    /** @type {Uint8Array[]} */ #queue = [];
    #head = 0;
    #recvBuffer;
    #paused = false;
    /** @type {{resolve: (p: Uint8Array) => void, reject: (e: Error) => void}[]} */ #waiters = [];
    /** @type {{settle: (o: object, p: Uint8Array) => void, fail: (e: Error) => void} | null} */ #stats = null;
    #statsTurn = Promise.resolve();
    /** @type {{resolve: (id: string) => void, reject: (e: Error) => void} | null} */ #auth = null;
    /** @type {{resolve: () => void, reject: (e: Error) => void}[]} */ #drainWaiters = [];
    #draining = false;
    /** @type {HydrogenError | null} */ #reason = null;
    /** @type {Promise<void> | null} */ #closing = null;

    /**
     * Use connect(); the constructor is not part of the API.
     * @param {Transport} transport
     * @param {{recvBuffer?: number, info?: object}} opts
     */
    constructor(transport, opts = {}) {
      super();
      this.#t = transport;
      this.#recvBuffer = opts.recvBuffer ?? DEFAULT_RECV_BUFFER;
      /** The identity the broker accepted the credential as; null without one. */
      this.identity = null;
      /** Where the connection goes: {transport, host, port} or {transport, url}. */
      this.remote = opts.info ?? {};
      transport.onPayload = (p) => this.#deliver(p);
      transport.onEnd = (err) => this.#end(err);
      this.on('newListener', (event) => {
        if (event === 'message') queueMicrotask(() => this.#flushToListeners());
      });
    }

    /** True once the connection has ended, for whatever reason. */
    get closed() {
      return this.#reason !== null;
    }

    /** Why the connection ended (a HydrogenError), or null while it is up. */
    get closeReason() {
      return this.#reason;
    }

    /**
     * Sends one message. Resolves once the frame is handed to the socket
     * and the socket's buffer is under its mark; awaiting each send is
     * flow control. Rejects, having sent nothing, for a payload over
     * 65,535 bytes (PAYLOAD_TOO_LARGE), one shaped like a telemetry
     * request (TELEMETRY_PAYLOAD), a payload of another type
     * (INVALID_ARGUMENT), or once the connection has ended.
     * @param {Uint8Array|ArrayBuffer|string} payload
     * @returns {Promise<void>}
     */
    send(payload) {
      let p;
      try {
        p = toBytes(payload);
        checkPayload(p);
      } catch (e) {
        return Promise.reject(e);
      }
      if (this.#reason) return Promise.reject(this.#reason);
      if (this.#t.send(p)) return Promise.resolve();
      return new Promise((resolve, reject) => {
        this.#drainWaiters.push({ resolve, reject });
        this.#awaitDrain();
      });
    }

    #awaitDrain() {
      if (this.#draining) return;
      this.#draining = true;
      this.#t.whenDrained().then(() => {
        this.#draining = false;
        const ws = this.#drainWaiters;
        this.#drainWaiters = [];
        for (const w of ws) w.resolve();
      }, () => {
        this.#draining = false; // the end rejects the waiters
      });
    }

    /**
     * Resolves with the next message, waiting for one if none is held.
     * Frames received before the connection ended are still returned;
     * then it rejects with the reason of the end. With a timeout (ms) it
     * rejects with TIMEOUT when nothing came, and no frame is lost.
     * @param {{timeout?: number}} [options]
     * @returns {Promise<Uint8Array>}
     */
    receive(options) {
      let timeout;
      try {
        timeout = checkTimeout(checkOptionsObject(options, ['timeout'], 'receive').timeout, 'receive');
      } catch (e) {
        return Promise.reject(e);
      }
      if (this.#head < this.#queue.length) return Promise.resolve(this.#shift());
      if (this.#reason) return Promise.reject(this.#reason);
      return new Promise((resolve, reject) => {
        const w = { resolve, reject };
        if (timeout !== undefined) {
          const timer = setTimeout(() => {
            const i = this.#waiters.indexOf(w);
            if (i >= 0) this.#waiters.splice(i, 1);
            reject(new HydrogenError('TIMEOUT', `receive: no message within ${timeout} ms`));
          }, timeout);
          w.resolve = (p) => { clearTimeout(timer); resolve(p); };
          w.reject = (e) => { clearTimeout(timer); reject(e); };
        }
        this.#waiters.push(w);
      });
    }

    /**
     * Iterates over the messages as they arrive. The loop ends when the
     * connection ends in order (close(), or the broker closing it between
     * frames) and throws the reason when it ends otherwise. Leaving the
     * loop early does not close the client.
     * @returns {AsyncGenerator<Uint8Array, void, undefined>}
     */
    async *[Symbol.asyncIterator]() {
      for (;;) {
        let p;
        try {
          p = await this.receive();
        } catch (e) {
          if (e === this.#reason && ORDERLY_END.has(e.code)) return;
          throw e;
        }
        yield p;
      }
    }

    /**
     * Asks the broker for a telemetry reading over the next `seconds` and
     * resolves with it once the span has passed. The span is sent as given
     * (as a float32); the broker refuses a span that is not finite or not
     * in (0, max], and the promise then rejects with BROKER_REFUSED and
     * the broker's `reason`. One request is outstanding per connection:
     * concurrent calls wait their turn. With a timeout (ms, counted from
     * the call) it rejects with TIMEOUT; the request then stays
     * outstanding until its reply comes, which is dropped.
     * @param {number} seconds
     * @param {{timeout?: number}} [options]
     */
    stats(seconds, options) {
      let timeout;
      try {
        if (typeof seconds !== 'number') {
          throw new HydrogenError('INVALID_ARGUMENT', `stats span must be a number of seconds, not ${typeof seconds}`);
        }
        timeout = checkTimeout(checkOptionsObject(options, ['timeout'], 'stats').timeout, 'stats');
      } catch (e) {
        return Promise.reject(e);
      }
      if (this.#reason) return Promise.reject(this.#reason);
      return new Promise((resolve, reject) => {
        let settled = false;
        let timer;
        const finish = (fn, v) => {
          if (settled) return;
          settled = true;
          if (timer !== undefined) clearTimeout(timer);
          fn(v);
        };
        if (timeout !== undefined) {
          timer = setTimeout(() => finish(reject, new HydrogenError('TIMEOUT', `stats: no reply within ${timeout} ms`)), timeout);
        }
        const turn = () => new Promise((turnDone) => {
          if (this.#reason) {
            finish(reject, this.#reason);
            turnDone();
            return;
          }
          if (settled) { // timed out while waiting for its turn: nothing was sent
            turnDone();
            return;
          }
          this.#stats = {
            settle: (o, p) => {
              turnDone();
              try {
                finish(resolve, toStats(o, textDecoder.decode(p)));
              } catch (e) {
                finish(reject, e);
              }
            },
            fail: (e) => {
              turnDone();
              finish(reject, e);
            },
          };
          this.#t.send(telemetryRequest(seconds));
        });
        this.#statsTurn = this.#statsTurn.then(turn);
      });
    }

    /**
     * Closes the connection. Pending receive(), stats() and send() calls
     * reject with CLOSED, and so does every later call; held frames are
     * dropped. 'close' is emitted with the CLOSED reason (unless the
     * connection had already ended). Resolves once the socket is closed;
     * calling it again returns the same promise.
     * @returns {Promise<void>}
     */
    close() {
      if (this.#closing) return this.#closing;
      const wasUp = this.#reason === null;
      this.#end(new HydrogenError('CLOSED', 'client closed'));
      this.#queue = [];
      this.#head = 0;
      this.#closing = wasUp ? this.#t.close() : Promise.resolve();
      return this.#closing;
    }

    /**
     * Sends the credential and waits for the broker's answer; connect()
     * calls it before it resolves. Resolves with the identity.
     * @param {Uint8Array} credential checked by checkCredential
     * @param {number | undefined} timeout ms
     */
    authenticate(credential, timeout) {
      return new Promise((resolve, reject) => {
        let timer;
        const done = (fn, v) => {
          if (timer !== undefined) clearTimeout(timer);
          this.#auth = null;
          fn(v);
        };
        this.#auth = {
          resolve: (id) => done(resolve, id),
          reject: (e) => done(reject, e),
        };
        if (timeout !== undefined) {
          timer = setTimeout(() => {
            const err = new HydrogenError('TIMEOUT', `no answer to the credential within ${timeout} ms`);
            done(reject, err);
            this.#end(err);
            this.#t.close();
          }, timeout);
        }
        this.#t.send(credential);
      });
    }

    #answerAuth(p) {
      const a = this.#auth;
      const o = parseObject(p);
      if (o && o.auth === 'ok' && typeof o.identity === 'string') {
        this.identity = o.identity;
        a.resolve(o.identity);
        return;
      }
      let err;
      if (o && typeof o.error === 'string') {
        err = new HydrogenError('AUTH_REFUSED', `broker refused the credential: ${o.error}`, { reason: o.error });
      } else {
        const text = textDecoder.decode(p.subarray(0, 200));
        err = new HydrogenError('BAD_AUTH_REPLY', `broker's answer to the credential is not {"auth":"ok","identity":...} nor {"error":...}: ${JSON.stringify(text)}`);
      }
      a.reject(err);
      this.#end(err);
      this.#t.close();
    }

    #deliver(p) {
      if (this.#reason) return;
      if (this.#auth) {
        this.#answerAuth(p);
        return;
      }
      if (this.#stats) {
        const o = recogniseReply(p);
        if (o) {
          const s = this.#stats;
          this.#stats = null;
          s.settle(o, p);
          return;
        }
      }
      if (this.#waiters.length > 0) {
        this.#waiters.shift().resolve(p);
        return;
      }
      if (this.#head === this.#queue.length && this.listenerCount('message') > 0) {
        this.emit('message', p);
        return;
      }
      this.#queue.push(p);
      if (this.#queue.length - this.#head >= this.#recvBuffer) {
        if (this.#t.canPause) {
          if (!this.#paused) {
            this.#paused = true;
            this.#t.pause();
          }
        } else {
          const err = new HydrogenError('RECV_OVERFLOW',
            `${this.#recvBuffer} messages wait to be received and this transport cannot pause the broker; closing`);
          this.#end(err);
          this.#t.close();
        }
      }
    }

    #shift() {
      const p = this.#queue[this.#head];
      this.#queue[this.#head++] = undefined;
      if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
        this.#queue = this.#queue.slice(this.#head);
        this.#head = 0;
      }
      if (this.#paused && this.#queue.length - this.#head <= this.#recvBuffer / 2 && !this.#reason) {
        this.#paused = false;
        this.#t.resume();
      }
      return p;
    }

    #flushToListeners() {
      while (this.#head < this.#queue.length && this.listenerCount('message') > 0) {
        this.emit('message', this.#shift());
      }
    }

    #end(err) {
      if (this.#reason) return;
      this.#reason = err;
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const w of waiters) w.reject(err);
      if (this.#stats) {
        const s = this.#stats;
        this.#stats = null;
        s.fail(err);
      }
      const drains = this.#drainWaiters;
      this.#drainWaiters = [];
      for (const d of drains) d.reject(err);
      if (this.#auth) {
        this.#auth.reject(err.code === 'BROKER_CLOSED' || err.code === 'UNEXPECTED_EOF'
          ? new HydrogenError('BROKER_CLOSED', 'broker closed the connection before answering the credential', { cause: err })
          : err);
      }
      this.emit('close', err);
    }
  };
}
