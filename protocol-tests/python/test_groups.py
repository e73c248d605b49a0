"""Consumer groups through real clients: confluent-kafka (librdkafka), kafka-python and kcat.

- confluent-kafka and kafka-python consumers in one group (both with the roundrobin assignor)
  split the partitions and together consume every record exactly once;
- a KIP-848 consumer (`group.protocol=consumer`) gets every partition, and gives some up when a
  second one joins;
- two `kcat -G` processes balance a topic between them;
- lag through the AdminClient (committed offsets against end offsets, as
  `kafka-consumer-groups --describe` computes it);
- bad input (commits for unknown topics and partitions, oversized commit metadata, heartbeats
  from unknown members, a join with no protocols) gets Kafka's error codes and the group stays
  usable;
- list (with state and type filters), describe and delete groups through the AdminClient.

The broker runs with `group.initial.rebalance.delay.ms=0` and
`offsets.topic.replication.factor=1` (the `group_broker` fixture).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    ConsumerGroupType,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import OffsetSpec

from sluice_testlib import CLIENT_TIMEOUT_S, admin_client, create_topic, wait_until

PARTITIONS = 6
CONSUME_TIMEOUT_S = 90.0


def unique_group(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def produce(bootstrap: str, topic: str, count: int, partitions: int = PARTITIONS) -> None:
    """Produces `count` records with payload = sequence number, record i to partition
    i % partitions; asserts every acknowledgement."""
    producer = Producer({"bootstrap.servers": bootstrap, "broker.address.family": "v4", "linger.ms": 5})
    failures: list[str] = []

    def report(err, msg):
        if err is not None:
            failures.append(str(err))

    for i in range(count):
        while True:
            try:
                producer.produce(topic, value=str(i).encode(), key=f"k{i}".encode(), partition=i % partitions,
                                 on_delivery=report)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(CLIENT_TIMEOUT_S)
    assert remaining == 0, f"{remaining} records not acknowledged within {CLIENT_TIMEOUT_S}s"
    assert not failures, f"{len(failures)} produce failures, e.g. {failures[:3]}"


def confluent_consumer(bootstrap: str, group: str, **extra) -> Consumer:
    config = {
        "bootstrap.servers": bootstrap,
        "broker.address.family": "v4",
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    config.update({k.replace("_", "."): v for k, v in extra.items()})
    return Consumer(config)


def partitions_of(assignment) -> set[int]:
    return {tp.partition for tp in assignment}


def commit_error(exc: KafkaException) -> int:
    return exc.args[0].code()


# ---- confluent-kafka and kafka-python in one group ----


class Tally:
    """Which member consumed which record, shared by the consumer threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[str, int, int, int]] = []  # member, partition, offset, seq
        self.errors: list[str] = []

    def add(self, member: str, partition: int, offset: int, value: bytes) -> None:
        with self.lock:
            self.seen.append((member, partition, offset, int(value)))

    def distinct(self) -> int:
        with self.lock:
            return len({s for _, _, _, s in self.seen})

    def by_member(self) -> Counter:
        with self.lock:
            return Counter(m for m, _, _, _ in self.seen)


