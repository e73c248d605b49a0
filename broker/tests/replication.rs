//! Partition replication with real processes on loopback: followers copy the leader's batches
//! byte for byte, acks=all waits for the ISR, min.insync.replicas refuses writes the ISR cannot
//! hold, a lagging follower leaves the ISR and rejoins after catching up, killing a leader loses
//! no acknowledged record, and an idempotent producer's retry sent to the new leader is known
//! there as the duplicate it is. Each test runs its own 3-node cluster; they run one at a time.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
mod rdkafka_util;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka_util::client_config;

static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

fn create(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap, &[]).create().expect("admin client");
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(3));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let results = futures::executor::block_on(admin.create_topics([&topic], &options)).expect("CreateTopics");
    for r in results {
        r.unwrap_or_else(|(t, code)| panic!("CreateTopics {t}: {code:?}"));
    }
}

fn partitions(bootstrap: &str, topic: &str) -> Option<BTreeMap<i32, (i32, Vec<i32>)>> {
    rdkafka_util::leaders_and_isr(bootstrap, topic)
}

fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < timeout, "{what} (waited {timeout:?})");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// The concatenated `.log` segment bytes of `topic`-`partition` in a node's data directory.
fn log_bytes(cluster: &mut Cluster, node: i32, topic: &str, partition: i32) -> Vec<u8> {
    let dir = cluster.node(node).data_dir().join(format!("{topic}-{partition}"));
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "log")).collect())
        .unwrap_or_default();
    names.sort();
    names.iter().flat_map(|p| std::fs::read(p).unwrap_or_default()).collect()
}

/// Produces `values` to `topic` round-robin over `partitions` with `acks`; returns, per value,
/// its (partition, offset) or the error.
fn produce(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    values: &[String],
    extra: &[(&str, &str)],
) -> Vec<Result<(i32, i64), KafkaError>> {
    let producer = rdkafka_util::producer(bootstrap, extra);
    let sends: Vec<_> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let p = i32::try_from(i).unwrap() % partitions;
            producer.send_result(FutureRecord::<(), str>::to(topic).partition(p).payload(v)).expect("enqueue")
        })
        .collect();
    rdkafka_util::await_deliveries(sends, Duration::from_secs(60))
        .into_iter()
        .map(|r| r.map(|d| (d.partition, d.offset)))
        .collect()
}

/// Every (partition, offset) -> value of `topic`, read from the live brokers.
fn read_back(bootstrap: &str, topic: &str, partitions: i32) -> BTreeMap<(i32, i64), String> {
    let mut out = BTreeMap::new();
    for (p, messages) in
        rdkafka_util::consume_all(bootstrap, topic, partitions, Duration::from_secs(60)).into_iter().enumerate()
    {
        for m in messages {
            let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
            assert!(out.insert((i32::try_from(p).unwrap(), m.offset()), value).is_none());
        }
    }
    out
}

/// The partition's leader epoch in the metadata node `via` serves.
fn leader_epoch(cluster: &mut Cluster, via: i32, topic: &str, partition: i32) -> i32 {
    let mut client = common::RawClient::connect(cluster.node(via));
    let metadata = client.send(&kafka_protocol::messages::MetadataRequest::default().with_topics(None), 12);
    let t = metadata.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic)).expect("topic");
    t.partitions.iter().find(|p| p.partition_index == partition).expect("partition").leader_epoch
}

/// OffsetForLeaderEpoch v4 sent to node `via`: (epoch, end offset).
fn offset_for_leader_epoch(cluster: &mut Cluster, via: i32, topic: &str, partition: i32, epoch: i32) -> (i32, i64) {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
    use kafka_protocol::messages::{OffsetForLeaderEpochRequest, TopicName};
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(TopicName(kafka_protocol::protocol::StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(-1)
                .with_leader_epoch(epoch)])]);
    let mut client = common::RawClient::connect(cluster.node(via));
    let answer = client.send(&request, 4);
    let p = &answer.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "OffsetForLeaderEpoch error");
    (p.leader_epoch, p.end_offset)
}

