"""A queue checker in the style of Jepsen's Kafka tests, against 3 combined nodes, each in its own
network namespace (netns_cluster.py), and Jepsen's 2013 Kafka scenario on split roles.

Every written value is unique. Idempotent acks=all producers record what was acknowledged and at
which offset; a consumer group records everything it reads. Meanwhile a seeded fault schedule
SIGKILLs partition leaders and the active controller, SIGSTOPs followers past
`replica.lag.time.max.ms`, cuts a leader off from the other nodes (network namespaces with
blackhole routes: clients still reach it), and restarts nodes. At the end every fault is healed,
every partition is drained from offset 0, and the checker reports:

- lost: acknowledged, but not in the drained log (or not at its acknowledged offset);
- duplicated: one value at two offsets;
- inconsistent: one offset read with two different values (by the group or the drain);
- order violations: one producer's values to one partition out of order in the log.

It must report zero of each. `SLUICE_FAULT_SEED=<seed>` replays a fault schedule (the faults,
not the timing of the clients). The checker needs root (network namespaces), as CI runs.

The 2013 scenario (a lone in-sync leader cut off, stale followers back) runs on 3 controller-only
nodes and 3 brokers: in namespaces as root; without root, on scripts/cluster with the leader
killed instead of cut off.
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from collections import defaultdict

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import netns_cluster
from sluice_testlib import scripts_cluster, sluice_bin, unique_topic

PARTITIONS = 3
FAULT_PHASE_S = float(os.environ.get("SLUICE_FAULT_SECONDS", "45"))
LAG_MAX_MS = 2000
SESSION_MS = 4000
SETTINGS = [
    "--set", "broker.heartbeat.interval.ms=300",
    "--set", f"broker.session.timeout.ms={SESSION_MS}",
    "--set", "controller.quorum.election.timeout.ms=500",
    "--set", f"replica.lag.time.max.ms={LAG_MAX_MS}",
]


def leaders(bootstrap, topic):
    """partition -> (leader, isr), or {} when metadata is not available right now."""
    try:
        md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=5)
    except Exception:  # noqa: BLE001 - a node may be down; the caller retries
        return {}
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return {}
    return {p.id: (p.leader, sorted(p.isrs)) for p in t.partitions.values()}


def active_controller(bootstrap):
    """The active controller as `sluice describe-quorum` reports it through any node."""
    for address in bootstrap.split(","):
        try:
            out = subprocess.run(
                [str(sluice_bin()), "describe-quorum", "--bootstrap-server", address],
                capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL,
            ).stdout
        except subprocess.TimeoutExpired:
            continue
        for line in out.splitlines():
            if line.startswith("LeaderId:"):
                try:
                    return int(line.split(":", 1)[1])
                except ValueError:
                    pass
    return None


def wait_for(what, probe, timeout_s):
    deadline = time.time() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        assert time.time() < deadline, f"{what} (waited {timeout_s}s)"
        time.sleep(0.2)


class History:
    """What the clients saw, shared by their threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.attempted = 0
        self.acked = {}  # value -> (partition, offset)
        self.failed = 0
        self.reads = defaultdict(set)  # (partition, offset) -> {values}

    def ack(self, value, partition, offset):
        with self.lock:
            self.acked[value] = (partition, offset)

    def read(self, partition, offset, value):
        with self.lock:
            self.reads[(partition, offset)].add(value)


def produce_loop(bootstrap, topic, name, history, stop):
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "message.timeout.ms": 20000,
        "linger.ms": 5,
    })

    def delivered(err, msg):
        if err is None:
            history.ack(msg.value().decode(), msg.partition(), msg.offset())
        else:
            with history.lock:
                history.failed += 1

    n = 0
    while not stop.is_set():
        # Values carry their producer and sequence: "<producer>:<partition>:<n>".
        partition = n % PARTITIONS
        value = f"{name}:{partition}:{n}"
        try:
            producer.produce(topic, value=value.encode(), partition=partition, on_delivery=delivered)
            with history.lock:
                history.attempted += 1
            n += 1
        except BufferError:
            producer.poll(0.1)
        producer.poll(0)
        time.sleep(0.002)
    producer.flush(60)


