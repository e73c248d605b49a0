#!/usr/bin/env python3
"""The client matrix runner: every client program runs every scenario against one broker.

    protocol-tests/matrix/run.py                       all clients against a fresh Sluice
    protocol-tests/matrix/run.py --broker kafka        the same against Apache Kafka
                                                       (scripts/kafka-reference)
    protocol-tests/matrix/run.py --broker both         both, plus a differential check of what
                                                       the two brokers answered
    protocol-tests/matrix/run.py --bootstrap H:P       a broker that is already running
    --clients java,franz-go   --scenarios metadata,idempotent   --no-build   --out FILE

Writes COMPATIBILITY.md (client x scenario -> pass / fail with the reason / unsupported, each
client's version) and exits non-zero when a scenario failed or a client reported nothing.
The per-client contract is protocol-tests/matrix/CONTRACT.md. Run it with the test venv's Python
(protocol-tests/.venv/bin/python), which has confluent-kafka for the runner's own admin work.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

MATRIX = Path(__file__).resolve().parent
REPO = MATRIX.parents[1]
sys.path.insert(0, str(REPO / "protocol-tests" / "python"))

sys.path.insert(0, str(MATRIX / "python"))

import mxcommon  # noqa: E402  (the scenario list every client program shares)
import sluice_testlib  # noqa: E402  (needs the path above)

# The clients, in the order of COMPATIBILITY.md's columns: (id, family, build directory).
CLIENTS = [
    ("java", "Java", "java"),
    ("rdkafka-rust", "librdkafka", "rust"),
    ("kcat", "librdkafka", "python"),
    ("confluent-python", "librdkafka", "python"),
    ("franz-go", "franz-go", "go"),
    ("sarama", "Sarama", "go"),
    ("kafka-python", "kafka-python", "python"),
    ("aiokafka", "aiokafka", "python"),
    ("kafkajs", "KafkaJS", "node"),
]
SCENARIOS = mxcommon.SCENARIOS
MIXED = "mixed_group"

SCENARIO_TIMEOUT_S = 60
MIXED_RECORDS = 40
MIXED_PARTITIONS = 4
BROKER_SETTINGS = {"group.initial.rebalance.delay.ms": "0"}


def log(msg: str) -> None:
    print(f"[matrix {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Result:
    client: str
    scenario: str
    status: str  # pass | fail | unsupported
    reason: str = ""
    seconds: float = 0.0
    observed: object = None
    version: str = ""


@dataclass
class BrokerRun:
    broker: str  # sluice | kafka | external
    results: dict = field(default_factory=dict)  # (client, scenario) -> Result
    versions: dict = field(default_factory=dict)  # client -> version
    seconds: float = 0.0


# ---- brokers ----


class SluiceBroker:
    name = "sluice"

    def __init__(self, workdir: Path):
        self.proc = sluice_testlib.BrokerProcess(workdir, settings=BROKER_SETTINGS)

    def start(self) -> str:
        self.proc.start()
        return self.proc.bootstrap

    def stop(self) -> None:
        self.proc.stop()

    def log_tail(self) -> str:
        return self.proc.log_tail()


class KafkaBroker:
    name = "kafka"

    def __init__(self, workdir: Path):
        self.dir = workdir / "kafka"
        self.script = REPO / "scripts" / "kafka-reference"

    def start(self) -> str:
        cmd = [str(self.script), "start", "--dir", str(self.dir)]
        for key, value in BROKER_SETTINGS.items():
            cmd += ["--config", f"{key}={value}"]
        out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"scripts/kafka-reference start failed:\n{out.stdout}\n{out.stderr}")
        for line in out.stdout.splitlines():
            if line.startswith("kafka ready"):
                for word in line.split():
                    if word.startswith("bootstrap="):
                        return word.split("=", 1)[1]
        raise RuntimeError(f"scripts/kafka-reference start printed no bootstrap address:\n{out.stdout}")

    def stop(self) -> None:
        subprocess.run([str(self.script), "stop", "--dir", str(self.dir)], stdin=subprocess.DEVNULL)

    def log_tail(self) -> str:
        logs = sorted(self.dir.glob("**/server.log"))
        if not logs:
            return "(no kafka server.log)"
        return "\n".join(logs[0].read_text(errors="replace").splitlines()[-40:])


# ---- running client programs ----


def client_bin(client: str) -> Path:
    return MATRIX / "bin" / client


def build(clients: list[str]) -> dict[str, str]:
    """Runs each needed build script once; returns client -> error for those that failed."""
    errors = {}
    # The toolchains first (JDK + Maven, Go, Node.js, the Python venv, kcat): a family whose
    # toolchain is missing is installed here, not skipped. Idempotent and quick when all is there.
    log("setup-test-deps (installs missing toolchains)")
    setup = subprocess.run([str(REPO / "scripts" / "setup-test-deps")], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True)
    if setup.returncode != 0:
        tail = "\n".join((setup.stdout + setup.stderr).splitlines()[-30:])
        log(f"setup-test-deps FAILED (exit {setup.returncode}):\n{tail}")
    dirs: dict[str, list[str]] = {}
    for cid, _family, bdir in CLIENTS:
        if cid in clients:
            dirs.setdefault(bdir, []).append(cid)
    for bdir, cids in dirs.items():
        script = MATRIX / bdir / "build"
        log(f"build {bdir} ({', '.join(cids)})")
        started = time.monotonic()
        out = subprocess.run([str(script)], stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if out.returncode != 0:
            tail = "\n".join((out.stdout + out.stderr).splitlines()[-30:])
            log(f"build {bdir} FAILED (exit {out.returncode}):\n{tail}")
            for cid in cids:
                errors[cid] = f"build of matrix/{bdir} failed (exit {out.returncode})"
        else:
            log(f"build {bdir} done in {time.monotonic() - started:.1f}s")
    return errors


def run_scenarios(client: str, bootstrap: str, run_id: str, scenarios: list[str], logdir: Path) -> list[Result]:
    """Runs one client's `scenarios` sub-command; returns a result for every requested scenario."""
    cmd = [str(client_bin(client)), "scenarios", "--bootstrap", bootstrap, "--run-id", run_id,
           "--only", ",".join(scenarios)]
    stderr_path = logdir / f"{client}.stderr.log"
    results: dict[str, Result] = {}
    timeout = SCENARIO_TIMEOUT_S * len(scenarios) + 60
    with open(stderr_path, "w") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True)
        lines: queue.Queue = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout] + [lines.put(None)], daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                proc.kill()
                break
            if line is None:
                break
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                log(f"{client}: not a JSON line on stdout: {line[:200]}")
                continue
            r = Result(
                client=client,
                scenario=obj.get("scenario", "?"),
                status=obj.get("status", "fail"),
                reason=obj.get("reason", "") or "",
                seconds=float(obj.get("seconds", 0) or 0),
                observed=obj.get("observed"),
                version=obj.get("version", "") or "",
            )
            if r.status not in ("pass", "fail", "unsupported"):
                r.reason = f"unknown status {r.status!r}: {r.reason}"
                r.status = "fail"
            results[r.scenario] = r
            mark = {"pass": "ok", "fail": "FAIL", "unsupported": "unsupported"}[r.status]
            log(f"{client:17} {r.scenario:20} {mark:11} {r.seconds:6.2f}s {r.reason[:150]}")
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    missing_reason = f"no result: the program exited with status {code}"
    if time.monotonic() >= deadline:
        missing_reason = f"no result: the program was killed after {timeout}s"
    tail = stderr_path.read_text(errors="replace").strip().splitlines()[-3:]
    if tail:
        missing_reason += " (stderr: " + " | ".join(t.strip() for t in tail)[:300] + ")"
    return [results.get(s) or Result(client, s, "fail", missing_reason) for s in scenarios]


