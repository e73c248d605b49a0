"""The matrix's `kafka-python` client: kafka-python (pure Python, its own protocol code). See ../CONTRACT.md."""

from __future__ import annotations

import time

import kafka
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from kafka.errors import KafkaError

from mxcommon import Ctx, check, emit, kafka_error_name, log, main, stdin_closed_event, table_from

CLIENT = "kafka-python"
VERSION = f"kafka-python {kafka.__version__}"


def admin(ctx: Ctx) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=ctx.bootstrap, request_timeout_ms=30000)


def error_of(exc: BaseException) -> str:
    errno = getattr(exc, "errno", None)
    if isinstance(exc, KafkaError) and isinstance(errno, int):
        return kafka_error_name(errno)
    return f"{type(exc).__name__}: {exc}"


def wait_for_leaders(ctx: Ctx, topic: str, partitions: int) -> None:
    a = admin(ctx)
    try:
        while True:
            topics = a.describe_topics([topic])
            t = topics[0] if topics else None
            if t and t["error_code"] == 0 and len(t["partitions"]) == partitions \
                    and all(p["leader"] >= 0 for p in t["partitions"]):
                return
            check(ctx.remaining() > 2, f"{topic} never showed {partitions} partitions with leaders")
            time.sleep(0.05)
    finally:
        a.close()


def create_topic(ctx: Ctx, topic: str, partitions: int, config: dict | None = None) -> None:
    a = admin(ctx)
    try:
        a.create_topics([NewTopic(topic, partitions, 1, topic_configs=config or {})])
    finally:
        a.close()
    wait_for_leaders(ctx, topic, partitions)


def producer(ctx: Ctx, **conf) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=ctx.bootstrap, linger_ms=5, **conf)


def send_all(p: KafkaProducer, topic: str, records: list[dict]) -> list:
    """Sends each record (kwargs of KafkaProducer.send), returns the RecordMetadata of each in order."""
    futures = [p.send(topic, **r) for r in records]
    p.flush(timeout=30)
    return [f.get(timeout=30) for f in futures]


def read_partitions(ctx: Ctx, topic: str, partitions: list[int], count: int) -> list:
    c = KafkaConsumer(bootstrap_servers=ctx.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                      max_partition_fetch_bytes=1048576)
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        out: list = []
        while len(out) < count and ctx.remaining() > 1:
            for recs in c.poll(timeout_ms=200).values():
                out.extend(recs)
        check(len(out) == count, f"read {len(out)} records of {topic}{partitions}, expected {count}")
        return out
    finally:
        c.close()


# ---- scenarios ----


def metadata(ctx: Ctx) -> dict:
    topic = ctx.topic()
    ctx.step("create topic")
    create_topic(ctx, topic, 3)
    ctx.step("metadata")
    a = admin(ctx)
    try:
        cluster = a.describe_cluster()
        t = a.describe_topics([topic])[0]
    finally:
        a.close()
    brokers = {b["node_id"]: (b["host"], b["port"]) for b in cluster["brokers"]}
    host, port = ctx.bootstrap.rsplit(":", 1)
    check((host, int(port)) in brokers.values(), f"no broker at {ctx.bootstrap}: {brokers}")
    parts = sorted(t["partitions"], key=lambda p: p["partition"])
    check(len(parts) == 3, f"{len(parts)} partitions, expected 3")
    for p in parts:
        check(p["leader"] in brokers, f"partition {p['partition']} leader {p['leader']} not a listed broker")
    controller = cluster.get("controller_id")
    return {"brokers": len(brokers), "partitions": len(parts), "replicas": [len(p["replicas"]) for p in parts],
            "controller_listed": (controller in brokers) if controller is not None and controller >= 0 else None}


def topic_configs(a: KafkaAdminClient, topic: str) -> dict:
    resp = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    resources = resp[0].to_object()["resources"]
    check(resources[0]["error_code"] == 0, f"describe configs error {kafka_error_name(resources[0]['error_code'])}")
    return {e["config_names"]: e for e in resources[0]["config_entries"]}


