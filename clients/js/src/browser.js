// The browser entry point: WebSocket only (ws:// or wss:// URLs).

import { Emitter } from './emitter.js';
import { defineClient } from './client.js';
import { makeConnect } from './connect.js';
import { openWs } from './ws.js';

export { HydrogenError } from './errors.js';
export { MAX_PAYLOAD, FrameDecoder, encodeFrame, telemetryRequest, isTelemetryRequest } from './frame.js';
export { recogniseReply } from './stats.js';
export { DEFAULT_CONNECT_TIMEOUT_MS } from './connect.js';

/** A connection to a hydrogen broker; made by connect(). */
export const Client = defineClient(Emitter);

/** Connects to a broker's WebSocket listener: a ws:// or wss:// URL. */
export const connect = makeConnect({ Client, openWs });
