package dev.sluice.protocoltests;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.AppenderBase;
import java.util.ArrayList;
import java.util.List;
import org.slf4j.LoggerFactory;

/**
 * Records what one client logger says (at {@code level} and up) while open, without printing it:
 * a way to see what the Kafka client did on the wire, e.g. FetchSessionHandler's
 * "Built incremental fetch" lines. Restores the logger's level on close.
 */
final class LogCapture implements AutoCloseable {
    private final Logger logger;
    private final Level previousLevel;
    private final boolean previousAdditive;
    private final AppenderBase<ILoggingEvent> appender;
    private final List<String> lines = new ArrayList<>();

    LogCapture(String loggerName, Level level) {
        this(loggerName, level, Integer.MAX_VALUE);
    }

    /** Keeps only the first {@code maxChars} characters of each line. */
    LogCapture(String loggerName, Level level, int maxChars) {
        this.logger = (Logger) LoggerFactory.getLogger(loggerName);
        this.previousLevel = logger.getLevel();
        this.previousAdditive = logger.isAdditive();
        this.appender = new AppenderBase<>() {
            @Override
            protected void append(ILoggingEvent e) {
                String line = e.getLevel() + " " + e.getFormattedMessage();
                if (line.length() > maxChars) {
                    line = line.substring(0, maxChars);
                }
                synchronized (lines) {
                    lines.add(line);
                }
            }
        };
        appender.setContext(logger.getLoggerContext());
        appender.start();
        logger.addAppender(appender);
        logger.setLevel(level);
        // Debug lines stay out of the console; warnings still go there too.
        logger.setAdditive(false);
    }

    List<String> lines() {
        synchronized (lines) {
            return List.copyOf(lines);
        }
    }

    long count(String substring) {
        return lines().stream().filter(l -> l.contains(substring)).count();
    }

    List<String> matching(String substring) {
        return lines().stream().filter(l -> l.contains(substring)).toList();
    }

    @Override
    public void close() {
        logger.detachAppender(appender);
        appender.stop();
        logger.setLevel(previousLevel);
        logger.setAdditive(previousAdditive);
    }
}