def topic_admin(ctx: Ctx) -> dict:
    a = admin(ctx)
    topic = ctx.topic()
    obs: dict = {}
    try:
        ctx.step("create topic with retention.ms")
        a.create_topics([NewTopic(topic, 3, 1, topic_configs={"retention.ms": "3600000"})])
        wait_for_leaders(ctx, topic, 3)
        ctx.step("describe topic")
        obs["partitions"] = len(a.describe_topics([topic])[0]["partitions"])
        check(obs["partitions"] == 3, f"describe: {obs['partitions']} partitions")
        ctx.step("describe configs")
        cfg = topic_configs(a, topic)
        obs["retention_ms"] = cfg["retention.ms"]["config_value"]
        obs["cleanup_policy"] = cfg["cleanup.policy"]["config_value"]
        check(cfg["retention.ms"]["config_source"] == 1, f"retention.ms source {cfg['retention.ms']['config_source']}, "
              "expected 1 (topic override)")
        check(cfg["cleanup.policy"]["config_source"] != 1, "cleanup.policy reported as a topic override")
        check(obs["retention_ms"] == "3600000", f"retention.ms {obs['retention_ms']}")
        check(obs["cleanup_policy"] == "delete", f"cleanup.policy {obs['cleanup_policy']}")
        # kafka-python has no IncrementalAlterConfigs: its alter_configs is the older AlterConfigs,
        # which replaces the topic's whole set of overrides (here: the one we set).
        ctx.step("alter configs (AlterConfigs)")
        a.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "7200000"})])
        # Kafka applies an acknowledged config change to its brokers asynchronously: poll.
        while (altered := topic_configs(a, topic)["retention.ms"]["config_value"]) != "7200000" \
                and ctx.remaining() > 2:
            time.sleep(0.05)
        obs["retention_ms_altered"] = altered
        check(obs["retention_ms_altered"] == "7200000", f"retention.ms after alter {obs['retention_ms_altered']}")
        ctx.step("create partitions")
        a.create_partitions({topic: NewPartitions(4)})
        wait_for_leaders(ctx, topic, 4)
        obs["partitions_after_create_partitions"] = len(a.describe_topics([topic])[0]["partitions"])
        ctx.step("create again")
        try:
            a.create_topics([NewTopic(topic, 3, 1)])
            obs["create_again"] = "no error"
        except KafkaError as e:
            obs["create_again"] = error_of(e)
        check(obs["create_again"] == "TOPIC_ALREADY_EXISTS", f"create again: {obs['create_again']}")
        ctx.step("delete topic")
        a.delete_topics([topic])
        while topic in a.list_topics():
            check(ctx.remaining() > 2, "deleted topic still listed")
            time.sleep(0.1)
        ctx.step("delete unknown topic")
        try:
            a.delete_topics([topic + "-never"])
            obs["delete_unknown"] = "no error"
        except KafkaError as e:
            obs["delete_unknown"] = error_of(e)
        check(obs["delete_unknown"] == "UNKNOWN_TOPIC_OR_PARTITION", f"delete unknown: {obs['delete_unknown']}")
    finally:
        a.close()
    return obs


def compression(codec: str):
    def scenario(ctx: Ctx) -> dict:
        topic = ctx.topic()
        ctx.step("create topic")
        create_topic(ctx, topic, 1)
        ctx.step(f"produce with {codec}")
        p = producer(ctx, compression_type=None if codec == "none" else codec)
        try:
            md = send_all(p, topic, [{"key": f"k-{i}".encode(), "value": f"v-{i}".encode()} for i in range(100)])
        finally:
            p.close()
        check([m.offset for m in md] == list(range(100)), "acked offsets are not 0..99")
        ctx.step("consume")
        recs = read_partitions(ctx, topic, [0], 100)
        got = [(r.offset, r.key, r.value) for r in recs]
        want = [(i, f"k-{i}".encode(), f"v-{i}".encode()) for i in range(100)]
        check(got == want, f"read back differs: {next(((g, w) for g, w in zip(got, want) if g != w), None)}")
        return {"records": len(recs), "offsets": [recs[0].offset, recs[-1].offset]}
    return scenario


