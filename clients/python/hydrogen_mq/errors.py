"""Errors of the hydrogen client.

Every error the client raises is a :class:`HydrogenError`; its ``code`` is
the same word the other hydrogen clients use (see docs/CONFORMANCE.md).
Bad arguments raise ``TypeError`` or ``ValueError`` (the payload errors are
both a HydrogenError and a ValueError).
"""

from __future__ import annotations

from typing import Optional

__all__ = [
    "HydrogenError",
    "PayloadTooLargeError",
    "TelemetryPayloadError",
    "ConnectionEndedError",
    "ClientClosedError",
    "BrokerClosedError",
    "UnexpectedEOFError",
    "ProtocolError",
    "TransportError",
    "HydrogenTimeoutError",
    "BrokerRefusedError",
    "BadReplyError",
    "AuthRefusedError",
    "BadAuthReplyError",
]


class HydrogenError(Exception):
    """The base of every error of the client."""

    code = "HYDROGEN"

    def __init__(self, message: str) -> None:
        if not message.startswith("hydrogen: "):
            message = "hydrogen: " + message
        super().__init__(message)


class PayloadTooLargeError(HydrogenError, ValueError):
    """A payload over 65,535 bytes; nothing was sent."""

    code = "PAYLOAD_TOO_LARGE"


class TelemetryPayloadError(HydrogenError, ValueError):
    """A payload the broker would take for a telemetry request (5 bytes
    starting with 0x0D); nothing was sent. Use ``stats``."""

    code = "TELEMETRY_PAYLOAD"


class ConnectionEndedError(HydrogenError, ConnectionError):
    """The connection has ended; the subclass says how. Every call after
    the end raises it (``recv`` first returns the frames received before)."""

    code = "ENDED"


class ClientClosedError(ConnectionEndedError):
    """``close()`` ended the connection."""

    code = "CLOSED"


class BrokerClosedError(ConnectionEndedError):
    """The broker closed the connection between frames."""

    code = "BROKER_CLOSED"


class UnexpectedEOFError(ConnectionEndedError):
    """The broker closed the connection inside a frame."""

    code = "UNEXPECTED_EOF"


class ProtocolError(ConnectionEndedError):
    """The broker's stream broke the frame format (a bad start or end
    byte, or a length over ``max_payload``); the client closed it."""

    code = "PROTOCOL"


class TransportError(ConnectionEndedError):
    """The connection could not be made, or a read or write failed."""

    code = "IO"


class HydrogenTimeoutError(HydrogenError, TimeoutError):
    """The time allowed ran out; the connection is still usable (but for a
    timeout of ``connect``)."""

    code = "TIMEOUT"


class BrokerRefusedError(HydrogenError):
    """The broker refused the telemetry request (a span that is NaN,
    infinite, <= 0 or over its maximum, or too many requests waiting). The
    connection stays open; ``reason`` is the broker's text."""

    code = "BROKER_REFUSED"

    def __init__(self, reason: str) -> None:
        super().__init__("broker refused the telemetry request: " + reason)
        self.reason = reason


class BadReplyError(HydrogenError):
    """A telemetry reply (it has an ``up_time`` member) lacks a required
    field or has one of the wrong JSON type."""

    code = "BAD_REPLY"


class AuthRefusedError(HydrogenError):
    """The broker refused the credential; ``reason`` is its text."""

    code = "AUTH_REFUSED"

    def __init__(self, reason: str) -> None:
        super().__init__("broker refused the credential: " + reason)
        self.reason = reason


class BadAuthReplyError(HydrogenError):
    """The broker's first frame answered the credential in neither shape of
    the contract."""

    code = "BAD_AUTH_REPLY"


def describe_end(err: Optional[BaseException]) -> str:
    return "" if err is None else str(err)
