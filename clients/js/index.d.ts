// Type declarations of @hydrogen-mq/client, written by hand and checked
// against the code by `npm run typecheck` and test/types.test.js.

/** What went wrong; the same vocabulary as the other hydrogen clients. */
export type HydrogenErrorCode =
  | 'INVALID_ARGUMENT'
  | 'PAYLOAD_TOO_LARGE'
  | 'TELEMETRY_PAYLOAD'
  | 'CLOSED'
  | 'BROKER_CLOSED'
  | 'UNEXPECTED_EOF'
  | 'PROTOCOL'
  | 'IO'
  | 'TIMEOUT'
  | 'BROKER_REFUSED'
  | 'BAD_REPLY'
  | 'AUTH_REFUSED'
  | 'BAD_AUTH_REPLY'
  | 'RECV_OVERFLOW';

/** Every error the client throws, rejects with or reports as a close reason. */
export class HydrogenError extends Error {
  constructor(code: HydrogenErrorCode, message: string, extra?: { cause?: unknown; reason?: string; wsCode?: number; wsReason?: string });
  readonly name: 'HydrogenError';
  readonly code: HydrogenErrorCode;
  /** The broker's text, for BROKER_REFUSED and AUTH_REFUSED. */
  readonly reason?: string;
  /** The WebSocket close code and reason, when a WebSocket closed. */
  readonly wsCode?: number;
  readonly wsReason?: string;
}

/** The largest payload, in bytes: 65,535. */
export const MAX_PAYLOAD: 65535;

/** The default bound on connecting and on the answer to a credential, in ms. */
export const DEFAULT_CONNECT_TIMEOUT_MS: number;

/** Options of tls.connect (Node) that the client passes through. */
export interface TlsOptions {
  /** Certificate authorities to trust instead of the system's (PEM). */
  ca?: string | Uint8Array | Array<string | Uint8Array>;
  /** The name the server's certificate must carry; defaults to the host unless it is an IP address. */
  servername?: string;
  /** false accepts any certificate; for tests only. Default true. */
  rejectUnauthorized?: boolean;
  /** A client certificate and key (PEM), for brokers that ask for one. */
  cert?: string | Uint8Array;
  key?: string | Uint8Array;
  [option: string]: unknown;
}

export interface ConnectOptions {
  /** Bound in ms on connecting and on the broker's answer to the credential; default 10,000. */
  timeout?: number;
  /** Sent as the stream's first frame; connect resolves once the broker accepts it. */
  credential?: string | Uint8Array;
  /** TLS on a TCP address: true for the system's CAs, or tls.connect options. Node only. */
  tls?: boolean | TlsOptions;
  /** The longest payload accepted from the broker, 0..65535; a longer frame is a PROTOCOL error. */
  maxPayload?: number;
  /** Messages held for receive() before TCP reading pauses (WebSocket: before the client closes with RECV_OVERFLOW); default 1,024. */
  recvBuffer?: number;
  /** A WebSocket class to use instead of globalThis.WebSocket. */
  WebSocket?: unknown;
}

/** Where a client is connected. */
export type Remote =
  | { transport: 'tcp' | 'tls'; host: string; port: number }
  | { transport: 'ws'; url: string };

/** One CPU's busy fraction during the span. */
export interface CoreUsage {
  core: number;
  using: number;
}

/**
 * The broker's telemetry reading (docs/PROTOCOL.md §2), decoded and checked:
 * the counters are JSON integers (a JavaScript number is exact up to 2^53;
 * `raw` has the text as sent).
 */
export interface Stats {
  /** Whole seconds since the broker started. */
  upTime: number;
  bytesRecv: number;
  bytesSent: number;
  msgRecv: number;
  msgSent: number;
  /** Connections open at the moment of the reply. */
  numClients: number;
  resources: {
    ram: { bytesUsed: number; bytesAvailable: number };
    /** Fraction 0..1 of all CPUs busy during the span. */
    cpuOverall: number;
    cpuPerCore: CoreUsage[];
  };
  /** Top-level members beyond the required ones, as parsed JSON. */
  extra: Record<string, unknown>;
  /** The reply as received. */
  raw: string;
}

/** A connection to a hydrogen broker. */
export class Client implements AsyncIterable<Uint8Array> {
  private constructor();
  /** The identity the broker accepted the credential as; null without a credential. */
  readonly identity: string | null;
  readonly remote: Remote;
  /** True once the connection has ended. */
  readonly closed: boolean;
  /** Why the connection ended, or null while it is up. */
  readonly closeReason: HydrogenError | null;

  /** Sends one message of 0 to 65,535 bytes (a string is sent as UTF-8). */
  send(payload: Uint8Array | ArrayBuffer | string): Promise<void>;
  /** The next message; rejects with TIMEOUT after options.timeout ms, or with the reason the connection ended. */
  receive(options?: { timeout?: number }): Promise<Uint8Array>;
  /** A telemetry reading over the next `seconds`. */
  stats(seconds: number, options?: { timeout?: number }): Promise<Stats>;
  /** Closes the connection; resolves once the socket is closed. */
  close(): Promise<void>;
  [Symbol.asyncIterator](): AsyncGenerator<Uint8Array, void, undefined>;

  on(event: 'message', listener: (payload: Uint8Array) => void): this;
  on(event: 'close', listener: (reason: HydrogenError) => void): this;
  once(event: 'message', listener: (payload: Uint8Array) => void): this;
  once(event: 'close', listener: (reason: HydrogenError) => void): this;
  off(event: 'message', listener: (payload: Uint8Array) => void): this;
  off(event: 'close', listener: (reason: HydrogenError) => void): this;
  addListener(event: 'message', listener: (payload: Uint8Array) => void): this;
  addListener(event: 'close', listener: (reason: HydrogenError) => void): this;
  removeListener(event: 'message', listener: (payload: Uint8Array) => void): this;
  removeListener(event: 'close', listener: (reason: HydrogenError) => void): this;
  removeAllListeners(event?: 'message' | 'close'): this;
  listenerCount(event: 'message' | 'close'): number;
}

/**
 * Connects to a broker. Node: "host:port", "[v6]:port", "tcp://host:port",
 * "tls://host:port", {host, port}, "ws://..." or "wss://...". Browsers:
 * ws:// or wss:// only.
 */
export function connect(address: string | { host: string; port: number }, options?: ConnectOptions): Promise<Client>;

/** Cuts frames out of a byte stream; exported for tools and tests. */
export class FrameDecoder {
  constructor(maxPayload?: number, copy?: (src: Uint8Array, start: number, end: number) => Uint8Array);
  /** Bytes of an unfinished frame held. */
  readonly buffered: number;
  /** Feeds a chunk; calls onFrame for each whole frame; throws a PROTOCOL HydrogenError at a bad byte. */
  feed(chunk: Uint8Array, onFrame: (payload: Uint8Array) => void): void;
}

/** Encodes one frame around a payload of at most 65,535 bytes. */
export function encodeFrame(payload: Uint8Array, alloc?: (n: number) => Uint8Array): Uint8Array;
/** The 5-byte payload of a telemetry request for `seconds`. */
export function telemetryRequest(seconds: number): Uint8Array;
/** True for a payload the broker would take for a telemetry request. */
export function isTelemetryRequest(payload: Uint8Array): boolean;
/** The recognition rule of a telemetry reply: the parsed object, or undefined. */
export function recogniseReply(payload: Uint8Array): Record<string, unknown> | undefined;