def keyed_partitioning(ctx: Ctx) -> dict:
    topic = ctx.topic()
    ctx.step("create topic")
    create_topic(ctx, topic, 6)
    keys = [f"key-{i}" for i in range(60)]
    partition_of: dict[str, int] = {}
    p = producer(ctx)
    try:
        for rnd in (1, 2):
            ctx.step(f"produce round {rnd}")
            md = send_all(p, topic, [{"key": k.encode(), "value": f"r{rnd}-{k}".encode()} for k in keys])
            for k, m in zip(keys, md):
                if rnd == 1:
                    partition_of[k] = m.partition
                else:
                    check(partition_of[k] == m.partition, f"{k} went to {partition_of[k]} then {m.partition}")
    finally:
        p.close()
    ctx.step("read every partition")
    found: dict[str, list[int]] = {}
    for r in read_partitions(ctx, topic, list(range(6)), 120):
        found.setdefault(r.key.decode(), []).append(r.partition)
    for k in keys:
        check(found.get(k) == [partition_of[k]] * 2, f"{k} reported in {partition_of[k]}, found in {found.get(k)}")
    return {"records": 120, "partition_of": partition_of}


def headers_nulls(ctx: Ctx) -> dict:
    topic = ctx.topic()
    ctx.step("create topic")
    create_topic(ctx, topic, 1)
    sent = [
        (None, "v1", []),
        ("k2", None, []),
        ("k3", "", []),
        ("k4", "v4", [("h1", "a"), ("h1", "b"), ("empty", "")]),
        # No ("k5", "v5", [("n", None)]): KafkaProducer.send asserts header values are bytes.
    ]

    def enc(s):
        return None if s is None else s.encode()

    ctx.step("produce")
    p = producer(ctx)
    try:
        send_all(p, topic, [{"key": enc(k), "value": enc(v), "headers": [(n, enc(x)) for n, x in h]}
                            for k, v, h in sent])
    finally:
        p.close()
    ctx.step("consume")
    recs = read_partitions(ctx, topic, [0], len(sent))

    def dec(b):
        return None if b is None else b.decode()

    got = [(dec(r.key), dec(r.value), [(n, dec(x)) for n, x in (r.headers or [])]) for r in recs]
    check(got == sent, f"read {got}, sent {sent}")
    return {"records": [[k, v, [list(x) for x in h]] for k, v, h in got]}


def idempotent(ctx: Ctx) -> dict:
    topic = ctx.topic()
    ctx.step("create topic")
    create_topic(ctx, topic, 1)
    ctx.step("idempotent produce")
    p = producer(ctx, enable_idempotence=True, acks="all")
    try:
        md = send_all(p, topic, [{"value": f"i-{i}".encode()} for i in range(200)])
    finally:
        p.close()
    check([m.offset for m in md] == list(range(200)), "acked offsets are not 0..199")
    ctx.step("consume")
    recs = read_partitions(ctx, topic, [0], 200)
    check([r.value.decode() for r in recs] == [f"i-{i}" for i in range(200)], "values not in send order")
    return {"records": len(recs), "offsets": [recs[0].offset, recs[-1].offset]}


def group_read(ctx: Ctx, c: KafkaConsumer, count: int) -> list:
    out: list = []
    while len(out) < count and ctx.remaining() > 1:
        for recs in c.poll(timeout_ms=200).values():
            out.extend(recs)
    check(len(out) == count, f"group read {len(out)} records, expected {count}")
    return out


def group_resume(ctx: Ctx) -> dict:
    topic, group = ctx.topic(), ctx.group()
    ctx.step("create topic")
    create_topic(ctx, topic, 3)
    p = producer(ctx)
    try:
        send_all(p, topic, [{"value": f"a-{i}".encode(), "partition": i % 3} for i in range(30)])

        def group_consumer() -> KafkaConsumer:
            return KafkaConsumer(topic, bootstrap_servers=ctx.bootstrap, group_id=group, enable_auto_commit=False,
                                 auto_offset_reset="earliest")

        ctx.step("consumer A")
        a = group_consumer()
        first = group_read(ctx, a, 30)
        a.commit()
        a.close()
        ctx.step("produce 10 more")
        send_all(p, topic, [{"value": f"b-{i}".encode(), "partition": i % 3} for i in range(10)])
    finally:
        p.close()
    ctx.step("consumer B")
    b = group_consumer()
    second = group_read(ctx, b, 10)
    values = sorted(r.value.decode() for r in second)
    check(values == sorted(f"b-{i}" for i in range(10)), f"consumer B read {values}")
    b.commit()
    b.close()
    a_ = admin(ctx)
    try:
        committed = a_.list_consumer_group_offsets(group)
    finally:
        a_.close()
    offsets = [committed[TopicPartition(topic, i)].offset for i in range(3)]
    check(offsets == [14, 13, 13], f"committed {offsets}, expected [14, 13, 13]")
    return {"first": len(first), "second": len(second), "committed": offsets}


