"""The credential option (C15) and TLS (C16), against servers these tests
own on 127.0.0.1 that speak the broker's contract."""

from __future__ import annotations

import socket
import ssl
import time
import unittest
from typing import Callable, List, Optional

import hydrogen_mq
from hydrogen_mq import (
    AuthRefusedError,
    BadAuthReplyError,
    BrokerClosedError,
    HydrogenTimeoutError,
    TransportError,
    aio,
)

from helpers import TestServer, certificates, frame, frames_of


def auth_server(answer: Callable[[bytes], Optional[bytes]], seen: List[bytes], silent: bool = False,
                after: Optional[List[bytes]] = None) -> TestServer:
    """Takes the first frame as the credential and answers with
    answer(credential) (None: close without answering; silent: wait), with
    the frames of after in the same write, then echoes."""

    def handle(conn: socket.socket) -> None:
        first = True
        for p in frames_of(conn):
            if not first:
                conn.sendall(frame(p))
                continue
            first = False
            seen.append(p)
            if silent:
                continue
            a = answer(p)
            if a is None:
                return
            conn.sendall(frame(a) + b"".join(frame(p) for p in after or []))
            if b'"error"' in a:
                return

    return TestServer(handle)


class Auth(unittest.TestCase):
    def test_c15_accepted(self) -> None:
        seen: List[bytes] = []
        with auth_server(lambda c: b'{"auth":"ok","identity":"alice"}' if c == b"secret-token" else b'{"error":"no"}', seen,
                         after=[b"right behind 1", b"right behind 2"]) as srv:
            with hydrogen_mq.connect(srv.addr, credential="secret-token") as c:
                self.assertEqual(c.identity, "alice")
                self.assertEqual(seen, [b"secret-token"])
                for want in [b"right behind 1", b"right behind 2"]:
                    self.assertEqual(c.recv(timeout=5), want, "frames in the read of the answer are messages, in order")
                c.send(b"after auth")
                self.assertEqual(c.recv(timeout=5), b"after auth", "the answer is not delivered as a message")

    def test_c15_refused(self) -> None:
        with auth_server(lambda c: b'{"error":"token expired"}', []) as srv:
            with self.assertRaisesRegex(AuthRefusedError, "refused the credential: token expired") as cm:
                hydrogen_mq.connect(srv.addr, credential=b"eyJhbGciOiJIUzI1NiJ9.e30.x")
            self.assertEqual(cm.exception.reason, "token expired")

    def test_c15_closed_without_answer(self) -> None:
        with auth_server(lambda c: None, []) as srv:
            with self.assertRaisesRegex(BrokerClosedError, "before answering the credential"):
                hydrogen_mq.connect(srv.addr, credential="x")

    def test_c15_no_answer_in_time(self) -> None:
        with auth_server(lambda c: None, [], silent=True) as srv:
            t0 = time.monotonic()
            with self.assertRaisesRegex(HydrogenTimeoutError, "credential"):
                hydrogen_mq.connect(srv.addr, credential="x", timeout=0.2)
            self.assertLess(time.monotonic() - t0, 5)

    def test_c15_answer_of_another_shape(self) -> None:
        with auth_server(lambda c: b"welcome", []) as srv:
            with self.assertRaises(BadAuthReplyError):
                hydrogen_mq.connect(srv.addr, credential="x")


class AsyncAuth(unittest.IsolatedAsyncioTestCase):
    async def test_c15_accepted_and_refused(self) -> None:
        seen: List[bytes] = []
        with auth_server(lambda c: b'{"auth":"ok","identity":"bob"}' if c == b"good" else b'{"error":"bad token"}', seen,
                         after=[b"right behind"]) as srv:
            async with await aio.connect(srv.addr, credential="good") as c:
                self.assertEqual(c.identity, "bob")
                self.assertEqual(await c.recv(timeout=5), b"right behind")
                await c.send(b"x")
                self.assertEqual(await c.recv(timeout=5), b"x")
            with self.assertRaisesRegex(AuthRefusedError, "bad token"):
                await aio.connect(srv.addr, credential="bad")
        self.assertEqual(seen, [b"good", b"bad"])


def tls_echo_server() -> TestServer:
    certs = certificates()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs["cert"], certs["key"])

    def handle(conn: socket.socket) -> None:
        for p in frames_of(conn):
            conn.sendall(frame(p))

    return TestServer(handle, wrap=lambda s: ctx.wrap_socket(s, server_side=True))


class TLS(unittest.TestCase):
    def test_c16_tls_echo_and_verification(self) -> None:
        certs = certificates()
        with tls_echo_server() as srv:
            for addr, kw in [
                ("localhost:%d" % srv.port, {"ca_file": certs["ca"]}),
                ("tls://127.0.0.1:%d" % srv.port, {"ca_file": certs["ca"], "server_hostname": "localhost"}),
            ]:
                with hydrogen_mq.connect(addr, **kw) as c:  # type: ignore[arg-type]
                    self.assertTrue(c._inner.tls)
                    c.send(b"over tls")
                    self.assertEqual(c.recv(timeout=5), b"over tls")
            with self.assertRaisesRegex(TransportError, "TLS: .*certificate"):
                hydrogen_mq.connect("localhost:%d" % srv.port, ca_file=certs["other_ca"])
            with self.assertRaisesRegex(TransportError, "TLS"):
                hydrogen_mq.connect("localhost:%d" % srv.port, tls=True)  # the system CAs do not know the test CA
            with self.assertRaisesRegex(TransportError, "TLS: .*(Hostname|not-localhost)"):
                hydrogen_mq.connect("127.0.0.1:%d" % srv.port, ca_file=certs["ca"], server_hostname="not-localhost")


class AsyncTLS(unittest.IsolatedAsyncioTestCase):
    async def test_c16_tls_echo(self) -> None:
        certs = certificates()
        srv = tls_echo_server()
        try:
            ctx = ssl.create_default_context(cafile=certs["ca"])
            async with await aio.connect("tls://localhost:%d" % srv.port, tls=ctx) as c:
                await c.send(b"async tls")
                self.assertEqual(await c.recv(timeout=5), b"async tls")
        finally:
            srv.close()


if __name__ == "__main__":
    unittest.main()
