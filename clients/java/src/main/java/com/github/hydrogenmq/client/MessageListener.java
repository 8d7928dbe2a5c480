package com.github.hydrogenmq.client;

/**
 * Receives a client's messages as they arrive, set with
 * {@link ClientOptions#listener(MessageListener)}. Both methods run on the
 * client's reader thread, one call at a time, messages in the order they
 * arrived. While onMessage runs the client reads nothing more, so a slow
 * listener pushes back on the broker through TCP. A listener may call
 * send; it must not wait for the client (stats or close block on the
 * reader thread: start them from another thread). An exception thrown by
 * onMessage closes the connection, with that exception as the cause of
 * the close reason.
 */
public interface MessageListener {
    /** One message; the array is the listener's. */
    void onMessage(byte[] payload);

    /**
     * The connection has ended: called once, with why (code CLOSED after
     * close(), BROKER_CLOSED, UNEXPECTED_EOF, PROTOCOL or IO).
     */
    void onClose(HydrogenException reason);
}