const ACKS_ALL: &[(&str, &str)] = &[("acks", "all"), ("enable.idempotence", "true"), ("message.timeout.ms", "30000")];

#[test]
fn followers_copy_the_leaders_batches_and_a_killed_leader_loses_no_acknowledged_record() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::start(3, &[]);
    let bootstrap = cluster.bootstrap();
    let topic = "replicated";
    create(&bootstrap, topic, 3, &[("min.insync.replicas", "2")]);

    let first: Vec<String> = (0..3000).map(|i| format!("first-{i}")).collect();
    let started = Instant::now();
    let acked = produce(&bootstrap, topic, 3, &first, ACKS_ALL);
    let took = started.elapsed();
    let mut expected = BTreeMap::new();
    for (value, result) in first.iter().zip(&acked) {
        let (p, offset) = result.as_ref().unwrap_or_else(|e| panic!("{value} not acknowledged: {e}"));
        expected.insert((*p, *offset), value.clone());
    }
    println!("3000 records acks=all RF=3 acknowledged in {took:?}");

    // Every replica holds the same bytes (batches are copied as the leader stored them).
    for p in 0..3 {
        wait_until(&format!("replicas of partition {p} hold the same bytes"), Duration::from_secs(20), || {
            let copies: Vec<Vec<u8>> = (1..=3).map(|n| log_bytes(&mut cluster, n, topic, p)).collect();
            !copies[0].is_empty() && copies.iter().all(|c| *c == copies[0])
        });
    }

    // Kill the leader of partition 0; time until a write to partition 0 is acknowledged again.
    let before = partitions(&bootstrap, topic).expect("metadata");
    let victim = before[&0].0;
    let old_epoch = leader_epoch(&mut cluster, victim, topic, 0);
    cluster.node(victim).kill9();
    let killed = Instant::now();
    let live = cluster.live_bootstrap();
    let producer = rdkafka_util::producer(&live, &[("acks", "all"), ("message.timeout.ms", "2000")]);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let value = format!("probe-{attempt}");
        let send =
            producer.send_result(FutureRecord::<(), str>::to(topic).partition(0).payload(&value)).expect("enqueue");
        if let Ok((p, offset)) = rdkafka_util::await_deliveries(vec![send], Duration::from_secs(10))[0]
            .as_ref()
            .map(|d| (d.partition, d.offset))
        {
            expected.insert((p, offset), value);
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no write to partition 0 acknowledged after its leader died"
        );
    }
    println!(
        "leader {victim} of partition 0 killed; first acks=all write acknowledged by the new leader after {:?}",
        killed.elapsed()
    );

    let second: Vec<String> = (0..1000).map(|i| format!("second-{i}")).collect();
    for (value, result) in second.iter().zip(produce(&live, topic, 3, &second, ACKS_ALL)) {
        let (p, offset) = result.unwrap_or_else(|e| panic!("{value} not acknowledged with a node down: {e}"));
        expected.insert((p, offset), value.clone());
    }

    // KIP-320: the new leader says where the old leader's epoch ends: after the 1000 records
    // partition 0 got in it.
    let new_leader = partitions(&live, topic).expect("metadata")[&0].0;
    let (epoch, end) = offset_for_leader_epoch(&mut cluster, new_leader, topic, 0, old_epoch);
    assert_eq!((epoch, end), (old_epoch, 1000), "OffsetForLeaderEpoch({old_epoch}) on the new leader {new_leader}");
    assert!(leader_epoch(&mut cluster, new_leader, topic, 0) > old_epoch);

    let read = read_back(&live, topic, 3);
    for (at, value) in &expected {
        assert_eq!(read.get(at), Some(value), "acknowledged record at {at:?} lost or changed");
    }
    let mut values: Vec<&String> = read.values().collect();
    values.sort();
    values.dedup();
    assert_eq!(values.len(), read.len(), "a value was stored twice");

    // The killed node comes back, catches up and rejoins every ISR.
    cluster.node(victim).restart();
    let rejoined = wait_until(&format!("node {victim} rejoins the ISRs"), Duration::from_secs(30), || {
        partitions(&bootstrap, topic).is_some_and(|m| m.values().all(|(_, isr)| isr.contains(&victim)))
    });
    println!("node {victim} restarted and rejoined every ISR after {rejoined:?}");
    for p in 0..3 {
        wait_until(&format!("the restarted node holds partition {p} like the leader"), Duration::from_secs(20), || {
            let leader = partitions(&bootstrap, topic).map_or(-1, |m| m[&p].0);
            leader > 0 && log_bytes(&mut cluster, victim, topic, p) == log_bytes(&mut cluster, leader, topic, p)
        });
    }
}

