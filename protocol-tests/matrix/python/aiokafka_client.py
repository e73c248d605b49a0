"""The matrix's `aiokafka` client: aiokafka (asyncio, its own protocol code). See ../CONTRACT.md.

Each scenario is a coroutine run with `asyncio.run` inside the harness's scenario thread.
aiokafka's admin client (experimental in the library) returns the raw protocol responses of
CreateTopics / DeleteTopics / AlterConfigs, so their per-topic error codes are mapped here; it has
only the older AlterConfigs (no IncrementalAlterConfigs), which CONTRACT.md allows for
`topic_admin`.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

import aiokafka
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.errors import BrokerResponseError

from mxcommon import Ctx, check, emit, kafka_error_name, log, main, stdin_closed_event, table_from

CLIENT = "aiokafka"
VERSION = f"aiokafka {aiokafka.__version__}"


def error_of(exc: BaseException) -> str:
    """Kafka's protocol name of an aiokafka exception (its `errno` is the protocol error code)."""
    if isinstance(exc, BrokerResponseError) and isinstance(getattr(exc, "errno", None), int):
        return kafka_error_name(exc.errno)
    return f"{type(exc).__name__}: {exc}"


def response_error(entries) -> str | None:
    """The first non-zero error code among a response's per-resource entries `(name, code, ...)` or
    `(code, message, type, name)`, as a Kafka error name; None when all are 0."""
    for e in entries:
        code = e[0] if isinstance(e[0], int) else e[1]
        if code:
            return kafka_error_name(code)
    return None


def run(coro_fn):
    """A harness scenario (sync, ctx) from a coroutine function of ctx."""
    def scenario(ctx: Ctx) -> dict:
        return asyncio.run(coro_fn(ctx))
    scenario.__name__ = coro_fn.__name__
    return scenario


@asynccontextmanager
async def admin(ctx: Ctx):
    a = AIOKafkaAdminClient(bootstrap_servers=ctx.bootstrap, request_timeout_ms=30000)
    await a.start()
    try:
        yield a
    finally:
        await a.close()


@asynccontextmanager
async def producer(ctx: Ctx, **conf):
    p = AIOKafkaProducer(bootstrap_servers=ctx.bootstrap, linger_ms=5, **conf)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


@asynccontextmanager
async def consumer(ctx: Ctx, *topics: str, **conf):
    c = AIOKafkaConsumer(*topics, bootstrap_servers=ctx.bootstrap, enable_auto_commit=False,
                         auto_offset_reset="earliest", **conf)
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


async def wait_for_leaders(ctx: Ctx, a: AIOKafkaAdminClient, topic: str, partitions: int) -> None:
    while True:
        topics = await a.describe_topics([topic])
        t = topics[0] if topics else None
        if t and t["error_code"] == 0 and len(t["partitions"]) == partitions \
                and all(p["leader"] >= 0 for p in t["partitions"]):
            return
        check(ctx.remaining() > 2, f"{topic} never showed {partitions} partitions with leaders")
        await asyncio.sleep(0.05)


async def create_topic(ctx: Ctx, topic: str, partitions: int, config: dict | None = None) -> None:
    async with admin(ctx) as a:
        resp = await a.create_topics([NewTopic(topic, partitions, 1, topic_configs=config or {})])
        err = response_error(resp.topic_errors)
        check(err is None, f"CreateTopics {topic}: {err}")
        await wait_for_leaders(ctx, a, topic, partitions)


async def send_all(p: AIOKafkaProducer, topic: str, records: list[dict]) -> list:
    """Sends each record (kwargs of AIOKafkaProducer.send), returns the RecordMetadata of each in order."""
    futures = [await p.send(topic, **r) for r in records]
    return list(await asyncio.gather(*futures))


async def read_partitions(ctx: Ctx, topic: str, partitions: list[int], count: int) -> list:
    async with consumer(ctx) as c:
        tps = [TopicPartition(topic, p) for p in partitions]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        out: list = []
        while len(out) < count and ctx.remaining() > 1:
            for recs in (await c.getmany(timeout_ms=200)).values():
                out.extend(recs)
        check(len(out) == count, f"read {len(out)} records of {topic}{partitions}, expected {count}")
        return sorted(out, key=lambda r: (r.partition, r.offset))


# ---- scenarios ----


