"""The matrix's `kcat` client: drives the kcat binary (librdkafka) with subprocess. See ../CONTRACT.md.

kcat has no admin API: topics are created with mxadmin.py (confluent-kafka's AdminClient) and
`topic_admin` is `unsupported`. What kcat does show, and how it is read here:

- `-L -J`: metadata (brokers as "host:port", controller id, partitions with leader and replicas);
- `-P -v -v`: one stderr line per delivery report, "Message delivered to partition P (offset O)"
  or "Delivery failed for message: <librdkafka error string>", in send order within a partition;
  keys with `-K`, headers with `-H name=value` / `-H name` (null value), null values with `-Z`;
- `-C -J -e`: records as JSON (null key / payload as null, headers as a flat [name, value, ...]);
- `-Q -J -t T:P:TS`: ListOffsets by timestamp (-1 latest, -2 earliest);
- `-G`: a group member; with the default verbosity it prints "Group G rebalanced (memberid M):
  assigned: T [0], T [2]" / "revoked: ..." on stderr (eager assignors), read for `member`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import zlib

import mxadmin
from mxcommon import Ctx, Failed, Unsupported, check, emit, kafka_error_name, log, main, stdin_closed_event, table_from

CLIENT = "kcat"
KCAT = os.environ.get("KCAT", "kcat")


def kcat_version() -> str:
    try:
        out = subprocess.run([KCAT, "-V"], capture_output=True, text=True, timeout=10).stdout
    except OSError as e:
        return f"kcat missing ({e})"
    m = re.search(r"Version (\S+) .*?librdkafka (\S+)", out)
    return f"kcat {m.group(1)} (librdkafka {m.group(2)})" if m else "kcat (unknown version)"


VERSION = kcat_version()
COMMON = ["-X", "broker.address.family=v4"]
DELIVERED = re.compile(r"^% Message delivered to partition (-?\d+) \(offset (-?\d+)\)")
FAILED = re.compile(r"^% Delivery failed for message: (.*)$")


def librdkafka_error_names() -> dict[str, str]:
    """librdkafka's error strings (rd_kafka_err2str, what kcat prints) -> Kafka's protocol names."""
    from confluent_kafka import KafkaError
    names = {}
    for code in range(0, 130):
        try:
            names[KafkaError(code).str()] = kafka_error_name(code)
        except Exception:
            pass
    return names


_ERROR_NAMES: dict[str, str] | None = None


def error_name(err2str: str) -> str:
    global _ERROR_NAMES
    if _ERROR_NAMES is None:
        _ERROR_NAMES = librdkafka_error_names()
    return _ERROR_NAMES.get(err2str.strip(), err2str.strip())


def kcat(ctx: Ctx, args: list[str], stdin: bytes | None = None, ok_codes=(0,)) -> subprocess.CompletedProcess:
    """Runs kcat against the scenario's broker; a failure (exit code, timeout) fails the scenario."""
    cmd = [KCAT, "-b", ctx.bootstrap, *COMMON, *args]
    try:
        r = subprocess.run(cmd, input=stdin if stdin is not None else b"", capture_output=True,
                           timeout=max(1.0, ctx.remaining() - 1))
    except subprocess.TimeoutExpired:
        raise Failed(f"kcat {' '.join(args)[:120]} did not finish in time")
    if r.returncode not in ok_codes:
        raise Failed(f"kcat {' '.join(args)[:120]} exited {r.returncode}: {r.stderr.decode(errors='replace')[-400:]}")
    return r


def produce(ctx: Ctx, topic: str, lines: list[bytes], args: list[str] = (), ok_codes=(0,)) -> list[tuple]:
    """Produces one record per line (newline-delimited) in one kcat run; returns its delivery
    reports in the order kcat printed them: ("ok", partition, offset) or ("error", name)."""
    for line in lines:
        check(b"\n" not in line, "record contains the delimiter")
    r = kcat(ctx, ["-P", "-t", topic, "-v", "-v", *args], b"".join(line + b"\n" for line in lines), ok_codes)
    reports: list[tuple] = []
    for line in r.stderr.decode(errors="replace").splitlines():
        if m := DELIVERED.match(line):
            reports.append(("ok", int(m.group(1)), int(m.group(2))))
        elif m := FAILED.match(line):
            reports.append(("error", error_name(m.group(1))))
    check(len(reports) == len(lines), f"{len(reports)} delivery reports for {len(lines)} records")
    return reports


