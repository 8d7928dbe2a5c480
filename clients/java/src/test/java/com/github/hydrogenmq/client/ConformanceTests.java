package com.github.hydrogenmq.client;

import java.io.IOException;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

/**
 * The conformance suite of docs/CONFORMANCE.md against the real broker
 * binary and servers these tests own on 127.0.0.1; each test names its
 * case. Whatever a test opens is closed at its end.
 */
public final class ConformanceTests implements AutoCloseable {
    private final List<AutoCloseable> open = new ArrayList<AutoCloseable>();

    private <T extends AutoCloseable> T keep(T c) {
        open.add(c);
        return c;
    }

    @Override
    public void close() throws Exception {
        Collections.reverse(open);
        for (AutoCloseable c : open) {
            c.close();
        }
    }

    private TestSupport.Broker broker(String... args) throws Exception {
        return keep(new TestSupport.Broker(args));
    }

    private HydrogenClient client(String addr) throws Exception {
        return keep(HydrogenClient.connect(addr));
    }

    private HydrogenClient client(String addr, ClientOptions o) throws Exception {
        return keep(HydrogenClient.connect(addr, o));
    }

    private TestSupport.TestServer server(TestSupport.Handler h) throws Exception {
        return keep(new TestSupport.TestServer(h));
    }

    static byte[] recv(HydrogenClient c) throws IOException {
        return c.receive(10, TimeUnit.SECONDS);
    }

    static void waitClients(final HydrogenClient c, final long n) throws Exception {
        TestSupport.waitFor(n + " clients", new TestSupport.Condition() {
            @Override
            public boolean holds() throws Exception {
                return c.stats(0.01f).numClients() == n;
            }
        }, 10000);
    }

    public void testC01SplitAtEveryByteByARealSocket() throws Exception {
        final byte[][] payloads = {new byte[0], {0x01, 0x17, 0x0d, 0x00, 0x17}, new byte[300], TestSupport.utf8("{\"up_time\":1}")};
        Arrays.fill(payloads[2], (byte) 0x0d);
        final byte[] stream = UnitTests.stream(payloads);
        TestSupport.TestServer srv = server(new TestSupport.Handler() {
            @Override
            public void handle(Socket s) throws Exception {
                s.setTcpNoDelay(true);
                new TestSupport.FrameReader(s).next();
                for (int i = 0; i < stream.length; i++) { // one byte at a time
                    s.getOutputStream().write(stream, i, 1);
                    Thread.sleep(1);
                }
                for (int k = 1; k < stream.length; k++) { // and split at every point
                    s.getOutputStream().write(stream, 0, k);
                    Thread.sleep(1);
                    s.getOutputStream().write(stream, k, stream.length - k);
                }
                TestSupport.write(s, TestSupport.frame("done"));
                new TestSupport.FrameReader(s).next(); // until the client closes
            }
        });
        HydrogenClient c = client(srv.addr);
        c.send("go");
        for (int r = 0; r < stream.length; r++) {
            for (int i = 0; i < payloads.length; i++) {
                Check.equal(payloads[i], recv(c), "round " + r + ", frame " + i);
            }
        }
        Check.equal("done", TestSupport.text(recv(c)), "the last frame");
    }

    public void testC02ManyFramesInOneRead() throws Exception {
        TestSupport.TestServer srv = server(new TestSupport.Handler() {
            @Override
            public void handle(Socket s) throws Exception {
                new TestSupport.FrameReader(s).next();
                java.io.ByteArrayOutputStream all = new java.io.ByteArrayOutputStream();
                for (int i = 0; i < 500; i++) {
                    all.write(TestSupport.frame("m" + i));
                }
                TestSupport.write(s, all.toByteArray());
                new TestSupport.FrameReader(s).next();
            }
        });
        HydrogenClient c = client(srv.addr);
        c.send("go");
        for (int i = 0; i < 500; i++) {
            Check.equal("m" + i, TestSupport.text(recv(c)), "frame " + i);
        }
    }

