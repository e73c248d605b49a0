"""scripts/cluster as a person uses it: a 3-node cluster on loopback, a node killed and started
again, the quorum's status, and clients (confluent-kafka, kcat) following leadership changes."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from sluice_testlib import scripts_cluster, sluice_bin, unique_topic

FAST = ["--set", "broker.session.timeout.ms=3000", "--set", "broker.heartbeat.interval.ms=300"]


cluster = scripts_cluster


@pytest.fixture
def three_nodes(tmp_path):
    env = dict(os.environ, SLUICE_CLUSTER_DIR=str(tmp_path / "cluster"), SLUICE_BIN=str(sluice_bin()))
    up = cluster(env, "up", "3", "--", *FAST)
    last = up.stdout.strip().splitlines()[-1]
    assert last.startswith("BOOTSTRAP="), up.stdout
    try:
        yield env, last.removeprefix("BOOTSTRAP=")
    finally:
        cluster(env, "down", "--clean", check=False)


def partition_leaders(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(topic, timeout=10)
    t = md.topics[topic]
    return {p.id: (p.leader, list(p.isrs)) for p in t.partitions.values()}


def test_a_cluster_survives_a_killed_node_and_takes_it_back(three_nodes):
    env, bootstrap = three_nodes
    assert len(bootstrap.split(",")) == 3
    status = cluster(env, "status").stdout
    assert status.count("running") == 3, status
    assert "LeaderId:" in status and "CurrentVoters:   [1, 2, 3]" in status, status

    topic = unique_topic("cluster")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3)]).values():
        f.result(timeout=30)
    before = partition_leaders(bootstrap, topic)
    assert sorted(leader for leader, _ in before.values()) == [1, 2, 3], before

    victim = before[0][0]
    cluster(env, "kill", str(victim))
    assert f"{victim}    broker,controller" in cluster(env, "status").stdout
    live = ",".join(b for i, b in enumerate(bootstrap.split(","), start=1) if i != victim)
    deadline = time.time() + 20
    while True:
        now = partition_leaders(live, topic)
        if all(leader not in (victim, -1) for leader, _ in now.values()):
            break
        assert time.time() < deadline, f"leadership did not move off node {victim}: {now}"
        time.sleep(0.2)

    # A client that knows all three nodes produces and reads back through the new leaders.
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": 30000})
    for p in range(3):
        producer.produce(topic, value=f"v{p}".encode(), partition=p)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": live, "group.id": unique_topic("g"), "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    seen = set()
    deadline = time.time() + 30
    while len(seen) < 3 and time.time() < deadline:
        m = consumer.poll(0.5)
        if m is not None and m.error() is None:
            seen.add(m.value().decode())
    consumer.close()
    assert seen == {"v0", "v1", "v2"}

    # The killed node comes back with the same ports and data, and the cluster lists it again.
    cluster(env, "start", str(victim))
    deadline = time.time() + 20
    while True:
        md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
        if victim in md.brokers:
            break
        assert time.time() < deadline, f"node {victim} did not rejoin: {md.brokers}"
        time.sleep(0.2)
    assert cluster(env, "status").stdout.count("running") == 3