def consume_loop(bootstrap, topic, group, history, stop):
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": True,
        "session.timeout.ms": 10000,
    })
    consumer.subscribe([topic])
    while not stop.is_set():
        m = consumer.poll(0.2)
        if m is None or m.error() is not None:
            continue
        history.read(m.partition(), m.offset(), m.value().decode())
    consumer.close()


def drain(bootstrap, topic, partitions=PARTITIONS):
    """Every (partition, offset) -> value of the healed log, from offset 0 to the high watermark."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_topic("drain"), "enable.auto.commit": False})
    highs = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(partitions)}
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    log = {}
    deadline = time.time() + 120
    while any(sum(1 for (p, _) in log if p == q) < highs[q] for q in range(partitions)):
        assert time.time() < deadline, f"drain stuck: {len(log)} read, high watermarks {highs}"
        m = consumer.poll(0.5)
        if m is None:
            continue
        if m.error() is not None:
            assert m.error().code() in (KafkaError._PARTITION_EOF, KafkaError._TRANSPORT), m.error()
            continue
        if m.offset() < highs[m.partition()]:
            log[(m.partition(), m.offset())] = m.value().decode()
    consumer.close()
    return log, highs


def check(history, log):
    """The checker's verdict: lists of lost, duplicated, inconsistent and out-of-order values."""
    at = defaultdict(list)
    for (p, o), v in log.items():
        at[v].append((p, o))
    lost = [v for v, (p, o) in history.acked.items() if log.get((p, o)) != v]
    duplicated = [v for v, places in at.items() if len(places) > 1]
    inconsistent = []
    for (p, o), values in history.reads.items():
        seen = set(values)
        if (p, o) in log:
            seen.add(log[(p, o)])
        if len(seen) > 1:
            inconsistent.append(((p, o), sorted(seen)))
    order = []
    last = {}
    for (p, o) in sorted(log):
        producer, _, n = log[(p, o)].split(":")
        key = (producer, p)
        if key in last and int(n) <= last[key]:
            order.append((p, o, log[(p, o)]))
        last[key] = int(n)
    return lost, duplicated, inconsistent, order


def run_faults(nodes, topic, rng, until):
    """The fault schedule: one fault at a time, every few seconds; returns what it did."""
    done = []
    bootstrap = nodes.bootstrap()
    while time.time() < until:
        time.sleep(rng.uniform(2.0, 4.0))
        kind = rng.choice(["kill-leader", "kill-controller", "pause-follower", "cut-leader", "restart"])
        current = leaders(bootstrap, topic)
        if kind in ("kill-leader", "cut-leader", "pause-follower") and len(current) < PARTITIONS:
            continue
        if kind == "kill-leader":
            victim = current[rng.randrange(PARTITIONS)][0]
            if victim not in nodes.ids():
                continue
            nodes.kill(victim)
            time.sleep(rng.uniform(1.0, 5.0))
            nodes.start(victim)
        elif kind == "kill-controller":
            victim = active_controller(bootstrap)
            if victim not in nodes.ids():
                continue
            nodes.kill(victim)
            time.sleep(rng.uniform(1.0, 5.0))
            nodes.start(victim)
        elif kind == "pause-follower":
            leader, isr = current[rng.randrange(PARTITIONS)]
            followers = [n for n in isr if n != leader]
            if not followers:
                continue
            victim = rng.choice(followers)
            nodes.pause(victim)
            # Past the lag limit, so the leader drops it from the ISR.
            time.sleep(LAG_MAX_MS / 1000 + rng.uniform(0.5, 2.0))
            nodes.resume(victim)
        elif kind == "cut-leader":
            victim = current[rng.randrange(PARTITIONS)][0]
            if victim not in nodes.ids():
                continue
            # Cut off past the session timeout: the controllers fence it and elect other leaders,
            # while clients may still send it writes it cannot get replicated.
            nodes.cut(victim)
            time.sleep(SESSION_MS / 1000 + rng.uniform(1.0, 3.0))
            nodes.heal_network()
        elif kind == "restart":
            victim = rng.choice(list(nodes.ids()))
            nodes.restart(victim)
        done.append((kind, victim))
        print(f"fault: {kind} node {victim}", flush=True)
    return done