    public void testC03BrokenFrameFormatFromTheServer() throws Exception {
        Object[][] cases = {
            {"bad end byte", new byte[] {0x01, 0, 1, 0x78, 0x18}, Frames.MAX_PAYLOAD},
            {"bad start byte", new byte[] {0x17, 0, 1, 0x78, 0x17}, Frames.MAX_PAYLOAD},
            {"payload over maxPayload", new byte[] {0x01, 0, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x17}, 10},
        };
        for (Object[] cs : cases) {
            final byte[] raw = (byte[]) cs[1];
            TestSupport.TestServer srv = server(new TestSupport.Handler() {
                @Override
                public void handle(Socket s) throws Exception {
                    new TestSupport.FrameReader(s).next();
                    TestSupport.write(s, TestSupport.frame("ok"));
                    TestSupport.write(s, raw);
                    new TestSupport.FrameReader(s).next();
                }
            });
            final HydrogenClient c = client(srv.addr, new ClientOptions().maxPayload((Integer) cs[2]));
            c.send("go");
            Check.equal("ok", TestSupport.text(recv(c)), cs[0] + ": the good frame first");
            HydrogenException e = Check.failsWith("PROTOCOL", new Check.Action() {
                @Override
                public void run() throws Exception {
                    recv(c);
                }
            }, (String) cs[0]);
            Check.contains(e.getMessage(), "hydrogen: protocol error from the broker", "message");
            Check.equal("PROTOCOL", c.closeReason().code(), "close reason");
            Check.failsWith("PROTOCOL", new Check.Action() {
                @Override
                public void run() throws Exception {
                    c.send("x");
                }
            }, "send after the protocol error");
        }
    }

    public void testC04ZeroAndMaxPayloadsRoundTrip() throws Exception {
        TestSupport.Broker b = broker("--app", "echo");
        HydrogenClient c = client(b.addr);
        byte[][] cases = {new byte[0], UnitTests.seq(Frames.MAX_PAYLOAD), {0x01, 0x17, 0x0d, 0x00, 0x17}, {0x0d, 0, 0, 0},
            {0x0d, 0x3f, (byte) 0x80, 0, 0, 0}};
        for (byte[] p : cases) {
            c.send(p);
            Check.equal(p, recv(c), p.length + " bytes");
        }
        c.send("a string is sent as UTF-8: \u00e9");
        Check.equal("a string is sent as UTF-8: \u00e9", TestSupport.text(recv(c)), "string");
    }

    public void testC05OverTheMaximumIsRefusedLocally() throws Exception {
        TestSupport.Broker b = broker("--app", "echo");
        final HydrogenClient c = client(b.addr);
        PayloadTooLargeException e = Check.fails(PayloadTooLargeException.class, new Check.Action() {
            @Override
            public void run() throws Exception {
                c.send(new byte[Frames.MAX_PAYLOAD + 1]);
            }
        }, "65,536 bytes");
        Check.contains(e.getMessage(), "65536 bytes is over the maximum of 65535; nothing was sent", "message");
        IllegalArgumentException t = Check.fails(IllegalArgumentException.class, new Check.Action() {
            @Override
            public void run() throws Exception {
                c.send(new byte[] {0x0d, 0x3f, (byte) 0x80, 0, 0});
            }
        }, "telemetry-shaped");
        Check.contains(t.getMessage(), "telemetry request", "message");
        c.send("after");
        Check.equal("after", TestSupport.text(recv(c)), "the next echo");
        Stats s = c.stats(0.01f);
        Check.equal(2L, s.msgRecv(), "msg_recv: \"after\" and the request, nothing else");
        Check.equal(10L, s.bytesRecv(), "bytes_recv");
        Check.that(!c.isClosed(), "still open");
    }

    public void testC06StatsReturnsTheTypedReply() throws Exception {
        TestSupport.Broker b = broker("--app", "echo");
        HydrogenClient c = client(b.addr);
        long t0 = System.nanoTime();
        Stats s = c.stats(0.3f);
        Check.that(System.nanoTime() - t0 >= 290000000L, "the reply came before its span");
        Check.equal(1L, s.numClients(), "num_clients");
        Check.equal(1L, s.msgRecv(), "msg_recv");
        Check.equal(5L, s.bytesRecv(), "bytes_recv");
        Check.that(s.upTime() >= 0 && s.bytesSent() >= 0 && s.msgSent() >= 0, "counters");
        Check.that(s.resources().ramBytesAvailable() > 0 && s.resources().ramBytesUsed() > 0, "ram");
        Check.that(s.resources().cpuOverall() >= 0 && s.resources().cpuOverall() <= 1, "cpu_overall");
        Check.that(!s.resources().cpuPerCore().isEmpty(), "cores");
        for (int i = 0; i < s.resources().cpuPerCore().size(); i++) {
            Stats.CoreUsage u = s.resources().cpuPerCore().get(i);
            Check.equal((long) i, u.core(), "core index");
            Check.that(u.using() >= 0 && u.using() <= 1, "using");
        }
        Check.that(s.extra().containsKey("protocol_errors") && s.extra().containsKey("process"), "extras kept");
        Check.contains(s.raw(), "\"up_time\"", "raw");
    }

