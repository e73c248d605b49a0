package dev.sluice.protocoltests;

import ch.qos.logback.classic.Level;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.extension.AfterEachCallback;
import org.junit.jupiter.api.extension.BeforeEachCallback;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.ParameterContext;
import org.junit.jupiter.api.extension.ParameterResolver;
import org.junit.jupiter.api.extension.TestExecutionExceptionHandler;

/**
 * Gives each test method that asks for a {@link SluiceBroker} parameter its own freshly started
 * broker, stops it after the test (a non-zero exit status on SIGTERM fails the test), attaches the
 * broker's log tail to a failing test's exception, and deletes the broker's files if the test passed
 * (unless SLUICE_KEEP_FILES=1).
 */
public final class SluiceExtension
        implements ParameterResolver, TestExecutionExceptionHandler, BeforeEachCallback, AfterEachCallback {
    private static final ExtensionContext.Namespace NS = ExtensionContext.Namespace.create(SluiceExtension.class);
    private static final String KEY = "broker";
    private static final String REQUESTS = "requests";
    private static final Pattern SENT = Pattern.compile("Sending (\\w+) request with header RequestHeader\\(apiKey=\\w+, apiVersion=(\\d+)");

    /** Watches the clients' requests so that each test's output lists the API versions it used. */
    @Override
    public void beforeEach(ExtensionContext ec) {
        ec.getStore(NS).put(REQUESTS, new LogCapture("org.apache.kafka.clients.NetworkClient", Level.DEBUG, 200));
    }

    private static void printApiVersionsUsed(ExtensionContext ec) {
        LogCapture requests = ec.getStore(NS).remove(REQUESTS, LogCapture.class);
        if (requests == null) {
            return;
        }
        requests.close();
        TreeSet<String> used = new TreeSet<>();
        for (String line : requests.lines()) {
            Matcher m = SENT.matcher(line);
            if (m.find()) {
                used.add(m.group(1) + " v" + m.group(2));
            }
        }
        System.out.println(ec.getDisplayName() + ": requests sent: " + String.join(", ", used));
    }

    /** Carries the broker log tail in a failing test's report. */
    static final class BrokerLog extends RuntimeException {
        BrokerLog(String message) {
            super(message, null, false, false);
        }
    }

    @Override
    public boolean supportsParameter(ParameterContext pc, ExtensionContext ec) {
        return pc.getParameter().getType() == SluiceBroker.class;
    }

    @Override
    public Object resolveParameter(ParameterContext pc, ExtensionContext ec) {
        try {
            SluiceBroker broker = SluiceBroker.start();
            ec.getStore(NS).put(KEY, broker);
            System.out.println("started " + broker);
            return broker;
        } catch (Exception e) {
            throw new IllegalStateException("could not start the broker: " + e.getMessage(), e);
        }
    }

    @Override
    public void handleTestExecutionException(ExtensionContext ec, Throwable t) throws Throwable {
        SluiceBroker broker = ec.getStore(NS).get(KEY, SluiceBroker.class);
        if (broker != null) {
            String tail = "sluice broker log (" + broker.bootstrap() + ")\n" + broker.logTail();
            t.addSuppressed(new BrokerLog(tail));
            System.err.println(tail);
        }
        throw t;
    }

    @Override
    public void afterEach(ExtensionContext ec) throws Exception {
        printApiVersionsUsed(ec);
        SluiceBroker broker = ec.getStore(NS).remove(KEY, SluiceBroker.class);
        if (broker == null) {
            return;
        }
        broker.close(); // throws (failing the test) if the broker did not exit 0 on SIGTERM
        boolean keep = "1".equals(System.getenv("SLUICE_KEEP_FILES"));
        if (ec.getExecutionException().isEmpty() && !keep) {
            broker.deleteFiles();
        } else {
            System.err.println("kept broker files: " + broker.logFile().getParent());
        }
    }
}
