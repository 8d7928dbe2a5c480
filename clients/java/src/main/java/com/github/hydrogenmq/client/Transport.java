package com.github.hydrogenmq.client;

import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.KeyStore;
import java.security.NoSuchAlgorithmException;
import java.security.PrivateKey;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.security.spec.InvalidKeySpecException;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.Base64;
import java.util.Collections;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.net.ssl.KeyManager;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SNIHostName;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManager;
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
        KeyManager[] keys = o.certFile == null ? null : keyManagers(o.certFile, o.keyFile);
        TrustManager[] trust = null;
        if (o.caFile != null) {
            KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
            ks.load(null, null);
            int n = 0;
            for (Certificate c : certificates(o.caFile)) {
                ks.setCertificateEntry("ca-" + n++, c);
            }
            TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
            tmf.init(ks);
            trust = tmf.getTrustManagers();
        }
        ctx.init(keys, trust, null);
        return ctx;
    }

    /** The certificates (PEM or DER) in a file; at least one. */
    private static Certificate[] certificates(String file) throws IOException, GeneralSecurityException {
        InputStream in = new FileInputStream(file);
        try {
            Certificate[] cs = CertificateFactory.getInstance("X.509").generateCertificates(in).toArray(new Certificate[0]);
            if (cs.length == 0) {
                throw new GeneralSecurityException("no certificate in " + file);
            }
            return cs;
        } finally {
            in.close();
        }
    }

    private static final Pattern PKCS8_PEM = Pattern.compile(
            "-----BEGIN PRIVATE KEY-----([A-Za-z0-9+/=\\s]+)-----END PRIVATE KEY-----");

    /** Key managers presenting the chain in certFile with the PKCS#8 PEM key in keyFile. */
    private static KeyManager[] keyManagers(String certFile, String keyFile) throws IOException, GeneralSecurityException {
        Certificate[] chain = certificates(certFile);
        String pem = new String(Files.readAllBytes(new File(keyFile).toPath()), StandardCharsets.US_ASCII);
        Matcher m = PKCS8_PEM.matcher(pem);
        if (!m.find()) {
            throw new GeneralSecurityException("no unencrypted PKCS#8 key (BEGIN PRIVATE KEY) in " + keyFile
                    + "; convert one with: openssl pkcs8 -topk8 -nocrypt -in KEY -out " + keyFile);
        }
        byte[] der = Base64.getMimeDecoder().decode(m.group(1));
        PrivateKey key = null;
        for (String alg : new String[] {"EC", "RSA", "Ed25519", "EdDSA"}) {
            try {
                key = KeyFactory.getInstance(alg).generatePrivate(new PKCS8EncodedKeySpec(der));
                break;
            } catch (NoSuchAlgorithmException | InvalidKeySpecException e) {
                // another kind of key, or not on this Java
            }
        }
        if (key == null) {
            throw new GeneralSecurityException("the key in " + keyFile + " is not an EC, RSA or Ed25519 key this Java reads");
        }
        char[] pass = "hydrogen".toCharArray(); // the store lives in memory only
        KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
        ks.load(null, null);
        ks.setKeyEntry("client", key, pass, chain);
        KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        kmf.init(ks, pass);
        return kmf.getKeyManagers();
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