#[test]
fn min_insync_replicas_refuses_acks_all_until_the_isr_is_large_enough() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::start(3, &[]);
    let bootstrap = cluster.bootstrap();
    let topic = "guarded";
    // Every replica must be in sync; one node down (the quorum keeps its majority) is too many.
    create(&bootstrap, topic, 1, &[("min.insync.replicas", "3")]);
    let ok = produce(&bootstrap, topic, 1, &["before".to_string()], ACKS_ALL);
    assert!(ok[0].is_ok(), "{ok:?}");

    let leader = partitions(&bootstrap, topic).expect("metadata")[&0].0;
    let follower = (1..=3).find(|n| *n != leader).unwrap();
    cluster.node(follower).kill9();
    let at_leader = cluster.node(leader).bootstrap();
    wait_until("the ISR shrinks when the follower is fenced", Duration::from_secs(20), || {
        partitions(&at_leader, topic).is_some_and(|m| m[&0].1.len() == 2 && !m[&0].1.contains(&follower))
    });

    let refused =
        // No retries: librdkafka retries this retriable error until its timeout, then reports that.
        produce(&at_leader, topic, 1, &["refused".to_string()], &[("acks", "all"), ("retries", "0"), ("message.timeout.ms", "10000")]);
    assert!(
        matches!(refused[0], Err(KafkaError::MessageProduction(RDKafkaErrorCode::NotEnoughReplicas))),
        "acks=all with 2 in sync and min.insync.replicas=3: {refused:?}"
    );
    let acks_one =
        produce(&at_leader, topic, 1, &["acks-one".to_string()], &[("acks", "1"), ("message.timeout.ms", "10000")]);
    assert!(acks_one[0].is_ok(), "acks=1 needs only the leader: {acks_one:?}");

    cluster.node(follower).restart();
    wait_until("the returning follower rejoins the ISR", Duration::from_secs(30), || {
        partitions(&at_leader, topic).is_some_and(|m| m[&0].1.len() == 3)
    });
    let accepted = produce(&at_leader, topic, 1, &["after".to_string()], ACKS_ALL);
    assert!(accepted[0].is_ok(), "acks=all with all three in sync: {accepted:?}");
    let read = read_back(&at_leader, topic, 1);
    let values: Vec<&str> = read.values().map(String::as_str).collect();
    assert_eq!(values, vec!["before", "acks-one", "after"], "the refused record was never written");
}

#[test]
fn a_paused_follower_leaves_the_isr_and_rejoins_once_caught_up() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // The broker session outlives the lag limit, so the ISR shrinks because of lag, not fencing.
    let mut cluster =
        Cluster::start(3, &["--set", "replica.lag.time.max.ms=2000", "--set", "broker.session.timeout.ms=30000"]);
    let bootstrap = cluster.bootstrap();
    let topic = "laggy";
    create(&bootstrap, topic, 1, &[("min.insync.replicas", "2")]);
    let leader = partitions(&bootstrap, topic).expect("metadata")[&0].0;
    let follower = (1..=3).find(|n| *n != leader).unwrap();
    cluster.node(follower).pause(true);
    let paused = Instant::now();

    // acks=all waits while the paused follower is still in the ISR, then completes without it.
    let values: Vec<String> = (0..200).map(|i| format!("while-paused-{i}")).collect();
    let results = produce(&cluster.node(leader).bootstrap(), topic, 1, &values, ACKS_ALL);
    assert!(results.iter().all(Result::is_ok), "{:?}", results.iter().find(|r| r.is_err()));
    let leader_address = cluster.node(leader).bootstrap();
    wait_until("the paused follower leaves the ISR", Duration::from_secs(20), || {
        partitions(&leader_address, topic).is_some_and(|m| !m[&0].1.contains(&follower))
    });
    println!("follower {follower} paused; out of the ISR {:?} after the pause", paused.elapsed());

    cluster.node(follower).pause(false);
    let rejoined = wait_until("the follower rejoins the ISR after catching up", Duration::from_secs(20), || {
        partitions(&bootstrap, topic).is_some_and(|m| m[&0].1.contains(&follower))
    });
    println!("follower {follower} resumed; back in the ISR after {rejoined:?}");
    wait_until("the follower holds the leader's bytes", Duration::from_secs(20), || {
        log_bytes(&mut cluster, follower, topic, 0) == log_bytes(&mut cluster, leader, topic, 0)
    });
}

