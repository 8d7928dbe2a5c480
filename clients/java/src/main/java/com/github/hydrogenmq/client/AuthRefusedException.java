package com.github.hydrogenmq.client;

/** The broker refused the credential; connect fails with this. */
public final class AuthRefusedException extends HydrogenException {
    private static final long serialVersionUID = 1L;

    private final String reason;

    public AuthRefusedException(String reason) {
        super("AUTH_REFUSED", "broker refused the credential: " + reason);
        this.reason = reason;
    }

    /** The broker's text, as sent. */
    public String reason() {
        return reason;
    }
}