@run
async def metadata(ctx: Ctx) -> dict:
    topic = ctx.topic()
    ctx.step("create topic")
    await create_topic(ctx, topic, 3)
    ctx.step("metadata")
    async with admin(ctx) as a:
        cluster = await a.describe_cluster()
        t = (await a.describe_topics([topic]))[0]
    brokers = {b["node_id"]: (b["host"], b["port"]) for b in cluster["brokers"]}
    host, port = ctx.bootstrap.rsplit(":", 1)
    check((host, int(port)) in brokers.values(), f"no broker at {ctx.bootstrap}: {brokers}")
    check(t["error_code"] == 0, f"topic error {kafka_error_name(t['error_code'])}")
    parts = sorted(t["partitions"], key=lambda p: p["partition"])
    check(len(parts) == 3, f"{len(parts)} partitions, expected 3")
    for p in parts:
        check(p["leader"] in brokers, f"partition {p['partition']} leader {p['leader']} not a listed broker")
    controller = cluster.get("controller_id")
    return {"brokers": len(brokers), "partitions": len(parts), "replicas": [len(p["replicas"]) for p in parts],
            "controller_listed": (controller in brokers) if controller is not None and controller >= 0 else None}


async def topic_configs(a: AIOKafkaAdminClient, topic: str) -> dict:
    resp = await a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    resources = resp[0].to_object()["resources"]
    check(resources[0]["error_code"] == 0, f"describe configs error {kafka_error_name(resources[0]['error_code'])}")
    return {e["config_names"]: e for e in resources[0]["config_entries"]}


@run
async def topic_admin(ctx: Ctx) -> dict:
    topic = ctx.topic()
    obs: dict = {}
    async with admin(ctx) as a:
        ctx.step("create topic with retention.ms")
        resp = await a.create_topics([NewTopic(topic, 3, 1, topic_configs={"retention.ms": "3600000"})])
        err = response_error(resp.topic_errors)
        check(err is None, f"CreateTopics: {err}")
        await wait_for_leaders(ctx, a, topic, 3)
        ctx.step("describe topic")
        obs["partitions"] = len((await a.describe_topics([topic]))[0]["partitions"])
        check(obs["partitions"] == 3, f"describe: {obs['partitions']} partitions")
        ctx.step("describe configs")
        cfg = await topic_configs(a, topic)
        obs["retention_ms"] = cfg["retention.ms"]["config_value"]
        obs["cleanup_policy"] = cfg["cleanup.policy"]["config_value"]
        check(cfg["retention.ms"]["config_source"] == 1, f"retention.ms source {cfg['retention.ms']['config_source']}, "
              "expected 1 (topic override)")
        check(cfg["cleanup.policy"]["config_source"] != 1, "cleanup.policy reported as a topic override")
        check(obs["retention_ms"] == "3600000", f"retention.ms {obs['retention_ms']}")
        check(obs["cleanup_policy"] == "delete", f"cleanup.policy {obs['cleanup_policy']}")
        # aiokafka has no IncrementalAlterConfigs: its alter_configs is the older AlterConfigs,
        # which replaces the topic's whole set of overrides (here: the one we set).
        ctx.step("alter configs (AlterConfigs)")
        for r in await a.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                                       configs={"retention.ms": "7200000"})]):
            err = response_error(r.resources)
            check(err is None, f"AlterConfigs: {err}")
        # Kafka applies an acknowledged config change to its brokers asynchronously: poll.
        while (altered := (await topic_configs(a, topic))["retention.ms"]["config_value"]) != "7200000" \
                and ctx.remaining() > 2:
            await asyncio.sleep(0.05)
        obs["retention_ms_altered"] = altered
        check(altered == "7200000", f"retention.ms after alter {altered}")
        ctx.step("create partitions")
        await a.create_partitions({topic: NewPartitions(4)})  # raises on a per-topic error
        await wait_for_leaders(ctx, a, topic, 4)
        obs["partitions_after_create_partitions"] = len((await a.describe_topics([topic]))[0]["partitions"])
        ctx.step("create again")
        resp = await a.create_topics([NewTopic(topic, 3, 1)])
        obs["create_again"] = response_error(resp.topic_errors) or "no error"
        check(obs["create_again"] == "TOPIC_ALREADY_EXISTS", f"create again: {obs['create_again']}")
        ctx.step("delete topic")
        resp = await a.delete_topics([topic])
        err = response_error(resp.topic_error_codes)
        check(err is None, f"DeleteTopics: {err}")
        # list_topics, not describe_topics: aiokafka's Metadata request asks for auto-creation.
        while topic in await a.list_topics():
            check(ctx.remaining() > 2, "deleted topic still listed")
            await asyncio.sleep(0.1)
        ctx.step("delete unknown topic")
        resp = await a.delete_topics([topic + "-never"])
        obs["delete_unknown"] = response_error(resp.topic_error_codes) or "no error"
        check(obs["delete_unknown"] == "UNKNOWN_TOPIC_OR_PARTITION", f"delete unknown: {obs['delete_unknown']}")
    return obs