def acked(reports: list[tuple]) -> list[tuple[int, int]]:
    bad = [r for r in reports if r[0] != "ok"]
    check(not bad, f"produce failed: {bad[:3]}")
    return [(p, o) for _ok, p, o in reports]


def consume(ctx: Ctx, topic: str, partition: int | None = None, args: list[str] = ()) -> list[dict]:
    """Reads `topic` (or one partition of it) from the beginning to its end: kcat's JSON records."""
    part = ["-p", str(partition)] if partition is not None else []
    r = kcat(ctx, ["-C", "-t", topic, *part, "-o", "beginning", "-e", "-J", "-q", *args])
    return [json.loads(line) for line in r.stdout.decode().splitlines() if line.strip()]


def key_value_lines(pairs) -> list[bytes]:
    return [f"{k}\t{v}".encode() for k, v in pairs]


KEYED = ["-K", "\\t"]


# ---- scenarios ----


def metadata(ctx: Ctx) -> dict:
    topic = ctx.topic()
    ctx.step("create topic (mxadmin)")
    mxadmin.create_topic(ctx.bootstrap, topic, 3)
    ctx.step("kcat -L")
    md = json.loads(kcat(ctx, ["-L", "-J", "-t", topic]).stdout)
    brokers = {b["id"]: b["name"] for b in md["brokers"]}
    check(brokers, "no brokers listed")
    check(ctx.bootstrap in brokers.values(), f"no broker at {ctx.bootstrap}: {brokers}")
    (tm,) = [t for t in md["topics"] if t["topic"] == topic]
    check("error" not in tm, f"topic error {tm.get('error')}")
    parts = sorted(tm["partitions"], key=lambda p: p["partition"])
    check(len(parts) == 3, f"{len(parts)} partitions, expected 3")
    for p in parts:
        check(p["leader"] in brokers, f"partition {p['partition']} leader {p['leader']} not a listed broker")
        check(len(p["replicas"]) == 1, f"partition {p['partition']} replicas {p['replicas']}, expected 1")
    controller = md.get("controllerid", -1)
    return {
        "brokers": len(brokers),
        "partitions": len(parts),
        "replicas": [len(p["replicas"]) for p in parts],
        "controller_listed": controller in brokers if controller is not None and controller >= 0 else None,
    }


def topic_admin(ctx: Ctx) -> dict:
    raise Unsupported("kcat has no admin API (create/describe/alter/delete topics, configs, partitions)")


def compression(codec: str):
    def scenario(ctx: Ctx) -> dict:
        topic = ctx.topic()
        ctx.step("create topic (mxadmin)")
        mxadmin.create_topic(ctx.bootstrap, topic, 1)
        ctx.step(f"kcat -P -z {codec}")
        offsets = acked(produce(ctx, topic, key_value_lines((f"k-{i}", f"v-{i}") for i in range(100)),
                                [*KEYED, "-z", codec]))
        check(offsets == [(0, i) for i in range(100)], f"acked {offsets[:3]}..., expected partition 0 offsets 0..99")
        ctx.step("kcat -C")
        recs = consume(ctx, topic, 0)
        got = [(r["offset"], r["key"], r["payload"]) for r in recs]
        want = [(i, f"k-{i}", f"v-{i}") for i in range(100)]
        check(got == want, f"read {len(got)} records; first mismatch "
                           f"{next(((g, w) for g, w in zip(got, want) if g != w), None)}")
        return {"records": len(recs), "offsets": [recs[0]["offset"], recs[-1]["offset"]]}
    return scenario


