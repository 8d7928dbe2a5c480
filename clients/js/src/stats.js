// The telemetry reply of docs/PROTOCOL.md §2: recognising it among the
// application frames (§4, "Recognising the reply on a busy connection")
// and checking it against the required fields and their JSON types.

import { HydrogenError } from './errors.js';

const decoder = new TextDecoder('utf-8', { fatal: true });

/** The top-level members of §2; every other member is an extra. */
export const REQUIRED = ['up_time', 'bytes_recv', 'bytes_sent', 'msg_recv', 'msg_sent', 'num_clients', 'resources'];

/**
 * Parses p as a JSON object, or returns undefined when it is not one:
 * not UTF-8, not JSON, or JSON of another kind.
 * @param {Uint8Array} p
 */
export function parseObject(p) {
  let i = 0;
  while (i < p.length && (p[i] === 0x20 || p[i] === 0x09 || p[i] === 0x0a || p[i] === 0x0d)) i++;
  if (i === p.length || p[i] !== 0x7b /* { */) return undefined;
  let v;
  try {
    v = JSON.parse(decoder.decode(p));
  } catch {
    return undefined;
  }
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? v : undefined;
}

const has = (o, k) => Object.prototype.hasOwnProperty.call(o, k);

/**
 * The recognition rule: while a request is outstanding, the reply is the
 * first frame whose payload is a JSON object with an `up_time` member (a
 * reading), or with exactly one member, `error`, holding a string (a
 * refusal). Returns the parsed object, or undefined for any other frame.
 * @param {Uint8Array} p
 */
export function recogniseReply(p) {
  const o = parseObject(p);
  if (o === undefined) return undefined;
  if (has(o, 'up_time')) return o;
  const keys = Object.keys(o);
  if (keys.length === 1 && keys[0] === 'error' && typeof o.error === 'string') return o;
  return undefined;
}

function bad(path, want, v) {
  const got = v === undefined ? 'missing' : `${JSON.stringify(v)}`;
  return new HydrogenError('BAD_REPLY', `malformed telemetry reply: ${path} is ${got}, want ${want}`);
}

function counter(o, k, path) {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw bad(path + k, 'a non-negative integer', v);
  return v;
}

function fraction(o, k, path) {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isFinite(v)) throw bad(path + k, 'a number', v);
  return v;
}

function object(o, k, path) {
  const v = o[k];
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw bad(path + k, 'an object', v);
  return v;
}

/**
 * Turns a recognised reply into a Stats object, or throws: BROKER_REFUSED
 * (with `reason`) for a refusal, BAD_REPLY when a required field is
 * missing or of the wrong JSON type. Counters are integers (JSON numbers
 * without a fraction); extra members are kept in `extra`, and the text as
 * received in `raw`.
 * @param {Record<string, unknown>} o what recogniseReply returned
 * @param {string} raw the payload as text
 */
export function toStats(o, raw) {
  if (!has(o, 'up_time')) {
    throw new HydrogenError('BROKER_REFUSED', `broker refused the telemetry request: ${o.error}`, { reason: o.error });
  }
  const res = object(o, 'resources', '');
  const ram = object(res, 'ram', 'resources.');
  const cores = res.cpu_per_core;
  if (!Array.isArray(cores)) throw bad('resources.cpu_per_core', 'an array', cores);
  const extra = {};
  for (const k of Object.keys(o)) if (!REQUIRED.includes(k)) extra[k] = o[k];
  return {
    upTime: counter(o, 'up_time', ''),
    bytesRecv: counter(o, 'bytes_recv', ''),
    bytesSent: counter(o, 'bytes_sent', ''),
    msgRecv: counter(o, 'msg_recv', ''),
    msgSent: counter(o, 'msg_sent', ''),
    numClients: counter(o, 'num_clients', ''),
    resources: {
      ram: {
        bytesUsed: counter(ram, 'bytes_used', 'resources.ram.'),
        bytesAvailable: counter(ram, 'bytes_available', 'resources.ram.'),
      },
      cpuOverall: fraction(res, 'cpu_overall', 'resources.'),
      cpuPerCore: cores.map((c, i) => {
        const path = `resources.cpu_per_core[${i}]`;
        if (c === null || typeof c !== 'object' || Array.isArray(c)) throw bad(path, 'an object', c);
        return { core: counter(c, 'core', path + '.'), using: fraction(c, 'using', path + '.') };
      }),
    },
    extra,
    raw,
  };
}