def test_confluent_and_kafka_python_consumers_share_one_group(group_broker, topic_name):
    from kafka import KafkaConsumer
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

    total = 6000
    bootstrap = group_broker.bootstrap
    create_topic(bootstrap, topic_name, PARTITIONS)
    group = unique_group("interop")
    tally = Tally()
    stop = threading.Event()
    assignments: dict[str, set[int]] = {}

    def run_confluent() -> None:
        c = confluent_consumer(bootstrap, group, partition_assignment_strategy="roundrobin")
        try:
            c.subscribe([topic_name])
            while not stop.is_set():
                assignments["confluent"] = partitions_of(c.assignment())
                msgs = c.consume(500, 0.2)
                good = [m for m in msgs if not m.error()]
                tally.errors.extend(f"confluent: {m.error()}" for m in msgs if m.error())
                for m in good:
                    tally.add("confluent", m.partition(), m.offset(), m.value())
                if good:
                    c.commit(asynchronous=False)  # the positions after this batch
        except Exception as e:  # reported through the tally; the main thread fails the test
            tally.errors.append(f"confluent: {e!r}")
        finally:
            c.close()

    def run_kafka_python() -> None:
        c = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=[RoundRobinPartitionAssignor],
            heartbeat_interval_ms=1000,
        )
        try:
            c.subscribe([topic_name])
            while not stop.is_set():
                batches = c.poll(timeout_ms=200)
                assignments["kafka-python"] = {tp.partition for tp in c.assignment()}
                for _, records in batches.items():
                    for r in records:
                        tally.add("kafka-python", r.partition, r.offset, r.value)
                if batches:
                    c.commit()
        except Exception as e:
            tally.errors.append(f"kafka-python: {e!r}")
        finally:
            c.close()

    threads = [threading.Thread(target=run_confluent, daemon=True), threading.Thread(target=run_kafka_python, daemon=True)]
    for t in threads:
        t.start()
    try:
        # Both members in the group, splitting the partitions, before any record exists.
        wait_until(
            "both members to own a share of the partitions",
            lambda: len(assignments.get("confluent", ())) > 0
            and len(assignments.get("kafka-python", ())) > 0
            and assignments["confluent"].isdisjoint(assignments["kafka-python"])
            and len(assignments["confluent"] | assignments["kafka-python"]) == PARTITIONS,
            timeout_s=60,
        )
        split = {k: sorted(v) for k, v in assignments.items()}
        produce(bootstrap, topic_name, total)
        wait_until(f"all {total} records consumed", lambda: tally.distinct() >= total or tally.errors,
                   timeout_s=CONSUME_TIMEOUT_S)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not tally.errors, tally.errors
    per_seq = Counter(s for _, _, _, s in tally.seen)
    dups = {s: n for s, n in per_seq.items() if n > 1}
    by_member = tally.by_member()
    print(f"\npartitions: {split}; consumed by member: {dict(by_member)}; duplicates: {len(dups)}")
    assert set(per_seq) == set(range(total)), "every record consumed"
    assert not dups, f"{len(dups)} records consumed twice"
    # Each record came from the member that owned its partition.
    for member, partition, _, _ in tally.seen:
        assert partition in split[member], f"{member} consumed partition {partition}, owned {split[member]}"
    assert by_member["confluent"] > 0 and by_member["kafka-python"] > 0


# ---- KIP-848 ----


def test_kip848_consumer_gets_all_partitions_then_shares_with_a_second(group_broker, topic_name):
    bootstrap = group_broker.bootstrap
    create_topic(bootstrap, topic_name, PARTITIONS)
    group = unique_group("kip848")
    started = time.monotonic()

    def member():
        return confluent_consumer(bootstrap, group, group_protocol="consumer")

    c1 = member()
    c2 = None
    try:
        c1.subscribe([topic_name])

        def c1_has_all():
            c1.poll(0.2)
            return partitions_of(c1.assignment()) == set(range(PARTITIONS))

        wait_until("the first KIP-848 member to own every partition", c1_has_all, timeout_s=60, interval_s=0)
        t_first = time.monotonic() - started

        c2 = member()
        c2.subscribe([topic_name])

        def shared():
            c1.poll(0.1)
            c2.poll(0.1)
            a1, a2 = partitions_of(c1.assignment()), partitions_of(c2.assignment())
            return a1 and a2 and a1.isdisjoint(a2) and len(a1 | a2) == PARTITIONS and (a1, a2)

        a1, a2 = wait_until("the two KIP-848 members to split the partitions", shared, timeout_s=60, interval_s=0)
        t_second = time.monotonic() - started
        print(f"\nfirst member owned all {PARTITIONS} after {t_first:.1f}s; split {sorted(a1)} / {sorted(a2)} "
              f"after {t_second:.1f}s")

        # ConsumerGroupDescribe: a consumer-protocol group with both members.
        admin = admin_client(bootstrap)
        desc = admin.describe_consumer_groups([group], request_timeout=CLIENT_TIMEOUT_S)[group].result(
            timeout=CLIENT_TIMEOUT_S)
        assert desc.type == ConsumerGroupType.CONSUMER, desc.type
        assert len(desc.members) == 2, desc.members
        described = sorted(sorted(tp.partition for tp in m.assignment.topic_partitions) for m in desc.members)
        assert described == sorted([sorted(a1), sorted(a2)]), described

        # Both consume: records produced now are each consumed once, by their partition's owner.
        produce(bootstrap, topic_name, 600)
        got: list[tuple[str, int, int]] = []

        def drain():
            for name, c in (("c1", c1), ("c2", c2)):
                msg = c.poll(0.1)
                if msg is not None and not msg.error():
                    got.append((name, msg.partition(), int(msg.value())))
            return len(got) >= 600

        wait_until("600 records consumed by the two members", drain, timeout_s=CONSUME_TIMEOUT_S, interval_s=0)
        assert sorted(s for _, _, s in got) == list(range(600))
        owners = {"c1": a1, "c2": a2}
        assert all(p in owners[n] for n, p, _ in got)
    finally:
        c1.close()
        if c2 is not None:
            c2.close()


