//! The controller quorum with real processes on loopback: failover of the active controller,
//! loss and return of the majority, a full restart, and a killed broker's leaderships moving.
//! Each test runs its own 3-node cluster of combined nodes; they run one at a time (a 2-core
//! machine running two clusters at once would be measuring itself, not Sluice).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
mod rdkafka_util;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::FutureRecord;
use rdkafka_util::client_config;

static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    client_config(bootstrap, &[]).create().expect("admin client")
}

/// CreateTopics through `bootstrap`, bounded by `timeout`: Ok or the broker's error.
fn try_create(bootstrap: &str, name: &str, partitions: i32, rf: i32, timeout: Duration) -> Result<(), String> {
    let admin = admin(bootstrap);
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(rf));
    let options = AdminOptions::new().operation_timeout(Some(timeout)).request_timeout(Some(timeout));
    let results = futures::executor::block_on(admin.create_topics([&topic], &options)).map_err(|e| e.to_string())?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(()),
        Some(Err((_, code))) => Err(format!("{code:?}")),
        None => Err("no result".into()),
    }
}

/// Retries CreateTopics until it succeeds or `within` passes; returns how long it took.
fn create_within(bootstrap: &str, name: &str, partitions: i32, rf: i32, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        match try_create(bootstrap, name, partitions, rf, Duration::from_secs(5)) {
            Ok(()) => return start.elapsed(),
            Err(e) if e.contains("TopicAlreadyExists") => return start.elapsed(),
            Err(e) => assert!(start.elapsed() < within, "CreateTopics {name} still failing after {within:?}: {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn leaders(bootstrap: &str, topic: &str) -> Option<BTreeMap<i32, (i32, Vec<i32>)>> {
    rdkafka_util::leaders_and_isr(bootstrap, topic)
}

fn topic_exists(bootstrap: &str, topic: &str) -> bool {
    leaders(bootstrap, topic).is_some()
}

/// Polls `ready` every 100 ms until it holds; fails with `what` after `timeout`. Metadata reaches
/// each node when it applies the committed records, so what one node wrote another sees shortly
/// after, not at once (as in Kafka).
fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "{what} (waited {timeout:?})");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn killing_the_active_controller_elects_another_and_the_old_one_catches_up() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::start(3, &[]);
    create_within(&cluster.bootstrap(), "before", 3, 3, Duration::from_secs(20));
    let active = cluster.active_controller(1, Duration::from_secs(10));
    cluster.node(active).kill9();
    let survivor = if active == 1 { 2 } else { 1 };
    let via = cluster.node(survivor).bootstrap();
    let took = create_within(&via, "after-failover", 3, 2, Duration::from_secs(15));
    let new_active = cluster.active_controller(survivor, Duration::from_secs(10));
    println!("active controller {active} killed; CreateTopics through node {survivor} succeeded after {took:?}; new active controller {new_active}");
    assert_ne!(new_active, active);
    // Any surviving broker forwards admin requests: create through the other one too.
    let other = (1..=3).find(|id| *id != active && *id != survivor).unwrap_or(survivor);
    create_within(&cluster.node(other).bootstrap(), "via-follower", 1, 1, Duration::from_secs(10));
    // The old active controller restarts, catches up and serves what was created without it.
    cluster.node(active).restart();
    let back = cluster.node(active).bootstrap();
    wait_until(&format!("restarted node {active} did not catch up with metadata"), Duration::from_secs(20), || {
        topic_exists(&back, "after-failover") && topic_exists(&back, "via-follower")
    });
}

#[test]
fn losing_the_majority_stops_metadata_writes_until_it_returns() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::start(3, &[]);
    create_within(&cluster.bootstrap(), "t0", 1, 1, Duration::from_secs(20));
    cluster.node(2).kill9();
    cluster.node(3).kill9();
    let lone = cluster.node(1).bootstrap();
    // No majority: nothing may be acknowledged.
    let refused = try_create(&lone, "during-outage", 1, 1, Duration::from_secs(4));
    assert!(refused.is_err(), "a minority acknowledged a metadata write");
    println!("minority refused CreateTopics: {refused:?}");
    cluster.node(2).restart();
    let took = create_within(&lone, "after-outage", 1, 1, Duration::from_secs(30));
    println!("majority back: CreateTopics succeeded after {took:?}");
    cluster.node(3).restart();
    let node3 = cluster.node(3).bootstrap();
    wait_until("node 3 did not catch up", Duration::from_secs(20), || {
        topic_exists(&node3, "after-outage") && topic_exists(&node3, "t0")
    });
}

