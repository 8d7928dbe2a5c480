"""The conformance cases with the asyncio client, against the real broker
and servers these tests own on 127.0.0.1. Each test names its case."""

from __future__ import annotations

import asyncio
import socket
import time
import unittest
from typing import Tuple

from hydrogen_mq import (
    MAX_PAYLOAD,
    BrokerClosedError,
    BrokerRefusedError,
    ClientClosedError,
    HydrogenTimeoutError,
    PayloadTooLargeError,
    ProtocolError,
    Stats,
    TelemetryPayloadError,
    aio,
)

from helpers import NOT_REPLIES, Broker, TestServer, frame, frames_of


class AsyncConformance(unittest.IsolatedAsyncioTestCase):
    def broker(self, *args: str) -> Broker:
        b = Broker(*args)
        self.addCleanup(b.stop)
        return b

    async def client(self, addr: str, **kw: object) -> aio.AsyncClient:
        c = await aio.connect(addr, **kw)  # type: ignore[arg-type]
        self.addAsyncCleanup(c.close)
        return c

    async def wait_clients(self, c: aio.AsyncClient, n: int) -> None:
        until = time.monotonic() + 10
        while (await c.stats(0.01)).num_clients != n:
            self.assertLess(time.monotonic(), until, "timed out waiting for %d clients" % n)

    async def test_c01_split_at_every_byte_by_a_real_socket(self) -> None:
        payloads = [b"", bytes([0x01, 0x17, 0x0D, 0x00, 0x17]), b"\x0d" * 300]
        stream = b"".join(frame(p) for p in payloads)

        def handle(conn: socket.socket) -> None:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in frames_of(conn):
                for i in range(len(stream)):
                    conn.sendall(stream[i : i + 1])
                    time.sleep(0.001)
                for k in range(1, len(stream)):
                    conn.sendall(stream[:k])
                    time.sleep(0.001)
                    conn.sendall(stream[k:])

        srv = TestServer(handle)
        self.addCleanup(srv.close)
        c = await self.client(srv.addr)
        await c.send(b"go")
        for r in range(len(stream)):
            for i, want in enumerate(payloads):
                self.assertEqual(await c.recv(timeout=5), want, "round %d, frame %d" % (r, i))

    async def test_c03_broken_frame_format_from_the_server(self) -> None:
        def handle(conn: socket.socket) -> None:
            for _ in frames_of(conn):
                conn.sendall(frame(b"ok") + bytes([0x01, 0, 1, 0x78, 0x18]))

        srv = TestServer(handle)
        self.addCleanup(srv.close)
        c = await self.client(srv.addr)
        await c.send(b"go")
        self.assertEqual(await c.recv(timeout=5), b"ok")
        with self.assertRaisesRegex(ProtocolError, "bad end byte 0x18"):
            await c.recv(timeout=5)
        self.assertIsInstance(await c.wait_closed(), ProtocolError)

    async def test_c04_zero_and_max_payloads_round_trip(self) -> None:
        b = self.broker("--app", "echo")
        c = await self.client(b.addr)
        for p in [b"", bytes((i * 7) & 0xFF for i in range(MAX_PAYLOAD))]:
            await c.send(p)
            self.assertEqual(await c.recv(timeout=10), p)

    async def test_c05_over_the_maximum_is_refused_locally(self) -> None:
        b = self.broker("--app", "echo")
        c = await self.client(b.addr)
        with self.assertRaisesRegex(PayloadTooLargeError, "nothing was sent"):
            await c.send(bytes(MAX_PAYLOAD + 1))
        with self.assertRaises(TelemetryPayloadError):
            await c.send(bytes([0x0D, 0, 0, 0, 0]))
        await c.send(b"after")
        self.assertEqual(await c.recv(timeout=5), b"after")
        s = await c.stats(0.01)
        self.assertEqual((s.msg_recv, s.bytes_recv), (2, 10))

    async def test_c06_stats(self) -> None:
        b = self.broker("--app", "echo")
        c = await self.client(b.addr)
        s = await c.stats(0.1)
        self.assertIsInstance(s, Stats)
        self.assertEqual((s.num_clients, s.msg_recv), (1, 1))
        self.assertIn("process", s.extra)

    async def test_c07_reply_recognised_among_broadcasts(self) -> None:
        b = self.broker("--app", "broadcast")
        a = await self.client(b.addr)
        other = await self.client(b.addr)
        await self.wait_clients(a, 2)
        sent = list(NOT_REPLIES) + [b"b-%d" % i for i in range(300)]
        pending = asyncio.ensure_future(a.stats(0.5))
        await asyncio.sleep(0.05)
        for p in sent:
            await other.send(p)
        s = await pending
        self.assertEqual(s.num_clients, 2)
        for want in sent:
            self.assertEqual(await a.recv(timeout=5), want)

    async def test_c08_refused_spans(self) -> None:
        b = self.broker("--app", "echo", "--max-span", "2s")
        c = await self.client(b.addr)
        for span in (0, float("nan"), 3):
            with self.assertRaises(BrokerRefusedError):
                await c.stats(span)
        await c.send(b"still open")
        self.assertEqual(await c.recv(timeout=5), b"still open")

    async def test_c09_one_request_outstanding(self) -> None:
        b = self.broker("--app", "echo")
        c = await self.client(b.addr)
        loop = asyncio.get_running_loop()
        t0 = loop.time()

        async def ask(span: float) -> Tuple[Stats, float]:
            st = await c.stats(span)
            return st, loop.time() - t0

        (s1, t1), (s2, t2) = await asyncio.gather(ask(0.3), ask(0.05))
        self.assertGreaterEqual(t1, 0.29)
        self.assertGreaterEqual(max(t1, t2), 0.345, "the spans did not run one after the other")
        # The broker had received one request when it answered the first,
        # and had sent that answer when it answered the second. (When each
        # task resumes is up to the scheduler, so the counters say the
        # order, not the clock.)
        self.assertEqual((s1.msg_recv, s2.msg_recv), (1, 2), "the second request went out before the first was answered")
        self.assertEqual(s2.msg_sent, s1.msg_sent + 1)
        with self.assertRaises(HydrogenTimeoutError):
            await c.stats(0.4, timeout=0.05)
        t3 = loop.time()
        await c.stats(0.01)
        self.assertGreaterEqual(loop.time() - t3, 0.25)

    async def test_c10_closed_by_the_broker(self) -> None:
        b = self.broker("--app", "echo", "--max-payload", "100")
        c = await self.client(b.addr)
        await c.send(bytes(200))
        with self.assertRaises(BrokerClosedError):
            await c.recv(timeout=10)
        with self.assertRaises(BrokerClosedError):
            await c.send(b"x")

    async def test_c10_broker_shutting_down(self) -> None:
        b = Broker("--app", "echo")
        try:
            c = await self.client(b.addr)
            await c.send(b"before")
            await c.stats(0.01)
            self.assertEqual(await asyncio.get_running_loop().run_in_executor(None, b.stop), 0)
            self.assertIsInstance(await c.wait_closed(), BrokerClosedError)
            self.assertEqual([p async for p in c], [b"before"])
        finally:
            b.stop()

    async def test_c11_close(self) -> None:
        b = self.broker("--app", "echo")
        async with await aio.connect(b.addr) as c:
            pending = asyncio.ensure_future(c.recv())
            pending_stats = asyncio.ensure_future(c.stats(5))
            await asyncio.sleep(0.05)
        with self.assertRaises(ClientClosedError):
            await pending
        with self.assertRaises(ClientClosedError):
            await pending_stats
        for call in (c.recv(), c.send(b"x"), c.stats(1)):
            with self.assertRaises(ClientClosedError):
                await call
        self.assertEqual([p async for p in c], [])
        await c.close()  # idempotent

    async def test_c12_ten_thousand_frames_in_order(self) -> None:
        b = self.broker("--app", "echo")
        c = await self.client(b.addr)
        n = 10000

        async def send_all() -> None:
            for i in range(n):
                await c.send(b"frame %d" % i)

        sender = asyncio.ensure_future(send_all())
        i = 0
        async for p in c:
            self.assertEqual(p, b"frame %d" % i)
            i += 1
            if i == n:
                break
        await sender

    async def test_c13_broadcast_reaches_the_others(self) -> None:
        b = self.broker("--app", "broadcast")
        pub = await self.client(b.addr)
        sub = await self.client(b.addr)
        await self.wait_clients(pub, 2)
        await pub.send(b"hello")
        self.assertEqual(await sub.recv(timeout=5), b"hello")

    async def test_c14_recv_timeout_and_cancel_lose_nothing(self) -> None:
        b = self.broker("--app", "echo")
        c = await self.client(b.addr)
        with self.assertRaises(HydrogenTimeoutError):
            await c.recv(timeout=0.1)
        waiting = asyncio.ensure_future(c.recv())
        await asyncio.sleep(0.01)
        waiting.cancel()
        await c.send(b"next")
        self.assertEqual(await c.recv(timeout=5), b"next")


if __name__ == "__main__":
    unittest.main()
