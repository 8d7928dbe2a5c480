package com.github.hydrogenmq.client;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Authentication (C20), TLS (C21) and both together (C22) against the real
 * broker binary: broker serve with --auth-token-file, --tls-cert/--tls-key
 * and --tls-client-ca, with tokens and certificates made by the tests.
 */
public final class SecureBrokerTests implements AutoCloseable {
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

    private HydrogenClient client(String addr, ClientOptions o) throws Exception {
        return keep(HydrogenClient.connect(addr, o));
    }

    private static String text(HydrogenClient c) throws Exception {
        return TestSupport.text(c.receive(5, TimeUnit.SECONDS));
    }

    private static String port(TestSupport.Broker b) {
        return b.addr.substring(b.addr.lastIndexOf(':') + 1);
    }

    private static long extra(Stats st, String name) {
        Object v = st.extra().get(name);
        Check.that(v instanceof Number, "extra field " + name + " is a number: " + v);
        return ((Number) v).longValue();
    }

    public void testC20AcceptedWithIdentityRefusedWithReason() throws Exception {
        final TestSupport.Broker b = broker("--app", "echo", "--auth-token-file", TestSupport.tokenFile());
        final HydrogenClient c = client(b.addr, new ClientOptions().credential(TestSupport.ALICE));
        Check.equal("alice", c.identity(), "identity");
        c.send("hello");
        Check.equal("hello", text(c), "the answer is not delivered as a message");
        AuthRefusedException e = Check.fails(AuthRefusedException.class,
                () -> HydrogenClient.connect(b.addr, new ClientOptions().credential(TestSupport.UNKNOWN)),
                "an unknown token");
        Check.equal("auth: credential refused", e.reason(), "reason");
        Check.contains(e.getMessage(), "refused the credential: auth: credential refused", "message");
        Check.fails(AuthRefusedException.class, () -> HydrogenClient.connect(b.addr,
                new ClientOptions().credential(TestSupport.ALICE.substring(1))), "a token cut short");
        // The broker counted both refusals and closed both connections.
        ConformanceTests.waitClients(c, 1);
        Stats st = c.stats(0.01f);
        Check.equal(2L, extra(st, "auth_failures"), "auth_failures");
        Check.equal(2L, extra(st, "closed_handshake"), "closed_handshake");
    }

    public void testC20PipelinedFramesServedInOrder() throws Exception {
        TestSupport.Broker b = broker("--app", "echo", "--auth-token-file", TestSupport.tokenFile());
        // A client that sends the credential itself need not wait for the
        // answer: what follows it is held until it is accepted.
        HydrogenClient c = client(b.addr, new ClientOptions());
        for (String p : new String[] {TestSupport.ALICE, "one", "two", "three"}) {
            c.send(p);
        }
        Check.equal("{\"auth\":\"ok\",\"identity\":\"alice\"}", text(c), "the answer, as a message");
        for (String want : new String[] {"one", "two", "three"}) {
            Check.equal(want, text(c), "pipelined frame");
        }
        // Refused: the answer, then the end; what was pipelined is dropped.
        // (The broker closes with the pipelined frame unread when it came in
        // a read of its own, and the kernel then resets the connection.)
        final HydrogenClient r = client(b.addr, new ClientOptions());
        r.send(TestSupport.UNKNOWN);
        try {
            r.send("one");
        } catch (HydrogenException e) {
            // the broker answered and closed first
        }
        Check.equal("{\"error\":\"auth: credential refused\"}", text(r), "the refusal, as a message");
        HydrogenException end = r.awaitClose(5, TimeUnit.SECONDS);
        Check.that(end != null, "the broker closed the connection");
        Check.that("BROKER_CLOSED".equals(end.code()) || ("IO".equals(end.code())
                && end.getMessage().toLowerCase().contains("reset")), "the end: " + end);
        HydrogenException after = Check.fails(HydrogenException.class, () -> r.receive(5, TimeUnit.SECONDS),
                "receive after the end");
        Check.equal(end.code(), after.code(), "nothing pipelined behind a refused credential is served");
    }

    public void testC20IdentityThatMayNotPublish() throws Exception {
        TestSupport.Broker b = broker("--app", "broadcast", "--auth-token-file", TestSupport.tokenFile());
        final HydrogenClient alice = client(b.addr, new ClientOptions().credential(TestSupport.ALICE));
        HydrogenClient bob = client(b.addr, new ClientOptions().credential(TestSupport.BOB));
        Check.equal("bob", bob.identity(), "identity");
        ConformanceTests.waitClients(alice, 2);
        for (int i = 0; i < 2; i++) {
            bob.send("from bob " + i);
            Check.equal("{\"refused\":\"not allowed to publish\"}", text(bob), "refusal " + i);
        }
        alice.send("from alice");
        Check.equal("from alice", text(bob), "bob still receives");
        Check.failsWith("TIMEOUT", () -> alice.receive(200, TimeUnit.MILLISECONDS), "bob's frames reached no one");
        Check.equal(2L, extra(alice.stats(0.01f), "frames_refused"), "frames_refused");
    }

