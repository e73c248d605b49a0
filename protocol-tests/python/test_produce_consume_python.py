"""Every acknowledged message comes back, in order per partition, exactly once: through
confluent-kafka (librdkafka) and kafka-python, and across a clean restart and a kill -9."""

from __future__ import annotations

import functools
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from sluice_testlib import CLIENT_TIMEOUT_S, create_topic, unique_topic

CONSUME_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class Record:
    """What a consumer can see of one message, in a form that compares and hashes."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    def content(self) -> tuple:
        return (self.key, self.value, self.headers)


@dataclass
class Produced:
    """A topic and every record the broker acknowledged on it, as the producer saw the acks."""

    topic: str
    partitions: int
    records: list[Record] = field(default_factory=list)

    def by_partition(self) -> dict[int, list[Record]]:
        out: dict[int, list[Record]] = {p: [] for p in range(self.partitions)}
        for r in self.records:
            out[r.partition].append(r)
        for rs in out.values():
            rs.sort(key=lambda r: r.offset)
        return out


# ---- confluent-kafka ----


def confluent_produce(bootstrap: str, topic: str, partitions: int, count: int, tag: str) -> Produced:
    """Produces `count` keyed messages with headers, idempotent and acks=all; asserts every ack."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "broker.address.family": "v4",
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
        }
    )
    produced = Produced(topic, partitions)
    failures: list[str] = []

    def on_delivery(headers: tuple, err, msg) -> None:
        # librdkafka's delivery report does not carry the headers back, so they come from the caller.
        if err is not None:
            failures.append(f"{msg.key()!r}: {err}")
            return
        produced.records.append(Record(msg.partition(), msg.offset(), msg.key(), msg.value(), headers))

    for i in range(count):
        key = f"{tag}-key-{i % 101}".encode()
        value = f"{tag}-value-{i}".encode()
        headers = (("seq", str(i).encode()), ("origin", b"confluent-kafka"))
        report = functools.partial(on_delivery, headers)
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=list(headers), on_delivery=report)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(CLIENT_TIMEOUT_S * 2)

    assert remaining == 0, f"{remaining} messages never acknowledged"
    assert not failures, f"{len(failures)} deliveries failed, first: {failures[:5]}"
    assert len(produced.records) == count
    # Within a partition, offsets are dense from 0, and in the order the producer sent them.
    for p, rs in produced.by_partition().items():
        assert [r.offset for r in rs] == list(range(len(rs))), f"partition {p}: offsets not 0..n-1"
        seqs = [int(dict(r.headers)["seq"]) for r in rs]
        assert seqs == sorted(seqs), f"partition {p}: stored out of produce order"
    return produced


