package com.github.hydrogenmq.client;

import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * The broker's telemetry reading over the span a request asked for: the
 * reply object of docs/PROTOCOL.md §2, decoded and checked against the
 * required fields and their JSON types. Immutable.
 */
public final class Stats {
    /** One CPU's busy fraction during the span. */
    public static final class CoreUsage {
        private final long core;
        private final double using;

        CoreUsage(long core, double using) {
            this.core = core;
            this.using = using;
        }

        /** N of the cpuN line of /proc/stat. */
        public long core() {
            return core;
        }

        /** Fraction 0..1 busy during the span. */
        public double using() {
            return using;
        }

        @Override
        public String toString() {
            return "{core=" + core + ", using=" + using + "}";
        }
    }

    /** The machine's memory and CPU use. */
    public static final class Resources {
        private final long ramBytesUsed;
        private final long ramBytesAvailable;
        private final double cpuOverall;
        private final List<CoreUsage> cpuPerCore;

        Resources(long ramBytesUsed, long ramBytesAvailable, double cpuOverall, List<CoreUsage> cpuPerCore) {
            this.ramBytesUsed = ramBytesUsed;
            this.ramBytesAvailable = ramBytesAvailable;
            this.cpuOverall = cpuOverall;
            this.cpuPerCore = Collections.unmodifiableList(cpuPerCore);
        }

        /** resources.ram.bytes_used: MemTotal − MemAvailable. */
        public long ramBytesUsed() {
            return ramBytesUsed;
        }

        /** resources.ram.bytes_available: MemTotal, the machine's RAM in total. */
        public long ramBytesAvailable() {
            return ramBytesAvailable;
        }

        /** Fraction 0..1 of all CPUs busy during the span. */
        public double cpuOverall() {
            return cpuOverall;
        }

        /** One entry per cpuN line of /proc/stat, in order. */
        public List<CoreUsage> cpuPerCore() {
            return cpuPerCore;
        }
    }

    private final long upTime;
    private final long bytesRecv;
    private final long bytesSent;
    private final long msgRecv;
    private final long msgSent;
    private final long numClients;
    private final Resources resources;
    private final Map<String, Object> extra;
    private final String raw;

    Stats(long upTime, long bytesRecv, long bytesSent, long msgRecv, long msgSent, long numClients,
            Resources resources, Map<String, Object> extra, String raw) {
        this.upTime = upTime;
        this.bytesRecv = bytesRecv;
        this.bytesSent = bytesSent;
        this.msgRecv = msgRecv;
        this.msgSent = msgSent;
        this.numClients = numClients;
        this.resources = resources;
        this.extra = Collections.unmodifiableMap(extra);
        this.raw = raw;
    }

    /** Whole seconds since the broker started. */
    public long upTime() {
        return upTime;
    }

    /** Payload bytes of all frames received since start. */
    public long bytesRecv() {
        return bytesRecv;
    }

    /** Payload bytes of all frames sent since start; a broadcast to N streams adds N times. */
    public long bytesSent() {
        return bytesSent;
    }

    /** Frames received since start. */
    public long msgRecv() {
        return msgRecv;
    }

    /** Frames sent since start. */
    public long msgSent() {
        return msgSent;
    }

    /** Connections open at the moment of the reply. */
    public long numClients() {
        return numClients;
    }

    public Resources resources() {
        return resources;
    }

    /**
     * The top-level members beyond the required ones, parsed as {@link Json}
     * does (the broker adds process, protocol_errors, slow_consumers, ...).
     */
    public Map<String, Object> extra() {
        return extra;
    }

    /** The reply as received. */
    public String raw() {
        return raw;
    }

    @Override
    public String toString() {
        return raw;
    }
}