def compression(codec: str):
    async def scenario(ctx: Ctx) -> dict:
        topic = ctx.topic()
        ctx.step("create topic")
        await create_topic(ctx, topic, 1)
        ctx.step(f"produce with {codec}")
        async with producer(ctx, compression_type=None if codec == "none" else codec) as p:
            md = await send_all(p, topic, [{"key": f"k-{i}".encode(), "value": f"v-{i}".encode()} for i in range(100)])
        check([m.offset for m in md] == list(range(100)), "acked offsets are not 0..99")
        ctx.step("consume")
        recs = await read_partitions(ctx, topic, [0], 100)
        got = [(r.offset, r.key, r.value) for r in recs]
        want = [(i, f"k-{i}".encode(), f"v-{i}".encode()) for i in range(100)]
        check(got == want, f"read back differs: {next(((g, w) for g, w in zip(got, want) if g != w), None)}")
        return {"records": len(recs), "offsets": [recs[0].offset, recs[-1].offset]}
    scenario.__name__ = f"compression_{codec}"
    return run(scenario)


@run
async def keyed_partitioning(ctx: Ctx) -> dict:
    topic = ctx.topic()
    ctx.step("create topic")
    await create_topic(ctx, topic, 6)
    keys = [f"key-{i}" for i in range(60)]
    partition_of: dict[str, int] = {}
    async with producer(ctx) as p:
        for rnd in (1, 2):
            ctx.step(f"produce round {rnd}")
            md = await send_all(p, topic, [{"key": k.encode(), "value": f"r{rnd}-{k}".encode()} for k in keys])
            for k, m in zip(keys, md):
                if rnd == 1:
                    partition_of[k] = m.partition
                else:
                    check(partition_of[k] == m.partition, f"{k} went to {partition_of[k]} then {m.partition}")
    ctx.step("read every partition")
    found: dict[str, list[int]] = {}
    for r in await read_partitions(ctx, topic, list(range(6)), 120):
        found.setdefault(r.key.decode(), []).append(r.partition)
    for k in keys:
        check(found.get(k) == [partition_of[k]] * 2, f"{k} reported in {partition_of[k]}, found in {found.get(k)}")
    return {"records": 120, "partition_of": partition_of}


@run
async def headers_nulls(ctx: Ctx) -> dict:
    topic = ctx.topic()
    ctx.step("create topic")
    await create_topic(ctx, topic, 1)
    sent = [
        (None, "v1", []),
        ("k2", None, []),
        ("k3", "", []),
        ("k4", "v4", [("h1", "a"), ("h1", "b"), ("empty", "")]),
        ("k5", "v5", [("n", None)]),  # aiokafka writes a None header value as null (length -1)
    ]

    def enc(s):
        return None if s is None else s.encode()

    ctx.step("produce")
    async with producer(ctx) as p:
        await send_all(p, topic, [{"key": enc(k), "value": enc(v), "headers": [(n, enc(x)) for n, x in h]}
                                  for k, v, h in sent])
    ctx.step("consume")
    recs = await read_partitions(ctx, topic, [0], len(sent))

    def dec(b):
        return None if b is None else b.decode()

    got = [(dec(r.key), dec(r.value), [(n, dec(x)) for n, x in (r.headers or [])]) for r in recs]
    check(got == sent, f"read {got}, sent {sent}")
    return {"records": [[k, v, [list(x) for x in h]] for k, v, h in got]}


@run
async def idempotent(ctx: Ctx) -> dict:
    topic = ctx.topic()
    ctx.step("create topic")
    await create_topic(ctx, topic, 1)
    ctx.step("idempotent produce")
    async with producer(ctx, enable_idempotence=True, acks="all") as p:
        md = await send_all(p, topic, [{"value": f"i-{i}".encode()} for i in range(200)])
    check([m.offset for m in md] == list(range(200)), "acked offsets are not 0..199")
    ctx.step("consume")
    recs = await read_partitions(ctx, topic, [0], 200)
    check([r.value.decode() for r in recs] == [f"i-{i}" for i in range(200)], "values not in send order")
    return {"records": len(recs), "offsets": [recs[0].offset, recs[-1].offset]}


async def group_read(ctx: Ctx, c: AIOKafkaConsumer, count: int) -> list:
    out: list = []
    while len(out) < count and ctx.remaining() > 1:
        for recs in (await c.getmany(timeout_ms=200)).values():
            out.extend(recs)
    check(len(out) == count, f"group read {len(out)} records, expected {count}")
    return out


