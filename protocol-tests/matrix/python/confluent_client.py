"""The matrix's `confluent-python` client: confluent-kafka (librdkafka). See ../CONTRACT.md."""

from __future__ import annotations

import time

import confluent_kafka
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
)

import mxadmin
from mxcommon import Ctx, Failed, check, emit, kafka_error_name, log, main, stdin_closed_event, table_from

CLIENT = "confluent-python"
VERSION = f"confluent-kafka {confluent_kafka.__version__} (librdkafka {confluent_kafka.libversion()[0]})"
COMMON = {"broker.address.family": "v4"}


def admin(ctx: Ctx) -> AdminClient:
    return AdminClient({"bootstrap.servers": ctx.bootstrap, **COMMON})


def producer(ctx: Ctx, **conf) -> Producer:
    return Producer({"bootstrap.servers": ctx.bootstrap, "linger.ms": 5, **COMMON, **conf})


def consumer(ctx: Ctx, group: str | None = None, **conf) -> Consumer:
    return Consumer({
        "bootstrap.servers": ctx.bootstrap,
        # A group id is required by librdkafka even for assign()-only readers that never join.
        "group.id": group or ctx.topic() + "-reader",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        **COMMON,
        **conf,
    })


def error_of(exc: BaseException) -> str:
    """Kafka's name for the broker error inside a confluent-kafka exception."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], confluent_kafka.KafkaError):
        return kafka_error_name(exc.args[0].code())
    return f"{type(exc).__name__}: {exc}"


def produce_all(p: Producer, topic: str, records: list[dict]) -> list:
    """Produces each record (kwargs of Producer.produce), waits for every report, returns them in order."""
    reports: list = [None] * len(records)

    def on_delivery(i):
        return lambda err, msg: reports.__setitem__(i, (err, msg))

    for i, rec in enumerate(records):
        p.produce(topic, on_delivery=on_delivery(i), **rec)
        p.poll(0)
    remaining = p.flush(30)
    check(remaining == 0, f"{remaining} records still undelivered after 30 s")
    return reports


def acked_offsets(reports: list) -> list[int]:
    for err, _msg in reports:
        if err is not None:
            raise Failed(f"produce failed: {err.name()} ({err.str()})")
    return [msg.offset() for _err, msg in reports]


def read_partition(ctx: Ctx, topic: str, partition: int | list[int], count: int) -> list:
    """Reads `count` records of one partition (or of a list of them) from the beginning (no group)."""
    c = consumer(ctx)
    parts = partition if isinstance(partition, list) else [partition]
    try:
        # Metadata first: assigning a partition whose leader is not known yet makes librdkafka
        # retry its offset lookup on a 500 ms timer.
        c.list_topics(topic, timeout=30)
        c.assign([TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING) for p in parts])
        out: list = []
        while len(out) < count and ctx.remaining() > 1:
            for m in c.consume(num_messages=500, timeout=0.5):
                if m.error():
                    raise Failed(f"consume error: {m.error().str()}")
                out.append(m)
        check(len(out) == count, f"read {len(out)} records of {topic}[{partition}], expected {count}")
        return out
    finally:
        c.close()


# ---- scenarios ----


def metadata(ctx: Ctx) -> dict:
    topic = ctx.topic()
    ctx.step("create topic")
    mxadmin.create_topic(ctx.bootstrap, topic, 3)
    ctx.step("metadata")
    md = admin(ctx).list_topics(timeout=30)
    host, port = ctx.bootstrap.rsplit(":", 1)
    brokers = {b.id: (b.host, b.port) for b in md.brokers.values()}
    check(brokers, "no brokers listed")
    check((host, int(port)) in brokers.values(), f"no broker at {ctx.bootstrap}: {brokers}")
    tm = md.topics[topic]
    check(len(tm.partitions) == 3, f"{len(tm.partitions)} partitions, expected 3")
    for p in tm.partitions.values():
        check(p.leader in brokers, f"partition {p.id} leader {p.leader} not a listed broker")
        check(len(p.replicas) == 1, f"partition {p.id} has replicas {p.replicas}, expected 1")
    controller = md.controller_id
    return {
        "brokers": len(brokers),
        "partitions": len(tm.partitions),
        "replicas": [len(tm.partitions[i].replicas) for i in sorted(tm.partitions)],
        "controller_listed": controller in brokers if controller is not None and controller >= 0 else None,
    }


def topic_admin(ctx: Ctx) -> dict:
    a = admin(ctx)
    topic = ctx.topic()
    obs: dict = {}
    ctx.step("create topic with retention.ms")
    a.create_topics([NewTopic(topic, 3, 1, config={"retention.ms": "3600000"})])[topic].result(timeout=30)
    mxadmin.wait_for_leaders(a, topic, 3)
    ctx.step("describe topic")
    desc = a.describe_topics(confluent_kafka.TopicCollection([topic]))[topic].result(timeout=30)
    obs["partitions"] = len(desc.partitions)
    check(obs["partitions"] == 3, f"describe: {obs['partitions']} partitions, expected 3")

    def configs() -> dict:
        res = ConfigResource(ConfigResource.Type.TOPIC, topic)
        return a.describe_configs([res])[res].result(timeout=30)

    ctx.step("describe configs")
    cfg = configs()
    obs["retention_ms"] = cfg["retention.ms"].value
    check(cfg["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value,
          f"retention.ms source {cfg['retention.ms'].source}, expected a topic override")
    obs["cleanup_policy"] = cfg["cleanup.policy"].value
    check(cfg["cleanup.policy"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value, "cleanup.policy is not a default")
    check(obs["retention_ms"] == "3600000", f"retention.ms {obs['retention_ms']}, expected 3600000")
    check(obs["cleanup_policy"] == "delete", f"cleanup.policy {obs['cleanup_policy']}, expected delete")
    # Every topic config the broker describes, with its value where it is not the override we set:
    # the differential run lists names and defaults that differ from Kafka's.
    obs["topic_configs"] = {name: (e.value if not e.is_sensitive else "<sensitive>")
                            for name, e in sorted(cfg.items()) if name != "retention.ms"}
    ctx.step("incremental alter configs")
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([res])[res].result(timeout=30)
    # Kafka applies an acknowledged config change to its brokers asynchronously: poll.
    while (altered := configs()["retention.ms"].value) != "7200000" and ctx.remaining() > 2:
        time.sleep(0.05)
    obs["retention_ms_altered"] = altered
    check(obs["retention_ms_altered"] == "7200000", f"retention.ms after alter {obs['retention_ms_altered']}")
    ctx.step("create partitions")
    a.create_partitions([NewPartitions(topic, 4)])[topic].result(timeout=30)
    mxadmin.wait_for_leaders(a, topic, 4)
    obs["partitions_after_create_partitions"] = len(a.list_topics(topic, timeout=30).topics[topic].partitions)
    ctx.step("create again")
    try:
        a.create_topics([NewTopic(topic, 3, 1)])[topic].result(timeout=30)
        obs["create_again"] = "no error"
    except KafkaException as e:
        obs["create_again"] = error_of(e)
    check(obs["create_again"] == "TOPIC_ALREADY_EXISTS", f"create again: {obs['create_again']}")
    ctx.step("delete topic")
    a.delete_topics([topic])[topic].result(timeout=30)
    while topic in a.list_topics(timeout=30).topics:
        check(ctx.remaining() > 2, "deleted topic still in metadata")
        time.sleep(0.1)
    ctx.step("delete unknown topic")
    try:
        a.delete_topics([topic + "-never"])[topic + "-never"].result(timeout=30)
        obs["delete_unknown"] = "no error"
    except KafkaException as e:
        obs["delete_unknown"] = error_of(e)
    check(obs["delete_unknown"] == "UNKNOWN_TOPIC_OR_PARTITION", f"delete unknown: {obs['delete_unknown']}")
    return obs


def compression(codec: str):
    def scenario(ctx: Ctx) -> dict:
        topic = ctx.topic()
        ctx.step("create topic")
        mxadmin.create_topic(ctx.bootstrap, topic, 1)
        ctx.step(f"produce with {codec}")
        p = producer(ctx, **{"compression.type": codec})
        offsets = acked_offsets(produce_all(p, topic, [
            {"key": f"k-{i}".encode(), "value": f"v-{i}".encode()} for i in range(100)]))
        check(offsets == list(range(100)), f"acked offsets {offsets[:3]}..., expected 0..99")
        ctx.step("consume")
        msgs = read_partition(ctx, topic, 0, 100)
        got = [(m.offset(), m.key(), m.value()) for m in msgs]
        want = [(i, f"k-{i}".encode(), f"v-{i}".encode()) for i in range(100)]
        check(got == want, f"read back differs: first mismatch {next(((g, w) for g, w in zip(got, want) if g != w), None)}")
        return {"records": len(msgs), "offsets": [msgs[0].offset(), msgs[-1].offset()]}
    return scenario


def keyed_partitioning(ctx: Ctx) -> dict:
    topic = ctx.topic()
    ctx.step("create topic")
    mxadmin.create_topic(ctx.bootstrap, topic, 6)
    p = producer(ctx)
    keys = [f"key-{i}" for i in range(60)]
    partition_of: dict[str, int] = {}
    for rnd in (1, 2):
        ctx.step(f"produce round {rnd}")
        reports = produce_all(p, topic, [{"key": k.encode(), "value": f"r{rnd}-{k}".encode()} for k in keys])
        acked_offsets(reports)
        for k, (_err, msg) in zip(keys, reports):
            if rnd == 1:
                partition_of[k] = msg.partition()
            else:
                check(partition_of[k] == msg.partition(), f"{k} went to {partition_of[k]} then {msg.partition()}")
    ctx.step("read every partition")
    found: dict[str, list[int]] = {}
    for m in read_partition(ctx, topic, list(range(6)), 120):
        found.setdefault(m.key().decode(), []).append(m.partition())
    for k in keys:
        check(found.get(k) == [partition_of[k]] * 2, f"{k} reported in {partition_of[k]}, found in {found.get(k)}")
    return {"records": 120, "partition_of": partition_of}


def headers_nulls(ctx: Ctx) -> dict:
    topic = ctx.topic()
    ctx.step("create topic")
    mxadmin.create_topic(ctx.bootstrap, topic, 1)
    sent = [
        (None, "v1", []),
        ("k2", None, []),
        ("k3", "", []),
        ("k4", "v4", [("h1", "a"), ("h1", "b"), ("empty", "")]),
        ("k5", "v5", [("n", None)]),
    ]

    def enc(s):
        return None if s is None else s.encode()

    ctx.step("produce")
    recs = [{"key": enc(k), "value": enc(v), **({"headers": [(n, enc(x)) for n, x in h]} if h else {})}
            for k, v, h in sent]
    acked_offsets(produce_all(producer(ctx), topic, recs))
    ctx.step("consume")
    msgs = read_partition(ctx, topic, 0, len(sent))

    def dec(b):
        return None if b is None else b.decode()

    got = [(dec(m.key()), dec(m.value()), [(n, dec(x)) for n, x in (m.headers() or [])]) for m in msgs]
    check(got == sent, f"read {got}, sent {sent}")
    return {"records": [[k, v, [list(x) for x in h]] for k, v, h in got]}


def idempotent(ctx: Ctx) -> dict:
    topic = ctx.topic()
    ctx.step("create topic")
    mxadmin.create_topic(ctx.bootstrap, topic, 1)
    ctx.step("idempotent produce")
    p = producer(ctx, **{"enable.idempotence": True, "acks": "all"})
    offsets = acked_offsets(produce_all(p, topic, [{"value": f"i-{i}".encode()} for i in range(200)]))
    check(offsets == list(range(200)), f"acked offsets {offsets[:3]}..{offsets[-3:]}, expected 0..199")
    ctx.step("consume")
    msgs = read_partition(ctx, topic, 0, 200)
    check([m.value().decode() for m in msgs] == [f"i-{i}" for i in range(200)], "values not in send order")
    return {"records": len(msgs), "offsets": [msgs[0].offset(), msgs[-1].offset()]}


def read_group(ctx: Ctx, c: Consumer, count: int) -> list:
    out: list = []
    while len(out) < count and ctx.remaining() > 1:
        for m in c.consume(num_messages=100, timeout=0.5):
            if m.error():
                raise Failed(f"consume error: {m.error().str()}")
            out.append(m)
    check(len(out) == count, f"group read {len(out)} records, expected {count}")
    return out


def group_resume(ctx: Ctx) -> dict:
    topic, group = ctx.topic(), ctx.group()
    ctx.step("create topic")
    mxadmin.create_topic(ctx.bootstrap, topic, 3)
    p = producer(ctx)
    acked_offsets(produce_all(p, topic, [{"value": f"a-{i}".encode(), "partition": i % 3} for i in range(30)]))
    ctx.step("consumer A")
    a = consumer(ctx, group)
    a.subscribe([topic])
    first = read_group(ctx, a, 30)
    a.commit(asynchronous=False)
    a.close()
    ctx.step("produce 10 more")
    acked_offsets(produce_all(p, topic, [{"value": f"b-{i}".encode(), "partition": i % 3} for i in range(10)]))
    ctx.step("consumer B")
    b = consumer(ctx, group)
    b.subscribe([topic])
    second = read_group(ctx, b, 10)
    values = sorted(m.value().decode() for m in second)
    check(values == sorted(f"b-{i}" for i in range(10)), f"consumer B read {values}")
    b.commit(asynchronous=False)
    committed = b.committed([TopicPartition(topic, i) for i in range(3)], timeout=30)
    b.close()
    offsets = [tp.offset for tp in committed]
    check(offsets == [14, 13, 13], f"committed {offsets}, expected [14, 13, 13]")
    return {"first": len(first), "second": len(second), "committed": offsets}


def timestamp_offsets(ctx: Ctx) -> dict:
    topic = ctx.topic()
    ctx.step("create topic")
    mxadmin.create_topic(ctx.bootstrap, topic, 1)
    t0 = (int(time.time()) - 60) * 1000
    ctx.step("produce with timestamps")
    acked_offsets(produce_all(producer(ctx), topic,
                              [{"value": f"t-{i}".encode(), "timestamp": t0 + 1000 * i} for i in range(3)]))
    c = consumer(ctx)
    try:
        ctx.step("list offsets")
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)

        def for_time(ts: int) -> int:
            r = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=30)[0]
            if r.error:
                raise Failed(f"offsets_for_times error {r.error}")
            return r.offset if r.offset >= 0 else -1

        obs = {"earliest": low, "latest": high, "t0+500": for_time(t0 + 500), "t0+2000": for_time(t0 + 2000),
               "after_last": for_time(t0 + 10000)}
    finally:
        c.close()
    want = {"earliest": 0, "latest": 3, "t0+500": 1, "t0+2000": 2, "after_last": -1}
    check(obs == want, f"saw {obs}, expected {want}")
    return obs


def large_records(ctx: Ctx) -> dict:
    topic = ctx.topic()
    ctx.step("create topic")
    mxadmin.create_topic(ctx.bootstrap, topic, 1, {"max.message.bytes": "200000"})
    p = producer(ctx, **{"message.max.bytes": 1048576, "compression.type": "none", "retries": 0})
    near = bytes((i * 7) % 251 for i in range(190000))
    ctx.step("produce 190000 bytes")
    ((err, _msg),) = produce_all(p, topic, [{"value": near}])
    check(err is None, f"190000-byte record refused: {err}")
    obs = {"near_limit": "ok"}
    ctx.step("produce 210000 bytes")
    ((err, _msg),) = produce_all(p, topic, [{"value": b"x" * 210000}])
    obs["over_limit"] = "no error" if err is None else kafka_error_name(err.code())
    check(obs["over_limit"] == "MESSAGE_TOO_LARGE", f"210000-byte record: {obs['over_limit']} ({err})")
    ctx.step("produce after")
    ((err, _msg),) = produce_all(p, topic, [{"value": b"small"}])
    obs["after"] = "ok" if err is None else str(err)
    check(err is None, f"small record after the refusal: {err}")
    ctx.step("read back")
    msgs = read_partition(ctx, topic, 0, 2)
    check(msgs[0].value() == near, "190000-byte value read back differs")
    check(msgs[1].value() == b"small", "small value read back differs")
    return obs


def member(args) -> None:
    done = stdin_closed_event()
    c = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "partition.assignment.strategy": "roundrobin",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        **COMMON,
    })
    assigned: set[int] = set()

    def on_assign(_c, parts):
        assigned.clear()
        assigned.update(tp.partition for tp in parts)
        emit({"event": "assigned", "partitions": sorted(assigned)})

    def on_revoke(_c, parts):
        assigned.difference_update(tp.partition for tp in parts)
        emit({"event": "assigned", "partitions": sorted(assigned)})

    def on_lost(_c, parts):
        on_revoke(_c, parts)

    c.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    while not done.is_set():
        batch = []
        for m in c.consume(num_messages=100, timeout=0.2):
            if m.error():
                log(f"member: consume error {m.error()}")
            else:
                batch.append(m)
        if batch:
            try:
                c.commit(asynchronous=False)
            except KafkaException as e:  # e.g. a rebalance under way: the records are printed anyway
                log(f"member: commit failed: {e}")
            for m in batch:
                emit({"event": "record", "partition": m.partition(), "offset": m.offset(),
                      "value": (m.value() or b"").decode("utf-8", "replace")})
    c.close()
    emit({"event": "closed"})


if __name__ == "__main__":
    log(f"{CLIENT}: {VERSION}")
    main(CLIENT, VERSION, table_from(globals(), compression), member)
