package com.github.hydrogenmq.client;

import java.math.BigInteger;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A small, strict JSON parser (RFC 8259) for the broker's replies: objects
 * become {@code Map<String, Object>} (in order; a repeated name keeps its
 * last value), arrays {@code List<Object>}, strings {@code String}, numbers
 * {@code Long} when written without a fraction or exponent and within range
 * ({@code BigInteger} beyond it) and {@code Double} otherwise, true and
 * false {@code Boolean}, and null {@link #NULL}. It accepts nothing else:
 * no NaN, no comments, no trailing commas, no leading zeros, no control
 * characters or lone surrogates in strings, and nothing after the value
 * but whitespace. Nesting is limited to {@value #MAX_DEPTH} levels.
 */
public final class Json {
    /** JSON null, told apart from a missing member. */
    public static final Object NULL = new Object() {
        @Override
        public String toString() {
            return "null";
        }
    };

    /** The deepest nesting accepted. */
    public static final int MAX_DEPTH = 64;

    /** A text that is not strict JSON. */
    public static final class ParseException extends Exception {
        private static final long serialVersionUID = 1L;

        ParseException(String message, int at) {
            super(message + " at offset " + at);
        }
    }

    private final String s;
    private int i;

    private Json(String s) {
        this.s = s;
    }

    /** Parses a whole JSON text. */
    public static Object parse(String text) throws ParseException {
        if (text == null) {
            throw new NullPointerException("text");
        }
        Json p = new Json(text);
        p.ws();
        Object v = p.value(0);
        p.ws();
        if (p.i != text.length()) {
            throw new ParseException("unexpected text after the value", p.i);
        }
        return v;
    }

    private void ws() {
        while (i < s.length()) {
            char c = s.charAt(i);
            if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
                return;
            }
            i++;
        }
    }

    private ParseException err(String what) {
        return new ParseException(what, i);
    }

    private Object value(int depth) throws ParseException {
        if (i >= s.length()) {
            throw err("unexpected end of text");
        }
        char c = s.charAt(i);
        switch (c) {
            case '{':
                return object(depth + 1);
            case '[':
                return array(depth + 1);
            case '"':
                return string();
            case 't':
                return literal("true", Boolean.TRUE);
            case 'f':
                return literal("false", Boolean.FALSE);
            case 'n':
                return literal("null", NULL);
            default:
                if (c == '-' || (c >= '0' && c <= '9')) {
                    return number();
                }
                throw err("unexpected character '" + c + "'");
        }
    }

    private Object literal(String word, Object v) throws ParseException {
        if (!s.startsWith(word, i)) {
            throw err("invalid literal");
        }
        i += word.length();
        return v;
    }

    private Map<String, Object> object(int depth) throws ParseException {
        if (depth > MAX_DEPTH) {
            throw err("nesting deeper than " + MAX_DEPTH);
        }
        i++; // {
        Map<String, Object> m = new LinkedHashMap<String, Object>();
        ws();
        if (i < s.length() && s.charAt(i) == '}') {
            i++;
            return m;
        }
        for (;;) {
            ws();
            if (i >= s.length() || s.charAt(i) != '"') {
                throw err("expected a member name");
            }
            String k = string();
            ws();
            if (i >= s.length() || s.charAt(i) != ':') {
                throw err("expected ':'");
            }
            i++;
            ws();
            m.put(k, value(depth));
            ws();
            if (i >= s.length()) {
                throw err("unexpected end of text in an object");
            }
            char c = s.charAt(i++);
            if (c == '}') {
                return m;
            }
            if (c != ',') {
                throw new ParseException("expected ',' or '}'", i - 1);
            }
        }
    }

    private List<Object> array(int depth) throws ParseException {
        if (depth > MAX_DEPTH) {
            throw err("nesting deeper than " + MAX_DEPTH);
        }
        i++; // [
        List<Object> l = new ArrayList<Object>();
        ws();
        if (i < s.length() && s.charAt(i) == ']') {
            i++;
            return l;
        }
        for (;;) {
            ws();
            l.add(value(depth));
            ws();
            if (i >= s.length()) {
                throw err("unexpected end of text in an array");
            }
            char c = s.charAt(i++);
            if (c == ']') {
                return l;
            }
            if (c != ',') {
                throw new ParseException("expected ',' or ']'", i - 1);
            }
        }
    }

    private String string() throws ParseException {
        i++; // "
        StringBuilder b = new StringBuilder();
        for (;;) {
            if (i >= s.length()) {
                throw err("unterminated string");
            }
            char c = s.charAt(i++);
            if (c == '"') {
                return b.toString();
            }
            if (c < 0x20) {
                throw new ParseException("control character in a string", i - 1);
            }
            if (Character.isHighSurrogate(c)) {
                if (i >= s.length() || !Character.isLowSurrogate(s.charAt(i))) {
                    throw new ParseException("lone surrogate in a string", i - 1);
                }
                b.append(c).append(s.charAt(i++));
                continue;
            }
            if (Character.isLowSurrogate(c)) {
                throw new ParseException("lone surrogate in a string", i - 1);
            }
            if (c != '\\') {
                b.append(c);
                continue;
            }
            if (i >= s.length()) {
                throw err("unterminated escape");
            }
            char e = s.charAt(i++);
            switch (e) {
                case '"':
                case '\\':
                case '/':
                    b.append(e);
                    break;
                case 'b':
                    b.append('\b');
                    break;
                case 'f':
                    b.append('\f');
                    break;
                case 'n':
                    b.append('\n');
                    break;
                case 'r':
                    b.append('\r');
                    break;
                case 't':
                    b.append('\t');
                    break;
                case 'u':
                    char u = hex4();
                    if (Character.isHighSurrogate(u)) {
                        if (!s.startsWith("\\u", i)) {
                            throw err("lone surrogate escape");
                        }
                        i += 2;
                        char low = hex4();
                        if (!Character.isLowSurrogate(low)) {
                            throw err("lone surrogate escape");
                        }
                        b.append(u).append(low);
                    } else if (Character.isLowSurrogate(u)) {
                        throw err("lone surrogate escape");
                    } else {
                        b.append(u);
                    }
                    break;
                default:
                    throw new ParseException("invalid escape '\\" + e + "'", i - 1);
            }
        }
    }

    private char hex4() throws ParseException {
        if (i + 4 > s.length()) {
            throw err("short \\u escape");
        }
        int v = 0;
        for (int k = 0; k < 4; k++) {
            int d = Character.digit(s.charAt(i + k), 16);
            if (d < 0) {
                throw err("invalid \\u escape");
            }
            v = v * 16 + d;
        }
        i += 4;
        return (char) v;
    }

    private Object number() throws ParseException {
        int start = i;
        if (s.charAt(i) == '-') {
            i++;
        }
        if (i >= s.length()) {
            throw err("a number without digits");
        }
        char c = s.charAt(i);
        if (c == '0') {
            i++;
        } else if (c >= '1' && c <= '9') {
            while (i < s.length() && isDigit(s.charAt(i))) {
                i++;
            }
        } else {
            throw err("a number without digits");
        }
        boolean integer = true;
        if (i < s.length() && s.charAt(i) == '.') {
            integer = false;
            i++;
            digits();
        }
        if (i < s.length() && (s.charAt(i) == 'e' || s.charAt(i) == 'E')) {
            integer = false;
            i++;
            if (i < s.length() && (s.charAt(i) == '+' || s.charAt(i) == '-')) {
                i++;
            }
            digits();
        }
        String t = s.substring(start, i);
        if (integer) {
            BigInteger big = new BigInteger(t);
            return big.bitLength() < 64 ? (Object) Long.valueOf(big.longValue()) : big;
        }
        double d = Double.parseDouble(t);
        if (Double.isInfinite(d)) {
            throw new ParseException("number out of range", start);
        }
        return d;
    }

    private void digits() throws ParseException {
        int from = i;
        while (i < s.length() && isDigit(s.charAt(i))) {
            i++;
        }
        if (i == from) {
            throw err("expected a digit");
        }
    }

    private static boolean isDigit(char c) {
        return c >= '0' && c <= '9';
    }

    /** An unmodifiable view, for values handed to callers. */
    static Map<String, Object> frozen(Map<String, Object> m) {
        return Collections.unmodifiableMap(m);
    }
}
