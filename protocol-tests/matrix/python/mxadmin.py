"""Topic creation for matrix programs whose library has no admin API (kcat), on confluent-kafka.

    mxadmin.py create --bootstrap B --topic T --partitions N [--config k=v ...]

Creates the topic (replication factor 1) and waits until Metadata shows every partition with a
leader; exits 1 with a one-line message on stderr when that fails. As a module:
`create_topic(bootstrap, topic, partitions, config=None)`, `wait_for_leaders(admin, topic, n)`,
`admin(bootstrap)`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import sys
import time

from confluent_kafka.admin import AdminClient, NewTopic

TIMEOUT_S = 30.0


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "broker.address.family": "v4"})


def wait_for_leaders(a: AdminClient, topic: str, partitions: int, timeout_s: float = TIMEOUT_S) -> None:
    """Waits until Metadata shows `topic` with `partitions` partitions, each with a leader."""
    deadline = time.monotonic() + timeout_s
    while True:
        md = a.list_topics(timeout=TIMEOUT_S)
        tm = md.topics.get(topic)
        if tm is not None and tm.error is None and len(tm.partitions) == partitions \
                and all(p.leader >= 0 for p in tm.partitions.values()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{topic} did not show {partitions} partitions with leaders in {timeout_s}s")
        time.sleep(0.05)


def create_topic(bootstrap: str, topic: str, partitions: int, config: dict[str, str] | None = None) -> None:
    a = admin(bootstrap)
    fut = a.create_topics([NewTopic(topic, partitions, 1, config=config or {})], operation_timeout=TIMEOUT_S)
    try:
        fut[topic].result(timeout=TIMEOUT_S)
    except concurrent.futures.TimeoutError:
        raise TimeoutError(f"CreateTopics {topic} got no answer in {TIMEOUT_S:.0f} s") from None
    wait_for_leaders(a, topic, partitions)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("create")
    c.add_argument("--bootstrap", required=True)
    c.add_argument("--topic", required=True)
    c.add_argument("--partitions", type=int, default=1)
    c.add_argument("--config", action="append", default=[])
    args = parser.parse_args()
    try:
        create_topic(args.bootstrap, args.topic, args.partitions, dict(kv.split("=", 1) for kv in args.config))
    except Exception as e:
        print(f"mxadmin: creating {args.topic}: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