# ---- kcat -G ----


class KcatMember:
    """One `kcat -G` process: its records from stdout, its latest assignment from stderr."""

    def __init__(self, bootstrap: str, group: str, topic: str, name: str):
        self.name = name
        self.records: list[tuple[int, int, int]] = []
        self.assigned: set[int] = set()
        self.rebalances = 0
        self.stderr_tail: list[str] = []
        self.proc = subprocess.Popen(
            ["kcat", "-b", bootstrap, "-G", group, topic, "-f", "%p %o %s\\n", "-u",
             "-X", "auto.offset.reset=earliest", "-X", "broker.address.family=v4"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            p, o, s = line.split()
            self.records.append((int(p), int(o), int(s)))

    def _read_stderr(self) -> None:
        # "% Group g rebalanced (memberid ...): assigned: topic [0], topic [3]" / "revoked: ..."
        for line in self.proc.stderr:
            self.stderr_tail = (self.stderr_tail + [line.rstrip()])[-20:]
            if "rebalanced" in line:
                self.rebalances += 1
                if "assigned:" in line:
                    part = line.split("assigned:", 1)[1]
                    self.assigned = {int(x.split("[")[1].split("]")[0]) for x in part.split(",") if "[" in x}
                elif "revoked:" in line:
                    self.assigned = set()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait()
        return self.proc.returncode


def test_kcat_balanced_consumers_cover_every_record_once(group_broker, topic_name):
    total = 3000
    bootstrap = group_broker.bootstrap
    create_topic(bootstrap, topic_name, PARTITIONS)
    group = unique_group("kcat")
    a = KcatMember(bootstrap, group, topic_name, "a")
    b = None
    try:
        wait_until("kcat a to be assigned every partition", lambda: len(a.assigned) == PARTITIONS, timeout_s=60)
        b = KcatMember(bootstrap, group, topic_name, "b")
        wait_until(
            "the two kcat members to split the partitions",
            lambda: a.assigned and b.assigned and a.assigned.isdisjoint(b.assigned)
            and len(a.assigned | b.assigned) == PARTITIONS,
            timeout_s=60,
        )
        split = (sorted(a.assigned), sorted(b.assigned))
        produce(bootstrap, topic_name, total)
        wait_until(f"{total} records out of the two kcat processes",
                   lambda: len(a.records) + len(b.records) >= total, timeout_s=CONSUME_TIMEOUT_S)
        time.sleep(1)  # a record delivered twice would arrive by now
    finally:
        codes = [a.stop()] + ([b.stop()] if b else [])
    seqs = Counter(s for _, _, s in a.records + b.records)
    print(f"\nkcat split {split}: a {len(a.records)}, b {len(b.records)} records; exit codes {codes}")
    assert set(seqs) == set(range(total)), (a.stderr_tail, b.stderr_tail)
    assert max(seqs.values()) == 1, f"{sum(1 for n in seqs.values() if n > 1)} records consumed twice"
    assert all(p in split[0] for p, _, _ in a.records) and all(p in split[1] for p, _, _ in b.records)
    assert a.records and b.records


# ---- lag through the AdminClient ----


def test_lag_from_committed_and_end_offsets(group_broker, topic_name):
    bootstrap = group_broker.bootstrap
    create_topic(bootstrap, topic_name, PARTITIONS)
    group = unique_group("lag")
    produce(bootstrap, topic_name, 600)  # 100 per partition
    committed = {p: 10 * (p + 1) for p in range(PARTITIONS - 1)}  # the last partition: nothing committed

    c = confluent_consumer(bootstrap, group)
    c.subscribe([topic_name])
    wait_until("the member to own every partition", lambda: (c.poll(0.1), len(c.assignment()))[1] == PARTITIONS,
               timeout_s=60, interval_s=0)
    result = c.commit(offsets=[TopicPartition(topic_name, p, o) for p, o in committed.items()], asynchronous=False)
    assert all(tp.error is None for tp in result), result
    c.close()

    admin = admin_client(bootstrap)
    got = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                            request_timeout=CLIENT_TIMEOUT_S)[group].result(timeout=CLIENT_TIMEOUT_S)
    current = {tp.partition: tp.offset for tp in got.topic_partitions if tp.topic == topic_name}
    ends_f = admin.list_offsets({TopicPartition(topic_name, p): OffsetSpec.latest() for p in range(PARTITIONS)},
                                request_timeout=CLIENT_TIMEOUT_S)
    ends = {tp.partition: f.result(timeout=CLIENT_TIMEOUT_S).offset for tp, f in ends_f.items()}
    print("\nPARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG")
    lags = {}
    for p in range(PARTITIONS):
        cur = current.get(p)
        lag = ends[p] - cur if cur is not None and cur >= 0 else None
        lags[p] = lag
        print(f"{p:9}  {cur if cur is not None and cur >= 0 else '-':>14}  {ends[p]:>14}  {lag if lag is not None else '-':>3}")
    assert current == committed, f"listConsumerGroupOffsets (partitions without a commit are left out): {current}"
    assert ends == {p: 100 for p in range(PARTITIONS)}
    assert lags == {p: (100 - committed[p] if p in committed else None) for p in range(PARTITIONS)}
    print(f"total lag of the committed partitions: {sum(v for v in lags.values() if v is not None)}")

    # Asking for specific partitions: one without a commit comes back with offset -1 (OffsetFetch).
    some = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(topic_name, 0), TopicPartition(topic_name, PARTITIONS - 1)])],
        request_timeout=CLIENT_TIMEOUT_S)[group].result(timeout=CLIENT_TIMEOUT_S)
    assert {tp.partition: tp.offset for tp in some.topic_partitions} == {0: 10, PARTITIONS - 1: -1001}, \
        some.topic_partitions  # -1001 is librdkafka's OFFSET_INVALID, i.e. the broker's -1