#[test]
fn a_client_that_asks_a_follower_learns_the_leader_from_the_error() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{FetchRequest, ProduceRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;

    let _one = ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::start(3, &[]);
    let bootstrap = cluster.bootstrap();
    let topic = "kip951";
    create(&bootstrap, topic, 1, &[]);
    let leader = partitions(&bootstrap, topic).expect("metadata")[&0].0;
    let follower = (1..=3).find(|n| *n != leader).unwrap();
    let leader_port = i32::from(cluster.node(leader).port);
    let mut client = common::RawClient::connect(cluster.node(follower));

    let produce =
        ProduceRequest::default().with_acks(1).with_timeout_ms(5000).with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(topic)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(common::record_batch(&[b"x"])))])]);
    let answer = client.send(&produce, 11);
    let p = &answer.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 6, "NOT_LEADER_OR_FOLLOWER from a follower");
    assert_eq!(p.current_leader.leader_id.0, leader, "the error names the leader");
    assert!(p.current_leader.leader_epoch >= 0);
    let endpoint = answer.node_endpoints.iter().find(|e| e.node_id.0 == leader).expect("the leader's endpoint");
    assert_eq!(endpoint.port, leader_port);

    // Fetch v16 names topics by id: take it from the metadata the follower serves.
    let metadata = client.send(&kafka_protocol::messages::MetadataRequest::default().with_topics(None), 12);
    let topic_id = metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .expect("topic")
        .topic_id;

    let fetch =
        FetchRequest::default().with_max_wait_ms(0).with_max_bytes(1 << 20).with_session_epoch(-1).with_topics(vec![
            FetchTopic::default().with_topic_id(topic_id).with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)]),
        ]);
    let answer = client.send(&fetch, 16);
    let p = &answer.responses[0].partitions[0];
    assert_eq!(p.error_code, 6, "a consumer fetching from a follower");
    assert_eq!(p.current_leader.leader_id.0, leader);
    assert!(answer.node_endpoints.iter().any(|e| e.node_id.0 == leader && e.port == leader_port));
}

/// One raw acks=all Produce (v9) of `batch` to partition 0 of `topic`: (error code, base offset).
fn produce_batch(client: &mut common::RawClient, topic: &str, batch: &bytes::Bytes) -> (i16, i64) {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(15_000).with_topic_data(vec![
        TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(batch.clone()))]),
    ]);
    let answer = client.send(&request, 9);
    let p = &answer.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// (base offset, last offset) of every batch in a node's copy of `topic`-0.
fn stored_batches(cluster: &mut Cluster, node: i32, topic: &str) -> Vec<(i64, i64)> {
    common::segment_batches(&log_bytes(cluster, node, topic, 0))
        .iter()
        .map(|b| (b.base_offset, b.base_offset + i64::from(b.last_offset_delta)))
        .collect()
}