def heal(nodes, topic):
    nodes.heal_network()
    for node in nodes.ids():
        nodes.resume(node)
        nodes.start(node)  # a no-op for a running node
    wait_for(
        "every partition has a leader and a full ISR after healing",
        lambda: (m := leaders(nodes.bootstrap(), topic)) and all(l > 0 and len(isr) == 3 for l, isr in m.values()),
        60,
    )


@pytest.fixture
def netns_nodes(tmp_path):
    if not netns_cluster.available():
        pytest.skip("the fault checker cuts network paths with network namespaces: run it as root")
    nodes = netns_cluster.NetnsCluster(tmp_path, sluice_bin(), 3, SETTINGS)
    try:
        nodes.start_all()
        yield nodes
    finally:
        nodes.close()


def test_no_acknowledged_write_is_lost_under_kills_pauses_cuts_and_restarts(netns_nodes):
    nodes = netns_nodes
    bootstrap = nodes.bootstrap()
    seed = int(os.environ.get("SLUICE_FAULT_SEED", random.randrange(1 << 32)))
    print(f"fault schedule seed {seed} (replay with SLUICE_FAULT_SEED={seed})", flush=True)
    rng = random.Random(seed)
    topic = unique_topic("jepsen")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=PARTITIONS, replication_factor=3, config={"min.insync.replicas": "2"})
    for f in admin.create_topics([new]).values():
        f.result(timeout=30)

    history = History()
    stop = threading.Event()
    threads = [threading.Thread(target=produce_loop, args=(bootstrap, topic, f"p{i}", history, stop)) for i in range(2)]
    threads.append(threading.Thread(target=consume_loop, args=(bootstrap, topic, unique_topic("g"), history, stop)))
    for t in threads:
        t.start()
    try:
        faults = run_faults(nodes, topic, rng, time.time() + FAULT_PHASE_S)
    finally:
        heal(nodes, topic)
        time.sleep(3)
        stop.set()
        for t in threads:
            t.join(120)
    log, highs = drain(bootstrap, topic)
    lost, duplicated, inconsistent, order = check(history, log)
    print(
        f"seed {seed}: {len(faults)} faults {faults}; {history.attempted} attempted, {len(history.acked)} acknowledged, "
        f"{history.failed} failed; {len(log)} in the log (high watermarks {highs}); group read "
        f"{len(history.reads)} offsets; lost {len(lost)}, duplicated {len(duplicated)}, "
        f"inconsistent {len(inconsistent)}, order violations {len(order)}",
        flush=True,
    )
    assert len(faults) >= 3, f"the schedule injected too few faults: {faults}"
    assert len(history.acked) > 1000, "too few acknowledged writes to mean anything"
    assert not lost, f"seed {seed}: lost {len(lost)} acknowledged values, e.g. {lost[:5]}"
    assert not duplicated, f"seed {seed}: duplicated {duplicated[:5]}"
    assert not inconsistent, f"seed {seed}: inconsistent offsets {inconsistent[:5]}"
    assert not order, f"seed {seed}: order violations {order[:5]}"


