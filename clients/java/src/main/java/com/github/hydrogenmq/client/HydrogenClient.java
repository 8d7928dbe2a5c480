package com.github.hydrogenmq.client;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * One connection to a hydrogen broker (docs/PROTOCOL.md), over TCP or TLS.
 *
 * <p>{@link #connect(String, ClientOptions)} opens it and starts its one
 * reader thread; {@link #close()} stops both. Messages arrive either through
 * {@link #receive(long, TimeUnit)} (blocking, with a timeout) or, with
 * {@link ClientOptions#listener(MessageListener)}, through callbacks on the
 * reader thread. {@link #send(byte[])} sends one message of 0 to 65,535
 * bytes; {@link #stats(float)} asks for a telemetry reading. Every method is
 * safe to call from any thread; messages sent from one thread reach the
 * broker in the order sent.
 *
 * <p>Nothing grows without bound: the frame decoder holds at most one frame,
 * and when {@link ClientOptions#recvBuffer(int)} messages wait for receive()
 * the reader stops reading and TCP pushes back on the broker.
 *
 * <p>The telemetry reply travels as an ordinary frame. While a stats call
 * is outstanding, the client takes as its reply the first frame that is a
 * JSON object with an "up_time" member, or with exactly one member, "error",
 * holding a string; every other frame is a message as usual. One request is
 * outstanding per connection: concurrent stats calls take turns.
 */
public final class HydrogenClient implements AutoCloseable {
    private static final Pattern HOST_PORT = Pattern.compile("^(?:\\[([^\\]]+)\\]|([^:/\\[\\]]+)):([0-9]+)$");
    private static final int READ_SIZE = 64 * 1024;

    private final Transport transport;
    private final String address;
    private final boolean tls;
    private final MessageListener listener;
    private final int recvBuffer;
    private final FrameDecoder decoder;

    private final ReentrantLock lock = new ReentrantLock();
    private final Condition notEmpty = lock.newCondition();
    private final Condition notFull = lock.newCondition();
    private final ArrayDeque<byte[]> queue = new ArrayDeque<byte[]>();
    private volatile HydrogenException reason;
    private final CountDownLatch ended = new CountDownLatch(1);

    private final Object writeLock = new Object();
    private final Semaphore statsTurn = new Semaphore(1);
    private final AtomicReference<StatsCall> statsCall = new AtomicReference<StatsCall>();

    private final AtomicBoolean closeStarted = new AtomicBoolean();
    private volatile boolean closedLocally;
    private volatile boolean connected;
    private final AtomicBoolean closeReported = new AtomicBoolean();
    private Thread reader;

    // The credential's answer: written by the reader, read after authDone.
    private volatile boolean authPending;
    private final CountDownLatch authDone = new CountDownLatch(1);
    private volatile HydrogenException authError;
    private volatile String identity;

    private HydrogenClient(Transport t, String address, boolean tls, ClientOptions o) {
        this.transport = t;
        this.address = address;
        this.tls = tls;
        this.listener = o.listener;
        this.recvBuffer = o.recvBuffer;
        this.decoder = new FrameDecoder(o.maxPayload);
    }

    /** Connects with the default options. */
    public static HydrogenClient connect(String address) throws HydrogenException {
        return connect(address, new ClientOptions());
    }

    /**
     * Connects to the broker at address: "host:port", "[v6]:port",
     * "tcp://host:port" or "tls://host:port". Returns once connected, and
     * with a credential once the broker has accepted it.
     *
     * @throws HydrogenException code IO (refused, unreachable, TLS
     *         verification failed), TIMEOUT, AUTH_REFUSED
     *         ({@link AuthRefusedException}), BAD_AUTH_REPLY, or
     *         BROKER_CLOSED when the broker closed without answering the
     *         credential
     * @throws IllegalArgumentException for an address that is not host:port
     */
    public static HydrogenClient connect(String address, ClientOptions options) throws HydrogenException {
        if (address == null) {
            throw new NullPointerException("hydrogen: address is null");
        }
        ClientOptions o = options == null ? new ClientOptions() : options;
        String rest = address;
        boolean useTls = false;
        int scheme = address.indexOf("://");
        if (scheme >= 0) {
            String s = address.substring(0, scheme).toLowerCase();
            if (s.equals("tls")) {
                useTls = true;
            } else if (!s.equals("tcp")) {
                throw new IllegalArgumentException("hydrogen: address scheme \"" + s + "\" is not tcp or tls");
            }
            rest = address.substring(scheme + 3);
            if (rest.endsWith("/")) {
                rest = rest.substring(0, rest.length() - 1);
            }
        }
        Matcher m = HOST_PORT.matcher(rest);
        if (!m.matches()) {
            throw new IllegalArgumentException("hydrogen: address \"" + address + "\" is not host:port");
        }
        String host = m.group(1) != null ? m.group(1) : m.group(2);
        int port;
        try {
            port = Integer.parseInt(m.group(3));
        } catch (NumberFormatException e) {
            port = -1;
        }
        if (port < 1 || port > 65535) {
            throw new IllegalArgumentException("hydrogen: port in \"" + address + "\" is not in [1, 65535]");
        }
        if (useTls) {
            o.tls = true;
        }
        if (o.sslContext != null && (o.caFile != null || o.certFile != null)) {
            throw new IllegalArgumentException(
                    "hydrogen: give caFile and clientCertificate, or an sslContext, not both");
        }
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(o.timeoutMillis);
        Transport t = Transport.open(host, port, o);
        String where = (host.indexOf(':') >= 0 ? "[" + host + "]" : host) + ":" + port;
        HydrogenClient c = new HydrogenClient(t, where, o.tls, o);
        c.start(o.credential, deadline);
        return c;
    }

    private void start(byte[] credential, long deadline) throws HydrogenException {
        authPending = credential != null;
        connected = credential == null;
        reader = new Thread(new Runnable() {
            @Override
            public void run() {
                readLoop();
            }
        }, "hydrogen-reader " + address);
        reader.setDaemon(true);
        reader.start();
        if (credential == null) {
            return;
        }
        try {
            write(Frames.encode(credential));
            long left = deadline - System.nanoTime();
            if (left <= 0 || !authDone.await(left, TimeUnit.NANOSECONDS)) {
                throw new HydrogenException("TIMEOUT", "no answer to the credential within the connect timeout");
            }
            if (authError != null) {
                throw authError;
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            close();
            throw new HydrogenException("IO", "interrupted while waiting for the answer to the credential", e);
        } catch (HydrogenException e) {
            close();
            throw e;
        } catch (IOException e) {
            close();
            throw new HydrogenException("IO", "sending the credential: " + e.getMessage(), e);
        }
    }

    /** "host:port" of the broker. */
    public String address() {
        return address;
    }

    /** Whether the connection is over TLS. */
    public boolean isTls() {
        return tls;
    }

    /** The identity the broker accepted the credential as; null without a credential. */
    public String identity() {
        return identity;
    }

    /** True once the connection has ended, for whatever reason. */
    public boolean isClosed() {
        return reason != null;
    }

    /** Why the connection ended, or null while it is up. */
    public HydrogenException closeReason() {
        return reason;
    }

    /**
     * Waits up to the timeout for the connection to end; returns why, or
     * null if it is still up.
     */
    public HydrogenException awaitClose(long timeout, TimeUnit unit) throws InterruptedIOException {
        try {
            ended.await(timeout, unit);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new InterruptedIOException("hydrogen: interrupted while waiting for the connection to end");
        }
        return reason;
    }

    /** Sends a string as its UTF-8 bytes; see {@link #send(byte[])}. */
    public void send(String payload) throws IOException {
        if (payload == null) {
            throw new NullPointerException("hydrogen: payload is null");
        }
        send(payload.getBytes(StandardCharsets.UTF_8));
    }

    /**
     * Sends one message. It returns once the frame is written to the socket;
     * it blocks while the socket is full, that is while the broker is not
     * reading.
     *
     * @throws PayloadTooLargeException over 65,535 bytes, nothing sent
     * @throws IllegalArgumentException for a payload shaped like a telemetry
     *         request (5 bytes starting with 0x0D), nothing sent
     * @throws HydrogenException once the connection has ended: its reason
     */
    public void send(byte[] payload) throws IOException {
        Frames.checkPayload(payload);
        write(Frames.encode(payload));
    }

    private void write(byte[] frame) throws IOException {
        if (reason != null) {
            throw terminal();
        }
        synchronized (writeLock) {
            try {
                transport.write(frame);
            } catch (IOException e) {
                if (!closedLocally) {
                    end(new HydrogenException("IO", "write: " + e.getMessage(), e));
                }
                throw terminal();
            }
        }
    }

    /** The next message, waiting as long as it takes; see {@link #receive(long, TimeUnit)}. */
    public byte[] receive() throws IOException {
        return receive(Long.MAX_VALUE, TimeUnit.NANOSECONDS);
    }

    /**
     * The next message, waiting up to the timeout for one. Once the
     * connection has ended it returns the messages received before the end,
     * then throws the reason (after close(), none are kept).
     *
     * @throws HydrogenException code TIMEOUT when none came (nothing is
     *         lost), or the reason the connection ended
     * @throws InterruptedIOException when the thread is interrupted
     * @throws IllegalStateException on a client with a listener
     */
    public byte[] receive(long timeout, TimeUnit unit) throws IOException {
        if (listener != null) {
            throw new IllegalStateException("hydrogen: messages go to the listener set in ClientOptions");
        }
        if (timeout < 0) {
            throw new IllegalArgumentException("hydrogen: receive timeout " + timeout + " is negative");
        }
        long nanos = unit.toNanos(timeout);
        try {
            lock.lockInterruptibly();
            try {
                while (queue.isEmpty()) {
                    if (reason != null) {
                        throw terminal();
                    }
                    if (nanos <= 0) {
                        throw new HydrogenException("TIMEOUT", "receive: no message within "
                                + unit.toMillis(timeout) + " ms");
                    }
                    nanos = notEmpty.awaitNanos(nanos);
                }
                byte[] p = queue.poll();
                notFull.signal();
                return p;
            } finally {
                lock.unlock();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new InterruptedIOException("hydrogen: interrupted while receiving");
        }
    }

    /** A telemetry reading, waiting as long as it takes; see {@link #stats(float, long, TimeUnit)}. */
    public Stats stats(float seconds) throws IOException {
        return stats(seconds, Long.MAX_VALUE, TimeUnit.NANOSECONDS);
    }

    /**
     * Asks the broker for a telemetry reading over the next seconds and
     * waits for it, which takes that long. The span is sent as given; the
     * broker refuses one that is not finite or not in (0, max].
     *
     * <p>One request is outstanding per connection: concurrent calls wait
     * their turn. When the timeout (counted from the call) passes first it
     * throws TIMEOUT; the request then stays outstanding until its reply
     * comes, which is dropped.
     *
     * @throws BrokerRefusedException the broker's refusal, with its reason;
     *         the connection stays open
     * @throws HydrogenException code BAD_REPLY for a reply missing a
     *         required field or with one of the wrong JSON type; TIMEOUT; or
     *         the reason the connection ended
     */
    public Stats stats(float seconds, long timeout, TimeUnit unit) throws IOException {
        if (timeout < 0) {
            throw new IllegalArgumentException("hydrogen: stats timeout " + timeout + " is negative");
        }
        if (reason != null) {
            throw terminal();
        }
        long nanos = unit.toNanos(timeout);
        long start = System.nanoTime();
        StatsCall call = new StatsCall();
        try {
            if (!statsTurn.tryAcquire(nanos, TimeUnit.NANOSECONDS)) {
                throw new HydrogenException("TIMEOUT", "stats: no reply within " + unit.toMillis(timeout) + " ms");
            }
            statsCall.set(call); // before the request goes out, so the reply cannot beat it
            if (reason != null) {
                if (statsCall.compareAndSet(call, null)) {
                    statsTurn.release();
                }
                throw terminal();
            }
            try {
                write(Frames.encode(Frames.telemetryRequest(seconds)));
            } catch (IOException e) {
                if (statsCall.compareAndSet(call, null)) {
                    statsTurn.release();
                }
                throw e;
            }
            long left = nanos - (System.nanoTime() - start);
            if (!call.done.await(Math.max(0, left), TimeUnit.NANOSECONDS)) {
                throw new HydrogenException("TIMEOUT", "stats: no reply within " + unit.toMillis(timeout) + " ms");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new InterruptedIOException("hydrogen: interrupted while waiting for a telemetry reply");
        }
        if (call.error != null) {
            throw call.error.copy();
        }
        return Replies.toStats(call.reply, call.raw);
    }

    /**
     * Closes the connection and stops the reader thread (waiting for a
     * listener call in progress, unless called from the listener). Calls
     * waiting on the client throw code CLOSED, and so does every later call;
     * messages not yet received are dropped. Calling it again does nothing.
     */
    @Override
    public void close() {
        if (!closeStarted.compareAndSet(false, true)) {
            return;
        }
        closedLocally = true;
        end(new HydrogenException("CLOSED", "client closed"));
        lock.lock();
        try {
            queue.clear();
            notFull.signalAll();
        } finally {
            lock.unlock();
        }
        if (reader != null && Thread.currentThread() != reader) {
            boolean interrupted = false;
            for (;;) {
                try {
                    reader.join();
                    break;
                } catch (InterruptedException e) {
                    interrupted = true;
                }
            }
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
    }

    private HydrogenException terminal() {
        HydrogenException r = reason;
        return r == null ? new HydrogenException("CLOSED", "client closed") : r.copy();
    }

    private void readLoop() {
        byte[] buf = new byte[READ_SIZE];
        FrameDecoder.Sink sink = new FrameDecoder.Sink() {
            @Override
            public void frame(byte[] p) {
                deliver(p);
            }
        };
        try {
            while (reason == null) {
                int n = transport.read(buf);
                if (n < 0) {
                    int held = decoder.buffered();
                    end(held > 0
                            ? new HydrogenException("UNEXPECTED_EOF", "broker closed the connection inside a frame ("
                                    + held + " bytes of it read)")
                            : new HydrogenException("BROKER_CLOSED", "broker closed the connection"));
                    return;
                }
                decoder.feed(buf, 0, n, sink);
            }
        } catch (HydrogenException e) { // a protocol error
            end(e);
        } catch (IOException e) {
            if (!closedLocally) {
                end(new HydrogenException("IO", "read: " + e.getMessage(), e));
            }
        }
    }

    private void deliver(byte[] p) {
        if (reason != null) {
            return;
        }
        if (authPending) {
            answerAuth(p);
            return;
        }
        StatsCall call = statsCall.get();
        if (call != null) {
            Map<String, Object> o = Replies.recognise(p);
            if (o != null && statsCall.compareAndSet(call, null)) {
                call.reply = o;
                call.raw = new String(p, StandardCharsets.UTF_8);
                call.done.countDown();
                statsTurn.release();
                return;
            }
        }
        if (listener != null) {
            try {
                listener.onMessage(p);
            } catch (RuntimeException e) {
                closedLocally = true;
                end(new HydrogenException("CLOSED", "the listener threw " + e + "; connection closed", e));
            }
            return;
        }
        lock.lock();
        try {
            while (queue.size() >= recvBuffer && reason == null) {
                notFull.awaitUninterruptibly();
            }
            if (reason != null) {
                return;
            }
            queue.add(p);
            notEmpty.signal();
        } finally {
            lock.unlock();
        }
    }

    private void answerAuth(byte[] p) {
        Map<String, Object> o = Replies.parseObject(p);
        if (o != null && "ok".equals(o.get("auth")) && o.get("identity") instanceof String) {
            identity = (String) o.get("identity");
            connected = true;
        } else if (o != null && o.get("error") instanceof String) {
            authError = new AuthRefusedException((String) o.get("error"));
        } else {
            String text = new String(p, 0, Math.min(p.length, 200), StandardCharsets.UTF_8);
            authError = new HydrogenException("BAD_AUTH_REPLY", "broker's answer to the credential is not "
                    + "{\"auth\":\"ok\",\"identity\":...} nor {\"error\":...}: \"" + text + "\"");
        }
        authPending = false;
        authDone.countDown();
    }

    private void end(HydrogenException r) {
        lock.lock();
        try {
            if (reason != null) {
                return;
            }
            reason = r;
            notEmpty.signalAll();
            notFull.signalAll();
        } finally {
            lock.unlock();
        }
        StatsCall call = statsCall.getAndSet(null);
        if (call != null) {
            call.error = r;
            call.done.countDown();
            statsTurn.release();
        }
        if (authPending) {
            authError = "BROKER_CLOSED".equals(r.code()) || "UNEXPECTED_EOF".equals(r.code())
                    ? new HydrogenException("BROKER_CLOSED", "broker closed the connection before answering the credential", r)
                    : r;
            authDone.countDown();
        }
        transport.close();
        ended.countDown();
        if (listener != null && connected && closeReported.compareAndSet(false, true)) {
            listener.onClose(r);
        }
    }

    /** One outstanding telemetry request; the reader fills it in. */
    private static final class StatsCall {
        final CountDownLatch done = new CountDownLatch(1);
        volatile Map<String, Object> reply;
        volatile String raw;
        volatile HydrogenException error;
    }
}
