package com.github.hydrogenmq.client;

import java.net.Socket;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * The credential option (C15) and TLS (C16), against servers these tests
 * own on 127.0.0.1 that speak the broker's contract.
 */
public final class AuthTlsTests implements AutoCloseable {
    private final List<AutoCloseable> open = new ArrayList<AutoCloseable>();

    @Override
    public void close() throws Exception {
        Collections.reverse(open);
        for (AutoCloseable c : open) {
            c.close();
        }
    }

    /** What the server answers a credential with: a payload, or null to close without answering. */
    interface Answer {
        String to(String credential);
    }

    /** Answers the first frame as answer says (with the frames of after in the same write), then echoes. */
    private TestSupport.TestServer authServer(final Answer answer, final boolean silent, final List<String> seen,
            final String... after) throws Exception {
        TestSupport.TestServer s = new TestSupport.TestServer(new TestSupport.Handler() {
            @Override
            public void handle(Socket s) throws Exception {
                TestSupport.FrameReader r = new TestSupport.FrameReader(s);
                byte[] cred = r.next();
                if (cred == null) {
                    return;
                }
                seen.add(TestSupport.text(cred));
                if (silent) {
                    r.next();
                    return;
                }
                String a = answer.to(TestSupport.text(cred));
                if (a == null) {
                    return;
                }
                java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
                out.write(TestSupport.frame(a));
                for (String p : after) {
                    out.write(TestSupport.frame(p));
                }
                TestSupport.write(s, out.toByteArray());
                if (a.contains("\"error\"")) {
                    return;
                }
                for (byte[] p; (p = r.next()) != null;) {
                    TestSupport.write(s, Frames.encode(p));
                }
            }
        });
        open.add(s);
        return s;
    }

    public void testC15Accepted() throws Exception {
        List<String> seen = Collections.synchronizedList(new ArrayList<String>());
        TestSupport.TestServer srv = authServer(new Answer() {
            @Override
            public String to(String c) {
                return c.equals("secret-token") ? "{\"auth\":\"ok\",\"identity\":\"alice\"}" : "{\"error\":\"no\"}";
            }
        }, false, seen, "right behind 1", "right behind 2");
        HydrogenClient c = HydrogenClient.connect(srv.addr, new ClientOptions().credential("secret-token"));
        try {
            Check.equal("alice", c.identity(), "identity");
            Check.equal("[secret-token]", seen.toString(), "the credential is the first frame");
            for (String want : new String[] {"right behind 1", "right behind 2"}) {
                Check.equal(want, TestSupport.text(c.receive(5, TimeUnit.SECONDS)),
                        "frames in the read of the answer are messages, in order");
            }
            c.send("after auth");
            Check.equal("after auth", TestSupport.text(c.receive(5, TimeUnit.SECONDS)),
                    "the answer is not delivered as a message");
        } finally {
            c.close();
        }
    }

    public void testC15Refused() throws Exception {
        final TestSupport.TestServer srv = authServer(new Answer() {
            @Override
            public String to(String c) {
                return "{\"error\":\"token expired\"}";
            }
        }, false, new ArrayList<String>());
        AuthRefusedException e = Check.fails(AuthRefusedException.class, new Check.Action() {
            @Override
            public void run() throws Exception {
                HydrogenClient.connect(srv.addr, new ClientOptions().credential("eyJhbGciOiJIUzI1NiJ9.e30.x"));
            }
        }, "a refused credential");
        Check.equal("token expired", e.reason(), "reason");
        Check.equal("AUTH_REFUSED", e.code(), "code");
        Check.contains(e.getMessage(), "refused the credential: token expired", "message");
    }

    public void testC15ClosedWithoutAnswer() throws Exception {
        final TestSupport.TestServer srv = authServer(new Answer() {
            @Override
            public String to(String c) {
                return null;
            }
        }, false, new ArrayList<String>());
        HydrogenException e = Check.failsWith("BROKER_CLOSED", new Check.Action() {
            @Override
            public void run() throws Exception {
                HydrogenClient.connect(srv.addr, new ClientOptions().credential("x"));
            }
        }, "closed without an answer");
        Check.contains(e.getMessage(), "before answering the credential", "message");
    }

    public void testC15NoAnswerInTime() throws Exception {
        final TestSupport.TestServer srv = authServer(null, true, new ArrayList<String>());
        long t0 = System.nanoTime();
        HydrogenException e = Check.failsWith("TIMEOUT", new Check.Action() {
            @Override
            public void run() throws Exception {
                HydrogenClient.connect(srv.addr, new ClientOptions().credential("x").timeoutMillis(200));
            }
        }, "no answer");
        Check.contains(e.getMessage(), "credential", "message");
        Check.that(System.nanoTime() - t0 < 5000000000L, "took too long");
    }

    public void testC15AnswerOfAnotherShape() throws Exception {
        final TestSupport.TestServer srv = authServer(new Answer() {
            @Override
            public String to(String c) {
                return "welcome";
            }
        }, false, new ArrayList<String>());
        Check.failsWith("BAD_AUTH_REPLY", new Check.Action() {
            @Override
            public void run() throws Exception {
                HydrogenClient.connect(srv.addr, new ClientOptions().credential("x"));
            }
        }, "an answer of another shape");
    }

    public void testC16TlsEchoAndVerification() throws Exception {
        final TestSupport.Certs certs = TestSupport.certificates();
        final TestSupport.TestServer srv = new TestSupport.TestServer(TestSupport.tlsServerSocket(),
                new TestSupport.Handler() {
                    @Override
                    public void handle(Socket s) throws Exception {
                        TestSupport.FrameReader r = new TestSupport.FrameReader(s);
                        for (byte[] p; (p = r.next()) != null;) {
                            TestSupport.write(s, Frames.encode(p));
                        }
                    }
                });
        open.add(srv);
        String[][] ok = {{"localhost:" + srv.port, null}, {"tls://127.0.0.1:" + srv.port, "localhost"}};
        for (String[] a : ok) {
            ClientOptions o = new ClientOptions().caFile(certs.ca);
            if (a[1] != null) {
                o.serverName(a[1]);
            }
            HydrogenClient c = HydrogenClient.connect(a[0], o);
            try {
                Check.that(c.isTls(), "over TLS");
                c.send("over tls");
                Check.equal("over tls", TestSupport.text(c.receive(5, TimeUnit.SECONDS)), "echo over TLS to " + a[0]);
            } finally {
                c.close();
            }
        }
        HydrogenException e = Check.failsWith("IO", new Check.Action() {
            @Override
            public void run() throws Exception {
                HydrogenClient.connect("localhost:" + srv.port, new ClientOptions().caFile(certs.otherCa));
            }
        }, "a CA that did not sign the certificate");
        Check.contains(e.getMessage(), "TLS handshake", "message");
        Check.failsWith("IO", new Check.Action() {
            @Override
            public void run() throws Exception {
                HydrogenClient.connect("localhost:" + srv.port, new ClientOptions().tls(true));
            }
        }, "the system CAs do not know the test CA");
        HydrogenException n = Check.failsWith("IO", new Check.Action() {
            @Override
            public void run() throws Exception {
                HydrogenClient.connect("127.0.0.1:" + srv.port,
                        new ClientOptions().caFile(certs.ca).serverName("not-localhost"));
            }
        }, "a name the certificate does not carry");
        Check.contains(n.getMessage(), "not-localhost", "message");
    }
}
