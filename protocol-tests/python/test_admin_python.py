"""Topic and config administration through confluent-kafka's AdminClient (librdkafka)."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from sluice_testlib import CLIENT_TIMEOUT_S, admin_client, create_topic, partition_count, wait_until

KAFKA_DEFAULT_RETENTION_MS = "604800000"  # 7 days, Kafka's default for retention.ms


@pytest.fixture
def admin(broker):
    return admin_client(broker.bootstrap)


def source(entry: ConfigEntry) -> ConfigSource:
    """The entry's config source as the enum, whether the client hands back the enum or its value."""
    return entry.source if isinstance(entry.source, ConfigSource) else ConfigSource(entry.source)


def topic_configs(admin, topic: str) -> dict[str, ConfigEntry]:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([resource], request_timeout=CLIENT_TIMEOUT_S)[resource].result(
        timeout=CLIENT_TIMEOUT_S
    )


def broker_configs(admin, node_id: str) -> dict[str, ConfigEntry]:
    resource = ConfigResource(ResourceType.BROKER, node_id)
    return admin.describe_configs([resource], request_timeout=CLIENT_TIMEOUT_S)[resource].result(
        timeout=CLIENT_TIMEOUT_S
    )


def create_error_code(admin, topic: NewTopic, **kwargs) -> int:
    """CreateTopics for one topic; the Kafka error code it fails with (KafkaError.NO_ERROR if none)."""
    future = admin.create_topics([topic], operation_timeout=CLIENT_TIMEOUT_S, **kwargs)[topic.topic]
    try:
        future.result(timeout=CLIENT_TIMEOUT_S)
    except KafkaException as e:
        return e.args[0].code()
    return KafkaError.NO_ERROR


def test_create_topic_with_partitions_and_config(broker, admin, topic_name):
    new = NewTopic(topic_name, num_partitions=3, replication_factor=1, config={"retention.ms": "12345"})
    assert create_error_code(admin, new) == KafkaError.NO_ERROR

    wait_until("the new topic in metadata", lambda: partition_count(admin, topic_name) == 3)
    md = admin.list_topics(topic=topic_name, timeout=CLIENT_TIMEOUT_S)
    assert sorted(md.topics[topic_name].partitions) == [0, 1, 2]
    for p in md.topics[topic_name].partitions.values():
        assert p.leader == 1 and p.replicas == [1] and p.isrs == [1], p

    configs = topic_configs(admin, topic_name)
    assert configs["retention.ms"].value == "12345"
    assert source(configs["retention.ms"]) == ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert not configs["retention.ms"].is_default
    assert configs["cleanup.policy"].value == "delete"
    assert configs["cleanup.policy"].is_default
    assert source(configs["cleanup.policy"]) == ConfigSource.DEFAULT_CONFIG


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated")
def test_alter_configs_replaces_the_topic_config_set(broker, admin, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=1, config={"retention.ms": "12345"})
    resource = ConfigResource(ResourceType.TOPIC, topic_name, set_config={"max.message.bytes": "65536"})

    admin.alter_configs([resource], request_timeout=CLIENT_TIMEOUT_S)[resource].result(timeout=CLIENT_TIMEOUT_S)

    configs = topic_configs(admin, topic_name)
    assert configs["max.message.bytes"].value == "65536"
    assert source(configs["max.message.bytes"]) == ConfigSource.DYNAMIC_TOPIC_CONFIG
    # Legacy AlterConfigs sets the whole set: what it does not name goes back to its default.
    assert configs["retention.ms"].value == KAFKA_DEFAULT_RETENTION_MS
    assert configs["retention.ms"].is_default


def test_incremental_alter_configs_set_and_delete(broker, admin, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=1, config={"retention.ms": "12345"})

    def incremental(*entries: ConfigEntry) -> None:
        resource = ConfigResource(ResourceType.TOPIC, topic_name, incremental_configs=list(entries))
        admin.incremental_alter_configs([resource], request_timeout=CLIENT_TIMEOUT_S)[resource].result(
            timeout=CLIENT_TIMEOUT_S
        )

    incremental(
        ConfigEntry("retention.ms", "99999", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET),
    )
    configs = topic_configs(admin, topic_name)
    assert configs["retention.ms"].value == "99999"
    assert configs["cleanup.policy"].value == "compact"
    assert source(configs["cleanup.policy"]) == ConfigSource.DYNAMIC_TOPIC_CONFIG

    incremental(ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE))
    configs = topic_configs(admin, topic_name)
    assert configs["retention.ms"].value == KAFKA_DEFAULT_RETENTION_MS
    assert configs["retention.ms"].is_default
    assert configs["cleanup.policy"].value == "compact"  # untouched by the second call


def test_create_partitions_grows_topic(broker, admin, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=3)

    admin.create_partitions([NewPartitions(topic_name, 5)], operation_timeout=CLIENT_TIMEOUT_S)[
        topic_name
    ].result(timeout=CLIENT_TIMEOUT_S)

    wait_until("metadata to show 5 partitions", lambda: partition_count(admin, topic_name) == 5)


def test_delete_topic_removes_it(broker, admin, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=2)

    admin.delete_topics([topic_name], operation_timeout=CLIENT_TIMEOUT_S)[topic_name].result(
        timeout=CLIENT_TIMEOUT_S
    )

    wait_until("the topic to leave metadata", lambda: partition_count(admin, topic_name) is None)
    assert topic_name not in admin.list_topics(timeout=CLIENT_TIMEOUT_S).topics


def test_create_existing_topic_fails(broker, admin, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=2)

    again = NewTopic(topic_name, num_partitions=4, replication_factor=1)
    assert create_error_code(admin, again) == KafkaError.TOPIC_ALREADY_EXISTS
    assert partition_count(admin, topic_name) == 2  # the failed attempt changed nothing


def test_validate_only_creates_nothing(broker, admin, topic_name):
    new = NewTopic(topic_name, num_partitions=3, replication_factor=1)

    assert create_error_code(admin, new, validate_only=True) == KafkaError.NO_ERROR

    time.sleep(0.5)
    assert topic_name not in admin.list_topics(timeout=CLIENT_TIMEOUT_S).topics


def test_describe_broker_configs(broker, admin):
    configs = broker_configs(admin, str(broker.node_id))

    assert configs["num.partitions"].value == "1"
    assert configs["auto.create.topics.enable"].value == "true"
    assert configs["log.retention.ms"].value in (None, KAFKA_DEFAULT_RETENTION_MS)
