"""One side of the cross-client check of scripts/test-clients (case C19):
python3 tests/cross.py BROKER_ADDR NAME PEERS... authenticates with
$HYDROGEN_C19_TOKEN when it is set (the broker must know it as NAME), waits
until every peer is connected, broadcasts "hello from NAME", and expects
"hello from PEER" from each peer, in any order. Exits 0 when it has them
all."""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import hydrogen_mq  # noqa: E402


def main(argv: list) -> int:
    addr, name, peers = argv[0], argv[1], argv[2:]
    deadline = time.monotonic() + 30
    token = os.environ.get("HYDROGEN_C19_TOKEN") or None
    with hydrogen_mq.connect(addr, credential=token) as c:
        if token is not None and c.identity != name:
            print("%s: the broker knows this client as %r" % (name, c.identity), file=sys.stderr)
            return 1
        while c.stats(0.05).num_clients < len(peers) + 1:
            if time.monotonic() > deadline:
                print("%s: the peers did not all connect" % name, file=sys.stderr)
                return 1
        c.send("hello from " + name)
        want = {"hello from " + p for p in peers}
        while want:
            got = c.recv(timeout=max(0.001, deadline - time.monotonic())).decode()
            if got not in want:
                print("%s: unexpected %r" % (name, got), file=sys.stderr)
                return 1
            want.discard(got)
    print("%s: heard from %s" % (name, ", ".join(peers)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
