package com.github.hydrogenmq.client;

/** A payload over 65,535 bytes was given to send; nothing was sent. */
public final class PayloadTooLargeException extends IllegalArgumentException {
    private static final long serialVersionUID = 1L;

    public PayloadTooLargeException(int length) {
        super("hydrogen: payload of " + length + " bytes is over the maximum of " + Frames.MAX_PAYLOAD
                + "; nothing was sent");
    }
}
