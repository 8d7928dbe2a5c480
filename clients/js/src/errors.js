// Errors of the hydrogen client. Every error the client raises or rejects
// with is a HydrogenError; its `code` says what happened, so callers branch
// on `err.code` (the same vocabulary as the other hydrogen clients, see
// docs/CONFORMANCE.md in the repository).

/**
 * The one error class of the client. `code` is one of:
 * INVALID_ARGUMENT, PAYLOAD_TOO_LARGE, TELEMETRY_PAYLOAD, CLOSED,
 * BROKER_CLOSED, UNEXPECTED_EOF, PROTOCOL, IO, TIMEOUT, BROKER_REFUSED,
 * BAD_REPLY, AUTH_REFUSED, BAD_AUTH_REPLY, RECV_OVERFLOW.
 */
export class HydrogenError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{cause?: unknown, reason?: string, wsCode?: number, wsReason?: string}} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message.startsWith('hydrogen: ') ? message : `hydrogen: ${message}`,
      extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = 'HydrogenError';
    this.code = code;
    if (extra.reason !== undefined) this.reason = extra.reason;
    if (extra.wsCode !== undefined) this.wsCode = extra.wsCode;
    if (extra.wsReason !== undefined) this.wsReason = extra.wsReason;
  }
}

/** Codes for an end of the connection that is no failure: iteration just stops. */
export const ORDERLY_END = new Set(['CLOSED', 'BROKER_CLOSED']);

export function invalid(message) {
  return new HydrogenError('INVALID_ARGUMENT', message);
}
