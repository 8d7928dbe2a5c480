package com.github.hydrogenmq.client;

import java.io.ByteArrayOutputStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

/** The codec, the JSON parser and the reply rules; no network. Cases C1, C3, C6, C7, C18. */
public final class UnitTests {
    static final byte[][] PAYLOADS = {new byte[0], {0x01, 0x17, 0x0d, 0x00, 0x17}, seq(300), {0x0d, 0, 0, 0}};

    static byte[] seq(int n) {
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) {
            b[i] = (byte) (i * 7);
        }
        return b;
    }

    static byte[] stream(byte[][] payloads) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (byte[] p : payloads) {
            byte[] f = Frames.encode(p);
            out.write(f, 0, f.length);
        }
        return out.toByteArray();
    }

    static List<byte[]> feed(FrameDecoder d, byte[] b, int from, int to, final List<byte[]> into) throws HydrogenException {
        d.feed(b, from, to - from, new FrameDecoder.Sink() {
            @Override
            public void frame(byte[] p) {
                into.add(p);
            }
        });
        return into;
    }

    static void sameFrames(List<byte[]> got, String what) {
        Check.equal(PAYLOADS.length, got.size(), what + ": frames");
        for (int i = 0; i < PAYLOADS.length; i++) {
            Check.equal(PAYLOADS[i], got.get(i), what + ": frame " + i);
        }
    }

    public void testC01SplitAtEveryByte() throws Exception {
        byte[] s = stream(PAYLOADS);
        for (int k = 0; k <= s.length; k++) {
            FrameDecoder d = new FrameDecoder(Frames.MAX_PAYLOAD);
            List<byte[]> got = new ArrayList<byte[]>();
            feed(d, s, 0, k, got);
            feed(d, s, k, s.length, got);
            sameFrames(got, "split at " + k);
            Check.equal(0, d.buffered(), "buffered after the last frame");
        }
        FrameDecoder d = new FrameDecoder(Frames.MAX_PAYLOAD);
        List<byte[]> got = new ArrayList<byte[]>();
        for (int i = 0; i < s.length; i++) {
            feed(d, s, i, i + 1, got);
        }
        sameFrames(got, "one byte at a time");
    }

    public void testC03BadBytesAreProtocolErrors() throws Exception {
        byte[] ok = Frames.encode(TestSupport.utf8("ok"));
        Object[][] cases = {
            {"bad start", new byte[] {0x17, 0, 1, 0x78, 0x17}, "bad start byte 0x17 at byte 6"},
            {"bad end", new byte[] {0x01, 0, 1, 0x78, 0x18}, "bad end byte 0x18 at byte 10"},
            {"bad end of an empty frame", new byte[] {0x01, 0, 0, 0x01}, "bad end byte 0x01 at byte 9"},
        };
        for (Object[] c : cases) {
            final byte[] raw = (byte[]) c[1];
            byte[] all = new byte[ok.length + raw.length];
            System.arraycopy(ok, 0, all, 0, ok.length);
            System.arraycopy(raw, 0, all, ok.length, raw.length);
            for (int k = ok.length; k <= all.length; k++) {
                final FrameDecoder d = new FrameDecoder(Frames.MAX_PAYLOAD);
                final List<byte[]> got = new ArrayList<byte[]>();
                final byte[] a = all;
                final int split = k;
                HydrogenException e = Check.failsWith("PROTOCOL", new Check.Action() {
                    @Override
                    public void run() throws Exception {
                        feed(d, a, 0, split, got);
                        feed(d, a, split, a.length, got);
                    }
                }, c[0] + " split at " + k);
                Check.contains(e.getMessage(), (String) c[2], c[0] + " message");
                Check.equal(1, got.size(), c[0] + ": the good frame before it is delivered");
                Check.failsWith("PROTOCOL", new Check.Action() {
                    @Override
                    public void run() throws Exception {
                        feed(d, new byte[] {1}, 0, 1, got);
                    }
                }, "the decoder stays failed");
            }
        }
        final FrameDecoder d = new FrameDecoder(10);
        HydrogenException e = Check.failsWith("PROTOCOL", new Check.Action() {
            @Override
            public void run() throws Exception {
                feed(d, new byte[] {1, 0, 11}, 0, 3, new ArrayList<byte[]>());
            }
        }, "over max payload");
        Check.contains(e.getMessage(), "11 payload bytes, over the maximum of 10", "message");
        Check.fails(IllegalArgumentException.class, new Check.Action() {
            @Override
            public void run() {
                new FrameDecoder(65536);
            }
        }, "max payload 65536");
    }

    public void testTelemetryRequest() {
        Check.equal(Arrays.toString(new byte[] {0x0d, 0x3f, (byte) 0x80, 0, 0}),
                Arrays.toString(Frames.telemetryRequest(1f)), "request for 1 s");
        Check.that(Frames.isTelemetryRequest(Frames.telemetryRequest(0.5f)), "a request is one");
        Check.that(!Frames.isTelemetryRequest(new byte[] {0x0d, 0, 0, 0}), "4 bytes are not");
        Check.that(!Frames.isTelemetryRequest(new byte[] {0x0d, 0, 0, 0, 0, 0}), "6 bytes are not");
    }

    public void testJsonAcceptsStrictJson() throws Exception {
        Object v = Json.parse(" {\"a\":[1,-0,2.5,1e3,true,false,null,\"x\\u00e9\\ud83d\\ude00\\n\"],\"b\":{},\"a2\":[]} ");
        Check.that(v instanceof Map, "an object");
        Map<?, ?> m = (Map<?, ?>) v;
        List<?> a = (List<?>) m.get("a");
        Check.equal(Long.valueOf(1), a.get(0), "1");
        Check.equal(Long.valueOf(0), a.get(1), "-0");
        Check.equal(Double.valueOf(2.5), a.get(2), "2.5");
        Check.equal(Double.valueOf(1000), a.get(3), "1e3 is not an integer");
        Check.equal(Boolean.TRUE, a.get(4), "true");
        Check.that(a.get(6) == Json.NULL, "null is Json.NULL");
        Check.equal("x\u00e9\ud83d\ude00\n", a.get(7), "escapes");
        Check.equal(new java.math.BigInteger("18446744073709551616"), Json.parse("18446744073709551616"), "big");
        Check.equal(Long.valueOf(Long.MAX_VALUE), Json.parse("9223372036854775807"), "long max");
        Check.equal(Long.valueOf(2), ((Map<?, ?>) Json.parse("{\"k\":1,\"k\":2}")).get("k"), "the last of a repeated name");
    }

    static String nested(int depth) {
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < depth; i++) {
            b.append('[');
        }
        for (int i = 0; i < depth; i++) {
            b.append(']');
        }
        return b.toString();
    }

    public void testJsonRejectsAnythingElse() throws Exception {
        Json.parse(nested(Json.MAX_DEPTH)); // as deep as allowed
        String deep = nested(Json.MAX_DEPTH + 1);
        String[] bad = {"", " ", "{", "}", "{\"a\":1,}", "[1,]", "{\"a\" 1}", "{a:1}", "{'a':1}", "01", "-", "1.", ".5",
            "1e", "+1", "NaN", "Infinity", "-Infinity", "nul", "tru", "\"\\x\"", "\"a", "\"\t\"", "\"\\ud800\"",
            "\"\ud800\"", "\"\\u12\"", "1 2", "{} {}", "{\"a\":1}x", "/* c */ 1", "1e999", deep,
            "\u00a0{}"};
        for (final String s : bad) {
            Check.fails(Json.ParseException.class, new Check.Action() {
                @Override
                public void run() throws Exception {
                    Json.parse(s);
                }
            }, "Json.parse(" + s + ")");
        }
    }

    static final String[] NOT_REPLIES = {"plain", "", "{}", "{\"uptime\":1}", "{\"UP_TIME\":1}",
        "{\"nested\":{\"up_time\":1}}", "{\"error\":\"with company\",\"code\":1}", "{\"error\":42}",
        "{\"error\":null}", "{\"error\":[\"x\"]}", "[\"up_time\"]", "\"up_time\"", "{\"up_time\":1",
        "{\"up_time\":1}garbage", "{\"error\":\"truncated\"", "{\"up_time\":NaN}"};

    public void testC07RecognitionRule() {
        for (String s : NOT_REPLIES) {
            Check.that(Replies.recognise(TestSupport.utf8(s)) == null, "taken for a reply: " + s);
        }
        Check.that(Replies.recognise(new byte[] {(byte) 0xff, '{', '}'}) == null, "not UTF-8");
        Check.that(Replies.recognise(new byte[] {'{', '"', 'u', 'p', '_', 't', 'i', 'm', 'e', '"', ':', '"', (byte) 0xc3, '"', '}'}) == null,
                "invalid UTF-8 inside");
        Check.that(Replies.recognise(TestSupport.utf8("{\"up_time\":1}")) != null, "a reading");
        Check.that(Replies.recognise(TestSupport.utf8(" {\"error\" : \"too many\"} ")) != null, "a refusal");
    }

    static final String REPLY = "{\"up_time\":42,\"bytes_recv\":1000,\"bytes_sent\":2000,\"msg_recv\":10,\"msg_sent\":20,"
            + "\"num_clients\":3,\"resources\":{\"ram\":{\"bytes_used\":1024,\"bytes_available\":4096},\"cpu_overall\":0.5,"
            + "\"cpu_per_core\":[{\"core\":0,\"using\":0.75},{\"core\":1,\"using\":0}]},"
            + "\"process\":{\"rss_bytes\":12345,\"goroutines\":7},\"protocol_errors\":2}";

    public void testC06TypedStats() throws Exception {
        Stats s = Replies.toStats(Replies.recognise(TestSupport.utf8(REPLY)), REPLY);
        Check.equal(42L, s.upTime(), "up_time");
        Check.equal(1000L, s.bytesRecv(), "bytes_recv");
        Check.equal(2000L, s.bytesSent(), "bytes_sent");
        Check.equal(10L, s.msgRecv(), "msg_recv");
        Check.equal(20L, s.msgSent(), "msg_sent");
        Check.equal(3L, s.numClients(), "num_clients");
        Check.equal(1024L, s.resources().ramBytesUsed(), "bytes_used");
        Check.equal(4096L, s.resources().ramBytesAvailable(), "bytes_available");
        Check.equal(0.5, s.resources().cpuOverall(), "cpu_overall");
        Check.equal(2, s.resources().cpuPerCore().size(), "cores");
        Check.equal(1L, s.resources().cpuPerCore().get(1).core(), "core");
        Check.equal(0.0, s.resources().cpuPerCore().get(1).using(), "an integer using is a number");
        Check.equal("[process, protocol_errors]", s.extra().keySet().toString(), "extra");
        Check.equal(Long.valueOf(2), s.extra().get("protocol_errors"), "extra value");
        Check.equal(REPLY, s.raw(), "raw");
    }

    public void testC06BadReplies() throws Exception {
        String[][] cases = {
            {"\"msg_recv\":10", "\"msg_recv\":\"10\"", "msg_recv is \"10\""},
            {"\"bytes_sent\":2000", "\"bytes_sent\":1.5", "bytes_sent is 1.5"},
            {"\"bytes_sent\":2000", "\"bytes_sent\":2e3", "bytes_sent is 2000.0"},
            {"\"num_clients\":3", "\"num_clients\":-1", "num_clients is -1"},
            {"\"num_clients\":3", "\"num_clients\":true", "num_clients is true"},
            {"\"num_clients\":3", "\"num_clients\":null", "num_clients is null"},
            {"\"bytes_recv\":1000,", "", "bytes_recv is missing"},
            {"\"num_clients\":3", "\"num_clients\":18446744073709551616", "num_clients is 18446744073709551616"},
            {"\"ram\":{\"bytes_used\":1024,\"bytes_available\":4096},", "", "resources.ram is missing"},
            {"\"bytes_used\":1024,", "", "resources.ram.bytes_used is missing"},
            {"\"cpu_overall\":0.5", "\"cpu_overall\":\"0.5\"", "resources.cpu_overall"},
            {"[{\"core\":0,\"using\":0.75},{\"core\":1,\"using\":0}]", "{}", "cpu_per_core is an object"},
            {"{\"core\":1,\"using\":0}", "3", "cpu_per_core[1] is 3"},
            {"\"core\":0,", "\"core\":0.5,", "cpu_per_core[0].core is 0.5"},
            {",\"using\":0.75", "", "cpu_per_core[0].using is missing"},
        };
        for (String[] c : cases) {
            final String text = REPLY.replace(c[0], c[1]);
            Check.that(!text.equals(REPLY), "the case changes the reply: " + c[0]);
            HydrogenException e = Check.failsWith("BAD_REPLY", new Check.Action() {
                @Override
                public void run() throws Exception {
                    Replies.toStats(Replies.recognise(TestSupport.utf8(text)), text);
                }
            }, c[2]);
            Check.contains(e.getMessage(), c[2], "message");
        }
        BrokerRefusedException r = Check.fails(BrokerRefusedException.class, new Check.Action() {
            @Override
            public void run() throws Exception {
                Replies.toStats(Replies.recognise(TestSupport.utf8("{\"error\":\"span 0 is outside (0, 60]\"}")), "");
            }
        }, "a refusal");
        Check.equal("span 0 is outside (0, 60]", r.reason(), "reason");
        Check.equal("BROKER_REFUSED", r.code(), "code");
    }

    public void testC18BadArguments() {
        String[] badAddresses = {"", "nohost", "h:0", "h:65536", "h:x", "http://h:1", "ws://h:1/", "h:99999999999"};
        for (final String a : badAddresses) {
            Check.fails(IllegalArgumentException.class, new Check.Action() {
                @Override
                public void run() throws Exception {
                    HydrogenClient.connect(a);
                }
            }, "address " + a);
        }
        Check.Action[] badOptions = {
            new Check.Action() {
                @Override
                public void run() {
                    new ClientOptions().timeoutMillis(0);
                }
            },
            new Check.Action() {
                @Override
                public void run() {
                    new ClientOptions().credential("");
                }
            },
            new Check.Action() {
                @Override
                public void run() {
                    new ClientOptions().credential("\rabcd");
                }
            },
            new Check.Action() {
                @Override
                public void run() {
                    new ClientOptions().credential(new byte[65536]);
                }
            },
            new Check.Action() {
                @Override
                public void run() {
                    new ClientOptions().maxPayload(65536);
                }
            },
            new Check.Action() {
                @Override
                public void run() {
                    new ClientOptions().recvBuffer(0);
                }
            },
            new Check.Action() {
                @Override
                public void run() {
                    new ClientOptions().caFile("");
                }
            },
            new Check.Action() {
                @Override
                public void run() {
                    new ClientOptions().clientCertificate("client.pem", "");
                }
            },
            new Check.Action() {
                @Override
                public void run() throws Exception {
                    HydrogenClient.connect("127.0.0.1:1", new ClientOptions().caFile("ca.pem")
                            .sslContext(javax.net.ssl.SSLContext.getDefault()));
                }
            },
        };
        for (int i = 0; i < badOptions.length; i++) {
            Check.fails(IllegalArgumentException.class, badOptions[i], "bad option " + i);
        }
    }
}