class ScriptsCluster:
    """`scripts/cluster` on loopback behind the NetnsCluster methods the 2013 scenario uses, for
    runs without root: its nodes can be paused and killed, not cut off."""

    def __init__(self, root, nodes, settings, controllers):
        self.env = dict(os.environ, SLUICE_CLUSTER_DIR=str(root / "cluster"), SLUICE_BIN=str(sluice_bin()))
        self.args = [str(nodes), "--controllers", str(controllers), "--", *settings]
        self.addresses = {}
        self.first_broker = controllers + 1

    def start_all(self):
        up = scripts_cluster(self.env, "up", *self.args)
        listed = up.stdout.strip().splitlines()[-1].removeprefix("BOOTSTRAP=").split(",")
        self.addresses = {self.first_broker + k: address for k, address in enumerate(listed)}

    def brokers(self):
        return list(self.addresses)

    def bootstrap(self, nodes=None):
        return ",".join(self.addresses[i] for i in (nodes or self.brokers()))

    def pause(self, i):
        scripts_cluster(self.env, "pause", str(i))

    def resume(self, i):
        scripts_cluster(self.env, "resume", str(i))

    def kill(self, i):
        scripts_cluster(self.env, "kill", str(i))

    def start(self, i):
        scripts_cluster(self.env, "start", str(i))

    def close(self):
        scripts_cluster(self.env, "down", "--clean", check=False)


# Sessions outlive the pauses of the 2013 scenario, so followers leave the ISR by lag, not fencing.
SPLIT_SESSION_MS = 8000


@pytest.fixture
def split_nodes(tmp_path):
    """Three controller-only nodes (1-3) and three brokers (4-6), so that pausing brokers never takes
    the metadata quorum's majority with it: each in its own network namespace when run as root (a
    node can be cut off), else on loopback through scripts/cluster (a node can only be killed)."""
    settings = [*SETTINGS, "--set", f"broker.session.timeout.ms={SPLIT_SESSION_MS}"]
    if netns_cluster.available():
        nodes = netns_cluster.NetnsCluster(tmp_path, sluice_bin(), 6, settings, controllers=3)
    else:
        nodes = ScriptsCluster(tmp_path, 6, settings, controllers=3)
    try:
        nodes.start_all()
        yield nodes
    finally:
        nodes.close()