    public void testC07ReplyRecognisedAmongBroadcasts() throws Exception {
        TestSupport.Broker b = broker("--app", "broadcast");
        final HydrogenClient a = client(b.addr);
        HydrogenClient other = client(b.addr);
        waitClients(a, 2);
        List<String> sent = new ArrayList<String>(Arrays.asList(UnitTests.NOT_REPLIES));
        for (int i = 0; i < 300; i++) {
            sent.add("b-" + i);
        }
        final AtomicReference<Object> result = new AtomicReference<Object>();
        Thread t = new Thread(new Runnable() {
            @Override
            public void run() {
                try {
                    result.set(a.stats(0.5f));
                } catch (IOException e) {
                    result.set(e);
                }
            }
        });
        t.start();
        Thread.sleep(50); // the request is out; everything below arrives within its span
        for (String s : sent) {
            other.send(s);
        }
        t.join(10000);
        Check.that(result.get() instanceof Stats, "stats returned " + result.get());
        Check.equal(2L, ((Stats) result.get()).numClients(), "num_clients");
        for (String want : sent) {
            Check.equal(want, TestSupport.text(recv(a)), "broadcast in order, none taken for the reply");
        }
        other.send("{\"error\":\"just a message\"}");
        Check.equal("{\"error\":\"just a message\"}", TestSupport.text(recv(a)), "no request outstanding: a message");
    }

    public void testC08RefusedSpans() throws Exception {
        TestSupport.Broker b = broker("--app", "echo", "--max-span", "2s");
        final HydrogenClient c = client(b.addr);
        for (final float span : new float[] {0, -1, Float.NaN, Float.POSITIVE_INFINITY, 3}) {
            BrokerRefusedException e = Check.fails(BrokerRefusedException.class, new Check.Action() {
                @Override
                public void run() throws Exception {
                    c.stats(span);
                }
            }, "span " + span);
            Check.that(e.reason() != null && !e.reason().isEmpty(), "a reason");
        }
        c.send("still open");
        Check.equal("still open", TestSupport.text(recv(c)), "echo after refusals");
        Check.that(c.stats(0.01f).upTime() >= 0, "a request after refusals");
    }

    public void testC09OneRequestOutstanding() throws Exception {
        TestSupport.Broker b = broker("--app", "echo");
        final HydrogenClient c = client(b.addr);
        final long t0 = System.nanoTime();
        final Stats[] got = new Stats[2];
        final CountDownLatch started = new CountDownLatch(1);
        Thread first = new Thread(new Runnable() {
            @Override
            public void run() {
                try {
                    started.countDown();
                    got[0] = c.stats(0.3f);
                } catch (IOException e) {
                    got[0] = null;
                }
            }
        });
        first.start();
        started.await();
        Thread.sleep(100); // the first request most likely goes out before the second is asked
        got[1] = c.stats(0.05f);
        first.join(10000);
        long both = System.nanoTime() - t0;
        Check.that(got[0] != null, "the first request failed");
        Check.that(both >= 345000000L, "both replies after " + both / 1000000 + " ms: the spans did not run one after the other");
        // Whichever went first, the broker had received one request when it
        // answered it, and had sent that answer when it answered the other.
        // (When each thread wakes is up to the scheduler; the counters say
        // the order.)
        Stats earlier = got[0].msgRecv() <= got[1].msgRecv() ? got[0] : got[1];
        Stats later = earlier == got[0] ? got[1] : got[0];
        Check.equal(1L, earlier.msgRecv(), "requests the broker had when it answered the first");
        Check.equal(2L, later.msgRecv(), "requests the broker had when it answered the second");
        Check.equal(earlier.msgSent() + 1, later.msgSent(), "the first answer was sent before the second was made");
        Check.failsWith("TIMEOUT", new Check.Action() {
            @Override
            public void run() throws Exception {
                c.stats(0.4f, 50, TimeUnit.MILLISECONDS);
            }
        }, "stats with a short timeout");
        long t1 = System.nanoTime();
        c.stats(0.01f);
        Check.that(System.nanoTime() - t1 >= 250000000L, "a request went out before the timed-out one was answered");
    }