#[test]
fn a_full_cluster_restart_keeps_topics_configs_and_producer_ids() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::start(3, &[]);
    let bootstrap = cluster.bootstrap();
    for i in 0..5 {
        create_within(&bootstrap, &format!("keep-{i}"), 2, 3, Duration::from_secs(20));
    }
    let admin_client = admin(&bootstrap);
    let alter = AlterConfig::new(ResourceSpecifier::Topic("keep-0")).set("retention.ms", "123456");
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let altered = futures::executor::block_on(admin_client.alter_configs([&alter], &options)).expect("AlterConfigs");
    assert!(altered.iter().all(Result::is_ok), "{altered:?}");
    let first_pid = init_producer_id(&bootstrap).expect("InitProducerId");
    for id in 1..=3 {
        assert!(cluster.node(id).stop(), "node {id} did not stop cleanly");
    }
    let ready: Vec<_> = cluster.nodes.iter_mut().map(common::Broker::launch).collect();
    for (node, rx) in cluster.nodes.iter().zip(&ready) {
        node.wait_ready(rx);
    }
    for i in 0..5 {
        let topic = format!("keep-{i}");
        let l = leaders(&bootstrap, &topic).expect("topic survives a full restart");
        assert_eq!(l.len(), 2);
        // After a controlled shutdown of every node, each partition's ISR is the last node that
        // led it; it leads again once it is back and unfenced, and every node learns so shortly.
        for node in &cluster.nodes {
            wait_until(&format!("{topic} has a leader again on {}", node.bootstrap()), Duration::from_secs(20), || {
                leaders(&node.bootstrap(), &topic).is_some_and(|l| l.values().all(|(leader, _)| *leader > 0))
            });
        }
    }
    let resource = ResourceSpecifier::Topic("keep-0");
    let described = futures::executor::block_on(admin(&bootstrap).describe_configs([&resource], &options))
        .expect("DescribeConfigs");
    let retention = described
        .into_iter()
        .flatten()
        .flat_map(|r| r.entries)
        .find(|e| e.name == "retention.ms")
        .and_then(|e| e.value);
    assert_eq!(retention.as_deref(), Some("123456"));
    let second_pid = init_producer_id(&bootstrap).expect("InitProducerId after restart");
    println!("producer ids before/after the full restart: {first_pid} / {second_pid}");
    assert!(second_pid > first_pid, "a producer id block is never handed out twice");
}

/// A producer id from InitProducerId (v1, no transactional id), as an idempotent producer gets.
fn init_producer_id(bootstrap: &str) -> Option<i64> {
    use std::net::TcpStream;
    let mut stream = TcpStream::connect(bootstrap.split(',').next()?).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    // InitProducerId v1 (non-flexible): header v1 + transactional_id null + timeout.
    let mut body = Vec::new();
    body.extend_from_slice(&22i16.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&9i32.to_be_bytes());
    body.extend_from_slice(&(-1i16).to_be_bytes());
    body.extend_from_slice(&(-1i16).to_be_bytes());
    body.extend_from_slice(&60_000i32.to_be_bytes());
    let response = common::raw_roundtrip(&mut stream, &body)?;
    // correlation id (4), throttle (4), error (2), producer id (8), epoch (2)
    let error = i16::from_be_bytes([response[8], response[9]]);
    if error != 0 {
        return None;
    }
    Some(i64::from_be_bytes(response[10..18].try_into().ok()?))
}

#[test]
fn a_killed_broker_loses_its_leaderships_within_the_session_timeout() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::start(3, &[]);
    let bootstrap = cluster.bootstrap();
    create_within(&bootstrap, "spread", 6, 3, Duration::from_secs(20));
    let before = leaders(&bootstrap, "spread").expect("metadata");
    let mut per_broker = BTreeMap::new();
    for (leader, _) in before.values() {
        *per_broker.entry(*leader).or_insert(0) += 1;
    }
    assert_eq!(per_broker.values().copied().collect::<Vec<_>>(), vec![2, 2, 2], "leaders spread: {before:?}");
    let victim = 2;
    cluster.node(victim).kill9();
    let killed_at = Instant::now();
    let live = cluster.live_bootstrap();
    let moved = loop {
        if let Some(now) = leaders(&live, "spread") {
            if now.values().all(|(leader, isr)| *leader != victim && *leader > 0 && !isr.contains(&victim)) {
                break now;
            }
        }
        assert!(killed_at.elapsed() < Duration::from_secs(15), "leaderships of broker {victim} did not move");
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("broker {victim} killed; all its leaderships moved after {:?}: {moved:?}", killed_at.elapsed());
    for (p, (leader, _)) in &moved {
        if before[p].0 != victim {
            assert_eq!(*leader, before[p].0, "partitions not led by the victim keep their leader");
        }
    }
    // A client finds the new leaders and produces to every partition.
    let producer = rdkafka_util::producer(&live, &[("acks", "1"), ("message.timeout.ms", "20000")]);
    let sends: Vec<_> = (0..6)
        .map(|p| {
            producer.send_result(FutureRecord::<(), str>::to("spread").partition(p).payload("after")).expect("enqueue")
        })
        .collect();
    for (p, result) in rdkafka_util::await_deliveries(sends, Duration::from_secs(30)).into_iter().enumerate() {
        assert!(result.is_ok(), "produce to partition {p} after failover: {result:?}");
    }
}