def confluent_consume(bootstrap: str, topic: str, partitions: int, expected_per_partition: dict[int, int]) -> list[Record]:
    """Reads every partition from the beginning by explicit assignment (no group, no commits)
    until it has `expected_per_partition` messages and has hit the end of each partition."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "broker.address.family": "v4",
            # librdkafka insists on a group.id; with assign() and no commits it is never used.
            "group.id": unique_topic("unused-group"),
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "error",  # a reset would silently hide lost data
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        records: list[Record] = []
        seen: Counter[int] = Counter()
        at_eof: set[int] = set()
        deadline = time.monotonic() + CONSUME_TIMEOUT_S
        while time.monotonic() < deadline:
            done = all(seen[p] >= n for p, n in expected_per_partition.items())
            if done and at_eof >= set(range(partitions)):
                break
            for msg in consumer.consume(num_messages=1000, timeout=1.0):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_eof.add(msg.partition())
                        continue
                    raise AssertionError(f"consumer error: {err}")
                at_eof.discard(msg.partition())
                headers = tuple((k, v) for k, v in (msg.headers() or []))
                records.append(Record(msg.partition(), msg.offset(), msg.key(), msg.value(), headers))
                seen[msg.partition()] += 1
        return records
    finally:
        consumer.close()


def assert_same(produced: Produced, consumed: list[Record]) -> None:
    """The user-visible promise: what was acknowledged is what is read, per partition in order,
    each message exactly once, keys, values and headers intact."""
    assert len(consumed) == len(produced.records), (
        f"consumed {len(consumed)} messages, {len(produced.records)} were acknowledged"
    )
    assert Counter(r.content() for r in consumed) == Counter(r.content() for r in produced.records)
    got: dict[int, list[Record]] = {p: [] for p in range(produced.partitions)}
    for r in consumed:
        got[r.partition].append(r)
    for p, want in produced.by_partition().items():
        assert got[p] == want, f"partition {p}: consumed sequence differs from what was acknowledged"


def read_back(broker, produced: Produced) -> list[Record]:
    expected = {p: len(rs) for p, rs in produced.by_partition().items()}
    return confluent_consume(broker.bootstrap, produced.topic, produced.partitions, expected)


def watermarks(broker, topic: str, partitions: int) -> dict[int, tuple[int, int]]:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique_topic("unused-group")})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=CLIENT_TIMEOUT_S)
            for p in range(partitions)
        }
    finally:
        consumer.close()


# ---- kafka-python ----


def kafka_python_produce(bootstrap: str, topic: str, partitions: int, count: int) -> Produced:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, retries=5)
    try:
        futures = []
        for i in range(count):
            key = f"kp-key-{i % 13}".encode()
            value = f"kp-value-{i}".encode()
            headers = [("seq", str(i).encode())]
            futures.append((key, value, headers, producer.send(topic, key=key, value=value, headers=headers, partition=i % partitions)))
        producer.flush(timeout=CLIENT_TIMEOUT_S)
        produced = Produced(topic, partitions)
        for key, value, headers, future in futures:
            md = future.get(timeout=CLIENT_TIMEOUT_S)
            produced.records.append(Record(md.partition, md.offset, key, value, tuple(headers)))
        return produced
    finally:
        producer.close(timeout=CLIENT_TIMEOUT_S)


def kafka_python_consume(bootstrap: str, topic: str, partitions: int, expected: int) -> list[Record]:
    from kafka import KafkaConsumer, TopicPartition as KTopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="none",
    )
    try:
        assignment = [KTopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assignment)
        consumer.seek_to_beginning(*assignment)
        records: list[Record] = []
        deadline = time.monotonic() + CONSUME_TIMEOUT_S
        while len(records) < expected and time.monotonic() < deadline:
            for tp, msgs in consumer.poll(timeout_ms=1000).items():
                for m in msgs:
                    records.append(Record(tp.partition, m.offset, m.key, m.value, tuple(m.headers)))
        # Give a stray duplicate a moment to show up before declaring the count right.
        for tp, msgs in consumer.poll(timeout_ms=500).items():
            for m in msgs:
                records.append(Record(tp.partition, m.offset, m.key, m.value, tuple(m.headers)))
        return records
    finally:
        consumer.close()


# ---- tests ----

CONFLUENT_COUNT = 10_000
CONFLUENT_PARTITIONS = 4
KAFKA_PYTHON_COUNT = 1_000
KAFKA_PYTHON_PARTITIONS = 2


@pytest.fixture(scope="module")
def confluent_data(broker) -> Produced:
    topic = unique_topic("confluent-roundtrip")
    create_topic(broker.bootstrap, topic, partitions=CONFLUENT_PARTITIONS)
    return confluent_produce(broker.bootstrap, topic, CONFLUENT_PARTITIONS, CONFLUENT_COUNT, "a")


@pytest.fixture(scope="module")
def kafka_python_data(broker) -> Produced:
    topic = unique_topic("kafka-python-roundtrip")
    create_topic(broker.bootstrap, topic, partitions=KAFKA_PYTHON_PARTITIONS)
    return kafka_python_produce(broker.bootstrap, topic, KAFKA_PYTHON_PARTITIONS, KAFKA_PYTHON_COUNT)


def assert_everything_there(broker, *datasets: Produced) -> None:
    for data in datasets:
        assert_same(data, read_back(broker, data))
        marks = watermarks(broker, data.topic, data.partitions)
        for p, rs in data.by_partition().items():
            assert marks[p] == (0, len(rs)), f"{data.topic}[{p}] watermarks {marks[p]}, expected (0, {len(rs)})"


def test_confluent_kafka_round_trip(broker, confluent_data):
    assert all(len(rs) > 0 for rs in confluent_data.by_partition().values()), "keys should spread over all partitions"
    assert_same(confluent_data, read_back(broker, confluent_data))


def test_kafka_python_round_trip(broker, kafka_python_data):
    consumed = kafka_python_consume(
        broker.bootstrap, kafka_python_data.topic, kafka_python_data.partitions, KAFKA_PYTHON_COUNT
    )
    assert_same(kafka_python_data, consumed)


def test_clients_read_each_others_messages(broker, confluent_data, kafka_python_data):
    assert_same(kafka_python_data, read_back(broker, kafka_python_data))
    consumed = kafka_python_consume(
        broker.bootstrap, confluent_data.topic, confluent_data.partitions, CONFLUENT_COUNT
    )
    assert_same(confluent_data, consumed)


def test_everything_survives_clean_restart(broker, confluent_data, kafka_python_data):
    broker.restart()

    assert_everything_there(broker, confluent_data, kafka_python_data)
    # The log carries on from where it was: the next message gets the next offset.
    more = confluent_produce_one(broker, confluent_data.topic, partition=0)
    assert more == len(confluent_data.by_partition()[0])


def test_acknowledged_data_survives_kill9(broker, confluent_data, kafka_python_data):
    topic = unique_topic("kill9")
    create_topic(broker.bootstrap, topic, partitions=2)
    fresh = confluent_produce(broker.bootstrap, topic, 2, 2_000, "k9")

    broker.kill9()
    broker.start()

    assert_everything_there(broker, fresh, kafka_python_data)
    # The confluent topic may have one extra message from the restart test; check its prefix.
    consumed = read_back(broker, confluent_data)
    first = {(r.partition, r.offset) for r in confluent_data.records}
    assert_same(confluent_data, [r for r in consumed if (r.partition, r.offset) in first])


def confluent_produce_one(broker, topic: str, partition: int) -> int:
    """Produces one message to `partition` and returns the offset the broker gave it."""
    producer = Producer({"bootstrap.servers": broker.bootstrap, "broker.address.family": "v4", "acks": "all"})
    acks: list = []
    producer.produce(topic, value=b"after-restart", partition=partition, on_delivery=lambda e, m: acks.append((e, m)))
    assert producer.flush(CLIENT_TIMEOUT_S) == 0
    ((err, msg),) = acks
    assert err is None, err
    return msg.offset()
