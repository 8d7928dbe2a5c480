package com.github.hydrogenmq.client;

import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.util.Collections;
import javax.net.ssl.SNIHostName;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;

/**
 * A connection's bytes: plain TCP over a java.nio SocketChannel, or TLS over
 * an SSLSocket. Each is read by the client's one reader thread and written
 * under the client's write lock.
 */
abstract class Transport {
    abstract int read(byte[] buf) throws IOException;

    abstract void write(byte[] b) throws IOException;

    abstract void close();

    static Transport open(String host, int port, ClientOptions o) throws HydrogenException {
        String where = (host.indexOf(':') >= 0 ? "[" + host + "]" : host) + ":" + port;
        int timeout = (int) Math.min(Integer.MAX_VALUE, o.timeoutMillis);
        if (!o.tls) {
            SocketChannel ch = null;
            try {
                ch = SocketChannel.open();
                ch.socket().connect(new InetSocketAddress(host, port), timeout);
                ch.socket().setTcpNoDelay(true);
                return new Plain(ch);
            } catch (SocketTimeoutException e) {
                closeQuietly(ch);
                throw new HydrogenException("TIMEOUT", "connect to " + where + ": not connected within " + timeout + " ms", e);
            } catch (IOException e) {
                closeQuietly(ch);
                throw new HydrogenException("IO", "connect to " + where + ": " + e, e);
            }
        }
        SSLContext ctx;
        try {
            ctx = context(o);
        } catch (IOException | GeneralSecurityException e) {
            throw new HydrogenException("IO", "TLS setup: " + e.getMessage(), e);
        }
        Socket raw = new Socket();
        try {
            raw.connect(new InetSocketAddress(host, port), timeout);
            raw.setTcpNoDelay(true);
        } catch (SocketTimeoutException e) {
            closeQuietly(raw);
            throw new HydrogenException("TIMEOUT", "connect to " + where + ": not connected within " + timeout + " ms", e);
        } catch (IOException e) {
            closeQuietly(raw);
            throw new HydrogenException("IO", "connect to " + where + ": " + e, e);
        }
        String name = o.serverName != null ? o.serverName : host;
        SSLSocket s = null;
        try {
            s = (SSLSocket) ctx.getSocketFactory().createSocket(raw, name, port, true);
            SSLParameters params = s.getSSLParameters();
            params.setEndpointIdentificationAlgorithm("HTTPS"); // verify the certificate's names
            if (!isIpLiteral(name)) {
                params.setServerNames(Collections.singletonList(new SNIHostName(name)));
            }
            s.setSSLParameters(params);
            s.setSoTimeout(timeout);
            s.startHandshake();
            s.setSoTimeout(0);
            return new Tls(s, raw);
        } catch (SocketTimeoutException e) {
            closeQuietly(s != null ? s : raw);
            throw new HydrogenException("TIMEOUT", "TLS handshake with " + where + ": not done within " + timeout + " ms", e);
        } catch (IOException e) {
            closeQuietly(s != null ? s : raw);
            throw new HydrogenException("IO", "TLS handshake with " + where + " (as " + name + "): " + e.getMessage(), e);
        }
    }

    private static boolean isIpLiteral(String name) {
        return name.indexOf(':') >= 0 || name.matches("[0-9.]+");
    }

    private static SSLContext context(ClientOptions o) throws IOException, GeneralSecurityException {
        if (o.sslContext != null) {
            return o.sslContext;
        }
        SSLContext ctx = SSLContext.getInstance("TLS");
        if (o.caFile == null) {
            ctx.init(null, null, null);
            return ctx;
        }
        KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
        ks.load(null, null);
        InputStream in = new FileInputStream(o.caFile);
        try {
            int n = 0;
            for (Certificate c : CertificateFactory.getInstance("X.509").generateCertificates(in)) {
                ks.setCertificateEntry("ca-" + n++, c);
            }
            if (n == 0) {
                throw new GeneralSecurityException("no certificate in " + o.caFile);
            }
        } finally {
            in.close();
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(ks);
        ctx.init(null, tmf.getTrustManagers(), null);
        return ctx;
    }

    static void closeQuietly(java.io.Closeable c) {
        if (c == null) {
            return;
        }
        try {
            c.close();
        } catch (IOException ignored) {
            // closing is best effort
        }
    }

    /** Plain TCP over a blocking java.nio SocketChannel. */
    static final class Plain extends Transport {
        private final SocketChannel ch;

        Plain(SocketChannel ch) {
            this.ch = ch;
        }

        @Override
        int read(byte[] buf) throws IOException {
            return ch.read(ByteBuffer.wrap(buf));
        }

        @Override
        void write(byte[] b) throws IOException {
            ByteBuffer bb = ByteBuffer.wrap(b);
            while (bb.hasRemaining()) {
                ch.write(bb);
            }
        }

        @Override
        void close() {
            closeQuietly(ch);
        }
    }

    /** TLS over an SSLSocket (JSSE reads and writes from two threads safely). */
    static final class Tls extends Transport {
        private final SSLSocket s;
        private final Socket raw;
        private final InputStream in;
        private final OutputStream out;

        Tls(SSLSocket s, Socket raw) throws IOException {
            this.s = s;
            this.raw = raw;
            this.in = s.getInputStream();
            this.out = s.getOutputStream();
        }

        @Override
        int read(byte[] buf) throws IOException {
            return in.read(buf);
        }

        @Override
        void write(byte[] b) throws IOException {
            out.write(b);
            out.flush();
        }

        @Override
        void close() {
            // The TCP socket first: it cannot wait for a writer blocked on a
            // full socket, as an SSLSocket's close sending close_notify can.
            closeQuietly(raw);
            closeQuietly(s);
        }
    }
}