@run
async def group_resume(ctx: Ctx) -> dict:
    topic, group = ctx.topic(), ctx.group()
    ctx.step("create topic")
    await create_topic(ctx, topic, 3)
    async with producer(ctx) as p:
        ctx.step("produce 30")
        await send_all(p, topic, [{"value": f"a-{i}".encode(), "partition": i % 3} for i in range(30)])
        ctx.step("consumer A")
        async with consumer(ctx, topic, group_id=group) as a:
            first = await group_read(ctx, a, 30)
            await a.commit()
        ctx.step("produce 10 more")
        await send_all(p, topic, [{"value": f"b-{i}".encode(), "partition": i % 3} for i in range(10)])
    ctx.step("consumer B")
    async with consumer(ctx, topic, group_id=group) as b:
        second = await group_read(ctx, b, 10)
        values = sorted(r.value.decode() for r in second)
        check(values == sorted(f"b-{i}" for i in range(10)), f"consumer B read {values}")
        await b.commit()
    ctx.step("committed offsets")
    async with admin(ctx) as ad:
        committed = await ad.list_consumer_group_offsets(group)
    offsets = [committed[TopicPartition(topic, i)].offset if TopicPartition(topic, i) in committed else None
               for i in range(3)]
    check(offsets == [14, 13, 13], f"committed {offsets}, expected [14, 13, 13]")
    return {"first": len(first), "second": len(second), "committed": offsets}


@run
async def timestamp_offsets(ctx: Ctx) -> dict:
    topic = ctx.topic()
    ctx.step("create topic")
    await create_topic(ctx, topic, 1)
    t0 = (int(time.time()) - 60) * 1000
    ctx.step("produce with timestamps")
    async with producer(ctx) as p:
        await send_all(p, topic, [{"value": f"t-{i}".encode(), "timestamp_ms": t0 + 1000 * i} for i in range(3)])
    ctx.step("list offsets")
    tp = TopicPartition(topic, 0)
    async with consumer(ctx) as c:
        async def for_time(ts: int) -> int:
            r = (await c.offsets_for_times({tp: ts}))[tp]
            return -1 if r is None else r.offset

        obs = {"earliest": (await c.beginning_offsets([tp]))[tp], "latest": (await c.end_offsets([tp]))[tp],
               "t0+500": await for_time(t0 + 500), "t0+2000": await for_time(t0 + 2000),
               "after_last": await for_time(t0 + 10000)}
    want = {"earliest": 0, "latest": 3, "t0+500": 1, "t0+2000": 2, "after_last": -1}
    check(obs == want, f"saw {obs}, expected {want}")
    return obs


@run
async def large_records(ctx: Ctx) -> dict:
    topic = ctx.topic()
    ctx.step("create topic")
    await create_topic(ctx, topic, 1, {"max.message.bytes": "200000"})
    near = bytes((i * 7) % 251 for i in range(190000))
    obs = {}
    # aiokafka has no `retries` setting; MESSAGE_TOO_LARGE is not retriable, so it fails at once.
    async with producer(ctx, max_request_size=1048576) as p:
        ctx.step("produce 190000 bytes")
        await send_all(p, topic, [{"value": near}])
        obs["near_limit"] = "ok"
        ctx.step("produce 210000 bytes")
        try:
            await send_all(p, topic, [{"value": b"x" * 210000}])
            obs["over_limit"] = "no error"
        except Exception as e:  # noqa: BLE001 (any error is reported by name)
            obs["over_limit"] = error_of(e)
        check(obs["over_limit"] == "MESSAGE_TOO_LARGE", f"210000-byte record: {obs['over_limit']}")
        ctx.step("produce after")
        await send_all(p, topic, [{"value": b"small"}])
        obs["after"] = "ok"
    ctx.step("read back")
    recs = await read_partitions(ctx, topic, [0], 2)
    check(recs[0].value == near, "190000-byte value read back differs")
    check(recs[1].value == b"small", "small value read back differs")
    return obs


# ---- member ----


async def member_main(args) -> None:
    done = stdin_closed_event()
    last: list[list[int] | None] = [None]

    def report(parts) -> None:
        now = sorted(tp.partition for tp in parts)
        if now != last[0]:
            last[0] = now
            emit({"event": "assigned", "partitions": now})

    class Listener(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked):
            report(c.assignment() - set(revoked))

        async def on_partitions_assigned(self, assigned):
            report(assigned)

    c = AIOKafkaConsumer(bootstrap_servers=args.bootstrap, group_id=args.group, enable_auto_commit=False,
                         auto_offset_reset="earliest", partition_assignment_strategy=(RoundRobinPartitionAssignor,))
    await c.start()
    try:
        c.subscribe([args.topic], listener=Listener())
        while not done.is_set():
            batch = [r for recs in (await c.getmany(timeout_ms=200)).values() for r in recs]
            if batch:
                await c.commit()
                for r in batch:
                    emit({"event": "record", "partition": r.partition, "offset": r.offset,
                          "value": None if r.value is None else r.value.decode("utf-8", "replace")})
    finally:
        await c.stop()
    emit({"event": "closed"})


def member(args) -> None:
    asyncio.run(member_main(args))


if __name__ == "__main__":
    log(f"{CLIENT}: {VERSION}")
    main(CLIENT, VERSION, table_from(globals(), compression), member)
