"""Shared harness for the matrix's Python client programs (see ../CONTRACT.md).

A client program defines its scenarios as functions taking a `Ctx` and returning the scenario's
`observed` dict, and a member function; then calls `main(...)`:

    def metadata(ctx: Ctx) -> dict: ...
    def member(args) -> None: ...
    main("kafka-python", kafka.__version__, {"metadata": metadata, ...}, member)

Inside a scenario: `ctx.topic()` / `ctx.topic(2)` / `ctx.group()` name things, `ctx.step("...")`
says what it is doing (a timeout names the step), `check(cond, "expected ..., saw ...")` fails
the scenario, `raise Unsupported("no API for ...")` reports it unsupported. Any other exception
is a failure with its message. `emit(obj)` prints one JSON line and flushes (for `member`).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Callable, Optional

SCENARIOS = [
    "metadata",
    "topic_admin",
    "compression_none",
    "compression_gzip",
    "compression_snappy",
    "compression_lz4",
    "compression_zstd",
    "keyed_partitioning",
    "headers_nulls",
    "idempotent",
    "group_resume",
    "timestamp_offsets",
    "large_records",
]
TIMEOUT_S = 60.0
_out_lock = threading.Lock()


class Unsupported(Exception):
    """The client library has no API for what the scenario needs."""


class Failed(Exception):
    """The scenario saw something other than what it expected."""


def check(cond: object, message: str) -> None:
    if not cond:
        raise Failed(message)


def emit(obj: dict) -> None:
    with _out_lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Ctx:
    def __init__(self, client: str, scenario: str, bootstrap: str, run_id: str):
        self.client = client
        self.scenario = scenario
        self.bootstrap = bootstrap
        self.run_id = run_id
        self.current_step = "start"
        self.deadline = time.monotonic() + TIMEOUT_S

    def topic(self, n: int = 1) -> str:
        """`mx-<client>-<scenario>-<RID>`, with `-<n>` for the n-th one (n >= 2)."""
        base = f"mx-{self.client}-{self.scenario}-{self.run_id}"
        return base if n == 1 else f"{base}-{n}"

    def group(self, n: int = 1) -> str:
        """The scenario's n-th consumer group: the same name as `topic(n)` (CONTRACT.md)."""
        return self.topic(n)

    def step(self, what: str) -> None:
        self.current_step = what
        log(f"[{self.client} {self.scenario}] {what}")

    def remaining(self) -> float:
        """Seconds left before the scenario's deadline (at least a little, for cleanup calls)."""
        return max(0.5, self.deadline - time.monotonic())


def error_name(err: object) -> str:
    """Best effort Kafka error name of a library exception, for messages."""
    return f"{type(err).__name__}: {err}"


def run_scenarios(client: str, version: str, table: dict[str, Callable[[Ctx], dict]], args) -> None:
    wanted = args.only.split(",") if args.only else SCENARIOS
    for name in wanted:
        ctx = Ctx(client, name, args.bootstrap, args.run_id)
        started = time.monotonic()
        outcome: dict = {}

        def body() -> None:
            try:
                fn = table.get(name)
                if fn is None:
                    raise Failed(f"no such scenario in this program: {name}")
                outcome["observed"] = fn(ctx) or {}
                outcome["status"] = "pass"
            except Unsupported as e:
                outcome.update(status="unsupported", reason=str(e))
            except Failed as e:
                outcome.update(status="fail", reason=f"{e} (step: {ctx.current_step})")
            except Exception as e:  # a library error is a failure of the scenario, with its message
                outcome.update(status="fail", reason=f"{type(e).__name__}: {str(e) or repr(e)} (step: {ctx.current_step})")

        worker = threading.Thread(target=body, daemon=True)
        worker.start()
        worker.join(TIMEOUT_S)
        if worker.is_alive():
            outcome = {"status": "fail", "reason": f"timed out after {TIMEOUT_S:.0f} s in {ctx.current_step}"}
        line = {
            "client": client,
            "version": version,
            "scenario": name,
            "status": outcome.get("status", "fail"),
            "reason": " ".join(str(outcome.get("reason", "")).split())[:1000],
            "seconds": round(time.monotonic() - started, 3),
            "observed": outcome.get("observed", {}),
        }
        emit(line)


def parse_args(argv: Optional[list[str]] = None):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    sc = sub.add_parser("scenarios")
    sc.add_argument("--bootstrap", required=True)
    sc.add_argument("--run-id", required=True)
    sc.add_argument("--only", default="")
    mb = sub.add_parser("member")
    mb.add_argument("--bootstrap", required=True)
    mb.add_argument("--group", required=True)
    mb.add_argument("--topic", required=True)
    return parser.parse_args(argv)


def stdin_closed_event() -> threading.Event:
    """An event set when stdin reaches EOF (the runner's signal for `member` to leave)."""
    done = threading.Event()

    def watch() -> None:
        try:
            while sys.stdin.readline():
                pass
        finally:
            done.set()

    threading.Thread(target=watch, daemon=True).start()
    return done


CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def table_from(namespace: dict, compression: Callable[[str], Callable[[Ctx], dict]]) -> dict:
    """The scenario table of a client module: its functions named after the scenarios, plus
    `compression(codec)` for each `compression_<codec>` scenario."""
    table = {name: namespace[name] for name in SCENARIOS if name in namespace}
    for codec in CODECS:
        table[f"compression_{codec}"] = compression(codec)
    return table


def main(client: str, version: str, table: dict[str, Callable[[Ctx], dict]], member: Callable) -> None:
    args = parse_args()
    if args.command == "scenarios":
        run_scenarios(client, version, table, args)
    else:
        member(args)


# Kafka protocol error codes -> names, for libraries that report codes (librdkafka's own names
# differ: UNKNOWN_TOPIC_OR_PART, MSG_SIZE_TOO_LARGE).
KAFKA_ERROR_NAMES = {
    1: "OFFSET_OUT_OF_RANGE",
    2: "CORRUPT_MESSAGE",
    3: "UNKNOWN_TOPIC_OR_PARTITION",
    6: "NOT_LEADER_OR_FOLLOWER",
    7: "REQUEST_TIMED_OUT",
    10: "MESSAGE_TOO_LARGE",
    17: "INVALID_TOPIC_EXCEPTION",
    18: "RECORD_LIST_TOO_LARGE",
    19: "NOT_ENOUGH_REPLICAS",
    36: "TOPIC_ALREADY_EXISTS",
    37: "INVALID_PARTITIONS",
    38: "INVALID_REPLICATION_FACTOR",
    40: "INVALID_CONFIG",
    41: "NOT_CONTROLLER",
    42: "INVALID_REQUEST",
    45: "OUT_OF_ORDER_SEQUENCE_NUMBER",
    46: "DUPLICATE_SEQUENCE_NUMBER",
    87: "INVALID_RECORD",
}


def kafka_error_name(code: int) -> str:
    return KAFKA_ERROR_NAMES.get(code, f"ERROR_CODE_{code}")