def keyed_partitioning(ctx: Ctx) -> dict:
    topic = ctx.topic()
    ctx.step("create topic (mxadmin)")
    mxadmin.create_topic(ctx.bootstrap, topic, 6)
    keys = [f"key-{i}" for i in range(60)]
    # kcat's delivery reports give a partition and offset but not the key. librdkafka's default
    # partitioner (consistent_random) is CRC-32 of the key modulo the partition count: that is
    # the library's choice for each key, checked against the reports and against what is read.
    partition_of = {k: zlib.crc32(k.encode()) % 6 for k in keys}
    counts = sorted((p, 2 * sum(1 for v in partition_of.values() if v == p)) for p in set(partition_of.values()))
    reported: list[int] = []
    for rnd in (1, 2):
        ctx.step(f"kcat -P round {rnd}")
        reported += [p for p, _o in acked(produce(ctx, topic, key_value_lines((k, f"r{rnd}-{k}") for k in keys), KEYED))]
    got_counts = sorted((p, reported.count(p)) for p in set(reported))
    check(got_counts == counts, f"delivery reports per partition {got_counts}, partitioner predicts {counts}")
    ctx.step("kcat -C all partitions")
    found: dict[str, list[int]] = {}
    recs = consume(ctx, topic)
    check(len(recs) == 120, f"read {len(recs)} records, expected 120")
    for r in recs:
        found.setdefault(r["key"], []).append(r["partition"])
    for k in keys:
        check(found.get(k) == [partition_of[k]] * 2, f"{k} expected in {partition_of[k]} twice, found in {found.get(k)}")
    return {"records": len(recs), "partition_of": partition_of}


def headers_nulls(ctx: Ctx) -> dict:
    topic = ctx.topic()
    ctx.step("create topic (mxadmin)")
    mxadmin.create_topic(ctx.bootstrap, topic, 1)
    sent = [
        (None, "v1", []),
        ("k2", None, []),
        ("k3", "", []),
        ("k4", "v4", [["h1", "a"], ["h1", "b"], ["empty", ""]]),
        ("k5", "v5", [["n", None]]),
    ]
    # One kcat run per record: -Z (empty value -> null) and -H apply to a whole run.
    runs = [
        ([b"v1"], []),                                   # no key delimiter -> null key
        ([b"k2\t"], ["-Z"]),                             # empty value with -Z -> null value
        ([b"k3\t"], []),                                 # empty value
        ([b"k4\tv4"], ["-H", "h1=a", "-H", "h1=b", "-H", "empty="]),
        ([b"k5\tv5"], ["-H", "n"]),                      # -H name without '=' -> null value
    ]
    for i, (lines, args) in enumerate(runs):
        ctx.step(f"kcat -P record {i + 1}")
        check(acked(produce(ctx, topic, lines, [*KEYED, *args])) == [(0, i)], f"record {i + 1} not at offset {i}")
    ctx.step("kcat -C")
    recs = consume(ctx, topic, 0)
    got = []
    for r in recs:
        h = r.get("headers", [])
        got.append((r["key"], r["payload"], [[h[j], h[j + 1]] for j in range(0, len(h), 2)]))
    check(got == sent, f"read {got}, sent {sent}")
    return {"records": [[k, v, h] for k, v, h in got]}


def idempotent(ctx: Ctx) -> dict:
    topic = ctx.topic()
    ctx.step("create topic (mxadmin)")
    mxadmin.create_topic(ctx.bootstrap, topic, 1)
    ctx.step("kcat -P idempotent")
    offsets = acked(produce(ctx, topic, [f"i-{i}".encode() for i in range(200)],
                            ["-X", "enable.idempotence=true", "-X", "acks=all"]))
    check(offsets == [(0, i) for i in range(200)], f"acked {offsets[:3]}..{offsets[-3:]}, expected offsets 0..199")
    ctx.step("kcat -C")
    recs = consume(ctx, topic, 0)
    check([r["payload"] for r in recs] == [f"i-{i}" for i in range(200)], f"read {len(recs)} records, not i-0..i-199 in order")
    return {"records": len(recs), "offsets": [recs[0]["offset"], recs[-1]["offset"]]}


