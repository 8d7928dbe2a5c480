"""What the tests share: the broker binary, servers the tests own on
127.0.0.1, a throwaway certificate authority."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

from hydrogen_mq import FrameDecoder, encode_frame

_built: Optional[str] = None


def repo_root() -> Path:
    """The nearest directory above these tests with a go.mod."""
    d = Path(__file__).resolve().parent
    for p in [d, *d.parents]:
        if (p / "go.mod").exists():
            return p
    raise RuntimeError("no go.mod above %s" % d)


def broker_binary() -> str:
    """$HYDROGEN_BROKER, or the broker built once into a temporary directory."""
    global _built
    env = os.environ.get("HYDROGEN_BROKER")
    if env:
        return env
    if _built is None:
        d = tempfile.mkdtemp(prefix="hydrogen-py-")
        atexit.register(shutil.rmtree, d, True)
        out = os.path.join(d, "broker")
        subprocess.run(["go", "build", "-o", out, "./cmd/broker"], cwd=str(repo_root()), check=True)
        _built = out
    return _built


class Broker:
    """`broker serve --addr 127.0.0.1:0 --log-format json ARGS`, running
    until stop()."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [broker_binary(), "serve", "--addr", "127.0.0.1:0", "--log-format", "json", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.log: List[str] = []
        self.addr = ""
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stderr is not None
            for raw in self.proc.stderr:
                line = raw.decode("utf-8", "replace")
                self.log.append(line)
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict) and rec.get("msg") == "listening" and not self.addr:
                    self.addr = rec["addr"]
                    ready.set()
            ready.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not ready.wait(10) or not self.addr:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("broker did not log its address:\n" + "".join(self.log))

    def stop(self) -> int:
        """SIGTERM, and the exit status once it has gone."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return self.proc.returncode

    def __enter__(self) -> "Broker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class TestServer:
    """A TCP server the test owns on 127.0.0.1: handle(conn) runs in a
    thread for each accepted connection. close() ends it all."""

    __test__ = False

    def __init__(self, handle: Callable[[socket.socket], None], wrap: Optional[Callable[[socket.socket], socket.socket]] = None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self._handle = handle
        self._wrap = wrap
        self._conns: List[socket.socket] = []
        self._threads: List[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._lock:
                if self._closed:
                    conn.close()
                    return
                self._conns.append(conn)
                self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self._wrap is not None:
                conn = self._wrap(conn)
                with self._lock:
                    self._conns.append(conn)
            self._handle(conn)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns = list(self._conns)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._accepter.join(5)
        for t in self._threads:
            t.join(5)
        for c in conns:
            try:
                c.close()
            except OSError:
                pass

    def __enter__(self) -> "TestServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def frames_of(conn: socket.socket):
    """The frames a server connection receives, until it closes."""
    dec = FrameDecoder()
    while True:
        data = conn.recv(65536)
        if not data:
            return
        for p in dec.feed(data):
            yield p


def frame(p: bytes) -> bytes:
    return encode_frame(p)


def wait_for(what: str, cond: Callable[[], bool], limit: float = 10.0) -> None:
    until = time.monotonic() + limit
    while not cond():
        if time.monotonic() > until:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.01)


_certs: Optional[Dict[str, str]] = None


def certificates() -> Dict[str, str]:
    """A throwaway CA, a server certificate for localhost and 127.0.0.1 and
    a client certificate (CN=carol) signed by it; another CA that signed
    nothing the broker trusts, and a client certificate (CN=mallory) signed
    by that one. PEM file paths in a temporary directory removed at exit."""
    global _certs
    if _certs is not None:
        return _certs
    d = tempfile.mkdtemp(prefix="hydrogen-tls-")
    atexit.register(shutil.rmtree, d, True)

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def issue(name: str, subject: str, ca: str, ext: str) -> None:
        ssl("req", *ec, "-keyout", name + ".key", "-out", name + ".csr", "-subj", subject)
        Path(d, name + ".cnf").write_text(ext)
        ssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key", "-CAcreateserial",
            "-out", name + ".pem", "-days", "1", "-extfile", name + ".cnf")

    ssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=hydrogen test CA")
    issue("server", "/CN=localhost", "ca", "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    issue("client", "/CN=carol", "ca", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    ssl("req", "-x509", *ec, "-keyout", "other.key", "-out", "other.pem", "-days", "1", "-subj", "/CN=another CA")
    issue("mallory", "/CN=mallory", "other", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    _certs = {k: os.path.join(d, v) for k, v in {
        "ca": "ca.pem", "cert": "server.pem", "key": "server.key", "other_ca": "other.pem",
        "client_cert": "client.pem", "client_key": "client.key",
        "other_client_cert": "mallory.pem", "other_client_key": "mallory.key",
    }.items()}
    return _certs


#: The tokens of token_file(), and one the broker does not know.
TOKENS = {
    "alice": "alice-token-7f3c9a1e5b2d4c6f",
    "bob": "bob-token-0e1d2c3b4a596877",
    "unknown": "nobody-token-0123456789abcdef",
}


def token_file() -> str:
    """A token file for `broker serve --auth-token-file` in a temporary
    directory removed at exit: alice may publish, bob may not."""
    d = tempfile.mkdtemp(prefix="hydrogen-tokens-")
    atexit.register(shutil.rmtree, d, True)
    path = os.path.join(d, "tokens")
    with open(path, "w") as f:
        f.write("%s alice\n%s bob publish=false\n" % (TOKENS["alice"], TOKENS["bob"]))
    os.chmod(path, 0o600)
    return path


# Frames that must not be taken for a telemetry reply (as in the Go
# client's tests).
NOT_REPLIES = [
    b"plain", b"", b"{}", b'{"uptime":1}', b'{"UP_TIME":1}', b'{"nested":{"up_time":1}}',
    b'{"error":"with company","code":1}', b'{"error":42}', b'{"error":null}', b'{"error":["x"]}',
    b'["up_time"]', b'"up_time"', b'{"up_time":1', b'{"up_time":1}garbage', b'{"error":"truncated"',
    b'{"up_time":NaN}', b'\xff{"up_time":1}',
]

REPLY = (
    '{"up_time":42,"bytes_recv":1000,"bytes_sent":2000,"msg_recv":10,"msg_sent":20,"num_clients":3,'
    '"resources":{"ram":{"bytes_used":1024,"bytes_available":4096},"cpu_overall":0.5,'
    '"cpu_per_core":[{"core":0,"using":0.75},{"core":1,"using":0.25}]},'
    '"process":{"rss_bytes":12345,"goroutines":7},"protocol_errors":2}'
)
