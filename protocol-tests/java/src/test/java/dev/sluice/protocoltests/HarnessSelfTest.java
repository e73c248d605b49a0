package dev.sluice.protocoltests;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.file.Files;
import org.junit.jupiter.api.Test;

/**
 * Checks of the harness itself that need no broker. scripts/setup-test-deps runs only this class,
 * which makes Maven fetch everything a real run needs (surefire's JUnit provider included).
 */
class HarnessSelfTest {
    @Test
    void freePortIsBindableOnLoopback() throws Exception {
        int port = SluiceBroker.freePort();
        assertTrue(port > 0 && port < 65536, "port " + port);
        try (ServerSocket s = new ServerSocket(port, 1, InetAddress.getLoopbackAddress())) {
            assertTrue(s.isBound());
        }
    }

    @Test
    void repositoryRootIsFound() {
        assertTrue(Files.isRegularFile(SluiceBroker.repoRoot().resolve("scripts/test")), "repo root: " + SluiceBroker.repoRoot());
    }
}