def group_consume(ctx: Ctx, topic: str, group: str) -> list[dict]:
    """One kcat -G member that reads until every assigned partition is at its end, then closes.
    Offsets are stored as records are returned and committed on close (kcat has no commit call)."""
    r = kcat(ctx, ["-G", group, "-e", "-J", "-q", "-X", "topic.auto.offset.reset=earliest",
                   "-X", "auto.commit.interval.ms=100", topic])
    return [json.loads(line) for line in r.stdout.decode().splitlines() if line.strip()]


def group_resume(ctx: Ctx) -> dict:
    topic, group = ctx.topic(), ctx.group()
    ctx.step("create topic (mxadmin)")
    mxadmin.create_topic(ctx.bootstrap, topic, 3)

    def produce_spread(prefix: str, n: int) -> None:
        # record i goes to partition i % 3 (kcat -P -p: one partition per run)
        for part in range(3):
            acked(produce(ctx, topic, [f"{prefix}-{i}".encode() for i in range(n) if i % 3 == part], ["-p", str(part)]))

    ctx.step("kcat -P 30")
    produce_spread("a", 30)
    ctx.step("consumer A (kcat -G -e)")
    first = group_consume(ctx, topic, group)
    check(sorted(r["payload"] for r in first) == sorted(f"a-{i}" for i in range(30)),
          f"consumer A read {len(first)} records: {sorted(r['payload'] for r in first)[:5]}...")
    ctx.step("kcat -P 10 more")
    produce_spread("b", 10)
    ctx.step("consumer B (kcat -G -e)")
    second = group_consume(ctx, topic, group)
    values = sorted(r["payload"] for r in second)
    check(values == sorted(f"b-{i}" for i in range(10)), f"consumer B read {values}")
    # kcat cannot print committed offsets. What it can do: a reader that starts at the group's
    # committed offsets (-o stored; earliest when there is none) must find nothing left to read.
    ctx.step("kcat -C -o stored")
    r = kcat(ctx, ["-C", "-t", topic, "-o", "stored", "-e", "-J", "-q", "-X", f"group.id={group}",
                   "-X", "topic.auto.offset.reset=earliest"])
    rest = [json.loads(line) for line in r.stdout.decode().splitlines() if line.strip()]
    check(not rest, f"{len(rest)} records after the group's committed offsets, expected none "
                    f"(first: partition {rest[0]['partition']} offset {rest[0]['offset']})" if rest else "")
    return {"first": len(first), "second": len(second), "committed": "unsupported"}


def query_offset(ctx: Ctx, topic: str, ts: int) -> int:
    r = json.loads(kcat(ctx, ["-Q", "-J", "-t", f"{topic}:0:{ts}"]).stdout)
    p = r[topic]["0"]
    if "error" in p:
        raise Failed(f"offsets for timestamp {ts}: {p['error']}")
    return p["offset"] if p["offset"] >= 0 else -1


