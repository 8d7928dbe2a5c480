package com.github.hydrogenmq.client;

import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Recognising the telemetry reply among application frames (docs/PROTOCOL.md
 * §4) and checking it against §2.
 */
final class Replies {
    static final List<String> REQUIRED = Arrays.asList(
            "up_time", "bytes_recv", "bytes_sent", "msg_recv", "msg_sent", "num_clients", "resources");

    private Replies() {
    }

    /** The payload as strict UTF-8, or null. */
    static String utf8(byte[] p) {
        try {
            return StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(p)).toString();
        } catch (CharacterCodingException e) {
            return null;
        }
    }

    /** The payload parsed as a JSON object, or null when it is not one. */
    @SuppressWarnings("unchecked")
    static Map<String, Object> parseObject(byte[] p) {
        int i = 0;
        while (i < p.length && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r')) {
            i++;
        }
        if (i == p.length || p[i] != '{') {
            return null;
        }
        String text = utf8(p);
        if (text == null) {
            return null;
        }
        try {
            Object v = Json.parse(text);
            return v instanceof Map ? (Map<String, Object>) v : null;
        } catch (Json.ParseException e) {
            return null;
        }
    }

    /**
     * The recognition rule: a JSON object with an "up_time" member (a
     * reading), or with exactly one member, "error", holding a string (a
     * refusal). Returns the object, or null for any other frame.
     */
    static Map<String, Object> recognise(byte[] p) {
        Map<String, Object> o = parseObject(p);
        if (o == null) {
            return null;
        }
        if (o.containsKey("up_time")) {
            return o;
        }
        if (o.size() == 1 && o.get("error") instanceof String) {
            return o;
        }
        return null;
    }

    /** A recognised reply as Stats; a refusal or a malformed reply throws. */
    static Stats toStats(Map<String, Object> o, String raw) throws HydrogenException {
        if (!o.containsKey("up_time")) {
            throw new BrokerRefusedException((String) o.get("error"));
        }
        Map<String, Object> res = object(o, "resources", "");
        Map<String, Object> ram = object(res, "ram", "resources.");
        Object cores = res.get("cpu_per_core");
        if (!(cores instanceof List)) {
            throw bad("resources.", "cpu_per_core", res, "an array");
        }
        List<Stats.CoreUsage> perCore = new ArrayList<Stats.CoreUsage>();
        int i = 0;
        for (Object c : (List<?>) cores) {
            String path = "resources.cpu_per_core[" + i + "]";
            if (!(c instanceof Map)) {
                throw new HydrogenException("BAD_REPLY", "malformed telemetry reply: " + path + " is " + show(c)
                        + ", want an object");
            }
            @SuppressWarnings("unchecked")
            Map<String, Object> m = (Map<String, Object>) c;
            perCore.add(new Stats.CoreUsage(counter(m, "core", path + "."), number(m, "using", path + ".")));
            i++;
        }
        Map<String, Object> extra = new LinkedHashMap<String, Object>();
        for (Map.Entry<String, Object> e : o.entrySet()) {
            if (!REQUIRED.contains(e.getKey())) {
                extra.put(e.getKey(), e.getValue());
            }
        }
        return new Stats(counter(o, "up_time", ""), counter(o, "bytes_recv", ""), counter(o, "bytes_sent", ""),
                counter(o, "msg_recv", ""), counter(o, "msg_sent", ""), counter(o, "num_clients", ""),
                new Stats.Resources(counter(ram, "bytes_used", "resources.ram."),
                        counter(ram, "bytes_available", "resources.ram."), number(res, "cpu_overall", "resources."),
                        perCore),
                extra, raw);
    }

    private static long counter(Map<String, Object> o, String k, String path) throws HydrogenException {
        Object v = o.get(k);
        if (!(v instanceof Long) || (Long) v < 0) {
            throw bad(path, k, o, "a non-negative integer");
        }
        return (Long) v;
    }

    private static double number(Map<String, Object> o, String k, String path) throws HydrogenException {
        Object v = o.get(k);
        if (v instanceof Long || v instanceof Double) {
            return ((Number) v).doubleValue();
        }
        throw bad(path, k, o, "a number");
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> object(Map<String, Object> o, String k, String path) throws HydrogenException {
        Object v = o.get(k);
        if (!(v instanceof Map)) {
            throw bad(path, k, o, "an object");
        }
        return (Map<String, Object>) v;
    }

    private static HydrogenException bad(String path, String k, Map<String, Object> o, String want) {
        String got = o.containsKey(k) ? show(o.get(k)) : "missing";
        return new HydrogenException("BAD_REPLY", "malformed telemetry reply: " + path + k + " is " + got + ", want "
                + want);
    }

    private static String show(Object v) {
        if (v instanceof String) {
            return "\"" + v + "\"";
        }
        if (v instanceof Map) {
            return "an object";
        }
        if (v instanceof List) {
            return "an array";
        }
        return String.valueOf(v);
    }
}
