package dev.sluice.protocoltests;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * One {@code sluice} process on 127.0.0.1 with its own data dir, as a test sees it: start, stop,
 * log tail. Its stdout and stderr both go to {@code broker.log} in a fresh temporary directory.
 *
 * <p>The binary is {@code $SLUICE_BIN} (absolute, or relative to the repository root, or to the
 * working directory), else {@code target/release/sluice} of the repository this project lives in.
 */
public final class SluiceBroker implements AutoCloseable {
    public static final String READY_MARKER = "sluice ready";
    static final Duration READY_TIMEOUT = Duration.ofSeconds(30);
    static final Duration STOP_TIMEOUT = Duration.ofSeconds(15);
    static final int NODE_ID = 1;

    private final Path binary;
    private final Path workDir;
    private final Path dataDir;
    private final Path logFile;
    private final int port;
    private final Map<String, String> settings;
    private Process process;
    private Integer exitCode;

    private SluiceBroker(Map<String, String> settings) throws IOException {
        this.binary = binary();
        this.workDir = Files.createTempDirectory("sluice-java-");
        this.dataDir = workDir.resolve("data");
        this.logFile = workDir.resolve("broker.log");
        this.port = freePort();
        this.settings = new LinkedHashMap<>(settings);
    }

    /** Starts a broker and returns once it has logged {@value #READY_MARKER}; throws with the log tail if not. */
    public static SluiceBroker start() throws IOException, InterruptedException {
        return start(Map.of());
    }

    public static SluiceBroker start(Map<String, String> settings) throws IOException, InterruptedException {
        SluiceBroker broker = new SluiceBroker(settings);
        broker.launch();
        return broker;
    }

    public String bootstrap() {
        return "127.0.0.1:" + port;
    }

    public int nodeId() {
        return NODE_ID;
    }

    public Path logFile() {
        return logFile;
    }

    /** The repository root: the directory above protocol-tests/java. */
    static Path repoRoot() {
        String projectDir = System.getProperty("sluice.projectDir");
        Path start = projectDir != null ? Paths.get(projectDir) : Paths.get("").toAbsolutePath();
        for (Path p = start.toAbsolutePath().normalize(); p != null; p = p.getParent()) {
            if (Files.isDirectory(p.resolve("protocol-tests")) && Files.isRegularFile(p.resolve("Cargo.toml"))) {
                return p;
            }
        }
        throw new IllegalStateException("cannot find the repository root (a directory with Cargo.toml and "
                + "protocol-tests/) above " + start + "; set SLUICE_BIN to an absolute path");
    }

    static Path binary() {
        String env = System.getenv("SLUICE_BIN");
        Path candidate;
        if (env == null || env.isBlank()) {
            candidate = repoRoot().resolve("target/release/sluice");
        } else {
            Path given = Paths.get(env);
            if (given.isAbsolute()) {
                candidate = given;
            } else {
                Path fromCwd = given.toAbsolutePath();
                Path fromRoot;
                try {
                    fromRoot = repoRoot().resolve(given);
                } catch (IllegalStateException e) {
                    fromRoot = fromCwd;
                }
                candidate = Files.isRegularFile(fromRoot) ? fromRoot : fromCwd;
            }
        }
        candidate = candidate.normalize();
        if (!Files.isRegularFile(candidate) || !Files.isExecutable(candidate)) {
            throw new IllegalStateException("broker binary " + candidate + " not found or not executable: "
                    + "build it with `cargo build --release` or point SLUICE_BIN at it");
        }
        return candidate;
    }