def timestamp_offsets(ctx: Ctx) -> dict:
    topic = ctx.topic()
    ctx.step("create topic (mxadmin)")
    mxadmin.create_topic(ctx.bootstrap, topic, 1)
    # kcat -P cannot give a record a timestamp: each record gets its create time from librdkafka
    # (one kcat run per record, so they differ). The times queried are placed relative to those
    # timestamps as the scenario places them relative to t0, t0+1000 and t0+2000.
    ctx.step("kcat -P 3 records (one run each)")
    for i in range(3):
        acked(produce(ctx, topic, [f"t-{i}".encode()]))
    ctx.step("kcat -C timestamps")
    ts = [r["ts"] for r in consume(ctx, topic, 0)]
    check(len(ts) == 3 and ts[0] < ts[1] < ts[2], f"record timestamps {ts} not 3 increasing ones")
    ctx.step("kcat -Q")
    obs = {"earliest": query_offset(ctx, topic, -2), "latest": query_offset(ctx, topic, -1),
           "t0+500": query_offset(ctx, topic, (ts[0] + ts[1]) // 2 + 1 if ts[1] - ts[0] > 1 else ts[1]),
           "t0+2000": query_offset(ctx, topic, ts[2]),
           "after_last": query_offset(ctx, topic, ts[2] + 10000)}
    want = {"earliest": 0, "latest": 3, "t0+500": 1, "t0+2000": 2, "after_last": -1}
    check(obs == want, f"saw {obs}, expected {want} (record timestamps {ts})")
    return obs


def large_records(ctx: Ctx) -> dict:
    topic = ctx.topic()
    ctx.step("create topic (mxadmin)")
    mxadmin.create_topic(ctx.bootstrap, topic, 1, {"max.message.bytes": "200000"})
    # ASCII values (kcat's JSON output is text); one record per batch so that the broker judges
    # each on its own; one kcat run = one producer for all three.
    near = bytes(97 + (i * 7) % 26 for i in range(190000))
    ctx.step("kcat -P 190000, 210000, small")
    reports = produce(ctx, topic, [near, b"x" * 210000, b"small"],
                      ["-X", "message.max.bytes=1048576", "-X", "batch.num.messages=1", "-X", "retries=0",
                       "-X", "compression.codec=none"], ok_codes=(0, 1))
    obs = {
        "near_limit": "ok" if reports[0][0] == "ok" else reports[0][1],
        "over_limit": "no error" if reports[1][0] == "ok" else reports[1][1],
        "after": "ok" if reports[2][0] == "ok" else reports[2][1],
    }
    check(obs == {"near_limit": "ok", "over_limit": "MESSAGE_TOO_LARGE", "after": "ok"}, f"delivery reports {reports}")
    ctx.step("kcat -C")
    recs = consume(ctx, topic, 0, ["-X", "fetch.message.max.bytes=1048576"])
    check([r["payload"] for r in recs] == [near.decode(), "small"],
          f"read back {[(r['offset'], len(r['payload'] or '')) for r in recs]}, expected the 190000 bytes then 'small'")
    return obs


ASSIGNED = re.compile(r"^% Group .* rebalanced \(memberid .*\): (assigned|revoked): ?(.*)$")


def member(args) -> None:
    """kcat -G as the member. kcat has no commit call: offsets are stored when records are
    returned and auto-committed every 100 ms and on revoke/close, so records are printed before
    their offsets are committed (not after a synchronous commit, as the contract asks)."""
    done = stdin_closed_event()
    proc = subprocess.Popen(
        [KCAT, "-b", args.bootstrap, *COMMON, "-G", args.group, "-J", "-u",
         "-X", "partition.assignment.strategy=roundrobin", "-X", "topic.auto.offset.reset=earliest",
         "-X", "enable.auto.commit=true", "-X", "auto.commit.interval.ms=100", args.topic],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assigned: set[int] = set()
    topic_part = re.compile(re.escape(args.topic) + r" \[(\d+)\]")

    def read_stderr() -> None:
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            log(f"kcat: {line}")
            if m := ASSIGNED.match(line):
                parts = {int(p) for p in topic_part.findall(m.group(2))}
                if m.group(1) == "assigned":
                    assigned.clear()
                    assigned.update(parts)
                else:
                    assigned.difference_update(parts)
                emit({"event": "assigned", "partitions": sorted(assigned)})

    def read_stdout() -> None:
        for raw in proc.stdout:
            if raw.strip():
                r = json.loads(raw)
                emit({"event": "record", "partition": r["partition"], "offset": r["offset"],
                      "value": r["payload"] if r["payload"] is not None else ""})

    readers = [threading.Thread(target=read_stderr), threading.Thread(target=read_stdout)]
    for t in readers:
        t.start()
    while not done.wait(0.2):
        if proc.poll() is not None:
            log(f"kcat exited early with {proc.returncode}")
            break
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # kcat leaves the group and closes on SIGTERM
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for t in readers:
        t.join()
    emit({"event": "closed"})


if __name__ == "__main__":
    log(f"{CLIENT}: {VERSION}")
    main(CLIENT, VERSION, table_from(globals(), compression), member)
