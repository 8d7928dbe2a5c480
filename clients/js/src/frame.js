// The frame format of docs/PROTOCOL.md §1 and the 0x0D telemetry request
// of §2. No I/O here.

import { HydrogenError } from './errors.js';

export const START = 0x01;
export const END = 0x17;
export const ACTION_TELEMETRY = 0x0d;
/** The largest payload, in bytes. */
export const MAX_PAYLOAD = 65535;
/** Bytes a frame adds around its payload. */
export const FRAME_OVERHEAD = 4;

const encoder = new TextEncoder();

/**
 * Turns a payload argument into bytes, or throws INVALID_ARGUMENT.
 * @param {Uint8Array|ArrayBuffer|string} payload
 * @param {string} what
 * @returns {Uint8Array}
 */
export function toBytes(payload, what = 'payload') {
  if (typeof payload === 'string') return encoder.encode(payload);
  if (payload instanceof Uint8Array) return payload;
  if (payload instanceof ArrayBuffer) return new Uint8Array(payload);
  if (ArrayBuffer.isView(payload)) {
    return new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  }
  throw new HydrogenError('INVALID_ARGUMENT',
    `${what} must be a Uint8Array, an ArrayBuffer or a string, not ${describe(payload)}`);
}

function describe(v) {
  if (v === null) return 'null';
  if (typeof v === 'object') return `an object (${v.constructor ? v.constructor.name : 'no prototype'})`;
  return typeof v;
}

/** True when the broker would take p for a telemetry request, not a message. */
export function isTelemetryRequest(p) {
  return p.length === 5 && p[0] === ACTION_TELEMETRY;
}

/**
 * Checks a payload the application wants to send; throws the error the
 * send fails with, having sent nothing.
 * @param {Uint8Array} p
 */
export function checkPayload(p) {
  if (p.length > MAX_PAYLOAD) {
    throw new HydrogenError('PAYLOAD_TOO_LARGE',
      `payload of ${p.length} bytes is over the maximum of ${MAX_PAYLOAD}; nothing was sent`);
  }
  if (isTelemetryRequest(p)) {
    throw new HydrogenError('TELEMETRY_PAYLOAD',
      'payload has the shape of a telemetry request (5 bytes starting with 0x0D); use stats(); nothing was sent');
  }
}

/**
 * Encodes one frame: 0x01, the length big-endian, the payload, 0x17.
 * @param {Uint8Array} p at most MAX_PAYLOAD bytes
 * @param {(n: number) => Uint8Array} [alloc]
 */
export function encodeFrame(p, alloc = (n) => new Uint8Array(n)) {
  const f = alloc(p.length + FRAME_OVERHEAD);
  f[0] = START;
  f[1] = p.length >>> 8;
  f[2] = p.length & 0xff;
  f.set(p, 3);
  f[3 + p.length] = END;
  return f;
}

/** The 5-byte payload of a telemetry request for `seconds`, as float32 big-endian. */
export function telemetryRequest(seconds) {
  const p = new Uint8Array(5);
  p[0] = ACTION_TELEMETRY;
  new DataView(p.buffer).setFloat32(1, seconds, false);
  return p;
}

const HEADER = 0;
const PAYLOAD = 1;
const TRAILER = 2;

/**
 * Cuts frames out of a byte stream fed in chunks of any size, split at any
 * byte. It keeps at most one partial frame (a buffer of maxPayload bytes,
 * allocated once), so its memory is bounded by one frame. Like the broker,
 * it never guesses at a frame boundary: a bad byte is a PROTOCOL error, and
 * the decoder stays failed.
 */
