package com.github.hydrogenmq.client;

/**
 * The broker refused a telemetry request: a span that is NaN, infinite,
 * not positive or over its maximum, or too many requests waiting. The
 * connection stays open.
 */
public final class BrokerRefusedException extends HydrogenException {
    private static final long serialVersionUID = 1L;

    private final String reason;

    public BrokerRefusedException(String reason) {
        super("BROKER_REFUSED", "broker refused the telemetry request: " + reason);
        this.reason = reason;
    }

    /** The broker's text, as sent. */
    public String reason() {
        return reason;
    }
}
