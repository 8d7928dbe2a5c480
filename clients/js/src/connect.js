// connect(): reads the address and options, opens the transport, sends the
// credential when there is one, and hands back a Client.

import { HydrogenError } from './errors.js';
import { MAX_PAYLOAD } from './frame.js';
import { checkTimeout, checkOptionsObject, checkCredential, DEFAULT_RECV_BUFFER } from './client.js';

/** Bound on connecting and on the broker's answer to a credential, unless options.timeout says otherwise. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10000;

const OPTIONS = ['timeout', 'credential', 'tls', 'maxPayload', 'recvBuffer', 'WebSocket'];

/**
 * Reads an address: "host:port", "[v6]:port", "tcp://host:port",
 * "tls://host:port", "ws://..." or "wss://...", or {host, port}.
 * @returns {{kind: 'tcp'|'tls'|'ws', host?: string, port?: number, url?: string}}
 */
export function parseAddress(address) {
  if (address !== null && typeof address === 'object') {
    const { host, port } = address;
    if (typeof host !== 'string' || host === '') throw new HydrogenError('INVALID_ARGUMENT', 'address.host must be a non-empty string');
    return { kind: 'tcp', host, port: checkPort(port, JSON.stringify(address)) };
  }
  if (typeof address !== 'string' || address === '') {
    throw new HydrogenError('INVALID_ARGUMENT', 'address must be "host:port", a tcp://, tls://, ws:// or wss:// URL, or {host, port}');
  }
  if (/^wss?:\/\//i.test(address)) {
    let u;
    try {
      u = new URL(address);
    } catch {
      throw new HydrogenError('INVALID_ARGUMENT', `address ${JSON.stringify(address)} is not a valid URL`);
    }
    return { kind: 'ws', url: u.href };
  }
  let kind = 'tcp';
  let rest = address;
  const m = /^([a-z][a-z0-9+.-]*):\/\//i.exec(address);
  if (m) {
    const scheme = m[1].toLowerCase();
    if (scheme !== 'tcp' && scheme !== 'tls') {
      throw new HydrogenError('INVALID_ARGUMENT', `address scheme ${JSON.stringify(scheme)} is not tcp, tls, ws or wss`);
    }
    kind = scheme;
    rest = address.slice(m[0].length).replace(/\/$/, '');
  }
  const hp = /^(?:\[([^\]]+)\]|([^:/[\]]+)):([0-9]+)$/.exec(rest);
  if (!hp) throw new HydrogenError('INVALID_ARGUMENT', `address ${JSON.stringify(address)} is not host:port`);
  return { kind, host: hp[1] ?? hp[2], port: checkPort(Number(hp[3]), JSON.stringify(address)) };
}

function checkPort(port, where) {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new HydrogenError('INVALID_ARGUMENT', `port in ${where} must be an integer in [1, 65535]`);
  }
  return port;
}

/**
 * Checks the options; returns them with defaults filled in.
 */
export function readOptions(options) {
  const o = checkOptionsObject(options, OPTIONS, 'connect');
  const timeout = o.timeout === undefined ? DEFAULT_CONNECT_TIMEOUT_MS : checkTimeout(o.timeout, 'connect');
  const maxPayload = o.maxPayload ?? MAX_PAYLOAD;
  if (!Number.isInteger(maxPayload) || maxPayload < 0 || maxPayload > MAX_PAYLOAD) {
    throw new HydrogenError('INVALID_ARGUMENT', `maxPayload ${String(maxPayload)} is not an integer in [0, ${MAX_PAYLOAD}]`);
  }
  const recvBuffer = o.recvBuffer ?? DEFAULT_RECV_BUFFER;
  if (!Number.isInteger(recvBuffer) || recvBuffer < 1) {
    throw new HydrogenError('INVALID_ARGUMENT', `recvBuffer ${String(recvBuffer)} is not an integer of at least 1`);
  }
  const credential = o.credential === undefined ? undefined : checkCredential(o.credential);
  const tlsOpt = o.tls ?? false;
  if (typeof tlsOpt !== 'boolean' && (tlsOpt === null || typeof tlsOpt !== 'object')) {
    throw new HydrogenError('INVALID_ARGUMENT', 'tls must be true, false or an object of tls.connect options (ca, servername, rejectUnauthorized, ...)');
  }
  return { timeout, maxPayload, recvBuffer, credential, tls: tlsOpt, WebSocket: o.WebSocket };
}

/**
 * Makes connect() for a platform.
 * @param {{Client: any, openTcp?: Function, openWs: Function}} platform
 */
export function makeConnect({ Client, openTcp, openWs }) {
  return async function connect(address, options) {
    const a = parseAddress(address);
    const o = readOptions(options);
    const started = Date.now();
    let transport;
    let info;
    if (a.kind === 'ws') {
      if (o.tls) throw new HydrogenError('INVALID_ARGUMENT', 'the tls option is for tcp addresses; use a wss:// URL');
      transport = await openWs(a.url, o);
      info = { transport: 'ws', url: a.url };
    } else {
      if (!openTcp) {
        throw new HydrogenError('INVALID_ARGUMENT', `a browser connects over WebSocket only: use a ws:// or wss:// URL, not ${JSON.stringify(address)}`);
      }
      const useTls = a.kind === 'tls' || o.tls !== false;
      transport = await openTcp({ host: a.host, port: a.port, tls: useTls ? (o.tls === true || o.tls === false ? {} : o.tls) : null, timeout: o.timeout, maxPayload: o.maxPayload });
      info = { transport: useTls ? 'tls' : 'tcp', host: a.host, port: a.port };
    }
    const client = new Client(transport, { recvBuffer: o.recvBuffer, info });
    if (o.credential !== undefined) {
      const left = Math.max(1, o.timeout - (Date.now() - started));
      await client.authenticate(o.credential, left);
    }
    return client;
  };
}
