package com.github.hydrogenmq.client;

import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.security.KeyStore;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLServerSocket;

/** What the tests share: the broker binary, servers they own on 127.0.0.1, certificates. */
final class TestSupport {
    private TestSupport() {
    }

    private static String built;

    /** The repository root: the nearest directory above the working directory with a go.mod. */
    static File repoRoot() {
        File d = new File(System.getProperty("user.dir")).getAbsoluteFile();
        while (d != null && !new File(d, "go.mod").exists()) {
            d = d.getParentFile();
        }
        if (d == null) {
            throw new IllegalStateException("no go.mod above " + System.getProperty("user.dir"));
        }
        return d;
    }

    /** $HYDROGEN_BROKER, or the broker built once into a temporary directory. */
    static synchronized String brokerBinary() throws IOException, InterruptedException {
        String env = System.getenv("HYDROGEN_BROKER");
        if (env != null && !env.isEmpty()) {
            return env;
        }
        if (built == null) {
            File dir = tempDir("hydrogen-java-");
            File bin = new File(dir, "broker");
            Process p = new ProcessBuilder("go", "build", "-o", bin.getPath(), "./cmd/broker")
                    .directory(repoRoot()).inheritIO().start();
            if (p.waitFor() != 0) {
                throw new IOException("go build ./cmd/broker failed");
            }
            built = bin.getPath();
        }
        return built;
    }

    static File tempDir(String prefix) throws IOException {
        final File dir = java.nio.file.Files.createTempDirectory(prefix).toFile();
        Runtime.getRuntime().addShutdownHook(new Thread() {
            @Override
            public void run() {
                delete(dir);
            }
        });
        return dir;
    }

    static void delete(File f) {
        File[] kids = f.listFiles();
        if (kids != null) {
            for (File k : kids) {
                delete(k);
            }
        }
        f.delete();
    }

    /**
     * `broker serve --addr 127.0.0.1:0 --log-format json ARGS`, until stop().
     * Its log goes to a file, not a pipe: Process.destroy() closes the
     * pipes it made, and a broker logging its shutdown into a closed pipe
     * would die of SIGPIPE.
     */
    static final class Broker implements AutoCloseable {
        final Process proc;
        final String addr;
        private final File logFile;

        Broker(String... args) throws Exception {
            List<String> cmd = new ArrayList<String>();
            cmd.add(brokerBinary());
            cmd.add("serve");
            cmd.add("--addr");
            cmd.add("127.0.0.1:0");
            cmd.add("--log-format");
            cmd.add("json");
            for (String a : args) {
                cmd.add(a);
            }
            logFile = new File(tempDir("hydrogen-broker-log-"), "broker.log");
            proc = new ProcessBuilder(cmd).redirectOutput(ProcessBuilder.Redirect.INHERIT)
                    .redirectError(logFile).start();
            proc.getOutputStream().close();
            String found = null;
            long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (found == null && System.nanoTime() < until && proc.isAlive()) {
                for (String line : log().split("\n")) {
                    try {
                        Object v = Json.parse(line);
                        if (v instanceof Map && "listening".equals(((Map<?, ?>) v).get("msg"))) {
                            found = (String) ((Map<?, ?>) v).get("addr");
                            break;
                        }
                    } catch (Json.ParseException e) {
                        // not a whole log record (yet)
                    }
                }
                if (found == null) {
                    Thread.sleep(10);
                }
            }
            if (found == null) {
                proc.destroyForcibly();
                throw new IllegalStateException("broker did not log its address:\n" + log());
            }
            addr = found;
        }

        /** What the broker has logged so far. */
        String log() throws IOException {
            return new String(java.nio.file.Files.readAllBytes(logFile.toPath()), StandardCharsets.UTF_8);
        }

        /** SIGTERM, and the exit status once it has gone. */
        int stop() throws InterruptedException {
            if (proc.isAlive()) {
                proc.destroy(); // SIGTERM
                if (!proc.waitFor(15, TimeUnit.SECONDS)) {
                    proc.destroyForcibly();
                    proc.waitFor();
                }
            }
            return proc.exitValue();
        }

        @Override
        public void close() throws InterruptedException {
            stop();
        }
    }

    /** What a test server does with each accepted connection. */
    interface Handler {
        void handle(Socket s) throws Exception;
    }