# ---- bad input ----


def test_bad_commits_get_kafka_error_codes_and_the_group_stays_usable(group_broker, topic_name):
    bootstrap = group_broker.bootstrap
    create_topic(bootstrap, topic_name, 2)
    produce(bootstrap, topic_name, 20, partitions=2)  # so that the offsets committed below exist
    group = unique_group("bad-commit")
    c = confluent_consumer(bootstrap, group)  # not subscribed: commits as a standalone (generation -1) member
    try:
        def commit_result(tps):
            try:
                return c.commit(offsets=tps, asynchronous=False)
            except KafkaException as e:
                return e

        # confluent-kafka sends commit metadata with a trailing NUL byte (and strips it when reading
        # back): n characters are n + 1 bytes on the wire, where offset.metadata.max.bytes=4096 applies.
        cases = {
            "unknown topic": (TopicPartition(f"no-such-topic-{uuid.uuid4().hex[:8]}", 0, 5),
                              KafkaError.UNKNOWN_TOPIC_OR_PART),
            "unknown partition": (TopicPartition(topic_name, 99, 5), KafkaError.UNKNOWN_TOPIC_OR_PART),
            "metadata of 4097 bytes": (TopicPartition(topic_name, 0, 5, metadata="m" * 4096),
                                    KafkaError.OFFSET_METADATA_TOO_LARGE),
        }
        for what, (tp, expected) in cases.items():
            r = commit_result([tp])
            code = commit_error(r) if isinstance(r, KafkaException) else r[0].error.code() if r[0].error else None
            print(f"\ncommit with {what}: {KafkaError(code).name() if code is not None else 'no error'}")
            assert code == expected, f"commit with {what}: got {r!r}, expected {KafkaError(expected).name()}"

        # Still usable: a valid commit with metadata at the 4096-byte limit is stored and read back.
        meta = "x" * 4095
        r = commit_result([TopicPartition(topic_name, 0, 7, metadata=meta), TopicPartition(topic_name, 1, 3)])
        assert not isinstance(r, KafkaException) and all(tp.error is None for tp in r), r
        back = c.committed([TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)], timeout=CLIENT_TIMEOUT_S)
        assert [(tp.partition, tp.offset, tp.metadata) for tp in back] == [(0, 7, meta), (1, 3, "")] or \
            [(tp.partition, tp.offset, tp.metadata) for tp in back] == [(0, 7, meta), (1, 3, None)], back
        # The oversized commit stored nothing: partition 0 holds 7 (not 5).
    finally:
        c.close()

    # A member can still join the group, and is given the committed offsets.
    m = confluent_consumer(bootstrap, group)
    try:
        m.subscribe([topic_name])
        wait_until("a member to join the group after the bad commits",
                   lambda: (m.poll(0.1), len(m.assignment()))[1] == 2, timeout_s=60, interval_s=0)
        positions = {tp.partition: tp.offset for tp in m.committed(m.assignment(), timeout=CLIENT_TIMEOUT_S)}
        assert positions == {0: 7, 1: 3}, positions
    finally:
        m.close()


