"""Authentication (C20), TLS (C21) and both together (C22) against the real
broker binary (`broker serve --auth-token-file`, `--tls-cert`/`--tls-key`,
`--tls-client-ca`), with the blocking client and the asyncio client. The
tokens and certificates are made by the tests."""

from __future__ import annotations

import asyncio
import json
import time
import unittest
from typing import Any

import hydrogen_mq
from hydrogen_mq import (
    AuthRefusedError,
    BrokerClosedError,
    ConnectionEndedError,
    HydrogenTimeoutError,
    TransportError,
    aio,
)

from helpers import TOKENS, Broker, certificates, token_file, wait_for


def port_of(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


class Secure(unittest.TestCase):
    """The blocking client."""

    def broker(self, *args: str) -> Broker:
        b = Broker(*args)
        self.addCleanup(b.stop)
        return b

    def client(self, addr: str, **kw: Any) -> hydrogen_mq.Client:
        c = hydrogen_mq.connect(addr, **kw)
        self.addCleanup(c.close)
        return c

    def test_c20_accepted_with_identity_and_refused_with_reason(self) -> None:
        b = self.broker("--app", "echo", "--auth-token-file", token_file())
        c = self.client(b.addr, credential=TOKENS["alice"])
        self.assertEqual(c.identity, "alice")
        c.send(b"hello")
        self.assertEqual(c.recv(timeout=5), b"hello", "the answer is not delivered as a message")
        with self.assertRaisesRegex(AuthRefusedError, "refused the credential: auth: credential refused") as cm:
            hydrogen_mq.connect(b.addr, credential=TOKENS["unknown"])
        self.assertEqual(cm.exception.reason, "auth: credential refused")
        with self.assertRaises(AuthRefusedError):
            hydrogen_mq.connect(b.addr, credential=TOKENS["alice"].encode()[:-1])
        # The broker counted both refusals and closed both connections.
        wait_for("the refused connections to close", lambda: c.stats(0.01).num_clients == 1)
        st = c.stats(0.01)
        self.assertEqual(st.extra["auth_failures"], 2)
        self.assertEqual(st.extra["closed_handshake"], 2)

    def test_c20_pipelined_frames_served_in_order(self) -> None:
        b = self.broker("--app", "echo", "--auth-token-file", token_file())
        # A client that sends the credential itself need not wait for the
        # answer: what follows it is held until it is accepted.
        c = self.client(b.addr)
        for p in [TOKENS["alice"], "one", "two", "three"]:
            c.send(p)
        self.assertEqual(json.loads(c.recv(timeout=5)), {"auth": "ok", "identity": "alice"})
        for want in [b"one", b"two", b"three"]:
            self.assertEqual(c.recv(timeout=5), want)
        # Refused: the answer, then the end; what was pipelined is dropped.
        # (The broker closes with the pipelined frame unread when it came
        # in a read of its own, and the kernel then resets the connection.)
        r = self.client(b.addr)
        r.send(TOKENS["unknown"])
        try:
            r.send("one")
        except ConnectionEndedError:
            pass  # the broker answered and closed first
        self.assertEqual(json.loads(r.recv(timeout=5)), {"error": "auth: credential refused"})
        end = r.wait_closed()
        self.assertTrue(isinstance(end, BrokerClosedError) or
                        (isinstance(end, TransportError) and "reset" in str(end).lower()), repr(end))
        with self.assertRaises(ConnectionEndedError):
            r.recv(timeout=5)

    def test_c20_identity_that_may_not_publish(self) -> None:
        b = self.broker("--app", "broadcast", "--auth-token-file", token_file())
        alice = self.client(b.addr, credential=TOKENS["alice"])
        bob = self.client(b.addr, credential=TOKENS["bob"])
        self.assertEqual(bob.identity, "bob")
        wait_for("2 clients", lambda: alice.stats(0.01).num_clients == 2)
        for i in range(2):
            bob.send("from bob %d" % i)
            self.assertEqual(json.loads(bob.recv(timeout=5)), {"refused": "not allowed to publish"})
        alice.send("from alice")
        self.assertEqual(bob.recv(timeout=5), b"from alice", "bob still receives")
        with self.assertRaises(HydrogenTimeoutError, msg="bob's frames reached no one"):
            alice.recv(timeout=0.2)
        self.assertEqual(alice.stats(0.01).extra["frames_refused"], 2)

    def test_c21_tls_by_name_and_ip_and_refusals(self) -> None:
        certs = certificates()
        b = self.broker("--app", "echo", "--tls-cert", certs["cert"], "--tls-key", certs["key"])
        port = port_of(b.addr)
        for addr in ["localhost:%d" % port, "tls://127.0.0.1:%d" % port]:
            with hydrogen_mq.connect(addr, ca_file=certs["ca"]) as c:
                c.send("over tls to " + addr)
                self.assertEqual(c.recv(timeout=5), ("over tls to " + addr).encode())
                self.assertEqual(c.stats(0.01).num_clients, 1, "telemetry travels inside TLS too")
        with self.assertRaisesRegex(TransportError, "TLS: .*certificate"):
            hydrogen_mq.connect("localhost:%d" % port, ca_file=certs["other_ca"])
        with self.assertRaisesRegex(TransportError, "TLS: .*(Hostname|not-localhost)"):
            hydrogen_mq.connect("127.0.0.1:%d" % port, ca_file=certs["ca"], server_hostname="not-localhost")

    def assert_refused_by_mutual_tls(self, addr: str, **kw: Any) -> None:
        # TLS 1.3 checks the client's certificate after the client's side of
        # the handshake is done: the refusal comes at connect or at the
        # first read.
        try:
            c = hydrogen_mq.connect(addr, **kw)
        except TransportError:
            return
        with c:
            with self.assertRaises(ConnectionEndedError):
                c.send(b"let me in")
                c.recv(timeout=5)

    def test_c21_mutual_tls(self) -> None:
        certs = certificates()
        b = self.broker("--app", "echo", "--tls-cert", certs["cert"], "--tls-key", certs["key"],
                        "--tls-client-ca", certs["ca"])
        addr = "localhost:%d" % port_of(b.addr)
        with hydrogen_mq.connect(addr, ca_file=certs["ca"], cert_file=certs["client_cert"], key_file=certs["client_key"]) as c:
            c.send(b"with a client certificate")
            self.assertEqual(c.recv(timeout=5), b"with a client certificate")
        self.assert_refused_by_mutual_tls(addr, ca_file=certs["ca"])
        self.assert_refused_by_mutual_tls(addr, ca_file=certs["ca"], cert_file=certs["other_client_cert"],
                                          key_file=certs["other_client_key"])
        with hydrogen_mq.connect(addr, ca_file=certs["ca"], cert_file=certs["client_cert"], key_file=certs["client_key"]) as c:
            self.assertEqual(c.stats(0.01).extra["closed_handshake"], 2, "the broker closed both in the handshake")

    def test_c22_tls_and_credential(self) -> None:
        certs = certificates()
        b = self.broker("--app", "echo", "--tls-cert", certs["cert"], "--tls-key", certs["key"],
                        "--auth-token-file", token_file())
        addr = "tls://localhost:%d" % port_of(b.addr)
        with hydrogen_mq.connect(addr, ca_file=certs["ca"], credential=TOKENS["alice"]) as c:
            self.assertEqual(c.identity, "alice")
            c.send(b"secret over tls")
            self.assertEqual(c.recv(timeout=5), b"secret over tls")
        with self.assertRaises(AuthRefusedError) as cm:
            hydrogen_mq.connect(addr, ca_file=certs["ca"], credential=TOKENS["unknown"])
        self.assertEqual(cm.exception.reason, "auth: credential refused")
        with self.assertRaises(TransportError, msg="no credential goes to an untrusted broker"):
            hydrogen_mq.connect(addr, ca_file=certs["other_ca"], credential=TOKENS["alice"])


class AsyncSecure(unittest.IsolatedAsyncioTestCase):
    """The asyncio client."""

    def broker(self, *args: str) -> Broker:
        b = Broker(*args)
        self.addCleanup(b.stop)
        return b

    async def client(self, addr: str, **kw: Any) -> aio.AsyncClient:
        c = await aio.connect(addr, **kw)
        self.addAsyncCleanup(c.close)
        return c

    async def wait_clients(self, c: aio.AsyncClient, n: int) -> None:
        until = time.monotonic() + 10
        while (await c.stats(0.01)).num_clients != n:
            self.assertLess(time.monotonic(), until, "timed out waiting for %d clients" % n)

    async def test_c20_accepted_refused_and_pipelined(self) -> None:
        b = self.broker("--app", "echo", "--auth-token-file", token_file())
        c = await self.client(b.addr, credential=TOKENS["alice"])
        self.assertEqual(c.identity, "alice")
        await c.send(b"hello")
        self.assertEqual(await c.recv(timeout=5), b"hello")
        with self.assertRaises(AuthRefusedError) as cm:
            await aio.connect(b.addr, credential=TOKENS["unknown"])
        self.assertEqual(cm.exception.reason, "auth: credential refused")
        await self.wait_clients(c, 1)
        self.assertEqual((await c.stats(0.01)).extra["auth_failures"], 1)
        p = await self.client(b.addr)
        await asyncio.gather(*(p.send(x) for x in [TOKENS["alice"], "one", "two", "three"]))
        self.assertEqual(json.loads(await p.recv(timeout=5)), {"auth": "ok", "identity": "alice"})
        for want in [b"one", b"two", b"three"]:
            self.assertEqual(await p.recv(timeout=5), want)

    async def test_c20_identity_that_may_not_publish(self) -> None:
        b = self.broker("--app", "broadcast", "--auth-token-file", token_file())
        bob = await self.client(b.addr, credential=TOKENS["bob"])
        self.assertEqual(bob.identity, "bob")
        await bob.send(b"x")
        self.assertEqual(json.loads(await bob.recv(timeout=5)), {"refused": "not allowed to publish"})
        self.assertEqual((await bob.stats(0.01)).extra["frames_refused"], 1, "the connection stays open")

    async def test_c21_tls_and_mutual_tls(self) -> None:
        certs = certificates()
        b = self.broker("--app", "echo", "--tls-cert", certs["cert"], "--tls-key", certs["key"],
                        "--tls-client-ca", certs["ca"])
        addr = "localhost:%d" % port_of(b.addr)
        c = await self.client(addr, ca_file=certs["ca"], cert_file=certs["client_cert"], key_file=certs["client_key"])
        self.assertTrue(c.tls)
        await c.send(b"async mutual tls")
        self.assertEqual(await c.recv(timeout=5), b"async mutual tls")
        with self.assertRaisesRegex(TransportError, "TLS: .*certificate"):
            await aio.connect(addr, ca_file=certs["other_ca"], cert_file=certs["client_cert"], key_file=certs["client_key"])
        try:
            n = await aio.connect(addr, ca_file=certs["ca"])  # no client certificate
        except TransportError:
            return
        try:
            with self.assertRaises(ConnectionEndedError):
                await n.send(b"let me in")
                await n.recv(timeout=5)
        finally:
            await n.close()

    async def test_c22_tls_and_credential(self) -> None:
        certs = certificates()
        b = self.broker("--app", "echo", "--tls-cert", certs["cert"], "--tls-key", certs["key"],
                        "--auth-token-file", token_file())
        addr = "tls://localhost:%d" % port_of(b.addr)
        c = await self.client(addr, ca_file=certs["ca"], credential=TOKENS["alice"])
        self.assertEqual(c.identity, "alice")
        await c.send(b"async secret")
        self.assertEqual(await c.recv(timeout=5), b"async secret")
        with self.assertRaises(AuthRefusedError) as cm:
            await aio.connect(addr, ca_file=certs["ca"], credential=TOKENS["unknown"])
        self.assertEqual(cm.exception.reason, "auth: credential refused")



if __name__ == "__main__":
    unittest.main()