    static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            s.setReuseAddress(true);
            return s.getLocalPort();
        }
    }

    List<String> command() {
        List<String> cmd = new ArrayList<>(List.of(
                binary.toString(),
                "--data-dir", dataDir.toString(),
                "--listeners", "PLAINTEXT://" + bootstrap(),
                "--node-id", Integer.toString(NODE_ID)));
        settings.forEach((k, v) -> {
            cmd.add("--set");
            cmd.add(k + "=" + v);
        });
        return cmd;
    }

    private void launch() throws IOException, InterruptedException {
        Files.createDirectories(dataDir);
        note("test harness: starting " + String.join(" ", command()));
        long startOffset = Files.size(logFile);
        ProcessBuilder pb = new ProcessBuilder(command())
                .redirectInput(ProcessBuilder.Redirect.from(Path.of("/dev/null").toFile()))
                .redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(logFile.toFile()));
        pb.environment().putIfAbsent("RUST_LOG", "info");
        pb.environment().putIfAbsent("RUST_BACKTRACE", "1");
        process = pb.start();
        long deadline = System.nanoTime() + READY_TIMEOUT.toNanos();
        while (System.nanoTime() < deadline) {
            if (logSince(startOffset).contains(READY_MARKER)) {
                return;
            }
            if (!process.isAlive()) {
                throw new IllegalStateException("broker exited with status " + process.exitValue()
                        + " before it was ready\n" + logTail());
            }
            Thread.sleep(50);
        }
        process.destroyForcibly().waitFor();
        throw new IllegalStateException("broker did not log '" + READY_MARKER + "' within "
                + READY_TIMEOUT.toSeconds() + " s\n" + logTail());
    }

    private String logSince(long offset) throws IOException {
        byte[] all = Files.readAllBytes(logFile);
        int from = (int) Math.min(offset, all.length);
        return new String(all, from, all.length - from, StandardCharsets.UTF_8);
    }

    /** SIGTERM, then SIGKILL if it has not exited within 15 s. Returns the exit status (null if never started). */
    public Integer stop() throws InterruptedException {
        if (process == null) {
            return exitCode;
        }
        if (process.isAlive()) {
            process.destroy(); // SIGTERM on Unix
            if (!process.waitFor(STOP_TIMEOUT.toSeconds(), TimeUnit.SECONDS)) {
                note("test harness: broker ignored SIGTERM for " + STOP_TIMEOUT.toSeconds() + " s; sending SIGKILL");
                process.destroyForcibly().waitFor();
            }
        }
        exitCode = process.exitValue();
        process = null;
        return exitCode;
    }

    public boolean isRunning() {
        return process != null && process.isAlive();
    }

    /** Stops the broker; a non-zero exit status on SIGTERM is an error (with the log tail). */
    @Override
    public void close() throws InterruptedException {
        Integer code = stop();
        if (code != null && code != 0) {
            throw new IllegalStateException("broker exited with status " + code + " on SIGTERM\n" + logTail());
        }
    }

    public String logTail() {
        return logTail(80);
    }

    public String logTail(int lines) {
        try {
            List<String> all = log().lines().toList();
            List<String> tail = all.subList(Math.max(0, all.size() - lines), all.size());
            return "---- last " + tail.size() + " lines of " + logFile + " ----\n" + String.join("\n", tail);
        } catch (UncheckedIOException e) {
            return "(no broker log at " + logFile + ": " + e.getCause() + ")";
        }
    }

    /** The whole log, for tests that look for a line the broker wrote. */
    public String log() {
        try {
            return new String(Files.readAllBytes(logFile), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private void note(String line) {
        try {
            Files.writeString(logFile, "==== " + line + "\n", StandardCharsets.UTF_8,
                    java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.APPEND);
        } catch (IOException e) {
            System.err.println("could not write to " + logFile + ": " + e);
        }
    }

    /** Removes the data dir and log; for a test that passed. */
    void deleteFiles() throws IOException {
        if (isRunning()) {
            return;
        }
        try (var paths = Files.walk(workDir)) {
            for (Path p : paths.sorted(java.util.Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        }
    }

    @Override
    public String toString() {
        return "sluice@" + bootstrap() + " (" + workDir + ")";
    }
}
