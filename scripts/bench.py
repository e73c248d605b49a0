"""Sluice against Apache Kafka on this machine, in one run, with the same client (see scripts/bench).

Each broker runs alone (started fresh, stopped before the next), with the same load client
(broker/examples/load.rs, librdkafka) and then Kafka's own perf tools:

1. producer throughput, 1 KiB records, acks=1 and acks=all, 1 and 8 partitions;
2. end-to-end latency p50/p99/p99.9 at a fixed rate per acks mode: half the slower broker's
   single-partition maximum for that acks mode;
3. consumer throughput from a cold start (a new consumer process) of a filled topic;
4. broker CPU-seconds per GB moved, peak RSS, idle RSS, time from start to first produce;
5. Sluice durable (its default, fsync before acknowledging) and Sluice without fsync (Kafka's
   default, log.flush.interval.messages=Long.MAX), each against Kafka's default.

Writes BENCHMARKS.md and BENCHMARKS.png. Ratios are Sluice/Kafka from this one run: the machine
is shared, so figures from different runs do not compare.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
LOAD = REPO / "target" / "release" / "examples" / "load"
SLUICE = REPO / "target" / "release" / "sluice"
KAFKA_REF = REPO / "scripts" / "kafka-reference"
CLK_TCK = os.sysconf("SC_CLK_TCK")
NO_FSYNC = "9223372036854775807"


def progress(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kv(line: str) -> dict[str, str]:
    return dict(w.split("=", 1) for w in line.split() if "=" in w)


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def proc_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


# ---- brokers ----


class Broker:
    """One broker variant: start() returns once it accepts connections; pid is the server process."""

    name = ""
    label = ""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = 0
        self.pid = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> float:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def version(self) -> str:
        return "?"


class SluiceBroker(Broker):
    def __init__(self, workdir: Path, fsync: bool):
        super().__init__(workdir)
        self.fsync = fsync
        self.name = "sluice" if fsync else "sluice-nofsync"
        self.label = "Sluice (durable: fsync before ack)" if fsync else "Sluice (no fsync, Kafka's default)"
        self.proc: Optional[subprocess.Popen] = None
        self.data: Optional[Path] = None

    def start(self) -> float:
        self.port = free_port()
        self.data = self.workdir / f"{self.name}-data-{time.monotonic_ns()}"
        cmd = [str(SLUICE), "--data-dir", str(self.data),
               "--listeners", f"PLAINTEXT://{self.bootstrap},CONTROLLER://127.0.0.1:{free_port()}",
               # As the reference Kafka runs (its shipped server.properties): no 3 s wait for more
               # members before a new group's first rebalance, which kafka-consumer-perf-test's
               # group would otherwise spend on Sluice alone.
               "--set", "group.initial.rebalance.delay.ms=0"]
        if not self.fsync:
            cmd += ["--set", f"log.flush.interval.messages={NO_FSYNC}"]
        log = open(self.workdir / f"{self.name}.log", "ab")
        started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.pid = self.proc.pid
        return started

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        # A full run writes gigabytes; each broker's data goes when the broker does.
        if self.data is not None:
            shutil.rmtree(self.data, ignore_errors=True)
            self.data = None

    def version(self) -> str:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        return f"Sluice {rev.stdout.strip()}"


class KafkaBroker(Broker):
    name = "kafka"
    label = "Apache Kafka (default: no fsync)"

    def __init__(self, workdir: Path):
        super().__init__(workdir)
        self.dir: Optional[Path] = None
        self._version = "?"

    def start(self) -> float:
        self.port = free_port()
        self.dir = self.workdir / f"kafka-{time.monotonic_ns()}"
        started = time.monotonic()
        out = subprocess.run([str(KAFKA_REF), "start", "--port", str(self.port), "--dir", str(self.dir)],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"scripts/kafka-reference start failed:\n{out.stdout}\n{out.stderr}")
        ready = next((line for line in out.stdout.splitlines() if line.startswith("kafka ready")), "")
        fields = kv(ready)
        self.pid = int(fields.get("pid") or (self.dir / "kafka.pid").read_text().strip())
        self._version = fields.get("version", self._version)
        return started

    def stop(self) -> None:
        if self.dir is not None:
            subprocess.run([str(KAFKA_REF), "stop", "--dir", str(self.dir), "--clean"], stdin=subprocess.DEVNULL,
                           capture_output=True)
            self.dir = None

    def version(self) -> str:
        out = subprocess.run([str(KAFKA_REF), "version"], capture_output=True, text=True)
        return out.stdout.strip() or f"Apache Kafka {self._version}"


# ---- measurements ----


@dataclass
class Figures:
    broker: str
    label: str
    version: str = ""
    first_produce_ms: float = 0.0
    idle_rss_mib: float = 0.0
    peak_rss_mib: float = 0.0
    produce: dict = field(default_factory=dict)  # "acks=1 p=1" -> {"records_per_s", "mb_per_s", ...}
    consume: dict = field(default_factory=dict)
    cpu_s_per_gb: float = 0.0
    latency: dict = field(default_factory=dict)  # "acks=1" -> {"p50", "p99", "p999", "rate"}
    perf_tools: dict = field(default_factory=dict)


def load(*args: str, timeout: float = 900) -> dict[str, str]:
    out = subprocess.run([str(LOAD), *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"load {' '.join(args)} failed: {out.stderr.strip()[-500:]}")
    return kv(out.stdout.strip().splitlines()[-1])


def throughput_phase(broker: Broker, records: int, runs: list[tuple[str, int]], perf_records: int) -> Figures:
    fig = Figures(broker.name, broker.label, broker.version())
    progress(f"{broker.label}: starting")
    started = broker.start()
    try:
        load("first-produce", "--bootstrap", broker.bootstrap, "--topic", "warmup", timeout=120)
        # From spawning the broker (for Kafka: from `scripts/kafka-reference start`, which also
        # formats its storage) to the first acknowledged produce.
        fig.first_produce_ms = (time.monotonic() - started) * 1000
        progress(f"{broker.label}: first produce {fig.first_produce_ms:.0f} ms after start")
        time.sleep(2)
        fig.idle_rss_mib = proc_kib(broker.pid, "VmRSS") / 1024
        cpu_before = proc_cpu_s(broker.pid)
        moved = 0
        for acks, partitions in runs:
            key = f"acks={acks} p={partitions}"
            topic = f"bench-{acks}-{partitions}"
            r = load("produce", "--bootstrap", broker.bootstrap, "--topic", topic, "--records", str(records),
                     "--size", "1024", "--acks", acks, "--partitions", str(partitions))
            fig.produce[key] = {"records_per_s": float(r["records_per_s"]), "mb_per_s": float(r["mb_per_s"]),
                                "p99_ms": float(r["latency_ms_p99"])}
            moved += records * 1024
            progress(f"{broker.label}: produce {key}: {float(r['records_per_s']):,.0f} rec/s "
                     f"{float(r['mb_per_s']):.1f} MB/s")
        for acks, partitions in runs[:1]:
            topic = f"bench-{acks}-{partitions}"
            r = load("consume", "--bootstrap", broker.bootstrap, "--topic", topic, "--records", str(records))
            fig.consume = {"records_per_s": float(r["records_per_s"]), "mb_per_s": float(r["mb_per_s"])}
            moved += records * 1024
            progress(f"{broker.label}: consume (new consumer, filled topic): "
                     f"{float(r['records_per_s']):,.0f} rec/s {float(r['mb_per_s']):.1f} MB/s")
        fig.cpu_s_per_gb = (proc_cpu_s(broker.pid) - cpu_before) / (moved / 1e9)
        if perf_records:
            fig.perf_tools = perf_tools(broker, perf_records)
        fig.peak_rss_mib = proc_kib(broker.pid, "VmHWM") / 1024
    finally:
        broker.stop()
    return fig


def perf_tools(broker: Broker, records: int) -> dict:
    """Kafka's kafka-producer-perf-test and kafka-consumer-perf-test, as a second opinion."""
    topic = "perf-tools"
    prod = subprocess.run(
        [str(KAFKA_REF), "tool", "producer-perf", "--topic", topic, "--num-records", str(records),
         "--record-size", "1024", "--throughput", "-1", "--producer-props",
         f"bootstrap.servers={broker.bootstrap}", "acks=1"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    # "... 100000 records sent, 95238.1 records/sec (93.01 MB/sec), 12.3 ms avg latency, ..."
    m = re.search(r"([\d.]+) records/sec \(([\d.]+) MB/sec\).*?([\d.]+) ms 99th", prod.stdout.replace("\n", " "))
    result = {}
    if prod.returncode == 0 and m:
        result["producer"] = {"records_per_s": float(m.group(1)), "mb_per_s": float(m.group(2)),
                              "p99_ms": float(m.group(3))}
    else:
        result["producer"] = {"error": (prod.stderr or prod.stdout).strip()[-300:]}
    cons = subprocess.run(
        [str(KAFKA_REF), "tool", "consumer-perf", "--bootstrap-server", broker.bootstrap, "--topic", topic,
         "--num-records", str(records), "--timeout", "60000"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    # CSV header then values: start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, ...
    rows = [r for r in cons.stdout.splitlines() if r and r[0].isdigit()]
    if cons.returncode == 0 and rows:
        cols = [c.strip() for c in rows[-1].split(",")]
        # ..., rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
        result["consumer"] = {"mb_per_s": float(cols[3]), "records_per_s": float(cols[5]),
                              "rebalance_ms": float(cols[6]), "fetch_records_per_s": float(cols[9])}
    else:
        result["consumer"] = {"error": (cons.stderr or cons.stdout).strip()[-300:]}
    progress(f"{broker.label}: perf tools: {json.dumps(result)}")
    return result


def latency_phase(broker: Broker, fig: Figures, rates: dict[str, int], seconds: int) -> None:
    broker.start()
    try:
        load("first-produce", "--bootstrap", broker.bootstrap, "--topic", "warmup", timeout=120)
        for acks in ("1", "all"):
            rate = rates[acks]
            r = load("latency", "--bootstrap", broker.bootstrap, "--topic", f"latency-{acks}", "--rate", str(rate),
                     "--seconds", str(seconds), "--acks", acks)
            fig.latency[f"acks={acks}"] = {"rate": rate, "p50": float(r["latency_ms_p50"]),
                                           "p99": float(r["latency_ms_p99"]), "p999": float(r["latency_ms_p999"])}
            progress(f"{broker.label}: end-to-end latency acks={acks} at {rate:,} rec/s: "
                     f"p50 {r['latency_ms_p50']} ms, p99 {r['latency_ms_p99']} ms, p99.9 {r['latency_ms_p999']} ms")
    finally:
        broker.stop()


# ---- report ----


def ratio(a: float, b: float) -> str:
    return f"{a / b:.3g}" if b else "-"


def write_report(out: Path, figs: list[Figures], args, commands: list[str], chart: Optional[Path]) -> None:
    kafka = next((f for f in figs if f.broker == "kafka"), None)
    sluices = [f for f in figs if f.broker != "kafka"]
    lines = ["# Benchmarks: Sluice and Apache Kafka on one machine", "",
             "Written by `scripts/bench`; every figure below comes from one run on one machine, brokers one at a "
             "time, the same client for both. Ratios are Sluice/Kafka (for throughput higher is better, for "
             "latency, CPU and memory lower is better). The machine is shared and noisy: compare ratios within "
             "this file, not figures across runs.", "",
             f"- Machine: {platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
             f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB; "
             f"run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             "- Versions: " + "; ".join(f"{f.label}: {f.version}" for f in figs),
             f"- Client: librdkafka via the rdkafka crate (broker/examples/load.rs), 1 KiB records, "
             f"{args.records:,} records per throughput run, linger.ms=5; acks=all runs use the idempotent producer",
             "- Settings: Kafka as `scripts/kafka-reference` runs it (Kafka 4's shipped server.properties for "
             "one combined node); Sluice with its defaults plus group.initial.rebalance.delay.ms=0, as in that "
             "file (Kafka's and Sluice's built-in default is 3000 ms)",
             f"- Mode: {'short (CI smoke run, figures meaningless)' if args.short else 'full'}", ""]
    if chart:
        lines += [f"![throughput and latency]({chart.name})", ""]

    def table(title: str, rows: list[tuple[str, callable, str]]) -> None:
        nonlocal lines
        head = "| " + title + " | " + " | ".join(f.label for f in figs)
        if kafka:
            head += " | " + " | ".join(f"{s.label} / Kafka" for s in sluices)
        lines += [head + " |", "|---" * (1 + len(figs) + (len(sluices) if kafka else 0)) + "|"]
        for name, get, fmt in rows:
            vals = [get(f) for f in figs]
            cells = [fmt.format(v) if v is not None else "-" for v in vals]
            if kafka:
                kv_ = get(kafka)
                cells += [ratio(get(s), kv_) if get(s) is not None and kv_ else "-" for s in sluices]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")

    lines += ["## Producer throughput (records/s, MB/s in brackets)", ""]
    keys = list(figs[0].produce)
    table("run", [(k, (lambda f, k=k: f.produce.get(k, {}).get("records_per_s")), "{:,.0f}") for k in keys])
    table("run (MB/s)", [(k, (lambda f, k=k: f.produce.get(k, {}).get("mb_per_s")), "{:.1f}") for k in keys])
    lines += ["## End-to-end latency at a fixed rate (ms, produce to consume)", "",
              f"Rate: {figs[0].latency.get('acks=1', {}).get('rate', 0):,} records/s for acks=1 and "
              f"{figs[0].latency.get('acks=all', {}).get('rate', 0):,} for acks=all: half the slower broker's "
              "single-partition maximum for that acks mode above.", ""]
    rows = []
    for acks in ("acks=1", "acks=all"):
        for q in ("p50", "p99", "p999"):
            rows.append((f"{acks} {q.replace('p999', 'p99.9')}", (lambda f, a=acks, q=q: f.latency.get(a, {}).get(q)),
                         "{:.2f}"))
    table("latency", rows)
    lines += ["## Consumer, resources", ""]
    table("figure", [
        ("consume from a filled topic (records/s)", lambda f: f.consume.get("records_per_s"), "{:,.0f}"),
        ("consume (MB/s)", lambda f: f.consume.get("mb_per_s"), "{:.1f}"),
        ("broker CPU-seconds per GB moved", lambda f: f.cpu_s_per_gb, "{:.2f}"),
        ("peak RSS (MiB)", lambda f: f.peak_rss_mib, "{:.0f}"),
        ("idle RSS (MiB)", lambda f: f.idle_rss_mib, "{:.0f}"),
        ("start to first acknowledged produce (ms)", lambda f: f.first_produce_ms, "{:.0f}"),
    ])
    if any(f.perf_tools for f in figs):
        lines += ["## Second opinion: Kafka's kafka-producer-perf-test and kafka-consumer-perf-test", ""]
        table("tool", [
            ("producer-perf-test acks=1 (records/s)",
             lambda f: f.perf_tools.get("producer", {}).get("records_per_s"), "{:,.0f}"),
            ("producer-perf-test p99 (ms)", lambda f: f.perf_tools.get("producer", {}).get("p99_ms"), "{:.0f}"),
            ("consumer-perf-test incl. group join (records/s)",
             lambda f: f.perf_tools.get("consumer", {}).get("records_per_s"), "{:,.0f}"),
            ("consumer-perf-test fetching only (records/s)",
             lambda f: f.perf_tools.get("consumer", {}).get("fetch_records_per_s"), "{:,.0f}"),
            ("consumer-perf-test group join (ms)",
             lambda f: f.perf_tools.get("consumer", {}).get("rebalance_ms"), "{:,.0f}"),
        ])
        for f in figs:
            for tool, r in f.perf_tools.items():
                if "error" in r:
                    lines.append(f"- {f.label} {tool} perf tool failed: {r['error']}")
        lines.append("")
    lines += ["## How to reproduce", "", "```", *commands, "```", ""]
    out.write_text("\n".join(lines))
    progress(f"wrote {out}")


def write_chart(path: Path, figs: list[Figures]) -> Optional[Path]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        progress("matplotlib missing: no chart")
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    keys = list(figs[0].produce)
    width = 0.8 / len(figs)
    for i, f in enumerate(figs):
        xs = [k + i * width for k in range(len(keys))]
        ax1.bar(xs, [f.produce.get(k, {}).get("records_per_s", 0) / 1000 for k in keys], width, label=f.label)
    ax1.set_xticks([k + width * (len(figs) - 1) / 2 for k in range(len(keys))], keys)
    ax1.set_ylabel("thousand records/s (1 KiB)")
    ax1.set_title("Producer throughput (higher is better)")
    ax1.legend(fontsize=8)
    lat_keys = [(a, q) for a in ("acks=1", "acks=all") for q in ("p50", "p99", "p999")]
    for i, f in enumerate(figs):
        xs = [k + i * width for k in range(len(lat_keys))]
        ax2.bar(xs, [f.latency.get(a, {}).get(q, 0) for a, q in lat_keys], width, label=f.label)
    ax2.set_xticks([k + width * (len(figs) - 1) / 2 for k in range(len(lat_keys))],
                   [f"{a}\n{q.replace('p999', 'p99.9')}" for a, q in lat_keys])
    ax2.set_yscale("log")
    ax2.set_ylabel("ms (log scale)")
    ax2.set_title("End-to-end latency at a fixed rate (lower is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    progress(f"wrote {path}")
    return path


def main() -> int:
    p = argparse.ArgumentParser(description="Sluice against Apache Kafka, one run, one machine.")
    p.add_argument("--short", action="store_true", help="seconds, not minutes: a smoke run for CI")
    p.add_argument("--records", type=int, default=1_000_000, help="records per throughput run")
    p.add_argument("--latency-seconds", type=int, default=30)
    p.add_argument("--brokers", default="sluice,sluice-nofsync,kafka")
    p.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    p.add_argument("--no-perf-tools", action="store_true")
    args = p.parse_args()
    if args.short:
        args.records, args.latency_seconds = 3000, 2
    workdir = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    brokers: list[Broker] = []
    for name in args.brokers.split(","):
        if name == "sluice":
            brokers.append(SluiceBroker(workdir, fsync=True))
        elif name == "sluice-nofsync":
            brokers.append(SluiceBroker(workdir, fsync=False))
        elif name == "kafka":
            brokers.append(KafkaBroker(workdir))
        else:
            p.error(f"unknown broker {name}")
    runs = [("1", 1), ("all", 1), ("1", 8), ("all", 8)]
    perf_records = 0 if args.no_perf_tools else (2000 if args.short else 100_000)
    progress(f"{len(brokers)} brokers, {args.records:,} records per produce run, logs in {workdir}")
    figs = [throughput_phase(b, args.records, runs, perf_records) for b in brokers]
    # Each acks mode at half the slower broker's single-partition maximum for that mode, so that
    # neither broker runs saturated (a saturated run measures its queue, not its latency).
    rates = {}
    for acks in ("1", "all"):
        slowest = min(f.produce[f"acks={acks} p=1"]["records_per_s"] for f in figs)
        rates[acks] = max(100, int(slowest / 2 / 100) * 100)
        if args.short:
            rates[acks] = min(rates[acks], 2000)
    progress(f"latency phase at {rates['1']:,} (acks=1) and {rates['all']:,} (acks=all) records/s, "
             f"{args.latency_seconds} s per run")
    for b, f in zip(brokers, figs):
        latency_phase(b, f, rates, args.latency_seconds)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    chart = write_chart(out.with_suffix(".png"), figs)
    cmd = "scripts/bench" + (" --short" if args.short else "") + \
        (f" --records {args.records}" if not args.short and args.records != 1_000_000 else "")
    write_report(out, figs, args, [cmd], chart)
    (workdir / "figures.json").write_text(json.dumps([f.__dict__ for f in figs], indent=1))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