def _coordinator_request(bootstrap: str, group: str, request):
    """Sends `request` (a kafka-python protocol object) to `group`'s coordinator and returns the
    response. kafka-python's low-level client is the only one here that sends these by hand."""
    from kafka import KafkaClient
    from kafka.protocol.find_coordinator import FindCoordinatorRequest

    client = KafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    try:
        deadline = time.monotonic() + 60
        node = client.least_loaded_node()
        while not client.ready(node):
            client.poll(timeout_ms=100)
            assert time.monotonic() < deadline, "could not connect"
        coordinator = None
        while coordinator is None:
            f = client.send(node, FindCoordinatorRequest[1](group, 0))
            client.poll(future=f, timeout_ms=15000)
            resp = f.value
            if resp.error_code == 0:
                coordinator = resp.coordinator_id
            else:
                # COORDINATOR_NOT_AVAILABLE while the offsets topic is being created.
                assert time.monotonic() < deadline, f"FindCoordinator error {resp.error_code}"
                time.sleep(0.5)
        while not client.ready(coordinator):
            client.poll(timeout_ms=100)
            assert time.monotonic() < deadline, "could not connect to the coordinator"
        f = client.send(coordinator, request)
        client.poll(future=f, timeout_ms=15000)
        assert f.succeeded(), f.exception
        return f.value
    finally:
        client.close()


def test_heartbeat_from_unknown_member_and_join_without_protocols(group_broker, topic_name):
    from kafka.protocol.group import HeartbeatRequest, JoinGroupRequest

    bootstrap = group_broker.bootstrap
    create_topic(bootstrap, topic_name, 2)
    group = unique_group("bad-members")

    # A live group first, so the heartbeat is for a group that exists.
    m = confluent_consumer(bootstrap, group, session_timeout_ms=10000)
    try:
        m.subscribe([topic_name])
        wait_until("a member to join", lambda: (m.poll(0.1), len(m.assignment()))[1] == 2, timeout_s=60, interval_s=0)

        hb = _coordinator_request(bootstrap, group, HeartbeatRequest[3](group, 1, "no-such-member", None))
        print(f"\nheartbeat from an unknown member: error {hb.error_code}")
        assert hb.error_code == KafkaError.UNKNOWN_MEMBER_ID, hb

        join = _coordinator_request(
            bootstrap, group, JoinGroupRequest[5](group, 10000, 10000, "", None, "consumer", []))
        print(f"join with no protocols: error {join.error_code}")
        assert join.error_code == KafkaError.INCONSISTENT_GROUP_PROTOCOL, join

        # The group is undisturbed: the member still owns both partitions and consumes.
        produce(bootstrap, topic_name, 10, partitions=2)
        got = []
        wait_until("the member to consume 10 records after the bad requests",
                   lambda: (got.append(m.poll(0.2)), sum(1 for x in got if x is not None and not x.error()))[1] >= 10,
                   timeout_s=30, interval_s=0)
        assert len(m.assignment()) == 2
    finally:
        m.close()


# ---- list / describe / delete ----