    public void testC21TlsByNameAndIpAndRefusals() throws Exception {
        final TestSupport.Certs certs = TestSupport.certificates();
        TestSupport.Broker b = broker("--app", "echo", "--tls-cert", certs.serverCert, "--tls-key", certs.serverKey);
        final String port = port(b);
        for (String addr : new String[] {"localhost:" + port, "tls://127.0.0.1:" + port}) {
            try (HydrogenClient c = HydrogenClient.connect(addr, new ClientOptions().caFile(certs.ca))) {
                Check.that(c.isTls(), "over TLS");
                c.send("over tls to " + addr);
                Check.equal("over tls to " + addr, text(c), "echo");
                Check.equal(1L, c.stats(0.01f).numClients(), "telemetry travels inside TLS too");
            }
        }
        HydrogenException e = Check.failsWith("IO", () -> HydrogenClient.connect("localhost:" + port,
                new ClientOptions().caFile(certs.otherCa)), "a CA that did not sign the certificate");
        Check.contains(e.getMessage(), "TLS handshake", "message");
        HydrogenException n = Check.failsWith("IO", () -> HydrogenClient.connect("127.0.0.1:" + port,
                new ClientOptions().caFile(certs.ca).serverName("not-localhost")), "a name the certificate lacks");
        Check.contains(n.getMessage(), "not-localhost", "message");
    }

    /**
     * Connecting with o to a broker that requires a client certificate must
     * fail: at connect, or (TLS 1.3 checks the client's certificate after
     * the client's side of the handshake is done) at the first read.
     */
    private static void refusedByMutualTls(String addr, ClientOptions o, String what) throws Exception {
        final HydrogenClient c;
        try {
            c = HydrogenClient.connect(addr, o);
        } catch (HydrogenException e) {
            Check.equal("IO", e.code(), what + ": " + e.getMessage());
            return;
        }
        try {
            Check.fails(HydrogenException.class, () -> {
                c.send("let me in");
                c.receive(5, TimeUnit.SECONDS);
            }, what);
        } finally {
            c.close();
        }
    }

    public void testC21MutualTls() throws Exception {
        TestSupport.Certs certs = TestSupport.certificates();
        TestSupport.Broker b = broker("--app", "echo", "--tls-cert", certs.serverCert, "--tls-key", certs.serverKey,
                "--tls-client-ca", certs.ca);
        String addr = "localhost:" + port(b);
        try (HydrogenClient c = HydrogenClient.connect(addr,
                new ClientOptions().caFile(certs.ca).clientCertificate(certs.clientCert, certs.clientKey))) {
            c.send("with a client certificate");
            Check.equal("with a client certificate", text(c), "echo");
        }
        refusedByMutualTls(addr, new ClientOptions().caFile(certs.ca), "no client certificate");
        refusedByMutualTls(addr, new ClientOptions().caFile(certs.ca)
                .clientCertificate(certs.otherClientCert, certs.otherClientKey), "another CA's client certificate");
        try (HydrogenClient c = HydrogenClient.connect(addr,
                new ClientOptions().caFile(certs.ca).clientCertificate(certs.clientCert, certs.clientKey))) {
            Check.equal(2L, extra(c.stats(0.01f), "closed_handshake"), "the broker closed both in the handshake");
        }
        final ClientOptions badKey = new ClientOptions().caFile(certs.ca).clientCertificate(certs.clientCert, certs.ca);
        HydrogenException e = Check.failsWith("IO", () -> HydrogenClient.connect(addr, badKey), "a key file with no key");
        Check.contains(e.getMessage(), "no unencrypted PKCS#8 key", "message");
    }

    public void testC22TlsAndCredential() throws Exception {
        final TestSupport.Certs certs = TestSupport.certificates();
        TestSupport.Broker b = broker("--app", "echo", "--tls-cert", certs.serverCert, "--tls-key", certs.serverKey,
                "--auth-token-file", TestSupport.tokenFile());
        final String addr = "tls://localhost:" + port(b);
        try (HydrogenClient c = HydrogenClient.connect(addr,
                new ClientOptions().caFile(certs.ca).credential(TestSupport.ALICE))) {
            Check.equal("alice", c.identity(), "identity");
            Check.that(c.isTls(), "over TLS");
            c.send("secret over tls");
            Check.equal("secret over tls", text(c), "echo");
        }
        AuthRefusedException e = Check.fails(AuthRefusedException.class, () -> HydrogenClient.connect(addr,
                new ClientOptions().caFile(certs.ca).credential(TestSupport.UNKNOWN)), "an unknown token over TLS");
        Check.equal("auth: credential refused", e.reason(), "reason");
        Check.failsWith("IO", () -> HydrogenClient.connect(addr,
                new ClientOptions().caFile(certs.otherCa).credential(TestSupport.ALICE)),
                "no credential goes to an untrusted broker");
    }
}
