"""The telemetry reply of docs/PROTOCOL.md section 2: recognising it among
the application frames (section 4) and checking it against the required
fields and their JSON types."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple, cast

from .errors import BadReplyError, BrokerRefusedError

__all__ = ["Stats", "Resources", "RAM", "CoreUsage", "parse_object", "recognise_reply", "to_stats", "REQUIRED"]

REQUIRED = ("up_time", "bytes_recv", "bytes_sent", "msg_recv", "msg_sent", "num_clients", "resources")


@dataclass(frozen=True)
class CoreUsage:
    """One CPU's busy fraction during the span."""

    core: int
    using: float


@dataclass(frozen=True)
class RAM:
    """The machine's memory, from /proc/meminfo."""

    bytes_used: int
    bytes_available: int


@dataclass(frozen=True)
class Resources:
    """The machine's resource use over the span."""

    ram: RAM
    cpu_overall: float
    cpu_per_core: Tuple[CoreUsage, ...]


@dataclass(frozen=True)
class Stats:
    """The broker's telemetry reading: the required fields, typed; the
    members beyond them in ``extra``; the reply as received in ``raw``."""

    up_time: int
    bytes_recv: int
    bytes_sent: int
    msg_recv: int
    msg_sent: int
    num_clients: int
    resources: Resources
    extra: Mapping[str, Any]
    raw: str


def _no_constants(name: str) -> Any:
    raise ValueError("not JSON: " + name)


def parse_object(p: bytes) -> Optional[Dict[str, Any]]:
    """p parsed as a JSON object, or None when it is not one (not UTF-8,
    not strict JSON, or JSON of another kind)."""
    if not p.lstrip(b" \t\r\n").startswith(b"{"):
        return None
    try:
        v = json.loads(p.decode("utf-8"), parse_constant=_no_constants)
    except ValueError:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    return cast(Dict[str, Any], v) if isinstance(v, dict) else None


def recognise_reply(p: bytes) -> Optional[Dict[str, Any]]:
    """The recognition rule: while a request is outstanding, the reply is
    the first frame whose payload is a JSON object with an ``up_time``
    member (a reading), or with exactly one member, ``error``, holding a
    string (a refusal). Returns the object, or None for any other frame."""
    o = parse_object(p)
    if o is None:
        return None
    if "up_time" in o:
        return o
    if len(o) == 1 and isinstance(o.get("error"), str):
        return o
    return None


def _bad(path: str, want: str, o: Mapping[str, Any], key: str) -> BadReplyError:
    got = "missing" if key not in o else json.dumps(o[key])
    return BadReplyError("malformed telemetry reply: %s%s is %s, want %s" % (path, key, got, want))


def _counter(o: Mapping[str, Any], key: str, path: str) -> int:
    v = o.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise _bad(path, "a non-negative integer", o, key)
    return v


def _number(o: Mapping[str, Any], key: str, path: str) -> float:
    v = o.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _bad(path, "a number", o, key)
    return float(v)


def _object(o: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    v = o.get(key)
    if not isinstance(v, dict):
        raise _bad(path, "an object", o, key)
    return cast(Mapping[str, Any], v)


def to_stats(o: Mapping[str, Any], raw: str) -> Stats:
    """A recognised reply as Stats. Raises BrokerRefusedError for a
    refusal, BadReplyError for a missing field or one of the wrong type."""
    if "up_time" not in o:
        raise BrokerRefusedError(o["error"])
    res = _object(o, "resources", "")
    ram = _object(res, "ram", "resources.")
    cores: Any = res.get("cpu_per_core")
    if not isinstance(cores, list):
        raise _bad("resources.", "an array", res, "cpu_per_core")
    per_core: List[CoreUsage] = []
    for i, c in enumerate(cast(List[Any], cores)):
        path = "resources.cpu_per_core[%d]" % i
        if not isinstance(c, dict):
            raise BadReplyError("malformed telemetry reply: %s is %s, want an object" % (path, json.dumps(c)))
        core = cast(Mapping[str, Any], c)
        per_core.append(CoreUsage(core=_counter(core, "core", path + "."), using=_number(core, "using", path + ".")))
    return Stats(
        up_time=_counter(o, "up_time", ""),
        bytes_recv=_counter(o, "bytes_recv", ""),
        bytes_sent=_counter(o, "bytes_sent", ""),
        msg_recv=_counter(o, "msg_recv", ""),
        msg_sent=_counter(o, "msg_sent", ""),
        num_clients=_counter(o, "num_clients", ""),
        resources=Resources(
            ram=RAM(
                bytes_used=_counter(ram, "bytes_used", "resources.ram."),
                bytes_available=_counter(ram, "bytes_available", "resources.ram."),
            ),
            cpu_overall=_number(res, "cpu_overall", "resources."),
            cpu_per_core=tuple(per_core),
        ),
        extra={k: v for k, v in o.items() if k not in REQUIRED},
        raw=raw,
    )
