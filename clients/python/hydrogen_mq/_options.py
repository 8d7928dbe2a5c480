"""Reading connect()'s address and options."""

from __future__ import annotations

import re
import ssl
from typing import Optional, Tuple, Union

from .frame import MAX_PAYLOAD, is_telemetry_request, to_bytes

Address = Union[str, Tuple[str, int]]

DEFAULT_TIMEOUT = 10.0
DEFAULT_RECV_BUFFER = 1024

_HOST_PORT = re.compile(r"^(?:\[([^\]]+)\]|([^:/\[\]]+)):([0-9]+)$")


def parse_address(address: Address) -> Tuple[str, int, bool]:
    """(host, port, tls) of "host:port", "[v6]:port", "tcp://host:port",
    "tls://host:port" or (host, port)."""
    if isinstance(address, tuple):
        if len(address) != 2 or not isinstance(address[0], str) or not address[0]:
            raise ValueError("hydrogen: address tuple must be (host, port), not %r" % (address,))
        return address[0], _port(address[1], address), False
    if not isinstance(address, str):
        raise TypeError("hydrogen: address must be a str or a (host, port) tuple, not %s" % type(address).__name__)
    rest, tls = address, False
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", address)
    if m:
        scheme = m.group(1).lower()
        if scheme in ("ws", "wss"):
            raise ValueError(
                "hydrogen: the Python client speaks TCP and TLS; %r is a WebSocket URL (use the broker's TCP address)"
                % address
            )
        if scheme not in ("tcp", "tls"):
            raise ValueError("hydrogen: address scheme %r is not tcp or tls" % scheme)
        tls = scheme == "tls"
        rest = address[m.end() :].rstrip("/")
    hp = _HOST_PORT.match(rest)
    if not hp:
        raise ValueError("hydrogen: address %r is not host:port" % address)
    return hp.group(1) or hp.group(2), _port(int(hp.group(3)), address), tls


def _port(port: object, where: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError("hydrogen: port in %r must be an integer in [1, 65535]" % (where,))
    return port


def check_timeout(timeout: Optional[float], what: str) -> Optional[float]:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
        raise ValueError("hydrogen: %s timeout must be a positive number of seconds or None, not %r" % (what, timeout))
    return float(timeout)


def check_credential(credential: Union[str, bytes]) -> bytes:
    p = to_bytes(credential, "credential")
    if not p:
        raise ValueError("hydrogen: credential is empty")
    if len(p) > MAX_PAYLOAD:
        raise ValueError("hydrogen: credential of %d bytes is over the maximum payload of %d" % (len(p), MAX_PAYLOAD))
    if is_telemetry_request(p):
        raise ValueError("hydrogen: credential has the shape of a telemetry request (5 bytes starting with 0x0D)")
    return p


def check_int(value: object, name: str, low: int, high: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = "[%d, %d]" % (low, high) if high is not None else "of at least %d" % low
        raise ValueError("hydrogen: %s %r is not an integer %s" % (name, value, bound))
    return value


def tls_context(
    use_tls: bool,
    tls: Union[bool, ssl.SSLContext, None],
    ca_file: Optional[str],
    server_hostname: Optional[str],
    cert_file: Optional[str] = None,
    key_file: Optional[str] = None,
) -> Optional[ssl.SSLContext]:
    """The SSL context to connect with, or None for plain TCP. TLS is on for
    a tls:// address, tls=True or a context, or when ca_file,
    server_hostname or cert_file is given; certificates are verified
    against ca_file, or the system's CAs. cert_file (PEM, the certificate
    chain, with the key unless key_file holds it) is the client's
    certificate for a broker that asks for one (mutual TLS)."""
    if tls is not None and not isinstance(tls, (bool, ssl.SSLContext)):
        raise TypeError("hydrogen: tls must be True, False, None or an ssl.SSLContext, not %s" % type(tls).__name__)
    for name, value in (("ca_file", ca_file), ("cert_file", cert_file), ("key_file", key_file)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError("hydrogen: %s must be a non-empty path, not %r" % (name, value))
    if key_file is not None and cert_file is None:
        raise ValueError("hydrogen: key_file without cert_file")
    if isinstance(tls, ssl.SSLContext):
        if ca_file is not None or cert_file is not None:
            raise ValueError("hydrogen: give ca_file and cert_file, or an SSLContext in tls, not both")
        return tls
    if tls is False and (use_tls or ca_file is not None or server_hostname is not None or cert_file is not None):
        raise ValueError("hydrogen: tls=False contradicts a tls:// address, ca_file, server_hostname or cert_file")
    if not (use_tls or tls or ca_file is not None or server_hostname is not None or cert_file is not None):
        return None
    try:
        ctx = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as e:
        raise ValueError("hydrogen: ca_file %r: %s" % (ca_file, e)) from e
    if cert_file is not None:
        try:
            ctx.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as e:
            raise ValueError("hydrogen: cert_file %r / key_file %r: %s" % (cert_file, key_file, e)) from e
    return ctx
