"""kcat (librdkafka's command-line client) against sluice: what an operator types first."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from sluice_testlib import create_topic

KCAT_TIMEOUT_S = 60


def kcat(broker, *args: str, stdin: str = "") -> str:
    """Runs kcat against `broker` and returns its stdout; fails the test on a non-zero exit."""
    cmd = ["kcat", "-b", broker.bootstrap, "-m", "10", *args]
    result = subprocess.run(
        cmd, input=stdin.encode(), capture_output=True, timeout=KCAT_TIMEOUT_S, check=False
    )
    stdout = result.stdout.decode(errors="replace")
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 0, (
        f"{' '.join(cmd)} exited {result.returncode}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    )
    return stdout


def produce(broker, topic: str, lines: list[str], *extra: str) -> None:
    kcat(broker, "-P", "-t", topic, "-p", "0", *extra, stdin="".join(line + "\n" for line in lines))


def consume(broker, topic: str, fmt: str) -> list[str]:
    """Every message of partition 0 from the beginning, formatted with kcat's -f."""
    out = kcat(broker, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q", "-f", fmt)
    return out.splitlines()


def test_metadata_lists_broker_and_topic(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=3)

    text = kcat(broker, "-L")
    assert re.search(rf"^\s*1 brokers:\s*$", text, re.M), text
    assert re.search(rf"^\s*broker 1 at {re.escape(broker.bootstrap)}\b", text, re.M), text
    assert re.search(rf'^\s*topic "{re.escape(topic_name)}" with 3 partitions:', text, re.M), text

    md = json.loads(kcat(broker, "-L", "-J", "-t", topic_name))
    assert [b["name"] for b in md["brokers"]] == [broker.bootstrap]
    (topic,) = [t for t in md["topics"] if t["topic"] == topic_name]
    assert "error" not in topic, topic
    assert sorted(p["partition"] for p in topic["partitions"]) == [0, 1, 2]
    for p in topic["partitions"]:
        assert p["leader"] == 1, p
        assert [r["id"] for r in p["replicas"]] == [1], p
        assert [r["id"] for r in p["isrs"]] == [1], p


def test_produce_then_consume_in_order_with_offsets(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    lines = [f"line-{i}" for i in range(100)]

    produce(broker, topic_name, lines)

    assert consume(broker, topic_name, "%o %k %s\n") == [f"{i}  line-{i}" for i in range(100)]


def test_keys_and_headers_round_trip(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    pairs = [(f"key-{i % 7}", f"value-{i}") for i in range(50)]

    produce(broker, topic_name, [f"{k}:{v}" for k, v in pairs], "-K", ":", "-H", "origin=kcat", "-H", "n=1")

    assert consume(broker, topic_name, "%o|%k|%s|%h\n") == [
        f"{i}|{k}|{v}|origin=kcat,n=1" for i, (k, v) in enumerate(pairs)
    ]


def test_auto_created_topic_gets_default_partition_count(broker, topic_name):
    produce(broker, topic_name, ["hello"])

    assert consume(broker, topic_name, "%o %s\n") == ["0 hello"]
    md = json.loads(kcat(broker, "-L", "-J", "-t", topic_name))
    (topic,) = [t for t in md["topics"] if t["topic"] == topic_name]
    assert len(topic["partitions"]) == 1  # num.partitions defaults to 1


def test_offset_for_timestamp(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    produce(broker, topic_name, [f"early-{i}" for i in range(5)])
    time.sleep(0.05)
    between_ms = int(time.time() * 1000)
    time.sleep(0.05)
    produce(broker, topic_name, [f"late-{i}" for i in range(5)])

    # The records carry the client's CreateTime; check them so a failure below is unambiguous.
    stamped = [line.split(" ", 2) for line in consume(broker, topic_name, "%o %T %s\n")]
    assert [s[2] for s in stamped] == [f"early-{i}" for i in range(5)] + [f"late-{i}" for i in range(5)]
    assert all(int(ts) < between_ms for _, ts, _ in stamped[:5]), (between_ms, stamped)
    assert all(int(ts) > between_ms for _, ts, _ in stamped[5:]), (between_ms, stamped)

    assert query_offset(broker, topic_name, between_ms) == 5
    assert query_offset(broker, topic_name, 0) == 0
    first_late_ts = int(stamped[5][1])
    assert query_offset(broker, topic_name, first_late_ts) == 5


def query_offset(broker, topic: str, timestamp_ms: int) -> int:
    """kcat -Q: the first offset of partition 0 whose timestamp is >= timestamp_ms."""
    out = kcat(broker, "-Q", "-J", "-t", f"{topic}:0:{timestamp_ms}")
    # kcat 1.7 answers {"<topic>": {"topic": "<topic>", "<partition>": {"partition": p, "offset": o}}}
    entry = json.loads(out)[topic]["0"]
    assert entry.get("partition") == 0 and "error" not in entry, out
    return int(entry["offset"])


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_produce_consumes_back_identically(broker, topic_name, codec):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    # Repetitive enough to compress well, varied enough that a mix-up shows.
    lines = [f"{codec}-{i:05d}-" + "abcdefgh" * (i % 13) for i in range(500)]

    produce(broker, topic_name, lines, "-z", codec, "-X", "linger.ms=50")

    assert consume(broker, topic_name, "%o %s\n") == [f"{i} {line}" for i, line in enumerate(lines)]