def write(bootstrap, topic, history, name, count, timeout_ms=30000, during=None):
    """Sends `name:0:<i>` for i < count to partition 0 with acks=all and waits for every answer,
    calling `during()` meanwhile; records acknowledgements in `history` and returns their number."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": timeout_ms})
    acked = []

    def delivered(err, msg):
        if err is None:
            acked.append(msg.offset())
            history.ack(msg.value().decode(), msg.partition(), msg.offset())

    for i in range(count):
        producer.produce(topic, value=f"{name}:0:{i}".encode(), partition=0, on_delivery=delivered)
    with history.lock:
        history.attempted += count
    deadline = time.time() + timeout_ms / 1000 + 10
    while producer.flush(0.5) > 0:
        assert time.time() < deadline, f"{name}: no answer for some writes after {timeout_ms} ms"
        if during is not None:
            during()
    return len(acked)


def test_a_stale_replica_never_takes_over_from_a_lone_leader(split_nodes):
    """Jepsen 2013: the ISR shrinks to the leader alone, which keeps acknowledging writes; then the
    leader is cut off from every other node (as root; else it is killed) and the stale followers
    come back. No follower may be elected (that would erase those writes): the partition stays
    leaderless with the old leader as its ISR, and writes through the followers are not
    acknowledged. The cut-off leader does not know it was fenced and, as Kafka's would with
    min.insync.replicas=1, goes on acknowledging acks=all writes alone. Once the cut heals it leads
    again, and every acknowledged write is in the log, at its offset, once."""
    nodes = split_nodes
    cut = isinstance(nodes, netns_cluster.NetnsCluster)
    bootstrap = nodes.bootstrap()
    topic = unique_topic("stale")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    # min.insync.replicas keeps its default, 1: the leader alone may acknowledge acks=all writes.
    for f in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3)]).values():
        f.result(timeout=30)
    leader = wait_for("a leader", lambda: leaders(bootstrap, topic).get(0, (0,))[0], 20)
    followers = [n for n in nodes.brokers() if n != leader]
    at_leader, at_followers = nodes.bootstrap([leader]), nodes.bootstrap(followers)
    history = History()
    assert write(bootstrap, topic, history, "all-three", 100) == 100

    for f in followers:
        nodes.pause(f)
    wait_for(
        "the ISR shrinks to the leader alone", lambda: leaders(at_leader, topic).get(0, (0, []))[1] == [leader], 20
    )
    assert write(at_leader, topic, history, "leader-alone", 100) == 100, "acks=all with the leader as the whole ISR"

    # The leader goes away, from the controllers too; the stale followers come back.
    if cut:
        nodes.cut(leader)
    else:
        nodes.kill(leader)
    gone = time.time()
    for f in followers:
        nodes.resume(f)
    cut_acked = write(at_leader, topic, history, "cut-before-fence", 50) if cut else 0
    fenced = (-1, [leader])
    wait_for(
        "the controllers fence the lost leader: the partition is leaderless, its ISR the lost leader",
        lambda: leaders(at_followers, topic).get(0) == fenced,
        SPLIT_SESSION_MS / 1000 + 15,
    )
    fenced_after_s = time.time() - gone
    # Fenced, but it cannot hear it: it still leads as far as it knows.
    cut_acked += write(at_leader, topic, history, "cut-after-fence", 50) if cut else 0
    states = []
    via_followers = write(
        at_followers, topic, history, "via-follower", 20, timeout_ms=5000,
        during=lambda: states.append(leaders(at_followers, topic).get(0)),
    )
    states.append(leaders(at_followers, topic).get(0))
    changed = [s for s in states if s is not None and s != fenced]
    print(
        f"leader {leader} {f'cut off, acknowledging {cut_acked} writes alone' if cut else 'killed'}, with ISR "
        f"[{leader}]; fenced after {fenced_after_s:.1f}s; {len(states)} samples through the followers "
        f"{sorted({str(s) for s in states})}; {via_followers} of 20 writes through the followers acknowledged",
        flush=True,
    )
    assert not changed, f"a stale follower was elected, or the ISR changed: {changed}"
    assert via_followers == 0, "a write through the followers was acknowledged with no leader"
    if cut:
        assert cut_acked == 100, "a leader cut off with ISR [itself] and min.insync.replicas=1 acknowledges alone"

    healed = time.time()
    if cut:
        nodes.heal_network()
    else:
        nodes.start(leader)
    # Asked of the followers: the old leader's own metadata is stale until it hears the controllers.
    wait_for("the old leader leads again", lambda: leaders(at_followers, topic).get(0, (0,))[0] == leader, 30)
    back_after_s = time.time() - healed
    wait_for(
        "the followers catch up and rejoin the ISR",
        lambda: len(leaders(at_followers, topic).get(0, (0, []))[1]) == 3,
        30,
    )
    in_sync_after_s = time.time() - healed
    log, highs = drain(bootstrap, topic, partitions=1)
    lost, duplicated, _, order = check(history, log)
    strays = sorted(v for v in log.values() if v.startswith("via-follower"))
    print(
        f"healed: leader {leader} again after {back_after_s:.1f}s, full ISR after {in_sync_after_s:.1f}s; "
        f"{len(history.acked)} acknowledged, {len(log)} in the log (high watermark {highs[0]}); lost {len(lost)}, "
        f"duplicated {len(duplicated)}, order violations {len(order)}, unacknowledged follower writes {len(strays)}",
        flush=True,
    )
    assert len(history.acked) == 200 + cut_acked
    assert not lost, f"acknowledged writes erased or moved: {lost[:5]} ({len(lost)} in all)"
    assert not duplicated, f"written twice: {duplicated[:5]}"
    assert not order, f"out of order: {order[:5]}"
    assert not strays, f"writes through the followers were never acknowledged, yet are in the log: {strays[:5]}"