    /** A TCP (or TLS) server the test owns on 127.0.0.1, a thread per connection. */
    static final class TestServer implements AutoCloseable {
        final ServerSocket ss;
        final String addr;
        final int port;
        private final List<Socket> socks = new ArrayList<Socket>();
        private final List<Thread> threads = new ArrayList<Thread>();
        private final Thread accepter;

        TestServer(Handler h) throws IOException {
            this(new ServerSocket(0, 50, InetAddress.getByName("127.0.0.1")), h);
        }

        TestServer(ServerSocket ss, final Handler h) {
            this.ss = ss;
            this.port = ss.getLocalPort();
            this.addr = "127.0.0.1:" + port;
            accepter = new Thread(new Runnable() {
                @Override
                public void run() {
                    for (;;) {
                        final Socket s;
                        try {
                            s = TestServer.this.ss.accept();
                        } catch (IOException e) {
                            return;
                        }
                        Thread t = new Thread(new Runnable() {
                            @Override
                            public void run() {
                                try {
                                    h.handle(s);
                                } catch (Exception e) {
                                    // the test sees what the client saw
                                } finally {
                                    Transport.closeQuietly(s);
                                }
                            }
                        }, "test-server-conn");
                        t.setDaemon(true);
                        synchronized (socks) {
                            socks.add(s);
                            threads.add(t);
                        }
                        t.start();
                    }
                }
            }, "test-server");
            accepter.setDaemon(true);
            accepter.start();
        }

        @Override
        public void close() throws InterruptedException {
            Transport.closeQuietly(ss);
            accepter.join(5000);
            List<Thread> ts;
            synchronized (socks) {
                for (Socket s : socks) {
                    Transport.closeQuietly(s);
                }
                ts = new ArrayList<Thread>(threads);
            }
            for (Thread t : ts) {
                t.join(5000);
            }
        }
    }

    /** Reads frames from a server-side socket until it closes. */
    static final class FrameReader {
        private final InputStream in;
        private final FrameDecoder dec = new FrameDecoder(Frames.MAX_PAYLOAD);
        private final java.util.ArrayDeque<byte[]> ready = new java.util.ArrayDeque<byte[]>();

        FrameReader(Socket s) throws IOException {
            in = s.getInputStream();
        }

        /** The next frame, or null at the end of the stream. */
        byte[] next() throws IOException {
            byte[] buf = new byte[65536];
            while (ready.isEmpty()) {
                int n = in.read(buf);
                if (n < 0) {
                    return null;
                }
                dec.feed(buf, 0, n, new FrameDecoder.Sink() {
                    @Override
                    public void frame(byte[] p) {
                        ready.add(p);
                    }
                });
            }
            return ready.poll();
        }
    }

    static byte[] frame(String s) {
        return Frames.encode(s.getBytes(StandardCharsets.UTF_8));
    }

    static void write(Socket s, byte[] b) throws IOException {
        OutputStream out = s.getOutputStream();
        out.write(b);
        out.flush();
    }

    static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static String text(byte[] b) {
        return new String(b, StandardCharsets.UTF_8);
    }

    interface Condition {
        boolean holds() throws Exception;
    }

    static void waitFor(String what, Condition c, long limitMillis) throws Exception {
        long until = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(limitMillis);
        while (!c.holds()) {
            if (System.nanoTime() > until) {
                throw new AssertionError("timed out waiting for " + what);
            }
            Thread.sleep(10);
        }
    }

    /**
     * Throwaway PEM files: a CA, a server certificate for localhost and
     * 127.0.0.1 and a client certificate (CN=carol) signed by it; another CA,
     * and a client certificate (CN=mallory) signed by that one.
     */
    static final class Certs {
        final File dir;
        final String ca;
        final String otherCa;
        final String serverP12;
        final String serverCert;
        final String serverKey;
        final String clientCert;
        final String clientKey;
        final String otherClientCert;
        final String otherClientKey;

        private Certs(File dir) {
            this.dir = dir;
            this.ca = new File(dir, "ca.pem").getPath();
            this.otherCa = new File(dir, "other.pem").getPath();
            this.serverP12 = new File(dir, "server.p12").getPath();
            this.serverCert = new File(dir, "server.pem").getPath();
            this.serverKey = new File(dir, "server.key").getPath();
            this.clientCert = new File(dir, "client.pem").getPath();
            this.clientKey = new File(dir, "client.key").getPath();
            this.otherClientCert = new File(dir, "mallory.pem").getPath();
            this.otherClientKey = new File(dir, "mallory.key").getPath();
        }
    }