class Member:
    """One `member` sub-command process; collects its assignment and records from stdout."""

    def __init__(self, client: str, bootstrap: str, group: str, topic: str, logdir: Path):
        self.client = client
        self.assigned: list[int] = []
        self.assignments = 0
        self.records: list[tuple[int, int, str]] = []
        self.closed = False
        self.lock = threading.Lock()
        self.err = open(logdir / f"{client}.member.stderr.log", "a")
        self.proc = subprocess.Popen(
            [str(client_bin(client)), "member", "--bootstrap", bootstrap, "--group", group, "--topic", topic],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self.lock:
                if ev.get("event") == "assigned":
                    self.assigned = sorted(int(p) for p in ev.get("partitions", []))
                    self.assignments += 1
                elif ev.get("event") == "record":
                    self.records.append((int(ev["partition"]), int(ev["offset"]), str(ev.get("value"))))
                elif ev.get("event") == "closed":
                    self.closed = True

    def close(self) -> int:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self.err.close()


def mixed_partner(client: str, clients: list[str]) -> Optional[str]:
    """The next client after `client` (in the run's order, wrapping) of another family."""
    families = {cid: fam for cid, fam, _ in CLIENTS}
    i = clients.index(client)
    for other in clients[i + 1:] + clients[:i]:
        if families[other] != families[client]:
            return other
    return None


def mixed_group(a: str, b: str, bootstrap: str, run_id: str, logdir: Path) -> Result:
    """Two clients in one consumer group: each record read exactly once, both get a share."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    started = time.monotonic()
    topic = f"mx-{a}-{b}-mixed-{run_id}"
    group = topic
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, MIXED_PARTITIONS, 1)])[topic].result(timeout=30)
    members = [Member(a, bootstrap, group, topic, logdir), Member(b, bootstrap, group, topic, logdir)]

    def fail(reason: str) -> Result:
        for m in members:
            m.close()
        return Result(a, MIXED, "fail", f"with {b}: {reason}", time.monotonic() - started)

    # Stable: both have partitions, disjoint, covering the topic.
    deadline = time.monotonic() + SCENARIO_TIMEOUT_S
    while True:
        with members[0].lock, members[1].lock:
            sets = [set(m.assigned) for m in members]
        if all(sets) and not (sets[0] & sets[1]) and (sets[0] | sets[1]) == set(range(MIXED_PARTITIONS)):
            break
        if time.monotonic() > deadline:
            return fail(f"no stable assignment within {SCENARIO_TIMEOUT_S}s: {a}={sorted(sets[0])} {b}={sorted(sets[1])}")
        for m in members:
            if m.proc.poll() is not None:
                return fail(f"{m.client} member exited with status {m.proc.returncode} before the group was stable")
        time.sleep(0.1)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(MIXED_RECORDS):
        producer.produce(topic, value=f"mixed-{i}".encode(), partition=i % MIXED_PARTITIONS)
    if producer.flush(30) != 0:
        return fail("the runner's producer could not deliver its records")
    deadline = time.monotonic() + SCENARIO_TIMEOUT_S
    while time.monotonic() < deadline:
        with members[0].lock, members[1].lock:
            total = len(members[0].records) + len(members[1].records)
        if total >= MIXED_RECORDS:
            break
        time.sleep(0.1)
    time.sleep(0.5)  # a duplicate delivered right after the last record would show up here
    codes = [m.close() for m in members]
    values = [v for m in members for (_p, _o, v) in m.records]
    expected = {f"mixed-{i}" for i in range(MIXED_RECORDS)}
    dups = sorted({v for v in values if values.count(v) > 1})
    missing = sorted(expected - set(values))
    counts = [len(m.records) for m in members]
    problems = []
    if missing:
        problems.append(f"{len(missing)} records never read (e.g. {missing[:3]})")
    if dups:
        problems.append(f"{len(dups)} records read twice (e.g. {dups[:3]})")
    if 0 in counts:
        problems.append(f"a member read nothing ({a} {counts[0]}, {b} {counts[1]})")
    for m, code in zip(members, codes):
        if not m.closed:
            problems.append(f"{m.client} member did not report a clean close (exit {code})")
    seconds = time.monotonic() - started
    observed = {"records": len(set(values)), "duplicates": len(dups)}
    if problems:
        return Result(a, MIXED, "fail", f"with {b}: " + "; ".join(problems), seconds, observed)
    return Result(a, MIXED, "pass", f"with {b}: {a} read {counts[0]}, {b} read {counts[1]}", seconds, observed)


# ---- one broker, all clients ----


def run_broker(broker_kind: str, bootstrap: Optional[str], clients: list[str], scenarios: list[str],
               build_errors: dict[str, str], workdir: Path) -> BrokerRun:
    run = BrokerRun(broker=broker_kind)
    started = time.monotonic()
    broker = None
    if bootstrap is None:
        broker = SluiceBroker(workdir / "sluice") if broker_kind == "sluice" else KafkaBroker(workdir)
        log(f"starting {broker_kind}")
        bootstrap = broker.start()
    log(f"{broker_kind} at {bootstrap}")
    run_id = uuid.uuid4().hex[:8]
    logdir = workdir / f"logs-{broker_kind}"
    logdir.mkdir(parents=True, exist_ok=True)
    try:
        plain = [s for s in scenarios if s != MIXED]
        for client in clients:
            if client in build_errors:
                for s in scenarios:
                    run.results[(client, s)] = Result(client, s, "fail", build_errors[client])
                continue
            if plain:
                for r in run_scenarios(client, bootstrap, run_id, plain, logdir):
                    run.results[(client, r.scenario)] = r
                    if r.version:
                        run.versions[client] = r.version
        if MIXED in scenarios:
            for client in clients:
                if client in build_errors:
                    continue
                partner = mixed_partner(client, clients)
                if partner is None:
                    run.results[(client, MIXED)] = Result(client, MIXED, "fail", "no client of another family in this run")
                    continue
                if partner in build_errors:
                    run.results[(client, MIXED)] = Result(client, MIXED, "fail", f"partner {partner} did not build")
                    continue
                try:
                    r = mixed_group(client, partner, bootstrap, run_id, logdir)
                except Exception as e:  # the runner's own admin/producer failed: still a result
                    r = Result(client, MIXED, "fail", f"with {partner}: {type(e).__name__}: {e}")
                mark = {"pass": "ok", "fail": "FAIL", "unsupported": "unsupported"}[r.status]
                log(f"{client:17} {MIXED:20} {mark:11} {r.seconds:6.2f}s {r.reason[:150]}")
                run.results[(client, MIXED)] = r
    finally:
        if broker is not None:
            if any(r.status == "fail" for r in run.results.values()):
                (logdir / "broker-log-tail.txt").write_text(broker.log_tail())
            broker.stop()
    run.seconds = time.monotonic() - started
    log(f"client program logs: {logdir}")
    return run


# ---- differential check ----


def differences(a: object, b: object, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in a:
                out.append(f"{sub}: only on kafka ({json.dumps(b[key])})")
            elif key not in b:
                out.append(f"{sub}: only on sluice ({json.dumps(a[key])})")
            else:
                out += differences(a[key], b[key], sub)
        return out
    if a != b:
        return [f"{path or 'value'}: sluice {json.dumps(a)[:120]}, kafka {json.dumps(b)[:120]}"]
    return []


# ---- COMPATIBILITY.md ----

MARK = {"pass": "pass", "fail": "**FAIL**", "unsupported": "n/a"}


def git_revision() -> str:
    out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def write_report(path: Path, runs: list[BrokerRun], clients: list[str], scenarios: list[str]) -> None:
    families = {cid: fam for cid, fam, _ in CLIENTS}
    lines = [
        "# Client compatibility",
        "",
        "Written by `protocol-tests/matrix/run.py` (the committed copy by `run.py --broker both`); do not edit by hand.",
        "Each cell is one scenario run by one client program against a fresh broker: **pass**, "
        "**FAIL** (reason below) or n/a (the client library has no API for it; reason below). "
        "The scenarios are defined in [protocol-tests/matrix/CONTRACT.md](protocol-tests/matrix/CONTRACT.md).",
        "",
        f"Sluice revision `{git_revision()}`; machine: {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}.",
        "",
    ]
    for run in runs:
        lines += [f"## Against {run.broker}", "", f"All clients in {run.seconds:.0f} s.", ""]
        lines.append("| scenario | " + " | ".join(f"{c}<br>({families.get(c, '?')})" for c in clients) + " |")
        lines.append("|---" * (len(clients) + 1) + "|")
        for s in scenarios:
            cells = []
            for c in clients:
                r = run.results.get((c, s))
                cells.append(MARK[r.status] if r else "")
            lines.append(f"| `{s}` | " + " | ".join(cells) + " |")
        lines.append("")
        notes = [r for r in run.results.values() if r.status != "pass"]
        partly = [(r, k) for r in run.results.values() if r.status == "pass" and isinstance(r.observed, dict)
                  for k, v in r.observed.items() if isinstance(v, str) and v.startswith("unsupported")]
        if partly:
            lines += ["Passed with a part the client library has no API for:", ""]
            for r, k in sorted(partly, key=lambda x: (clients.index(x[0].client), scenarios.index(x[0].scenario))):
                lines.append(f"- `{r.client}` `{r.scenario}`: {k} = {r.observed[k]}")
            lines.append("")
        if notes:
            lines += ["Failures and gaps:", ""]
            for r in sorted(notes, key=lambda r: (r.status, clients.index(r.client), scenarios.index(r.scenario))):
                lines.append(f"- {MARK[r.status]} `{r.client}` `{r.scenario}`: {r.reason}")
            lines.append("")
    lines += ["## Client versions", "", "| client | family | version |", "|---|---|---|"]
    for c in clients:
        version = next((run.versions[c] for run in runs if c in run.versions), "?")
        lines.append(f"| {c} | {families.get(c, '?')} | {version} |")
    lines.append("")
    by_broker = {run.broker: run for run in runs}
    if "sluice" in by_broker and "kafka" in by_broker:
        s_run, k_run = by_broker["sluice"], by_broker["kafka"]
        lines += ["## Differences between Sluice and Apache Kafka", "",
                  "For each scenario that passed on both, what the client observed on each broker.", ""]
        same = 0
        for c in clients:
            for s in scenarios:
                rs, rk = s_run.results.get((c, s)), k_run.results.get((c, s))
                if not rs or not rk or rs.status != "pass" or rk.status != "pass":
                    continue
                diff = differences(rs.observed, rk.observed)
                if diff:
                    lines.append(f"- `{c}` `{s}`: " + "; ".join(diff))
                else:
                    same += 1
        lines += ["", f"{same} client/scenario pairs observed the same on both brokers.", ""]
        failing_on_kafka = [r for r in k_run.results.values() if r.status == "fail"]
        if failing_on_kafka:
            lines += ["Scenarios that fail on Apache Kafka itself (the scenario or the client program "
                      "is wrong, not Sluice):", ""]
            lines += [f"- `{r.client}` `{r.scenario}`: {r.reason}" for r in failing_on_kafka]
            lines.append("")
    path.write_text("\n".join(lines))
    log(f"wrote {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=["sluice", "kafka", "both"], default="sluice")
    parser.add_argument("--bootstrap", help="use this running broker instead of starting one")
    parser.add_argument("--clients", help="comma-separated client ids (default: all)")
    parser.add_argument("--scenarios", help="comma-separated scenario names (default: all)")
    parser.add_argument("--no-build", action="store_true", help="do not run the build scripts")
    parser.add_argument("--out", default=str(REPO / "COMPATIBILITY.md"), help="report path ('-' for none)")
    parser.add_argument("--json", help="also write every result as JSON here")
    args = parser.parse_args()

    all_clients = [c for c, _, _ in CLIENTS]
    clients = args.clients.split(",") if args.clients else all_clients
    scenarios = args.scenarios.split(",") if args.scenarios else SCENARIOS + [MIXED]
    for c in clients:
        if c not in all_clients:
            parser.error(f"unknown client {c}; known: {', '.join(all_clients)}")
    for s in scenarios:
        if s not in SCENARIOS + [MIXED]:
            parser.error(f"unknown scenario {s}; known: {', '.join(SCENARIOS + [MIXED])}")
    build_errors = {} if args.no_build else build(clients)

    brokers = ["sluice", "kafka"] if args.broker == "both" else [args.broker]
    workdir = Path(tempfile.mkdtemp(prefix="sluice-matrix-"))
    runs = []
    for kind in brokers:
        runs.append(run_broker("external" if args.bootstrap else kind, args.bootstrap, clients, scenarios,
                               build_errors, workdir))
    if args.out != "-":
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_report(Path(args.out), runs, clients, scenarios)
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{"broker": run.broker, **r.__dict__} for run in runs for r in run.results.values()], indent=1))
    failed = [(run.broker, r) for run in runs for r in run.results.values() if r.status == "fail"]
    total = sum(len(run.results) for run in runs)
    unsupported = sum(1 for run in runs for r in run.results.values() if r.status == "unsupported")
    log(f"{total - len(failed) - unsupported} passed, {len(failed)} failed, {unsupported} not supported "
        f"by the client (results: {args.out}; logs: {workdir})")
    for broker, r in failed:
        log(f"FAILED on {broker}: {r.client} {r.scenario}: {r.reason[:300]}")
    if not failed:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