#[test]
fn a_batch_retried_after_a_leader_change_is_answered_as_the_duplicate_it_is() {
    const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    let _one = ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::start(3, &[]);
    let bootstrap = cluster.bootstrap();
    let topic = "idempotent-failover";
    create(&bootstrap, topic, 1, &[("min.insync.replicas", "2")]);
    wait_until("a leader with all three replicas in sync", Duration::from_secs(20), || {
        partitions(&bootstrap, topic).is_some_and(|m| m[&0].0 > 0 && m[&0].1.len() == 3)
    });
    let leader = partitions(&bootstrap, topic).expect("metadata")[&0].0;

    let mut client = common::RawClient::connect(cluster.node(leader));
    let init = client.send(
        &kafka_protocol::messages::InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(-1),
        4,
    );
    assert_eq!(init.error_code, 0, "InitProducerId");
    let (producer_id, epoch) = (init.producer_id.0, init.producer_epoch);
    let first = common::idempotent_batch(producer_id, epoch, 0, &[b"first-0", b"first-1", b"first-2"]);
    assert_eq!(produce_batch(&mut client, topic, &first), (0, 0), "sequences 0-2 acknowledged by the ISR");
    // acks=all with the three in the ISR: every replica holds the batch, producer ids and all.
    for node in 1..=3 {
        wait_until(&format!("node {node} holds the batch"), Duration::from_secs(20), || {
            stored_batches(&mut cluster, node, topic) == [(0, 2)]
        });
    }

    // The acknowledgement is lost, the leader dies, and the producer retries with the new leader.
    cluster.node(leader).kill9();
    let killed = Instant::now();
    let live = cluster.live_bootstrap();
    let mut new_leader = -1;
    wait_until("a new leader from the ISR", Duration::from_secs(30), || {
        new_leader = partitions(&live, topic).map_or(-1, |m| m[&0].0);
        new_leader > 0 && new_leader != leader
    });
    println!("leader {leader} killed; node {new_leader} leads after {:?}", killed.elapsed());
    let mut client = common::RawClient::connect(cluster.node(new_leader));
    let mut not_leader = 0;
    let retried = loop {
        // As a producer does: NOT_LEADER_OR_FOLLOWER until the new leader has taken over.
        let answer = produce_batch(&mut client, topic, &first);
        if answer.0 != NOT_LEADER_OR_FOLLOWER || killed.elapsed() > Duration::from_secs(30) {
            break answer;
        }
        not_leader += 1;
        std::thread::sleep(Duration::from_millis(100));
    };
    println!(
        "retry answered {retried:?} after {not_leader} NOT_LEADER_OR_FOLLOWER, {:?} after the kill",
        killed.elapsed()
    );
    assert_eq!(retried, (0, 0), "the retry is the duplicate of the batch at offset 0, not a new write");

    let second = common::idempotent_batch(producer_id, epoch, 3, &[b"second-0"]);
    assert_eq!(produce_batch(&mut client, topic, &second), (0, 3), "sequence 3 follows at the next offset");
    assert_eq!(produce_batch(&mut client, topic, &second), (0, 3), "its retry is a duplicate too");
    assert_eq!(produce_batch(&mut client, topic, &first), (0, 0), "and so is the first one's, still");
    let gap = common::idempotent_batch(producer_id, epoch, 6, &[b"gap"]);
    assert_eq!(produce_batch(&mut client, topic, &gap).0, OUT_OF_ORDER_SEQUENCE_NUMBER, "sequences 4-5 are missing");

    let read = read_back(&live, topic, 1);
    let values: Vec<(i64, &str)> = read.iter().map(|((_, o), v)| (*o, v.as_str())).collect();
    assert_eq!(values, [(0, "first-0"), (1, "first-1"), (2, "first-2"), (3, "second-0")], "each batch once");
    for node in (1..=3).filter(|n| *n != leader) {
        wait_until(&format!("node {node} holds each batch once"), Duration::from_secs(20), || {
            stored_batches(&mut cluster, node, topic) == [(0, 2), (3, 3)]
        });
    }

    // The old leader comes back as a follower and converges on the same two batches.
    cluster.node(leader).restart();
    wait_until(&format!("node {leader} holds each batch once"), Duration::from_secs(30), || {
        stored_batches(&mut cluster, leader, topic) == [(0, 2), (3, 3)]
    });
}
