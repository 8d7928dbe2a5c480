"""Unit tests of the codec, the reply rules and the arguments; no network.
Conformance cases: C1, C3 (decoder side), C6, C7 (the rule), C18."""

from __future__ import annotations

import copy
import json
import ssl
import unittest

from hydrogen_mq import (
    MAX_PAYLOAD,
    BadReplyError,
    BrokerRefusedError,
    FrameDecoder,
    ProtocolError,
    encode_frame,
    is_telemetry_request,
    recognise_reply,
    telemetry_request,
)
from hydrogen_mq._options import check_credential, parse_address, tls_context
from hydrogen_mq.stats import CoreUsage, RAM, Resources, Stats, to_stats

from helpers import NOT_REPLIES, REPLY

PAYLOADS = [b"", bytes([0x01, 0x17, 0x0D, 0x00, 0x17]), bytes((i * 7) & 0xFF for i in range(300)), bytes([0x0D, 0, 0, 0])]
STREAM = b"".join(encode_frame(p) for p in PAYLOADS)


class FrameTest(unittest.TestCase):
    def test_c1_split_at_every_byte(self) -> None:
        for k in range(len(STREAM) + 1):
            dec = FrameDecoder()
            got = dec.feed(STREAM[:k]) + dec.feed(STREAM[k:])
            self.assertEqual(got, PAYLOADS, "split at %d" % k)
            self.assertEqual(dec.buffered, 0)
        dec = FrameDecoder()
        got = []
        for i in range(len(STREAM)):
            got += dec.feed(STREAM[i : i + 1])
        self.assertEqual(got, PAYLOADS, "one byte at a time")

    def test_c1_partial_frame_is_buffered(self) -> None:
        dec = FrameDecoder()
        dec.feed(STREAM[:6])
        self.assertGreater(dec.buffered, 0)

    def test_c3_bad_bytes_are_protocol_errors(self) -> None:
        ok = encode_frame(b"ok")
        cases = [
            ("bad start", bytes([0x17, 0, 1, 0x78, 0x17]), "bad start byte 0x17 at byte 6"),
            ("bad end", bytes([0x01, 0, 1, 0x78, 0x18]), "bad end byte 0x18 at byte 10"),
            ("bad end of an empty frame", bytes([0x01, 0, 0, 0x01]), "bad end byte 0x01 at byte 9"),
        ]
        for name, raw, want in cases:
            for k in range(len(raw) + 1):
                dec = FrameDecoder()
                got = []
                with self.assertRaises(ProtocolError, msg="%s split at %d" % (name, k)) as cm:
                    try:
                        got += dec.feed(ok + raw[:k])
                    except ProtocolError as e:
                        got += e.frames  # type: ignore[attr-defined]
                        raise
                    try:
                        got += dec.feed(raw[k:])
                    except ProtocolError as e:
                        got += e.frames  # type: ignore[attr-defined]
                        raise
                self.assertIn(want, str(cm.exception))
                self.assertEqual(got, [b"ok"], "the good frame before it is delivered")
                with self.assertRaises(ProtocolError):
                    dec.feed(b"\x01")
        dec = FrameDecoder(10)
        with self.assertRaisesRegex(ProtocolError, "11 payload bytes, over the maximum of 10"):
            dec.feed(bytes([0x01, 0, 11]))
        with self.assertRaises(ValueError):
            FrameDecoder(MAX_PAYLOAD + 1)

    def test_telemetry_request(self) -> None:
        self.assertEqual(telemetry_request(1.0), bytes([0x0D, 0x3F, 0x80, 0, 0]))
        self.assertEqual(telemetry_request(0.5), bytes([0x0D, 0x3F, 0x00, 0, 0]))
        self.assertTrue(is_telemetry_request(telemetry_request(2)))
        self.assertFalse(is_telemetry_request(bytes([0x0D, 0, 0, 0])))
        self.assertFalse(is_telemetry_request(bytes([0x0D, 0, 0, 0, 0, 0])))


