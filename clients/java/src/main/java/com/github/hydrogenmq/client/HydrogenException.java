package com.github.hydrogenmq.client;

import java.io.IOException;

/**
 * An error of the hydrogen client. {@link #code()} is the word the other
 * hydrogen clients use for the same condition (docs/CONFORMANCE.md):
 * CLOSED, BROKER_CLOSED, UNEXPECTED_EOF, PROTOCOL, IO, TIMEOUT,
 * BROKER_REFUSED, BAD_REPLY, AUTH_REFUSED, BAD_AUTH_REPLY.
 * Bad arguments throw unchecked exceptions instead
 * ({@link IllegalArgumentException}, {@link PayloadTooLargeException}).
 */
public class HydrogenException extends IOException {
    private static final long serialVersionUID = 1L;

    private final String code;

    public HydrogenException(String code, String message) {
        this(code, message, null);
    }

    public HydrogenException(String code, String message, Throwable cause) {
        super(message.startsWith("hydrogen: ") ? message : "hydrogen: " + message, cause);
        this.code = code;
    }

    /** The condition, in the vocabulary shared by the hydrogen clients. */
    public String code() {
        return code;
    }

    /**
     * True when this ends a connection in order: closed by {@code close()},
     * or by the broker between frames. Iteration stops quietly on these.
     */
    public boolean isOrderlyEnd() {
        return "CLOSED".equals(code) || "BROKER_CLOSED".equals(code);
    }

    /** A copy to throw to another caller, with this one as its cause. */
    HydrogenException copy() {
        HydrogenException e = new HydrogenException(code, getMessage(), this);
        return e;
    }
}