def test_list_describe_delete_groups(group_broker, topic_name):
    bootstrap = group_broker.bootstrap
    create_topic(bootstrap, topic_name, 3)
    active, empty = unique_group("active"), unique_group("empty")
    admin = admin_client(bootstrap)

    # `empty`: offsets committed, no members. `active`: one member, stable.
    e = confluent_consumer(bootstrap, empty)
    e.commit(offsets=[TopicPartition(topic_name, 0, 1)], asynchronous=False)
    e.close()
    a = confluent_consumer(bootstrap, active, partition_assignment_strategy="range", client_id="describe-me")
    try:
        a.subscribe([topic_name])
        wait_until("the active member to own every partition",
                   lambda: (a.poll(0.1), len(a.assignment()))[1] == 3, timeout_s=60, interval_s=0)

        def listed(**filters):
            r = admin.list_consumer_groups(request_timeout=CLIENT_TIMEOUT_S, **filters).result(timeout=CLIENT_TIMEOUT_S)
            assert not r.errors, r.errors
            return {g.group_id: g for g in r.valid}

        everything = listed()
        assert active in everything and empty in everything, sorted(everything)
        assert everything[active].state == ConsumerGroupState.STABLE, everything[active].state
        assert everything[empty].state == ConsumerGroupState.EMPTY, everything[empty].state
        stable = wait_until("the active group listed as Stable",
                            lambda: (lambda s: active in s and s)(listed(states={ConsumerGroupState.STABLE})))
        assert empty not in stable
        only_empty = listed(states={ConsumerGroupState.EMPTY})
        assert empty in only_empty and active not in only_empty
        classic = listed(types={ConsumerGroupType.CLASSIC})
        assert active in classic and empty in classic
        assert active not in listed(types={ConsumerGroupType.CONSUMER})
        print(f"\nlisted: all {len(everything)}, stable {len(stable)}, empty {len(only_empty)}, classic {len(classic)}")

        desc = admin.describe_consumer_groups([active, empty], request_timeout=CLIENT_TIMEOUT_S)
        d = desc[active].result(timeout=CLIENT_TIMEOUT_S)
        assert d.state == ConsumerGroupState.STABLE and d.partition_assignor == "range", (d.state, d.partition_assignor)
        assert not d.is_simple_consumer_group
        assert d.coordinator is not None and d.coordinator.port == group_broker.port
        assert len(d.members) == 1 and d.members[0].client_id == "describe-me", d.members
        assert sorted(tp.partition for tp in d.members[0].assignment.topic_partitions) == [0, 1, 2]
        de = desc[empty].result(timeout=CLIENT_TIMEOUT_S)
        assert de.state == ConsumerGroupState.EMPTY and de.members == [], (de.state, de.members)
        print(f"described {active}: {d.state}, assignor {d.partition_assignor}, member {d.members[0].member_id}")

        # Deleting a group with a member fails; deleting an empty one works; an unknown one is not found.
        unknown = unique_group("never-existed")
        res = admin.delete_consumer_groups([active, empty, unknown], request_timeout=CLIENT_TIMEOUT_S)
        with pytest.raises(KafkaException) as err:
            res[active].result(timeout=CLIENT_TIMEOUT_S)
        assert err.value.args[0].code() == KafkaError.NON_EMPTY_GROUP, err.value
        res[empty].result(timeout=CLIENT_TIMEOUT_S)
        with pytest.raises(KafkaException) as err:
            res[unknown].result(timeout=CLIENT_TIMEOUT_S)
        assert err.value.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND, err.value
        after = listed()
        assert active in after and empty not in after
        gone = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(empty)],
                                                 request_timeout=CLIENT_TIMEOUT_S)[empty].result(timeout=CLIENT_TIMEOUT_S)
        assert [tp for tp in gone.topic_partitions if tp.offset >= 0] == [], "deleted group's offsets are gone"

        # The active group is untouched by the failed delete: its member still consumes.
        produce(bootstrap, topic_name, 6, partitions=3)
        got = []
        wait_until("the active member to consume after the failed delete",
                   lambda: (got.append(a.poll(0.2)), sum(1 for x in got if x is not None and not x.error()))[1] >= 6,
                   timeout_s=30, interval_s=0)
    finally:
        a.close()