class ReplyTest(unittest.TestCase):
    def test_c7_recognition_rule(self) -> None:
        for p in NOT_REPLIES:
            self.assertIsNone(recognise_reply(p), p)
        self.assertIsNotNone(recognise_reply(b'{"up_time":1}'))
        self.assertIsNotNone(recognise_reply(b' {"error" : "too many"} '))

    def test_c6_typed_stats(self) -> None:
        s = to_stats(json.loads(REPLY), REPLY)
        self.assertEqual(
            s,
            Stats(
                up_time=42, bytes_recv=1000, bytes_sent=2000, msg_recv=10, msg_sent=20, num_clients=3,
                resources=Resources(ram=RAM(bytes_used=1024, bytes_available=4096), cpu_overall=0.5,
                                    cpu_per_core=(CoreUsage(0, 0.75), CoreUsage(1, 0.25))),
                extra={"process": {"rss_bytes": 12345, "goroutines": 7}, "protocol_errors": 2},
                raw=REPLY,
            ),
        )

    def test_c6_bad_replies(self) -> None:
        base = json.loads(REPLY)

        def m(f):  # type: ignore[no-untyped-def]
            o = copy.deepcopy(base)
            f(o)
            return o

        cases = [
            ("msg_recv a string", m(lambda o: o.update(msg_recv="10")), 'msg_recv is "10"'),
            ("bytes_sent fractional", m(lambda o: o.update(bytes_sent=1.5)), "bytes_sent is 1.5"),
            ("num_clients a bool", m(lambda o: o.update(num_clients=True)), "num_clients is true"),
            ("num_clients negative", m(lambda o: o.update(num_clients=-1)), "num_clients is -1"),
            ("num_clients null", m(lambda o: o.update(num_clients=None)), "num_clients is null"),
            ("up_time missing", m(lambda o: o.pop("bytes_recv")), "bytes_recv is missing"),
            ("resources a list", m(lambda o: o.update(resources=[])), "resources is []"),
            ("ram missing", m(lambda o: o["resources"].pop("ram")), "resources.ram is missing"),
            ("bytes_used missing", m(lambda o: o["resources"]["ram"].pop("bytes_used")), "resources.ram.bytes_used is missing"),
            ("cpu_overall a string", m(lambda o: o["resources"].update(cpu_overall="0.5")), "cpu_overall"),
            ("cpu_per_core an object", m(lambda o: o["resources"].update(cpu_per_core={})), "cpu_per_core is {}"),
            ("core entry a number", m(lambda o: o["resources"]["cpu_per_core"].__setitem__(1, 3)), "cpu_per_core[1] is 3"),
            ("core fractional", m(lambda o: o["resources"]["cpu_per_core"][0].update(core=0.5)), "cpu_per_core[0].core"),
            ("using missing", m(lambda o: o["resources"]["cpu_per_core"][0].pop("using")), "cpu_per_core[0].using is missing"),
        ]
        for name, o, want in cases:
            with self.assertRaises(BadReplyError, msg=name) as cm:
                to_stats(o, json.dumps(o))
            self.assertIn(want, str(cm.exception), name)
        with self.assertRaises(BrokerRefusedError) as cm2:
            to_stats({"error": "span 0 is outside (0, 60]"}, "")
        self.assertEqual(cm2.exception.reason, "span 0 is outside (0, 60]")


class ArgumentsTest(unittest.TestCase):
    def test_c18_addresses(self) -> None:
        self.assertEqual(parse_address("127.0.0.1:1337"), ("127.0.0.1", 1337, False))
        self.assertEqual(parse_address("[::1]:1337"), ("::1", 1337, False))
        self.assertEqual(parse_address("tls://example.com:443"), ("example.com", 443, True))
        self.assertEqual(parse_address(("h", 1)), ("h", 1, False))
        for bad in ["", "nohost", "h:0", "h:65536", "h:x", "http://h:1", "ws://h:1/", ("h",), ("", 1), ("h", 1.5), ("h", True)]:
            with self.assertRaises(ValueError, msg=repr(bad)):
                parse_address(bad)  # type: ignore[arg-type]
        with self.assertRaises(TypeError):
            parse_address(1337)  # type: ignore[arg-type]

    def test_c18_credential_and_tls(self) -> None:
        self.assertEqual(check_credential("tok"), b"tok")
        for bad in ["", "x" * 65536, "\rabcd"]:
            with self.assertRaises(ValueError, msg=repr(bad)[:20]):
                check_credential(bad)
        with self.assertRaises(TypeError):
            check_credential(7)  # type: ignore[arg-type]
        self.assertIsNone(tls_context(False, None, None, None))
        self.assertIsInstance(tls_context(True, None, None, None), ssl.SSLContext)
        with self.assertRaises(TypeError):
            tls_context(False, "yes", None, None)  # type: ignore[arg-type]
        with self.assertRaises(ValueError):
            tls_context(True, False, None, None)
        with self.assertRaisesRegex(ValueError, "key_file without cert_file"):
            tls_context(True, None, None, None, None, "client.key")
        with self.assertRaisesRegex(ValueError, "not both"):
            tls_context(True, ssl.create_default_context(), None, None, "client.pem")
        with self.assertRaisesRegex(ValueError, "cert_file '/nonexistent/client.pem'"):
            tls_context(False, None, None, None, "/nonexistent/client.pem")
        with self.assertRaisesRegex(ValueError, "ca_file '/nonexistent/ca.pem'"):
            tls_context(False, None, "/nonexistent/ca.pem", None)
        with self.assertRaisesRegex(ValueError, "cert_file must be a non-empty path"):
            tls_context(True, None, None, None, "")


if __name__ == "__main__":
    unittest.main()
