"""The frame format of docs/PROTOCOL.md section 1 and the 0x0D telemetry
request of section 2. No I/O here."""

from __future__ import annotations

import struct
from typing import List, Union

from .errors import PayloadTooLargeError, ProtocolError, TelemetryPayloadError

__all__ = [
    "START",
    "END",
    "ACTION_TELEMETRY",
    "MAX_PAYLOAD",
    "Payload",
    "to_bytes",
    "check_payload",
    "encode_frame",
    "telemetry_request",
    "is_telemetry_request",
    "FrameDecoder",
]

START = 0x01
END = 0x17
ACTION_TELEMETRY = 0x0D
MAX_PAYLOAD = 65535

Payload = Union[bytes, bytearray, memoryview, str]


def to_bytes(payload: Payload, what: str = "payload") -> bytes:
    """Bytes of a payload argument; a str is encoded as UTF-8."""
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload)
    raise TypeError(
        "hydrogen: %s must be bytes, bytearray, memoryview or str, not %s" % (what, type(payload).__name__)
    )


def is_telemetry_request(p: bytes) -> bool:
    """True when the broker would take p for a telemetry request."""
    return len(p) == 5 and p[0] == ACTION_TELEMETRY


def check_payload(p: bytes) -> None:
    """Raises the error a send fails with, having sent nothing."""
    if len(p) > MAX_PAYLOAD:
        raise PayloadTooLargeError(
            "payload of %d bytes is over the maximum of %d; nothing was sent" % (len(p), MAX_PAYLOAD)
        )
    if is_telemetry_request(p):
        raise TelemetryPayloadError(
            "payload has the shape of a telemetry request (5 bytes starting with 0x0D); use stats(); nothing was sent"
        )


def encode_frame(p: bytes) -> bytes:
    """One frame: 0x01, the length big-endian, the payload, 0x17."""
    return b"".join((struct.pack(">BH", START, len(p)), p, b"\x17"))


def telemetry_request(seconds: float) -> bytes:
    """The 5-byte payload of a telemetry request: 0x0D and the span as a
    big-endian float32 (NaN and infinities are sent as they are)."""
    return struct.pack(">Bf", ACTION_TELEMETRY, seconds)


_HEADER, _PAYLOAD, _TRAILER = 0, 1, 2


class FrameDecoder:
    """Cuts frames out of a byte stream fed in pieces split at any byte.

    It holds at most one unfinished frame, so its memory is bounded by
    one frame. Like the broker, it never guesses at a frame boundary: a bad
    byte raises :class:`ProtocolError`, and the decoder stays failed.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        if isinstance(max_payload, bool) or not isinstance(max_payload, int) or not 0 <= max_payload <= MAX_PAYLOAD:
            raise ValueError("hydrogen: max_payload %r is not an integer in [0, %d]" % (max_payload, MAX_PAYLOAD))
        self.max_payload = max_payload
        self._state = _HEADER
        self._header = bytearray()
        self._partial = bytearray()
        self._need = 0
        self._offset = 0
        self._failed: "ProtocolError | None" = None

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished frame held."""
        if self._state == _HEADER:
            return len(self._header)
        return 3 + len(self._partial)

    def feed(self, data: bytes) -> List[bytes]:
        """Returns the whole frames completed by data, in order. Raises
        ProtocolError at the first bad byte; the frames before it are in the
        error's ``frames`` attribute."""
        if self._failed is not None:
            raise self._failed
        out: List[bytes] = []
        mv = memoryview(data)
        i, n = 0, len(data)
        try:
            while i < n:
                if self._state == _HEADER:
                    if not self._header and n - i >= 3:
                        if data[i] != START:
                            self._fail("bad start byte", data[i], 0)
                        length = (data[i + 1] << 8) | data[i + 2]
                        self._check_length(length)
                        if n - i >= length + 4:
                            if data[i + 3 + length] != END:
                                self._fail("bad end byte", data[i + 3 + length], 3 + length)
                            out.append(bytes(mv[i + 3 : i + 3 + length]))
                            i += length + 4
                            self._offset += length + 4
                            continue
                        self._header += mv[i : i + 3]
                        i += 3
                        self._offset += 3
                        self._start_payload(length)
                        continue
                    b = data[i]
                    if not self._header and b != START:
                        self._fail("bad start byte", b, 0)
                    self._header.append(b)
                    i += 1
                    self._offset += 1
                    if len(self._header) == 3:
                        length = (self._header[1] << 8) | self._header[2]
                        self._check_length(length)
                        self._start_payload(length)
                    continue
                if self._state == _PAYLOAD:
                    take = min(self._need - len(self._partial), n - i)
                    self._partial += mv[i : i + take]
                    i += take
                    self._offset += take
                    if len(self._partial) == self._need:
                        self._state = _TRAILER
                    continue
                b = data[i]
                if b != END:
                    self._fail("bad end byte", b, 0)
                i += 1
                self._offset += 1
                out.append(bytes(self._partial))
                self._partial = bytearray()
                self._header = bytearray()
                self._state = _HEADER
        except ProtocolError as e:
            e.frames = out  # type: ignore[attr-defined]
            raise
        return out

    def _start_payload(self, length: int) -> None:
        self._need = length
        self._partial = bytearray()
        self._state = _TRAILER if length == 0 else _PAYLOAD

    def _check_length(self, length: int) -> None:
        if length > self.max_payload:
            self._failed = ProtocolError(
                "protocol error from the broker: frame at byte %d declares %d payload bytes, over the maximum of %d"
                % (self._offset, length, self.max_payload)
            )
            raise self._failed

    def _fail(self, what: str, byte: int, ahead: int) -> None:
        self._failed = ProtocolError(
            "protocol error from the broker: %s 0x%02x at byte %d" % (what, byte, self._offset + ahead)
        )
        raise self._failed
