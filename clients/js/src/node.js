// The Node entry point: TCP, TLS and WebSocket.

import { EventEmitter } from 'node:events';
import { defineClient } from './client.js';
import { makeConnect } from './connect.js';
import { openTcp } from './tcp.js';
import { openWs } from './ws.js';

export { HydrogenError } from './errors.js';
export { MAX_PAYLOAD, FrameDecoder, encodeFrame, telemetryRequest, isTelemetryRequest } from './frame.js';
export { recogniseReply } from './stats.js';
export { DEFAULT_CONNECT_TIMEOUT_MS } from './connect.js';

/** A connection to a hydrogen broker; made by connect(). */
export const Client = defineClient(EventEmitter);

/**
 * Connects to a broker: "host:port", "tcp://host:port", "tls://host:port"
 * or {host, port} over TCP (TLS with the tls option), "ws://..." or
 * "wss://..." over WebSocket. Resolves once connected, and once the broker
 * has accepted the credential when options.credential is given.
 */
export const connect = makeConnect({ Client, openTcp, openWs });
