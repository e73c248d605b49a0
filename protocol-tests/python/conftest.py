"""Fixtures for the black-box suite: a real `sluice` process per test module, unique topic names,
and the broker's log attached to every failing test's report."""

from __future__ import annotations

import pytest

from sluice_testlib import BrokerProcess, unique_topic

# Brokers currently running, so that a failing test's report can carry their logs.
_live_brokers: list[BrokerProcess] = []


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """A single-node broker on a free port with a fresh data dir, shared by one test module.

    Tests that restart or kill it must leave it running (restart() after kill9()).
    """
    node = BrokerProcess(tmp_path_factory.mktemp("sluice"))
    node.start()
    _live_brokers.append(node)
    try:
        yield node
    finally:
        _live_brokers.remove(node)
        code = node.stop()
        if code not in (None, 0):
            print(f"\nbroker exited with status {code} on SIGTERM\n{node.log_tail()}")


@pytest.fixture
def topic_name(request):
    """A unique topic name prefixed with the test's name, easy to find in the broker log."""
    prefix = request.node.name.split("[")[0].removeprefix("test_").replace("_", "-")[:40]
    return unique_topic(prefix)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for node in _live_brokers:
            report.sections.append((f"sluice broker log ({node.bootstrap})", node.log_tail()))


# Broker settings for consumer-group tests: no initial rebalance delay (members that join one after
# another are balanced at once, as the tests expect), and an offsets topic a single node can host.
GROUP_BROKER_SETTINGS = {
    "group.initial.rebalance.delay.ms": "0",
    "offsets.topic.replication.factor": "1",
}


@pytest.fixture(scope="module")
def group_broker(tmp_path_factory):
    """Like `broker`, started with GROUP_BROKER_SETTINGS; shared by one test module."""
    node = BrokerProcess(tmp_path_factory.mktemp("sluice"), settings=GROUP_BROKER_SETTINGS)
    node.start()
    _live_brokers.append(node)
    try:
        yield node
    finally:
        _live_brokers.remove(node)
        code = node.stop()
        if code not in (None, 0):
            print(f"\nbroker exited with status {code} on SIGTERM\n{node.log_tail()}")
