package com.github.hydrogenmq.client;

import java.nio.charset.StandardCharsets;
import java.util.HashSet;
import java.util.Set;
import java.util.concurrent.TimeUnit;

/**
 * One side of the cross-client check of scripts/test-clients (case C19):
 * {@code CrossClient BROKER_ADDR NAME PEERS...} authenticates with
 * $HYDROGEN_C19_TOKEN when it is set (the broker must know it as NAME),
 * waits until every peer is connected, broadcasts "hello from NAME", and
 * expects "hello from PEER" from each peer, in any order. Exits 0 when it
 * has them all.
 */
public final class CrossClient {
    private CrossClient() {
    }

    public static void main(String[] args) throws Exception {
        String name = args[1];
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        Set<String> want = new HashSet<String>();
        for (int i = 2; i < args.length; i++) {
            want.add("hello from " + args[i]);
        }
        int status = 0;
        String token = System.getenv("HYDROGEN_C19_TOKEN");
        ClientOptions o = new ClientOptions();
        if (token != null && !token.isEmpty()) {
            o.credential(token);
        }
        try (HydrogenClient c = HydrogenClient.connect(args[0], o)) {
            if (token != null && !token.isEmpty() && !name.equals(c.identity())) {
                throw new IllegalStateException(name + ": the broker knows this client as " + c.identity());
            }
            while (c.stats(0.05f).numClients() < want.size() + 1) {
                if (System.nanoTime() > deadline) {
                    throw new IllegalStateException(name + ": the peers did not all connect");
                }
            }
            c.send("hello from " + name);
            while (!want.isEmpty()) {
                long left = Math.max(1, deadline - System.nanoTime());
                String got = new String(c.receive(left, TimeUnit.NANOSECONDS), StandardCharsets.UTF_8);
                if (!want.remove(got)) {
                    System.err.println(name + ": unexpected \"" + got + "\"");
                    status = 1;
                    break;
                }
            }
        }
        if (status == 0) {
            System.out.println(name + ": heard from every peer");
        }
        System.exit(status);
    }
}
