package com.github.hydrogenmq.client;

import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/**
 * The tests' own runner (no JUnit here): every public no-argument method
 * whose name starts with "test" in the classes below is a test, run on a
 * fresh instance, in name order. A test fails by throwing; the runner prints
 * each result, the failure's message and stack, and a closing line
 * "N passed, N failed", and exits 1 if any failed. Arguments filter the
 * tests by substring of "Class.method".
 */
public final class TestRunner {
    private static final Class<?>[] CLASSES = {UnitTests.class, ConformanceTests.class, AuthTlsTests.class,
        SecureBrokerTests.class};

    public static void main(String[] args) {
        int passed = 0;
        int failed = 0;
        List<String> failures = new ArrayList<String>();
        long start = System.nanoTime();
        for (Class<?> c : CLASSES) {
            Method[] methods = c.getDeclaredMethods();
            Arrays.sort(methods, new Comparator<Method>() {
                @Override
                public int compare(Method a, Method b) {
                    return a.getName().compareTo(b.getName());
                }
            });
            for (Method m : methods) {
                if (!m.getName().startsWith("test") || m.getParameterTypes().length != 0
                        || !Modifier.isPublic(m.getModifiers())) {
                    continue;
                }
                String name = c.getSimpleName() + "." + m.getName();
                if (args.length > 0 && !matches(name, args)) {
                    continue;
                }
                long t0 = System.nanoTime();
                try {
                    Object o = c.getDeclaredConstructor().newInstance();
                    try {
                        m.invoke(o);
                    } finally {
                        if (o instanceof AutoCloseable) {
                            ((AutoCloseable) o).close();
                        }
                    }
                    passed++;
                    System.out.printf("ok   %s (%d ms)%n", name, (System.nanoTime() - t0) / 1000000);
                } catch (Throwable t) {
                    Throwable cause = t instanceof InvocationTargetException ? t.getCause() : t;
                    failed++;
                    failures.add(name);
                    System.out.printf("FAIL %s (%d ms): %s%n", name, (System.nanoTime() - t0) / 1000000, cause);
                    cause.printStackTrace(System.out);
                }
            }
        }
        System.out.printf("%nJava client tests: %d ms%n", (System.nanoTime() - start) / 1000000);
        for (String f : failures) {
            System.out.println("failed: " + f);
        }
        System.out.println(passed + " passed, " + failed + " failed");
        System.exit(failed > 0 || passed == 0 ? 1 : 0);
    }

    private static boolean matches(String name, String[] filters) {
        for (String f : filters) {
            if (name.contains(f)) {
                return true;
            }
        }
        return false;
    }
}
