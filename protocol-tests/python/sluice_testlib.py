"""Shared helpers for the black-box suite: run a `sluice` process, name topics, wait for things.

This module owns the broker process's lifecycle as a test sees it (start, stop, restart, kill -9)
and nothing about the protocol: tests talk to the broker only through real clients.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Callable, Optional, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / "target" / "release" / "sluice"
READY_MARKER = "sluice ready"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
LOG_TAIL_LINES = 60

T = TypeVar("T")


def sluice_bin() -> Path:
    """The broker binary under test: $SLUICE_BIN, or target/release/sluice in this repo."""
    return Path(os.environ.get("SLUICE_BIN", str(DEFAULT_BIN)))


def unique_topic(prefix: str = "t") -> str:
    """A topic name no other test (or earlier run against the same data dir) has used."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, probe: Callable[[], T], timeout_s: float = 15.0, interval_s: float = 0.2) -> T:
    """Calls `probe` until it returns something truthy, and returns that; fails after `timeout_s`.

    For things Kafka itself makes eventually visible (metadata after CreateTopics or DeleteTopics).
    """
    deadline = time.monotonic() + timeout_s
    last: Optional[T] = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last value: {last!r}")
        time.sleep(interval_s)


class BrokerProcess:
    """One `sluice` node on 127.0.0.1 with its own data dir; its stderr and stdout go to a log file.

    The port stays the same across restarts, as a user's bootstrap address would.
    """

    def __init__(self, workdir: Path, node_id: int = 1, settings: Optional[dict[str, str]] = None):
        self.binary = sluice_bin()
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.log_path = workdir / "broker.log"
        self.node_id = node_id
        self.settings = dict(settings or {})
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None
        self._log_file = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            str(self.binary),
            "--data-dir", str(self.data_dir),
            "--listeners", f"PLAINTEXT://{self.bootstrap}",
            "--node-id", str(self.node_id),
        ]
        for key, value in self.settings.items():
            cmd += ["--set", f"{key}={value}"]
        return cmd

    def start(self) -> None:
        """Starts the broker and returns once it has logged `sluice ready`; raises with the log tail if not."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("broker already running")
        if not self.binary.is_file():
            raise RuntimeError(
                f"broker binary {self.binary} not found: build it with `cargo build --release` "
                "or point SLUICE_BIN at it"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Each start appends to the same log; readiness is looked for only past this offset.
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(f"==== test harness: starting {' '.join(self.command())}\n".encode())
        self._log_file.flush()
        start_offset = self._log_file.tell()
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env.setdefault("RUST_BACKTRACE", "1")
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=self._log_file,
            env=env,
        )
        self._wait_ready(start_offset)

    def _wait_ready(self, start_offset: int) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(start_offset)
                if READY_MARKER.encode() in f.read():
                    return
            code = self.proc.poll() if self.proc else None
            if code is not None:
                raise RuntimeError(
                    f"broker exited with status {code} before it was ready\n{self.log_tail()}"
                )
            time.sleep(0.05)
        self.kill9()
        raise RuntimeError(
            f"broker did not log {READY_MARKER!r} within {READY_TIMEOUT_S}s\n{self.log_tail()}"
        )

    def stop(self) -> Optional[int]:
        """SIGTERM, then SIGKILL if it has not exited within STOP_TIMEOUT_S. Returns the exit status."""
        if self.proc is None:
            return None
        code = self.proc.poll()
        if code is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._note(f"broker ignored SIGTERM for {STOP_TIMEOUT_S}s; sending SIGKILL")
                self.proc.kill()
                code = self.proc.wait()
        self._close_log()
        self.proc = None
        return code

    def kill9(self) -> None:
        """SIGKILL: the process gets no chance to flush or clean up, as in a power cut of the process."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._note("test harness: sent SIGKILL")
        self._close_log()
        self.proc = None

    def restart(self) -> None:
        """A clean stop (if running) followed by a start on the same port and data dir."""
        code = self.stop()
        if code not in (None, 0):
            self._note(f"test harness: broker exited with status {code} on SIGTERM")
        self.start()

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return f"(no broker log at {self.log_path})"
        tail = text.splitlines()[-lines:]
        return f"---- last {len(tail)} lines of {self.log_path} ----\n" + "\n".join(tail)

    def _note(self, line: str) -> None:
        with open(self.log_path, "ab") as f:
            f.write(f"==== {line}\n".encode())

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


# ---- client helpers (confluent-kafka, i.e. librdkafka) ----

CLIENT_TIMEOUT_S = 30.0


def admin_client(bootstrap: str):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap, "broker.address.family": "v4"})


def create_topic(bootstrap: str, name: str, partitions: int, config: Optional[dict[str, str]] = None) -> None:
    """Creates a topic with CreateTopics and waits until Metadata shows all its partitions."""
    from confluent_kafka.admin import NewTopic

    admin = admin_client(bootstrap)
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=CLIENT_TIMEOUT_S,
    )
    futures[name].result(timeout=CLIENT_TIMEOUT_S)
    wait_until(
        f"metadata to show {name} with {partitions} partitions",
        lambda: partition_count(admin, name) == partitions,
    )


def partition_count(admin, topic: str) -> Optional[int]:
    """Partitions of `topic` according to a fresh Metadata request for all topics, or None if absent.

    Asking for all topics (not for this one) so that the question cannot auto-create the topic.
    """
    md = admin.list_topics(timeout=CLIENT_TIMEOUT_S)
    tm = md.topics.get(topic)
    if tm is None or tm.error is not None:
        return None
    return len(tm.partitions)


CLUSTER_SCRIPT = REPO_ROOT / "scripts" / "cluster"


def scripts_cluster(env, *args, check=True, timeout=120):
    """Runs `scripts/cluster ARGS` with `env` (its SLUICE_CLUSTER_DIR names the cluster)."""
    result = subprocess.run(
        [str(CLUSTER_SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if check and result.returncode != 0:
        raise AssertionError(f"scripts/cluster {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result