    public void testC10ClosedByTheBrokerForABadFrame() throws Exception {
        TestSupport.Broker b = broker("--app", "echo", "--max-payload", "100");
        final HydrogenClient c = client(b.addr);
        c.send(new byte[200]); // fine for the client, over the broker's maximum
        HydrogenException e = Check.failsWith("BROKER_CLOSED", new Check.Action() {
            @Override
            public void run() throws Exception {
                recv(c);
            }
        }, "receive");
        Check.contains(e.getMessage(), "broker closed the connection", "message");
        Check.equal("BROKER_CLOSED", c.awaitClose(5, TimeUnit.SECONDS).code(), "close reason");
        Check.failsWith("BROKER_CLOSED", new Check.Action() {
            @Override
            public void run() throws Exception {
                c.send("x");
            }
        }, "send after");
        Check.failsWith("BROKER_CLOSED", new Check.Action() {
            @Override
            public void run() throws Exception {
                c.stats(1);
            }
        }, "stats after");
    }

    public void testC10BrokerShuttingDownWithAListener() throws Exception {
        TestSupport.Broker b = new TestSupport.Broker("--app", "echo");
        try {
            final LinkedBlockingQueue<String> got = new LinkedBlockingQueue<String>();
            final LinkedBlockingQueue<HydrogenException> closes = new LinkedBlockingQueue<HydrogenException>();
            HydrogenClient c = client(b.addr, new ClientOptions().listener(new MessageListener() {
                @Override
                public void onMessage(byte[] payload) {
                    got.add(TestSupport.text(payload));
                }

                @Override
                public void onClose(HydrogenException reason) {
                    closes.add(reason);
                }
            }));
            c.send("before");
            c.stats(0.01f); // its reply comes after the echo
            Check.equal("before", got.poll(5, TimeUnit.SECONDS), "the listener got the echo");
            int status = b.stop();
            Check.equal(0, status, "broker exit status; its log:\n" + b.log());
            HydrogenException r = closes.poll(10, TimeUnit.SECONDS);
            Check.that(r != null, "onClose was not called");
            Check.equal("BROKER_CLOSED", r.code(), "onClose reason");
            Check.that(r.isOrderlyEnd(), "an orderly end");
            c.close();
            Check.that(closes.poll(200, TimeUnit.MILLISECONDS) == null, "onClose called twice");
        } finally {
            b.stop();
        }
    }

    public void testC11Close() throws Exception {
        TestSupport.Broker b = broker("--app", "echo");
        final HydrogenClient c = HydrogenClient.connect(b.addr);
        final AtomicReference<Throwable> recvError = new AtomicReference<Throwable>();
        final AtomicReference<Throwable> statsError = new AtomicReference<Throwable>();
        Thread r = new Thread(new Runnable() {
            @Override
            public void run() {
                try {
                    c.receive();
                } catch (Throwable e) {
                    recvError.set(e);
                }
            }
        });
        Thread s = new Thread(new Runnable() {
            @Override
            public void run() {
                try {
                    c.stats(5);
                } catch (Throwable e) {
                    statsError.set(e);
                }
            }
        });
        r.start();
        s.start();
        Thread.sleep(100);
        int before = Thread.activeCount();
        c.close();
        c.close(); // idempotent
        r.join(5000);
        s.join(5000);
        Check.that(recvError.get() instanceof HydrogenException
                && "CLOSED".equals(((HydrogenException) recvError.get()).code()), "pending receive: " + recvError.get());
        Check.that(statsError.get() instanceof HydrogenException
                && "CLOSED".equals(((HydrogenException) statsError.get()).code()), "pending stats: " + statsError.get());
        Check.failsWith("CLOSED", new Check.Action() {
            @Override
            public void run() throws Exception {
                c.receive(1, TimeUnit.SECONDS);
            }
        }, "receive after close");
        Check.failsWith("CLOSED", new Check.Action() {
            @Override
            public void run() throws Exception {
                c.send("x");
            }
        }, "send after close");
        Check.failsWith("CLOSED", new Check.Action() {
            @Override
            public void run() throws Exception {
                c.stats(1);
            }
        }, "stats after close");
        Check.that(Thread.activeCount() < before, "the reader thread still runs");
        Check.that(c.isClosed() && c.closeReason().isOrderlyEnd(), "closed in order");
    }

    public void testC12TenThousandFramesInOrder() throws Exception {
        TestSupport.Broker b = broker("--app", "echo");
        final HydrogenClient c = client(b.addr);
        final int n = 10000;
        final AtomicReference<Throwable> err = new AtomicReference<Throwable>();
        Thread sender = new Thread(new Runnable() {
            @Override
            public void run() {
                try {
                    for (int i = 0; i < n; i++) {
                        c.send("frame " + i);
                    }
                } catch (Throwable e) {
                    err.set(e);
                }
            }
        });
        sender.start();
        for (int i = 0; i < n; i++) {
            Check.equal("frame " + i, TestSupport.text(recv(c)), "frame " + i);
        }
        sender.join(10000);
        Check.that(err.get() == null, "send failed: " + err.get());
    }

