"""The Python client of the hydrogen message broker.

``hydrogen_mq.connect`` returns a blocking :class:`Client`;
``hydrogen_mq.aio.connect`` an asyncio :class:`AsyncClient` of the same
shape. Both speak docs/PROTOCOL.md over TCP or TLS::

    import hydrogen_mq

    with hydrogen_mq.connect("127.0.0.1:1337") as c:
        c.send(b"ping")
        print(c.recv(timeout=5))
        print(c.stats(0.5).num_clients)
"""

from .aio import AsyncClient
from .client import Client, connect
from .errors import (
    AuthRefusedError,
    BadAuthReplyError,
    BadReplyError,
    BrokerClosedError,
    BrokerRefusedError,
    ClientClosedError,
    ConnectionEndedError,
    HydrogenError,
    HydrogenTimeoutError,
    PayloadTooLargeError,
    ProtocolError,
    TelemetryPayloadError,
    TransportError,
    UnexpectedEOFError,
)
from .frame import MAX_PAYLOAD, FrameDecoder, encode_frame, is_telemetry_request, telemetry_request
from .stats import RAM, CoreUsage, Resources, Stats, recognise_reply

__all__ = [
    "connect",
    "Client",
    "AsyncClient",
    "Stats",
    "Resources",
    "RAM",
    "CoreUsage",
    "MAX_PAYLOAD",
    "FrameDecoder",
    "encode_frame",
    "telemetry_request",
    "is_telemetry_request",
    "recognise_reply",
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

__version__ = "0.1.0"