export class FrameDecoder {
  /**
   * @param {number} [maxPayload] the longest payload accepted, 0..65535
   * @param {(src: Uint8Array, start: number, end: number) => Uint8Array} [copy]
   *   makes an owned copy of part of a chunk (a Buffer in Node)
   */
  constructor(maxPayload = MAX_PAYLOAD, copy = (src, a, b) => Uint8Array.prototype.slice.call(src, a, b)) {
    if (!Number.isInteger(maxPayload) || maxPayload < 0 || maxPayload > MAX_PAYLOAD) {
      throw new HydrogenError('INVALID_ARGUMENT', `maxPayload ${maxPayload} is not an integer in [0, ${MAX_PAYLOAD}]`);
    }
    this.maxPayload = maxPayload;
    this.copy = copy;
    this.state = HEADER;
    this.header = new Uint8Array(3);
    this.headerLen = 0;
    this.need = 0; // payload length of the frame being read
    this.partial = null; // Uint8Array(maxPayload), allocated when first needed
    this.have = 0; // payload bytes of the frame being read so far
    this.offset = 0; // bytes consumed since the start of the stream
    this.failed = null;
  }

  /** Bytes of an unfinished frame held: nonzero means a close now cuts a frame. */
  get buffered() {
    return this.state === HEADER ? this.headerLen : 3 + this.have;
  }

  /**
   * Feeds a chunk and calls onFrame(payload) for each whole frame in it, in
   * order. Each payload is a copy the caller owns. Throws a PROTOCOL error
   * at the first bad byte (frames before it have been passed on).
   * @param {Uint8Array} chunk
   * @param {(p: Uint8Array) => void} onFrame
   */
  feed(chunk, onFrame) {
    if (this.failed) throw this.failed;
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.state === HEADER) {
        if (this.headerLen === 0 && n - i >= 3) {
          // Fast path: a whole header, and maybe the whole frame, in this chunk.
          if (chunk[i] !== START) this.fail('bad start byte', chunk[i], 0);
          const len = (chunk[i + 1] << 8) | chunk[i + 2];
          this.checkLength(len);
          if (n - i >= len + 4) {
            if (chunk[i + 3 + len] !== END) this.fail('bad end byte', chunk[i + 3 + len], 3 + len);
            onFrame(this.copy(chunk, i + 3, i + 3 + len));
            i += len + 4;
            this.offset += len + 4;
            continue;
          }
          this.need = len;
          this.have = 0;
          this.headerLen = 3;
          i += 3;
          this.offset += 3;
          this.state = len === 0 ? TRAILER : PAYLOAD;
          continue;
        }
        const b = chunk[i];
        if (this.headerLen === 0 && b !== START) this.fail('bad start byte', b, 0);
        this.header[this.headerLen++] = b;
        i++;
        this.offset++;
        if (this.headerLen === 3) {
          const len = (this.header[1] << 8) | this.header[2];
          this.checkLength(len);
          this.need = len;
          this.have = 0;
          this.state = len === 0 ? TRAILER : PAYLOAD;
        }
        continue;
      }
      if (this.state === PAYLOAD) {
        const take = Math.min(this.need - this.have, n - i);
        if (this.partial === null) this.partial = new Uint8Array(this.maxPayload);
        this.partial.set(chunk.subarray(i, i + take), this.have);
        this.have += take;
        i += take;
        this.offset += take;
        if (this.have === this.need) this.state = TRAILER;
        continue;
      }
      // TRAILER
      const b = chunk[i];
      if (b !== END) this.fail('bad end byte', b, 0);
      i++;
      this.offset++;
      const p = this.copy(this.partial === null ? new Uint8Array(0) : this.partial, 0, this.need);
      this.state = HEADER;
      this.headerLen = 0;
      this.have = 0;
      this.need = 0;
      onFrame(p);
    }
  }

  checkLength(len) {
    if (len > this.maxPayload) {
      this.failed = new HydrogenError('PROTOCOL',
        `protocol error from the broker: frame at byte ${this.offset} declares ${len} payload bytes, over the maximum of ${this.maxPayload}`);
      throw this.failed;
    }
  }

  fail(what, byte, ahead) {
    this.failed = new HydrogenError('PROTOCOL',
      `protocol error from the broker: ${what} 0x${byte.toString(16).padStart(2, '0')} at byte ${this.offset + ahead}`);
    throw this.failed;
  }
}
