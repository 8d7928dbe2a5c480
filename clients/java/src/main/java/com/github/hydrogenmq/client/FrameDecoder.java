package com.github.hydrogenmq.client;

/**
 * Cuts frames out of a byte stream fed in pieces split at any byte. It holds
 * at most one unfinished frame (a buffer of maxPayload bytes), so its memory
 * is bounded by one frame. Like the broker, it never guesses at a frame
 * boundary: a bad byte throws a PROTOCOL exception, and the decoder stays
 * failed.
 */
public final class FrameDecoder {
    /** Receives each whole frame's payload, a copy the receiver owns. */
    public interface Sink {
        void frame(byte[] payload) throws HydrogenException;
    }

    private static final int HEADER = 0;
    private static final int PAYLOAD = 1;
    private static final int TRAILER = 2;

    private final int maxPayload;
    private int state = HEADER;
    private final byte[] header = new byte[3];
    private int headerLen;
    private byte[] partial;
    private int need;
    private int have;
    private long offset;
    private HydrogenException failed;

    public FrameDecoder(int maxPayload) {
        if (maxPayload < 0 || maxPayload > Frames.MAX_PAYLOAD) {
            throw new IllegalArgumentException("hydrogen: max payload " + maxPayload + " is not in [0, "
                    + Frames.MAX_PAYLOAD + "]");
        }
        this.maxPayload = maxPayload;
    }

    /** Bytes of an unfinished frame held. */
    public int buffered() {
        return state == HEADER ? headerLen : 3 + have;
    }

    /** Feeds buf[off, off+len) and passes each whole frame to sink, in order. */
    public void feed(byte[] buf, int off, int len, Sink sink) throws HydrogenException {
        if (failed != null) {
            throw failed;
        }
        int i = off;
        int n = off + len;
        while (i < n) {
            if (state == HEADER) {
                if (headerLen == 0 && n - i >= 3) {
                    if ((buf[i] & 0xff) != Frames.START) {
                        fail("bad start byte", buf[i], 0);
                    }
                    int length = ((buf[i + 1] & 0xff) << 8) | (buf[i + 2] & 0xff);
                    checkLength(length);
                    if (n - i >= length + 4) {
                        if ((buf[i + 3 + length] & 0xff) != Frames.END) {
                            fail("bad end byte", buf[i + 3 + length], 3 + length);
                        }
                        byte[] p = new byte[length];
                        System.arraycopy(buf, i + 3, p, 0, length);
                        i += length + 4;
                        offset += length + 4;
                        sink.frame(p);
                        continue;
                    }
                    headerLen = 3;
                    i += 3;
                    offset += 3;
                    startPayload(length);
                    continue;
                }
                byte b = buf[i];
                if (headerLen == 0 && (b & 0xff) != Frames.START) {
                    fail("bad start byte", b, 0);
                }
                header[headerLen++] = b;
                i++;
                offset++;
                if (headerLen == 3) {
                    int length = ((header[1] & 0xff) << 8) | (header[2] & 0xff);
                    checkLength(length);
                    startPayload(length);
                }
                continue;
            }
            if (state == PAYLOAD) {
                int take = Math.min(need - have, n - i);
                if (partial == null) {
                    partial = new byte[maxPayload];
                }
                System.arraycopy(buf, i, partial, have, take);
                have += take;
                i += take;
                offset += take;
                if (have == need) {
                    state = TRAILER;
                }
                continue;
            }
            byte b = buf[i];
            if ((b & 0xff) != Frames.END) {
                fail("bad end byte", b, 0);
            }
            i++;
            offset++;
            byte[] p = new byte[need];
            if (need > 0) {
                System.arraycopy(partial, 0, p, 0, need);
            }
            state = HEADER;
            headerLen = 0;
            have = 0;
            need = 0;
            sink.frame(p);
        }
    }

    private void startPayload(int length) {
        need = length;
        have = 0;
        state = length == 0 ? TRAILER : PAYLOAD;
    }

    private void checkLength(int length) throws HydrogenException {
        if (length > maxPayload) {
            failed = new HydrogenException("PROTOCOL", "protocol error from the broker: frame at byte " + offset
                    + " declares " + length + " payload bytes, over the maximum of " + maxPayload);
            throw failed;
        }
    }

    private void fail(String what, byte b, int ahead) throws HydrogenException {
        failed = new HydrogenException("PROTOCOL", String.format("protocol error from the broker: %s 0x%02x at byte %d",
                what, b & 0xff, offset + ahead));
        throw failed;
    }
}
