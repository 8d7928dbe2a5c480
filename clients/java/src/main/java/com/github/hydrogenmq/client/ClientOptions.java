package com.github.hydrogenmq.client;

import java.nio.charset.StandardCharsets;
import javax.net.ssl.SSLContext;

/**
 * What {@link HydrogenClient#connect(String, ClientOptions)} is told beyond
 * the address. A mutable builder: each setter returns this.
 */
public final class ClientOptions {
    /** The default bound on connecting and on the answer to a credential. */
    public static final long DEFAULT_TIMEOUT_MILLIS = 10000;
    /** The default number of messages held for receive() before reading pauses. */
    public static final int DEFAULT_RECV_BUFFER = 1024;

    long timeoutMillis = DEFAULT_TIMEOUT_MILLIS;
    byte[] credential;
    boolean tls;
    SSLContext sslContext;
    String caFile;
    String certFile;
    String keyFile;
    String serverName;
    int maxPayload = Frames.MAX_PAYLOAD;
    int recvBuffer = DEFAULT_RECV_BUFFER;
    MessageListener listener;

    /** Bounds connecting, the TLS handshake and the answer to the credential; positive. */
    public ClientOptions timeoutMillis(long millis) {
        if (millis <= 0) {
            throw new IllegalArgumentException("hydrogen: timeout " + millis + " ms is not positive");
        }
        this.timeoutMillis = millis;
        return this;
    }

    /**
     * A credential (an opaque token, e.g. a JWT) sent as the stream's first
     * frame; connect returns once the broker has accepted it and fails
     * with {@link AuthRefusedException} when it refuses.
     */
    public ClientOptions credential(String token) {
        if (token == null) {
            throw new NullPointerException("hydrogen: credential is null");
        }
        return credential(token.getBytes(StandardCharsets.UTF_8));
    }

    /** A credential given as bytes. */
    public ClientOptions credential(byte[] token) {
        if (token == null) {
            throw new NullPointerException("hydrogen: credential is null");
        }
        if (token.length == 0) {
            throw new IllegalArgumentException("hydrogen: credential is empty");
        }
        if (token.length > Frames.MAX_PAYLOAD) {
            throw new IllegalArgumentException("hydrogen: credential of " + token.length
                    + " bytes is over the maximum payload of " + Frames.MAX_PAYLOAD);
        }
        if (Frames.isTelemetryRequest(token)) {
            throw new IllegalArgumentException(
                    "hydrogen: credential has the shape of a telemetry request (5 bytes starting with 0x0D)");
        }
        this.credential = token.clone();
        return this;
    }

    /** TLS with the system's trusted certificates (or caFile's), verifying the server name. */
    public ClientOptions tls(boolean on) {
        this.tls = on;
        return this;
    }

    /**
     * TLS with this context (its trust and key managers decide, so caFile
     * and clientCertificate do not go with it); the server name is still
     * verified.
     */
    public ClientOptions sslContext(SSLContext context) {
        if (context == null) {
            throw new NullPointerException("hydrogen: sslContext is null");
        }
        this.sslContext = context;
        this.tls = true;
        return this;
    }

    /** TLS trusting only the CA certificates (PEM or DER) in this file. */
    public ClientOptions caFile(String path) {
        if (path == null || path.isEmpty()) {
            throw new IllegalArgumentException("hydrogen: caFile is empty");
        }
        this.caFile = path;
        this.tls = true;
        return this;
    }

    /**
     * TLS presenting this client certificate, for a broker that requires
     * one (mutual TLS, {@code broker serve --tls-client-ca}): certFile holds
     * the certificate chain (PEM), keyFile its private key as unencrypted
     * PKCS#8 PEM ("BEGIN PRIVATE KEY", as openssl writes it; RSA, EC or,
     * on Java 15 and later, Ed25519). For anything else, build an
     * SSLContext with your own KeyManager and pass it to sslContext.
     */
    public ClientOptions clientCertificate(String certFile, String keyFile) {
        if (certFile == null || certFile.isEmpty()) {
            throw new IllegalArgumentException("hydrogen: client certificate file is empty");
        }
        if (keyFile == null || keyFile.isEmpty()) {
            throw new IllegalArgumentException("hydrogen: client key file is empty");
        }
        this.certFile = certFile;
        this.keyFile = keyFile;
        this.tls = true;
        return this;
    }

    /** The name the server's certificate must carry (and SNI); default the host. */
    public ClientOptions serverName(String name) {
        if (name == null || name.isEmpty()) {
            throw new IllegalArgumentException("hydrogen: serverName is empty");
        }
        this.serverName = name;
        this.tls = true;
        return this;
    }

    /** The longest payload accepted from the broker, 0..65535; a longer frame is a protocol error. */
    public ClientOptions maxPayload(int bytes) {
        if (bytes < 0 || bytes > Frames.MAX_PAYLOAD) {
            throw new IllegalArgumentException("hydrogen: max payload " + bytes + " is not in [0, "
                    + Frames.MAX_PAYLOAD + "]");
        }
        this.maxPayload = bytes;
        return this;
    }

    /** Messages held for receive() before the reader stops reading the socket; at least 1. */
    public ClientOptions recvBuffer(int frames) {
        if (frames < 1) {
            throw new IllegalArgumentException("hydrogen: recv buffer " + frames + " is less than 1");
        }
        this.recvBuffer = frames;
        return this;
    }

    /** Messages go to this listener, on the reader thread, instead of to receive(). */
    public ClientOptions listener(MessageListener l) {
        if (l == null) {
            throw new NullPointerException("hydrogen: listener is null");
        }
        this.listener = l;
        return this;
    }
}