    /** The tokens of tokenFile(): alice may publish, bob may not; nobody is unknown to the broker. */
    static final String ALICE = "alice-token-7f3c9a1e5b2d4c6f";
    static final String BOB = "bob-token-0e1d2c3b4a596877";
    static final String UNKNOWN = "nobody-token-0123456789abcdef";

    /** A token file for broker serve --auth-token-file, in a temporary directory. */
    static String tokenFile() throws IOException {
        File f = new File(tempDir("hydrogen-tokens-"), "tokens");
        java.nio.file.Files.write(f.toPath(), utf8(ALICE + " alice\n" + BOB + " bob publish=false\n"));
        return f.getPath();
    }

    private static Certs certs;

    static synchronized Certs certificates() throws Exception {
        if (certs != null) {
            return certs;
        }
        File d = tempDir("hydrogen-tls-");
        String[] ec = {"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"};
        openssl(d, concat(new String[] {"req", "-x509"}, ec, new String[] {"-keyout", "ca.key", "-out", "ca.pem",
            "-days", "1", "-subj", "/CN=hydrogen test CA"}));
        openssl(d, concat(new String[] {"req"}, ec, new String[] {"-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=localhost"}));
        java.nio.file.Files.write(new File(d, "ext.cnf").toPath(),
                utf8("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"));
        openssl(d, new String[] {"x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "ext.cnf"});
        openssl(d, new String[] {"pkcs12", "-export", "-in", "server.pem", "-inkey", "server.key", "-out",
            "server.p12", "-passout", "pass:test", "-name", "server"});
        openssl(d, concat(new String[] {"req", "-x509"}, ec, new String[] {"-keyout", "other.key", "-out",
            "other.pem", "-days", "1", "-subj", "/CN=another CA"}));
        issueClient(d, ec, "client", "/CN=carol", "ca");
        issueClient(d, ec, "mallory", "/CN=mallory", "other");
        certs = new Certs(d);
        return certs;
    }

    private static void issueClient(File d, String[] ec, String name, String subject, String ca) throws Exception {
        openssl(d, concat(new String[] {"req"}, ec, new String[] {"-keyout", name + ".key", "-out", name + ".csr",
            "-subj", subject}));
        java.nio.file.Files.write(new File(d, name + ".cnf").toPath(),
                utf8("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"));
        openssl(d, new String[] {"x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
            "-CAcreateserial", "-out", name + ".pem", "-days", "1", "-extfile", name + ".cnf"});
    }

    private static String[] concat(String[]... parts) {
        List<String> l = new ArrayList<String>();
        for (String[] p : parts) {
            l.addAll(java.util.Arrays.asList(p));
        }
        return l.toArray(new String[0]);
    }

    private static void openssl(File dir, String[] args) throws Exception {
        List<String> cmd = new ArrayList<String>();
        cmd.add("openssl");
        cmd.addAll(java.util.Arrays.asList(args));
        Process p = new ProcessBuilder(cmd).directory(dir).redirectErrorStream(true).start();
        java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
        InputStream in = p.getInputStream();
        byte[] buf = new byte[4096];
        for (int n; (n = in.read(buf)) > 0;) {
            out.write(buf, 0, n);
        }
        if (p.waitFor() != 0) {
            throw new IOException("openssl " + cmd + " failed:\n" + out);
        }
    }

    /** A TLS server socket on 127.0.0.1 presenting the test server certificate. */
    static ServerSocket tlsServerSocket() throws Exception {
        Certs c = certificates();
        KeyStore ks = KeyStore.getInstance("PKCS12");
        InputStream in = new FileInputStream(c.serverP12);
        try {
            ks.load(in, "test".toCharArray());
        } finally {
            in.close();
        }
        KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        kmf.init(ks, "test".toCharArray());
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(kmf.getKeyManagers(), null, null);
        SSLServerSocket ss = (SSLServerSocket) ctx.getServerSocketFactory().createServerSocket();
        ss.bind(new InetSocketAddress(InetAddress.getByName("127.0.0.1"), 0));
        return ss;
    }
}