    public void testC13BroadcastReachesTheOthers() throws Exception {
        TestSupport.Broker b = broker("--app", "broadcast");
        HydrogenClient pub = client(b.addr);
        HydrogenClient sub1 = client(b.addr);
        HydrogenClient sub2 = client(b.addr);
        waitClients(pub, 3);
        pub.send("hello all");
        Check.equal("hello all", TestSupport.text(recv(sub1)), "subscriber 1");
        Check.equal("hello all", TestSupport.text(recv(sub2)), "subscriber 2");
        sub1.send("second");
        Check.equal("second", TestSupport.text(recv(pub)), "the publisher does not get its own frame");
    }

    public void testC14ReceiveTimeoutLosesNothing() throws Exception {
        TestSupport.Broker b = broker("--app", "echo");
        final HydrogenClient c = client(b.addr);
        long t0 = System.nanoTime();
        Check.failsWith("TIMEOUT", new Check.Action() {
            @Override
            public void run() throws Exception {
                c.receive(100, TimeUnit.MILLISECONDS);
            }
        }, "receive with nothing to receive");
        Check.that(System.nanoTime() - t0 >= 95000000L, "timed out too soon");
        c.send("next");
        Check.equal("next", TestSupport.text(recv(c)), "the next echo");
        Check.fails(IllegalArgumentException.class, new Check.Action() {
            @Override
            public void run() throws Exception {
                c.receive(-1, TimeUnit.SECONDS);
            }
        }, "negative timeout");
    }

    public void testC17AClientThatDoesNotReceivePushesBack() throws Exception {
        final int limit = 2048; // 64 KiB frames: 128 MiB
        final AtomicInteger written = new AtomicInteger(-1);
        TestSupport.TestServer srv = server(new TestSupport.Handler() {
            @Override
            public void handle(Socket s) throws Exception {
                new TestSupport.FrameReader(s).next();
                byte[] f = Frames.encode(new byte[Frames.MAX_PAYLOAD]);
                final Socket sock = s;
                final AtomicInteger i = new AtomicInteger();
                // A write that makes no progress for 500 ms means the client stopped reading.
                Thread writer = new Thread(new Runnable() {
                    @Override
                    public void run() {
                        try {
                            for (; i.get() < limit; i.incrementAndGet()) {
                                ByteBuffer.wrap(f).putInt(3, i.get());
                                sock.getOutputStream().write(f);
                            }
                        } catch (IOException e) {
                            // closed at the end of the test
                        }
                    }
                });
                writer.setDaemon(true);
                writer.start();
                int last = -1;
                while (writer.isAlive()) {
                    Thread.sleep(500);
                    int now = i.get();
                    if (now == last) {
                        written.set(now);
                        break;
                    }
                    last = now;
                }
                if (!writer.isAlive()) {
                    written.set(i.get());
                }
                new TestSupport.FrameReader(s).next();
            }
        });
        HydrogenClient c = client(srv.addr, new ClientOptions().recvBuffer(4));
        c.send("flood");
        TestSupport.waitFor("the server to stall", new TestSupport.Condition() {
            @Override
            public boolean holds() {
                return written.get() >= 0;
            }
        }, 20000);
        Check.that(written.get() < limit, "the server wrote every frame to a client that received none");
        for (int i = 0; i < written.get(); i++) {
            byte[] p = recv(c);
            Check.equal(Frames.MAX_PAYLOAD, p.length, "frame " + i + " length");
            Check.equal(i, ByteBuffer.wrap(p).getInt(0), "frame number");
        }
    }

    public void testC18ConnectFailures() throws Exception {
        java.net.ServerSocket ss = new java.net.ServerSocket(0, 1, java.net.InetAddress.getByName("127.0.0.1"));
        final String addr = "127.0.0.1:" + ss.getLocalPort();
        ss.close();
        HydrogenException e = Check.failsWith("IO", new Check.Action() {
            @Override
            public void run() throws Exception {
                HydrogenClient.connect(addr);
            }
        }, "a closed port");
        Check.contains(e.getMessage(), "Connection refused", "message");
        Check.that(e.getCause() instanceof java.net.ConnectException || e.getCause() instanceof SocketTimeoutException
                || e.getCause() instanceof IOException, "cause kept");
    }
}
