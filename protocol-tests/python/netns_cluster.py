"""A cluster of sluice nodes, each in its own network namespace, for fault tests that cut network
paths (root only: it creates namespaces, a bridge and veth pairs with iproute2).

Every node is a combined broker and controller, or, with `controllers=C` (as `scripts/cluster up N
--controllers C`), nodes 1..C are controller-only voters and C+1..N broker-only nodes. Node i
listens on 10.<net>.<sub>.i (client port 9092, controller port 9093, as its roles need) inside
namespace `<tag>n<i>`; the namespaces hang off one bridge whose address (.254) is where the test's
clients connect from. `cut(i)` blackholes the routes between node i and every other node in both
directions, so the others stop hearing from it (and it from them) while clients still reach it:
the Jepsen partition where a leader is cut off from its followers and the controllers.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

READY = "sluice ready"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, stdin=subprocess.DEVNULL)


def available() -> bool:
    """Whether this process may create network namespaces (root with iproute2)."""
    if os.geteuid() != 0:
        return False
    try:
        ip("netns", "list")
    except (OSError, subprocess.CalledProcessError):
        return False
    return True


class NetnsCluster:
    def __init__(
        self,
        root: Path,
        binary: Path,
        nodes: int = 3,
        settings: list[str] | None = None,
        controllers: int | None = None,
    ):
        self.root = root
        self.binary = binary
        self.count = nodes
        assert controllers is None or 0 < controllers < nodes, "controller-only nodes need broker nodes after them"
        self.controllers = controllers
        self.settings = settings or []
        self.tag = f"sl{random.randrange(16**4):04x}"
        self.subnet = f"10.{random.randrange(200, 250)}.{random.randrange(1, 250)}"
        self.bridge = f"{self.tag}br"
        self.procs: dict[int, subprocess.Popen] = {}
        self.cuts: set[tuple[int, int]] = set()
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.subnet}.254/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for i in self.ids():
            ns, host_end, ns_end = self.ns(i), f"{self.tag}h{i}", f"{self.tag}n{i}e"
            ip("netns", "add", ns)
            ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
            ip("link", "set", ns_end, "netns", ns)
            ip("link", "set", host_end, "master", self.bridge, "up")
            ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", ns_end)
            ip("-n", ns, "link", "set", ns_end, "up")
            ip("-n", ns, "link", "set", "lo", "up")

    def ids(self):
        return range(1, self.count + 1)

    def roles(self, i: int) -> str:
        if self.controllers is None:
            return "broker,controller"
        return "controller" if i <= self.controllers else "broker"

    def brokers(self) -> list[int]:
        return [i for i in self.ids() if "broker" in self.roles(i)]

    def ns(self, i: int) -> str:
        return f"{self.tag}n{i}"

    def address(self, i: int) -> str:
        return f"{self.subnet}.{i}"

    def bootstrap(self, nodes=None) -> str:
        return ",".join(f"{self.address(i)}:9092" for i in (nodes or self.brokers()))

    def log(self, i: int) -> Path:
        return self.root / f"node-{i}.log"

    def start(self, i: int, timeout_s: float = 60) -> None:
        if i in self.procs and self.procs[i].poll() is None:
            return
        voters = ",".join(f"{j}@{self.address(j)}:9093" for j in self.ids() if "controller" in self.roles(j))
        listeners = {
            "broker": f"PLAINTEXT://{self.address(i)}:9092",
            "controller": f"CONTROLLER://{self.address(i)}:9093",
        }
        log = self.log(i)
        offset = log.stat().st_size if log.exists() else 0
        args = [
            "ip", "netns", "exec", self.ns(i), str(self.binary),
            "--node-id", str(i),
            "--data-dir", str(self.root / f"data-{i}"),
            "--process-roles", self.roles(i),
            "--listeners", ",".join(listeners[role] for role in self.roles(i).split(",")),
            "--controller-quorum", voters,
            *self.settings,
        ]
        with open(log, "ab") as out:
            self.procs[i] = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + timeout_s
        while True:
            with open(log, "rb") as f:
                f.seek(offset)
                if READY.encode() in f.read():
                    return
            if self.procs[i].poll() is not None:
                raise AssertionError(f"node {i} exited ({self.procs[i].returncode}): {self.tail(i)}")
            if time.time() > deadline:
                raise AssertionError(f"node {i} not ready in {timeout_s}s: {self.tail(i)}")
            time.sleep(0.1)

    def start_all(self) -> None:
        # A quorum needs a majority before any node is ready: launch all, then wait.
        import threading

        errors = []

        def one(i):
            try:
                self.start(i)
            except AssertionError as e:
                errors.append(e)

        threads = [threading.Thread(target=one, args=(i,)) for i in self.ids()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def tail(self, i: int, lines: int = 30) -> str:
        try:
            return "\n".join(self.log(i).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def signal(self, i: int, sig: int) -> None:
        proc = self.procs.get(i)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, sig)

    def kill(self, i: int) -> None:
        self.signal(i, signal.SIGKILL)
        if i in self.procs:
            self.procs[i].wait(30)

    def pause(self, i: int) -> None:
        self.signal(i, signal.SIGSTOP)

    def resume(self, i: int) -> None:
        self.signal(i, signal.SIGCONT)

    def stop(self, i: int) -> None:
        self.resume(i)
        self.signal(i, signal.SIGTERM)
        if i in self.procs:
            try:
                self.procs[i].wait(30)
            except subprocess.TimeoutExpired:
                self.kill(i)

    def restart(self, i: int) -> None:
        self.stop(i)
        self.start(i)

    def cut(self, i: int) -> None:
        """Node i and every other node stop reaching each other; clients still reach all."""
        for j in self.ids():
            if j != i:
                for a, b in ((i, j), (j, i)):
                    if (a, b) not in self.cuts:
                        ip("-n", self.ns(a), "route", "add", "blackhole", f"{self.address(b)}/32")
                        self.cuts.add((a, b))

    def heal_network(self) -> None:
        for a, b in sorted(self.cuts):
            ip("-n", self.ns(a), "route", "del", "blackhole", f"{self.address(b)}/32", check=False)
        self.cuts.clear()

    def close(self) -> None:
        for i in list(self.procs):
            self.kill(i)
        for i in self.ids():
            ip("netns", "del", self.ns(i), check=False)
        ip("link", "del", self.bridge, check=False)