def timestamp_offsets(ctx: Ctx) -> dict:
    topic = ctx.topic()
    ctx.step("create topic")
    create_topic(ctx, topic, 1)
    t0 = (int(time.time()) - 60) * 1000
    ctx.step("produce with timestamps")
    p = producer(ctx)
    try:
        send_all(p, topic, [{"value": f"t-{i}".encode(), "timestamp_ms": t0 + 1000 * i} for i in range(3)])
    finally:
        p.close()
    ctx.step("list offsets")
    c = KafkaConsumer(bootstrap_servers=ctx.bootstrap)
    tp = TopicPartition(topic, 0)
    try:
        def for_time(ts: int) -> int:
            r = c.offsets_for_times({tp: ts})[tp]
            return -1 if r is None else r.offset

        obs = {"earliest": c.beginning_offsets([tp])[tp], "latest": c.end_offsets([tp])[tp],
               "t0+500": for_time(t0 + 500), "t0+2000": for_time(t0 + 2000), "after_last": for_time(t0 + 10000)}
    finally:
        c.close()
    want = {"earliest": 0, "latest": 3, "t0+500": 1, "t0+2000": 2, "after_last": -1}
    check(obs == want, f"saw {obs}, expected {want}")
    return obs


def large_records(ctx: Ctx) -> dict:
    topic = ctx.topic()
    ctx.step("create topic")
    create_topic(ctx, topic, 1, {"max.message.bytes": "200000"})
    near = bytes((i * 7) % 251 for i in range(190000))
    p = producer(ctx, max_request_size=1048576, retries=0)
    obs = {}
    try:
        ctx.step("produce 190000 bytes")
        send_all(p, topic, [{"value": near}])
        obs["near_limit"] = "ok"
        ctx.step("produce 210000 bytes")
        try:
            send_all(p, topic, [{"value": b"x" * 210000}])
            obs["over_limit"] = "no error"
        except KafkaError as e:
            obs["over_limit"] = error_of(e)
        check(obs["over_limit"] == "MESSAGE_TOO_LARGE", f"210000-byte record: {obs['over_limit']}")
        ctx.step("produce after")
        send_all(p, topic, [{"value": b"small"}])
        obs["after"] = "ok"
    finally:
        p.close()
    ctx.step("read back")
    recs = read_partitions(ctx, topic, [0], 2)
    check(recs[0].value == near, "190000-byte value read back differs")
    check(recs[1].value == b"small", "small value read back differs")
    return obs


def member(args) -> None:
    done = stdin_closed_event()
    c = KafkaConsumer(bootstrap_servers=args.bootstrap, group_id=args.group, enable_auto_commit=False,
                      auto_offset_reset="earliest", partition_assignment_strategy=[RoundRobinPartitionAssignor])
    last: list = [None]

    def report(parts) -> None:
        now = sorted(tp.partition for tp in parts)
        if now != last[0]:
            last[0] = now
            emit({"event": "assigned", "partitions": now})

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            report(c.assignment() - set(revoked))

        def on_partitions_assigned(self, assigned):
            report(assigned)

    c.subscribe([args.topic], listener=Listener())
    while not done.is_set():
        batch = [r for recs in c.poll(timeout_ms=200).values() for r in recs]
        if batch:
            c.commit()
            for r in batch:
                emit({"event": "record", "partition": r.partition, "offset": r.offset,
                      "value": None if r.value is None else r.value.decode("utf-8", "replace")})
    c.close()
    emit({"event": "closed"})


if __name__ == "__main__":
    log(f"{CLIENT}: {VERSION}")
    main(CLIENT, VERSION, table_from(globals(), compression), member)
