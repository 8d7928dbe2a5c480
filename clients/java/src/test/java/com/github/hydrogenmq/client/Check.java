package com.github.hydrogenmq.client;

import java.util.Arrays;

/** Assertions for the tests: each throws AssertionError with a clear message. */
final class Check {
    private Check() {
    }

    interface Action {
        void run() throws Exception;
    }

    static void that(boolean cond, String what) {
        if (!cond) {
            throw new AssertionError(what);
        }
    }

    static void equal(Object want, Object got, String what) {
        boolean same = want instanceof byte[] && got instanceof byte[]
                ? Arrays.equals((byte[]) want, (byte[]) got)
                : want == null ? got == null : want.equals(got);
        if (!same) {
            throw new AssertionError(what + ": got " + show(got) + ", want " + show(want));
        }
    }

    static String show(Object o) {
        if (o instanceof byte[]) {
            byte[] b = (byte[]) o;
            return b.length <= 64 ? "\"" + new String(b, java.nio.charset.StandardCharsets.ISO_8859_1) + "\" ("
                    + b.length + " bytes)" : b.length + " bytes";
        }
        return String.valueOf(o);
    }

    /** Runs a and returns what it threw, which must be a t. */
    static <T extends Throwable> T fails(Class<T> t, Action a, String what) {
        try {
            a.run();
        } catch (Throwable e) {
            if (t.isInstance(e)) {
                return t.cast(e);
            }
            throw new AssertionError(what + ": threw " + e + ", want a " + t.getSimpleName(), e);
        }
        throw new AssertionError(what + ": did not throw, want a " + t.getSimpleName());
    }

    /** Runs a, which must throw a HydrogenException of this code; returns it. */
    static HydrogenException failsWith(String code, Action a, String what) {
        HydrogenException e = fails(HydrogenException.class, a, what);
        if (!code.equals(e.code())) {
            throw new AssertionError(what + ": code " + e.code() + " (" + e.getMessage() + "), want " + code, e);
        }
        return e;
    }

    static void contains(String haystack, String needle, String what) {
        if (haystack == null || !haystack.contains(needle)) {
            throw new AssertionError(what + ": \"" + haystack + "\" does not contain \"" + needle + "\"");
        }
    }
}
