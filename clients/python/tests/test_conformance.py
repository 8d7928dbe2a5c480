"""The conformance suite of docs/CONFORMANCE.md with the blocking client,
against the real broker binary and servers these tests own on
127.0.0.1. Each test names its case."""

from __future__ import annotations

import socket
import struct
import threading
import time
import unittest
from typing import List

import hydrogen_mq
from hydrogen_mq import (
    MAX_PAYLOAD,
    BrokerClosedError,
    BrokerRefusedError,
    ClientClosedError,
    HydrogenTimeoutError,
    PayloadTooLargeError,
    ProtocolError,
    TelemetryPayloadError,
    TransportError,
    encode_frame,
)

from helpers import NOT_REPLIES, Broker, TestServer, frame, frames_of, wait_for


def wait_clients(c: hydrogen_mq.Client, n: int) -> None:
    wait_for("%d clients" % n, lambda: c.stats(0.01).num_clients == n)


class Conformance(unittest.TestCase):
    def broker(self, *args: str) -> Broker:
        b = Broker(*args)
        self.addCleanup(b.stop)
        return b

    def client(self, addr: str, **kw: object) -> hydrogen_mq.Client:
        c = hydrogen_mq.connect(addr, **kw)  # type: ignore[arg-type]
        self.addCleanup(c.close)
        return c

    def server(self, handle, **kw) -> TestServer:  # type: ignore[no-untyped-def]
        s = TestServer(handle, **kw)
        self.addCleanup(s.close)
        return s

    def test_c01_split_at_every_byte_by_a_real_socket(self) -> None:
        payloads = [b"", bytes([0x01, 0x17, 0x0D, 0x00, 0x17]), b"\x0d" * 300, b'{"up_time":1}']
        stream = b"".join(frame(p) for p in payloads)

        def handle(conn: socket.socket) -> None:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in frames_of(conn):
                for i in range(len(stream)):  # one byte at a time
                    conn.sendall(stream[i : i + 1])
                    time.sleep(0.001)
                for k in range(1, len(stream)):  # and split at every point
                    conn.sendall(stream[:k])
                    time.sleep(0.001)
                    conn.sendall(stream[k:])
                conn.sendall(frame(b"done"))

        srv = self.server(handle)
        c = self.client(srv.addr)
        c.send(b"go")
        for r in range(len(stream)):
            for i, want in enumerate(payloads):
                self.assertEqual(c.recv(timeout=5), want, "round %d, frame %d" % (r, i))
        self.assertEqual(c.recv(timeout=5), b"done")

    def test_c02_many_frames_in_one_read(self) -> None:
        def handle(conn: socket.socket) -> None:
            for _ in frames_of(conn):
                conn.sendall(b"".join(frame(b"m%d" % i) for i in range(500)))

        srv = self.server(handle)
        c = self.client(srv.addr)
        c.send("go")
        for i in range(500):
            self.assertEqual(c.recv(timeout=5), b"m%d" % i)

    def test_c03_broken_frame_format_from_the_server(self) -> None:
        cases = [
            ("bad end byte", bytes([0x01, 0, 1, 0x78, 0x18]), {}),
            ("bad start byte", bytes([0x17, 0, 1, 0x78, 0x17]), {}),
            ("payload over max_payload", bytes([0x01, 0, 11]) + bytes(11) + b"\x17", {"max_payload": 10}),
        ]
        for name, raw, opts in cases:
            with self.subTest(name):

                def handle(conn: socket.socket, raw: bytes = raw) -> None:
                    for _ in frames_of(conn):
                        conn.sendall(frame(b"ok") + raw)

                srv = self.server(handle)
                c = self.client(srv.addr, **opts)
                c.send(b"go")
                self.assertEqual(c.recv(timeout=5), b"ok")
                with self.assertRaisesRegex(ProtocolError, "^hydrogen: protocol error from the broker"):
                    c.recv(timeout=5)
                self.assertIsInstance(c.close_reason, ProtocolError)
                with self.assertRaises(ProtocolError):
                    c.send(b"x")
                self.assertTrue(c.closed)

    def test_c04_zero_and_max_payloads_round_trip(self) -> None:
        b = self.broker("--app", "echo")
        c = self.client(b.addr)
        full = bytes((i * 7) & 0xFF for i in range(MAX_PAYLOAD))
        for p in [b"", full, bytes([0x01, 0x17, 0x0D, 0x00, 0x17]), bytes([0x0D, 0, 0, 0]), bytes([0x0D, 0x3F, 0x80, 0, 0, 0])]:
            c.send(p)
            got = c.recv(timeout=10)
            self.assertEqual(len(got), len(p))
            self.assertEqual(got, p)
        c.send("a str is sent as UTF-8: é")
        self.assertEqual(c.recv(timeout=5), "a str is sent as UTF-8: é".encode())
        c.send(bytearray(b"ba"))
        self.assertEqual(c.recv(timeout=5), b"ba")

    def test_c05_over_the_maximum_is_refused_locally(self) -> None:
        b = self.broker("--app", "echo")
        c = self.client(b.addr)
        with self.assertRaisesRegex(PayloadTooLargeError, "65536 bytes is over the maximum of 65535; nothing was sent"):
            c.send(bytes(MAX_PAYLOAD + 1))
        with self.assertRaises(ValueError):  # PayloadTooLargeError is a ValueError too
            c.send("x" * (MAX_PAYLOAD + 1))
        with self.assertRaises(TelemetryPayloadError):
            c.send(bytes([0x0D, 0x3F, 0x80, 0, 0]))
        with self.assertRaises(TypeError):
            c.send(12)  # type: ignore[arg-type]
        c.send(b"after")
        self.assertEqual(c.recv(timeout=5), b"after")
        s = c.stats(0.01)  # the broker counts exactly "after" and this request
        self.assertEqual((s.msg_recv, s.bytes_recv), (2, 10))
        self.assertFalse(c.closed)

    def test_c06_stats_returns_the_typed_reply(self) -> None:
        b = self.broker("--app", "echo")
        c = self.client(b.addr)
        t0 = time.monotonic()
        s = c.stats(0.3)
        self.assertGreaterEqual(time.monotonic() - t0, 0.29, "the reply came before its span")
        for k in ("up_time", "bytes_recv", "bytes_sent", "msg_recv", "msg_sent", "num_clients"):
            v = getattr(s, k)
            self.assertTrue(isinstance(v, int) and not isinstance(v, bool) and v >= 0, "%s = %r" % (k, v))
        self.assertEqual((s.num_clients, s.msg_recv, s.bytes_recv), (1, 1, 5))
        self.assertGreater(s.resources.ram.bytes_available, 0)
        self.assertTrue(0 <= s.resources.cpu_overall <= 1)
        self.assertGreaterEqual(len(s.resources.cpu_per_core), 1)
        for i, core in enumerate(s.resources.cpu_per_core):
            self.assertEqual(core.core, i)
            self.assertTrue(0 <= core.using <= 1)
        self.assertIn("protocol_errors", s.extra)
        self.assertIn("process", s.extra)
        self.assertIn('"up_time"', s.raw)

    def test_c07_reply_recognised_among_broadcasts(self) -> None:
        b = self.broker("--app", "broadcast")
        a = self.client(b.addr)
        other = self.client(b.addr)
        wait_clients(a, 2)
        sent = [p for p in NOT_REPLIES] + [b"b-%d" % i for i in range(300)]
        result: List[object] = []
        t = threading.Thread(target=lambda: result.append(a.stats(0.5)))
        t.start()
        time.sleep(0.05)  # the request is out; everything below arrives within its span
        for p in sent:
            other.send(p)
        t.join(10)
        s = result[0]
        self.assertIsInstance(s, hydrogen_mq.Stats)
        self.assertEqual(s.num_clients, 2)  # type: ignore[attr-defined]
        for want in sent:
            self.assertEqual(a.recv(timeout=5), want)
        other.send(b'{"error":"just a message"}')  # no request outstanding: a message
        self.assertEqual(a.recv(timeout=5), b'{"error":"just a message"}')

    def test_c08_refused_spans(self) -> None:
        b = self.broker("--app", "echo", "--max-span", "2s")
        c = self.client(b.addr)
        for span in (0, -1, float("nan"), float("inf"), 3):
            with self.assertRaises(BrokerRefusedError, msg=str(span)) as cm:
                c.stats(span)
            self.assertTrue(cm.exception.reason)
        with self.assertRaises(TypeError):
            c.stats("1")  # type: ignore[arg-type]
        c.send(b"still open")
        self.assertEqual(c.recv(timeout=5), b"still open")
        self.assertGreaterEqual(c.stats(0.01).up_time, 0)

    def test_c09_one_request_outstanding(self) -> None:
        b = self.broker("--app", "echo")
        c = self.client(b.addr)
        t0 = time.monotonic()
        times = {}
        stats = {}

        def ask(name: str, span: float) -> None:
            stats[name] = c.stats(span)
            times[name] = time.monotonic() - t0

        first = threading.Thread(target=ask, args=("first", 0.3))
        first.start()
        time.sleep(0.1)  # the first request goes out before the second is asked
        second = threading.Thread(target=ask, args=("second", 0.05))
        second.start()
        first.join(10)
        second.join(10)
        self.assertGreaterEqual(times["first"], 0.29)
        self.assertGreaterEqual(max(times.values()), 0.345, "the spans did not run one after the other")
        # The broker had received one request when it answered the first,
        # and had sent that answer when it answered the second (when each
        # thread wakes is up to the scheduler; the counters say the order).
        earlier, later = sorted(stats.values(), key=lambda st: st.msg_recv)  # whichever went out first
        self.assertEqual((earlier.msg_recv, later.msg_recv), (1, 2), "the second did not wait for the first")
        self.assertEqual(later.msg_sent, earlier.msg_sent + 1)
        with self.assertRaises(HydrogenTimeoutError):
            c.stats(0.4, timeout=0.05)
        t1 = time.monotonic()
        c.stats(0.01)
        self.assertGreaterEqual(time.monotonic() - t1, 0.25, "a request went out before the timed-out one was answered")

    def test_c10_closed_by_the_broker_for_a_bad_frame(self) -> None:
        b = self.broker("--app", "echo", "--max-payload", "100")
        c = self.client(b.addr)
        c.send(bytes(200))  # fine for the client, over the broker's maximum
        with self.assertRaisesRegex(BrokerClosedError, "broker closed the connection"):
            c.recv(timeout=10)
        self.assertIsInstance(c.close_reason, BrokerClosedError)
        self.assertIsInstance(c.wait_closed(), BrokerClosedError)
        with self.assertRaises(BrokerClosedError):
            c.send(b"x")
        with self.assertRaises(BrokerClosedError):
            c.stats(1)

    def test_c10_broker_shutting_down(self) -> None:
        b = Broker("--app", "echo")
        try:
            c = self.client(b.addr)
            c.send(b"before")
            c.stats(0.01)  # its reply comes after the echo, which now waits in the client
            self.assertEqual(b.stop(), 0)
            self.assertIsInstance(c.wait_closed(), BrokerClosedError)
            self.assertEqual(list(c), [b"before"])  # ends without raising
        finally:
            b.stop()

    def test_c11_close(self) -> None:
        b = self.broker("--app", "echo")
        c = hydrogen_mq.connect(b.addr)
        errors: List[BaseException] = []

        def wait_recv() -> None:
            try:
                c.recv()
            except BaseException as e:  # noqa: B902
                errors.append(e)

        t = threading.Thread(target=wait_recv)
        t.start()
        time.sleep(0.05)
        threads_before = threading.active_count()
        c.close()
        c.close()  # idempotent
        t.join(5)
        self.assertEqual(len(errors), 1)
        self.assertIsInstance(errors[0], ClientClosedError)
        for call in (lambda: c.recv(), lambda: c.send(b"x"), lambda: c.stats(1)):
            with self.assertRaises(ClientClosedError):
                call()
        self.assertEqual(list(c), [])
        self.assertLess(threading.active_count(), threads_before, "the client's thread still runs")

    def test_c11_context_manager_closes(self) -> None:
        b = self.broker("--app", "echo")
        with hydrogen_mq.connect(b.addr) as c:
            c.send(b"x")
            self.assertEqual(c.recv(timeout=5), b"x")
        self.assertIsInstance(c.close_reason, ClientClosedError)

    def test_c12_ten_thousand_frames_in_order(self) -> None:
        b = self.broker("--app", "echo")
        c = self.client(b.addr)
        n = 10000
        errors: List[BaseException] = []

        def send_all() -> None:
            try:
                for i in range(n):
                    c.send(b"frame %d" % i)
            except BaseException as e:  # noqa: B902
                errors.append(e)

        t = threading.Thread(target=send_all)
        t.start()
        for i in range(n):
            self.assertEqual(c.recv(timeout=10), b"frame %d" % i)
        t.join(10)
        self.assertEqual(errors, [])

    def test_c13_broadcast_reaches_the_others(self) -> None:
        b = self.broker("--app", "broadcast")
        pub = self.client(b.addr)
        subs = [self.client(b.addr), self.client(b.addr)]
        wait_clients(pub, 3)
        pub.send(b"hello all")
        for s in subs:
            self.assertEqual(s.recv(timeout=5), b"hello all")
        subs[0].send(b"second")
        self.assertEqual(pub.recv(timeout=5), b"second", "the publisher does not get its own frame")

    def test_c14_recv_timeout_loses_nothing(self) -> None:
        b = self.broker("--app", "echo")
        c = self.client(b.addr)
        t0 = time.monotonic()
        with self.assertRaises(HydrogenTimeoutError):
            c.recv(timeout=0.1)
        self.assertGreaterEqual(time.monotonic() - t0, 0.095)
        c.send(b"next")
        self.assertEqual(c.recv(timeout=5), b"next")
        with self.assertRaises(ValueError):
            c.recv(timeout=0)

    def test_c17_a_client_that_does_not_receive_pushes_back(self) -> None:
        limit = 2048  # 64 KiB frames: 128 MiB
        written = []

        def handle(conn: socket.socket) -> None:
            for _ in frames_of(conn):
                conn.settimeout(0.5)
                f = bytearray(encode_frame(bytes(MAX_PAYLOAD)))
                for i in range(limit):
                    struct.pack_into(">I", f, 3, i)
                    try:
                        conn.sendall(f)
                    except socket.timeout:
                        written.append(i)
                        return
                written.append(limit)
                return

        srv = self.server(handle)
        c = self.client(srv.addr, recv_buffer=4)
        c.send(b"flood")
        wait_for("the server to stall", lambda: bool(written), 20)
        self.assertLess(written[0], limit, "the server wrote every frame to a client that received none")
        for i in range(written[0]):
            p = c.recv(timeout=5)
            self.assertEqual(len(p), MAX_PAYLOAD)
            self.assertEqual(struct.unpack_from(">I", p)[0], i)

    def test_c18_connect_failures(self) -> None:
        s = socket.create_server(("127.0.0.1", 0))
        addr = "127.0.0.1:%d" % s.getsockname()[1]
        s.close()
        with self.assertRaisesRegex(TransportError, "connect to 127.0.0.1:[0-9]+: .*refused"):
            hydrogen_mq.connect(addr)
        with self.assertRaises(ValueError):
            hydrogen_mq.connect(addr, timeout=-1)
        with self.assertRaises(ValueError):
            hydrogen_mq.connect("ws://127.0.0.1:1/")


if __name__ == "__main__":
    unittest.main()
