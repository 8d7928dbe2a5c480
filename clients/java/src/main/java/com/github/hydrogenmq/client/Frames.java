package com.github.hydrogenmq.client;

import java.nio.ByteBuffer;

/** The frame format of docs/PROTOCOL.md §1 and the 0x0D request of §2. No I/O. */
public final class Frames {
    public static final int START = 0x01;
    public static final int END = 0x17;
    public static final int ACTION_TELEMETRY = 0x0D;
    /** The largest payload, in bytes. */
    public static final int MAX_PAYLOAD = 65535;

    private Frames() {
    }

    /** True when the broker would take the payload for a telemetry request. */
    public static boolean isTelemetryRequest(byte[] p) {
        return p.length == 5 && p[0] == ACTION_TELEMETRY;
    }

    /** Throws what a send of p fails with, having sent nothing. */
    public static void checkPayload(byte[] p) {
        if (p == null) {
            throw new NullPointerException("hydrogen: payload is null");
        }
        if (p.length > MAX_PAYLOAD) {
            throw new PayloadTooLargeException(p.length);
        }
        if (isTelemetryRequest(p)) {
            throw new IllegalArgumentException("hydrogen: payload has the shape of a telemetry request "
                    + "(5 bytes starting with 0x0D); use stats(); nothing was sent");
        }
    }

    /** One frame: 0x01, the length big-endian, the payload, 0x17. */
    public static byte[] encode(byte[] p) {
        byte[] f = new byte[p.length + 4];
        f[0] = START;
        f[1] = (byte) (p.length >>> 8);
        f[2] = (byte) p.length;
        System.arraycopy(p, 0, f, 3, p.length);
        f[3 + p.length] = END;
        return f;
    }

    /** The 5-byte payload of a telemetry request: 0x0D and the span as a big-endian float32. */
    public static byte[] telemetryRequest(float seconds) {
        return ByteBuffer.allocate(5).put((byte) ACTION_TELEMETRY).putFloat(seconds).array();
    }
}
