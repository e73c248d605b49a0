//! Crash safety of the controller's metadata store (openraft over sled) with real processes:
//! topics are created flat out while a node is killed with SIGKILL at seeded random moments;
//! after every restart each topic whose creation was acknowledged is still there (with the id
//! it was acknowledged with), no topic is listed twice, and the node becomes ready again (a
//! store that lost its vote or log would refuse to start or to elect). A follower that was down
//! while the leader snapshotted and purged its log must catch up by installing the snapshot.
//!
//! Requests are encoded with kafka-protocol over plain TCP, so every acknowledgment counted is
//! exactly what the broker answered (no client-side retries or timeouts in between).

// A test fails by panicking: expect/unwrap/panic are its assertions.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::{
    CreateTopicsRequest, DescribeConfigsRequest, IncrementalAlterConfigsRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use common::cluster::Cluster;
use common::rng::Rng;
use common::Broker;

/// The tests run one at a time: a 2-core machine running two of them at once would be measuring
/// itself, not Sluice.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Topic config resource type in DescribeConfigs / IncrementalAlterConfigs.
const RESOURCE_TOPIC: i8 = 2;

/// One connection speaking kafka-protocol; any I/O failure is `None` (the caller drops it).
struct Conn {
    stream: TcpStream,
    correlation_id: i32,
}

impl Conn {
    fn connect(addr: &str) -> Option<Self> {
        let addr: SocketAddr = addr.parse().ok()?;
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        // Longer than the controller's request timeout (30 s), so the broker always answers first.
        stream.set_read_timeout(Some(Duration::from_secs(45))).ok()?;
        stream.set_nodelay(true).ok()?;
        Some(Self { stream, correlation_id: 0 })
    }

    fn send<R: kafka_protocol::protocol::Request>(&mut self, request: &R, version: i16) -> Option<R::Response> {
        use kafka_protocol::messages::{RequestHeader, ResponseHeader};
        use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("metadata-crash")));
        let mut buf = bytes::BytesMut::new();
        header.encode(&mut buf, R::header_version(version)).expect("encode header");
        request.encode(&mut buf, version).expect("encode request");
        let body = common::raw_roundtrip(&mut self.stream, &buf)?;
        let mut body = bytes::Bytes::from(body);
        let response_header =
            ResponseHeader::decode(&mut body, <R::Response as HeaderVersion>::header_version(version)).ok()?;
        assert_eq!(response_header.correlation_id, self.correlation_id, "responses come back in order");
        Some(R::Response::decode(&mut body, version).expect("decode response"))
    }
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn create_request(names: &[String], replication_factor: i16) -> CreateTopicsRequest {
    let topics = names
        .iter()
        .map(|n| {
            CreatableTopic::default()
                .with_name(topic_name(n))
                .with_num_partitions(1)
                .with_replication_factor(replication_factor)
        })
        .collect();
    CreateTopicsRequest::default().with_topics(topics).with_timeout_ms(30_000)
}

/// Creates `names` through `addr`, retrying (a topic that already exists counts) until `within`.
fn create_topics_within(addr: &str, names: &[String], replication_factor: i16, within: Duration) {
    let deadline = Instant::now() + within;
    let mut pending: BTreeSet<String> = names.iter().cloned().collect();
    let mut last = String::new();
    while !pending.is_empty() {
        assert!(Instant::now() < deadline, "could not create {pending:?} through {addr} in {within:?}: {last}");
        let batch: Vec<String> = pending.iter().cloned().collect();
        match Conn::connect(addr).and_then(|mut c| c.send(&create_request(&batch, replication_factor), 7)) {
            Some(response) => {
                for t in response.topics {
                    // 36: TOPIC_ALREADY_EXISTS (an earlier attempt committed).
                    if t.error_code == 0 || t.error_code == 36 {
                        pending.remove(t.name.0.as_str());
                    } else {
                        last = format!("{}: error {} {:?}", t.name.0.as_str(), t.error_code, t.error_message);
                    }
                }
            }
            None => last = "no answer".into(),
        }
        if !pending.is_empty() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Every topic `addr` lists in Metadata (v12, all topics): name, id, partition count, error.
fn list_topics(addr: &str) -> Option<Vec<(String, Uuid, usize, i16)>> {
    let mut conn = Conn::connect(addr)?;
    let response = conn.send(&MetadataRequest::default().with_topics(None), 12)?;
    Some(
        response
            .topics
            .into_iter()
            .map(|t| {
                let name = t.name.map(|n| n.0.as_str().to_string()).unwrap_or_default();
                (name, t.topic_id, t.partitions.len(), t.error_code)
            })
            .collect(),
    )
}

/// Waits until `addr` lists every topic of `acked` with the id it was acknowledged with; panics
/// at once on a name listed twice, an id listed twice or an acknowledged topic listed under
/// another id (it was lost and made again), and after `within` on any acknowledged topic still
/// missing. Returns every topic `addr` lists, with its id.
fn assert_acked_listed(addr: &str, acked: &BTreeMap<String, Uuid>, within: Duration) -> BTreeMap<String, Uuid> {
    let deadline = Instant::now() + within;
    loop {
        let listed = list_topics(addr);
        if let Some(listed) = &listed {
            let mut names = BTreeMap::new();
            let mut ids = BTreeMap::new();
            for (name, id, partitions, error) in listed {
                assert!(names.insert(name.clone(), *id).is_none(), "{addr} lists topic {name} twice");
                assert!(ids.insert(*id, name.clone()).is_none(), "{addr} lists topic id {id} twice");
                assert_eq!(*error, 0, "{addr} lists topic {name} with error {error}");
                assert_eq!(*partitions, 1, "{addr} lists topic {name} with {partitions} partitions");
            }
            let mut missing = Vec::new();
            for (name, id) in acked {
                match names.get(name) {
                    None => missing.push(name.as_str()),
                    Some(listed_id) => {
                        assert_eq!(listed_id, id, "{addr} lists acknowledged topic {name} under another id")
                    }
                }
            }
            if missing.is_empty() {
                return names;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {} acknowledged topics missing from {addr} after {within:?} (e.g. {:?}); {} topics listed",
                missing.len(),
                acked.len(),
                &missing[..missing.len().min(10)],
                listed.len()
            );
        } else {
            assert!(Instant::now() < deadline, "{addr} did not answer Metadata in {within:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What the topic writers share: the address they write to, every acknowledged topic with the id
/// it got, and counters for the report.
#[derive(Default)]
struct Writes {
    target: Mutex<String>,
    next: AtomicU64,
    acked: Mutex<BTreeMap<String, Uuid>>,
    in_flight: AtomicI64,
    requests: AtomicU64,
    /// Requests that got no answer (connection closed: the node was killed).
    unanswered: AtomicU64,
    /// Per-topic error codes answered, with how many times.
    errors: Mutex<BTreeMap<i16, u64>>,
    stop: AtomicBool,
}

impl Writes {
    fn new(target: String) -> Arc<Self> {
        Arc::new(Self { target: Mutex::new(target), ..Self::default() })
    }

    fn acked(&self) -> BTreeMap<String, Uuid> {
        self.acked.lock().unwrap().clone()
    }

    fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn retarget(&self, addr: String) {
        *self.target.lock().unwrap() = addr;
    }

    fn summary(&self) -> String {
        format!(
            "{} requests, {} unanswered, per-topic errors {:?}",
            self.requests.load(Ordering::SeqCst),
            self.unanswered.load(Ordering::SeqCst),
            self.errors.lock().unwrap()
        )
    }
}

/// `threads` writers, each on its own connection to `writes.target`, creating `batch` new
/// single-partition topics per CreateTopics request, as fast as the broker answers. A writer
/// whose connection breaks reconnects (to the current target) until told to stop; a name is
/// never sent twice.
fn spawn_topic_writers(
    writes: &Arc<Writes>,
    threads: usize,
    batch: usize,
    prefix: &'static str,
) -> Vec<JoinHandle<()>> {
    (0..threads)
        .map(|_| {
            let writes = Arc::clone(writes);
            std::thread::spawn(move || {
                while !writes.stop.load(Ordering::SeqCst) {
                    let target = writes.target.lock().unwrap().clone();
                    let Some(mut conn) = Conn::connect(&target) else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    while !writes.stop.load(Ordering::SeqCst) && *writes.target.lock().unwrap() == target {
                        let names: Vec<String> = (0..batch)
                            .map(|_| format!("{prefix}-{:06}", writes.next.fetch_add(1, Ordering::SeqCst)))
                            .collect();
                        writes.requests.fetch_add(1, Ordering::SeqCst);
                        writes.in_flight.fetch_add(1, Ordering::SeqCst);
                        let response = conn.send(&create_request(&names, -1), 7);
                        writes.in_flight.fetch_sub(1, Ordering::SeqCst);
                        let Some(response) = response else {
                            writes.unanswered.fetch_add(1, Ordering::SeqCst);
                            break;
                        };
                        assert_eq!(response.topics.len(), names.len(), "one answer per topic");
                        let mut acked = writes.acked.lock().unwrap();
                        let mut errors = writes.errors.lock().unwrap();
                        for t in response.topics {
                            let name = t.name.0.as_str().to_string();
                            assert!(names.contains(&name), "answer for topic {name} that was not asked for");
                            if t.error_code == 0 {
                                assert!(!t.topic_id.is_nil(), "{name} acknowledged without a topic id");
                                assert!(acked.insert(name.clone(), t.topic_id).is_none(), "{name} acknowledged twice");
                            } else {
                                *errors.entry(t.error_code).or_default() += 1;
                            }
                        }
                    }
                }
            })
        })
        .collect()
}

fn stop_writers(writes: &Writes, writers: Vec<JoinHandle<()>>) {
    writes.stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().expect("a writer panicked");
    }
}

/// Kills `broker` once `writes` has `acks` acknowledged topics (or more) and `delay` passed
/// after that, at a moment with requests in flight.
fn kill_during_writes(broker: &mut Broker, writes: &Writes, acks: usize, delay: Duration) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    while writes.acked_count() < acks {
        assert!(Instant::now() < deadline, "fewer than {acks} topics acknowledged after 30 s: {}", writes.summary());
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(delay);
    let deadline = Instant::now() + Duration::from_secs(10);
    while writes.in_flight.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no CreateTopics request in flight for 10 s: {}", writes.summary());
        std::thread::sleep(Duration::from_millis(1));
    }
    let in_flight = writes.in_flight.load(Ordering::SeqCst);
    broker.kill9();
    in_flight
}

/// Topics named by the writers in `sent` (their counter from the previous kill to this one) that
/// exist although their creation was not acknowledged at the kill: requests in flight then that
/// had committed (or whose answers were still on their way).
fn committed_unacknowledged(
    listed: &BTreeMap<String, Uuid>,
    acked: &BTreeMap<String, Uuid>,
    prefix: &str,
    sent: std::ops::Range<u64>,
) -> usize {
    listed
        .keys()
        .filter(|name| !acked.contains_key(*name))
        .filter_map(|name| name.strip_prefix(prefix)?.strip_prefix('-')?.parse::<u64>().ok())
        .filter(|i| sent.contains(i))
        .count()
}

fn restart_timed(broker: &mut Broker) -> Duration {
    let start = Instant::now();
    broker.restart();
    start.elapsed()
}

#[test]
fn single_node_metadata_survives_repeated_kill9_during_topic_creation() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    const CYCLES: usize = 6;
    const MIN_ACKED: usize = 3000;
    let mut rng = Rng::from_env_or_clock();
    let mut broker = Broker::start(&["--set", "num.partitions=1"]);
    let addr = broker.bootstrap();
    let writes = Writes::new(addr.clone());
    let writers = spawn_topic_writers(&writes, 3, 20, "k");
    let started = Instant::now();
    let mut cycle = 0;
    let mut sent_before = 0;
    // At least CYCLES kills, and on until MIN_ACKED topics were acknowledged.
    while cycle < CYCLES || writes.acked_count() < MIN_ACKED {
        cycle += 1;
        assert!(cycle <= 4 * CYCLES, "only {} topics acknowledged in {cycle} cycles", writes.acked_count());
        // Each incarnation acknowledges a random number of topics (300 to 700) before its kill:
        // enough for thousands over the test, few enough that restarts stay quick (a restart
        // after SIGKILL recovers, and fsyncs, every partition log: a few ms each here).
        let acks = writes.acked_count() + 300 + rng.below(401) as usize;
        let in_flight = kill_during_writes(&mut broker, &writes, acks, rng.between_ms(0, 50));
        let acked_at_kill = writes.acked();
        let sent = sent_before..writes.next.load(Ordering::SeqCst);
        sent_before = sent.end;
        let ready = restart_timed(&mut broker);
        let listed = assert_acked_listed(&addr, &acked_at_kill, Duration::from_secs(30));
        println!(
            "cycle {cycle}: SIGKILL with {in_flight} CreateTopics in flight; {} topics acknowledged so far, all \
             listed after restart (and {} sent before the kill, unacknowledged then); ready {ready:?} after \
             restart",
            acked_at_kill.len(),
            committed_unacknowledged(&listed, &acked_at_kill, "k", sent)
        );
    }
    // Keep creating against the last incarnation a little, then check everything once more, and
    // once more after a final kill with nothing in flight.
    std::thread::sleep(Duration::from_millis(500));
    stop_writers(&writes, writers);
    let acked = writes.acked();
    let listed = assert_acked_listed(&addr, &acked, Duration::from_secs(30));
    broker.kill9();
    let ready = restart_timed(&mut broker);
    let relisted = assert_acked_listed(&addr, &acked, Duration::from_secs(30));
    assert!(relisted == listed, "a kill and restart with nothing in flight changed the topic list");
    println!(
        "{cycle} kills in {:?}: {} topics acknowledged, {} listed (unacknowledged ones may exist); \
         {}; last restart (nothing in flight) ready in {ready:?}",
        started.elapsed(),
        acked.len(),
        listed.len(),
        writes.summary()
    );
    assert!(acked.len() >= MIN_ACKED);
}

/// A DescribeConfigs of `topic`'s `retention.ms` on `addr`.
fn retention_ms(addr: &str, topic: &str) -> Option<String> {
    let mut conn = Conn::connect(addr)?;
    let resource = DescribeConfigsResource::default()
        .with_resource_type(RESOURCE_TOPIC)
        .with_resource_name(StrBytes::from_string(topic.to_string()))
        .with_configuration_keys(Some(vec![StrBytes::from_static_str("retention.ms")]));
    let response = conn.send(&DescribeConfigsRequest::default().with_resources(vec![resource]), 4)?;
    let result = response.results.into_iter().next()?;
    if result.error_code != 0 {
        return None;
    }
    result.configs.into_iter().find(|c| c.name.as_str() == "retention.ms")?.value.map(|v| v.as_str().to_string())
}

fn set_retention(topic: &str, value: u64) -> IncrementalAlterConfigsRequest {
    let config = AlterableConfig::default()
        .with_name(StrBytes::from_static_str("retention.ms"))
        .with_config_operation(0)
        .with_value(Some(StrBytes::from_string(value.to_string())));
    let resource = AlterConfigsResource::default()
        .with_resource_type(RESOURCE_TOPIC)
        .with_resource_name(StrBytes::from_string(topic.to_string()))
        .with_configs(vec![config]);
    IncrementalAlterConfigsRequest::default().with_resources(vec![resource])
}

/// Waits until `node`'s log contains `needle`.
fn wait_for_log(node: &Broker, needle: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let log = node.log_text();
        if let Some(line) = log.lines().find(|l| l.contains(needle)) {
            return line.to_string();
        }
        assert!(Instant::now() < deadline, "no {needle:?} in the node's log after {within:?}; log:\n{log}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn cluster_follower_restarted_after_many_writes_catches_up_by_snapshot() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // The leader snapshots every 5000 log entries and keeps 1000 behind the snapshot; every
    // metadata write is one entry (one IncrementalAlterConfigs, one entry), so 6500 writes after
    // the follower stopped put its position well before the first snapshot's purge point.
    const WRITES: u64 = 6500;
    const WRITERS: usize = 4;
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.active_controller(1, Duration::from_secs(20));
    let victim = (1..=3).find(|id| *id != leader).unwrap();
    let leader_addr = cluster.node(leader).bootstrap();
    let config_topics: Vec<String> = (0..WRITERS).map(|i| format!("cfg-{i}")).collect();
    create_topics_within(&leader_addr, &config_topics, 3, Duration::from_secs(20));
    cluster.node(victim).kill9();
    println!("leader {leader}; follower {victim} killed");

    let started = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let writers: Vec<JoinHandle<u64>> = config_topics
        .iter()
        .enumerate()
        .map(|(i, topic)| {
            let (done, topic, addr) = (Arc::clone(&done), topic.clone(), leader_addr.clone());
            std::thread::spawn(move || {
                let mut conn = Conn::connect(&addr).expect("connect to the leader");
                let mut value = 1_000_000 * (i as u64 + 1);
                while done.fetch_add(1, Ordering::SeqCst) < WRITES {
                    value += 1;
                    let response = conn.send(&set_retention(&topic, value), 1).expect("the leader answers");
                    let code = response.responses.first().map(|r| r.error_code);
                    assert_eq!(code, Some(0), "IncrementalAlterConfigs {topic}={value}: {response:?}");
                }
                value
            })
        })
        .collect();
    let last_values: Vec<u64> = writers.into_iter().map(|w| w.join().expect("a config writer panicked")).collect();
    let write_time = started.elapsed();
    let built = wait_for_log(cluster.node(leader), "built a metadata snapshot", Duration::from_secs(20));
    let late: Vec<String> = (0..5).map(|i| format!("late-{i}")).collect();
    create_topics_within(&leader_addr, &late, 2, Duration::from_secs(20));
    let quorum = sluice::tools::describe_quorum(&leader_addr).expect("DescribeQuorum");
    println!(
        "{WRITES} config writes in {write_time:?} ({:.0}/s) with node {victim} down; leader: {}\n{quorum}",
        WRITES as f64 / write_time.as_secs_f64(),
        built.trim()
    );
    // The leader purges what the snapshot covers once no replication reads it; replication to
    // the dead follower fails (and lets go of its range) every 500 ms of openraft's backoff.
    std::thread::sleep(Duration::from_secs(2));

    let ready = restart_timed(cluster.node(victim));
    let installed = wait_for_log(cluster.node(victim), "installing a metadata snapshot", Duration::from_secs(30));
    println!("node {victim} ready {ready:?} after restart; {}", installed.trim());
    let victim_addr = cluster.node(victim).bootstrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    for (topic, value) in config_topics.iter().zip(&last_values) {
        let want = value.to_string();
        loop {
            let got = retention_ms(&victim_addr, topic);
            if got.as_deref() == Some(want.as_str()) {
                break;
            }
            assert!(Instant::now() < deadline, "node {victim}: {topic} retention.ms {got:?}, want {want}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // (Also checks that no topic is listed twice.)
        let listed = assert_acked_listed(&victim_addr, &BTreeMap::new(), Duration::from_secs(30));
        if config_topics.iter().chain(&late).all(|t| listed.contains_key(t)) {
            break;
        }
        assert!(Instant::now() < deadline, "node {victim} lists only {:?}", listed.keys());
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "node {victim} serves the last config values {last_values:?} and the topics created after them; total {:?}",
        started.elapsed()
    );
}

/// The active controller as node `via` reports it, once that is not `old` (`via` still names
/// a killed leader until it hears of the election).
fn other_active_controller(cluster: &Cluster, via: i32, old: i32, within: Duration) -> i32 {
    let deadline = Instant::now() + within;
    loop {
        let now = cluster.active_controller(via, within);
        if now != old {
            return now;
        }
        assert!(Instant::now() < deadline, "node {via} still names node {old} the active controller after {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cluster_active_controller_killed_repeatedly_during_topic_creation_loses_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    const CYCLES: usize = 4;
    let mut rng = Rng::from_env_or_clock();
    let mut cluster = Cluster::start(3, &[]);
    let writes = Writes::new(cluster.node(1).bootstrap());
    let writers = spawn_topic_writers(&writes, 3, 10, "c");
    let started = Instant::now();
    let mut via = 1;
    for cycle in 1..=CYCLES {
        let active = cluster.active_controller(via, Duration::from_secs(20));
        // Write through one of the other two nodes, which forwards to the active controller.
        let others: Vec<i32> = (1..=3).filter(|id| *id != active).collect();
        via = others[rng.below(2) as usize];
        writes.retarget(cluster.node(via).bootstrap());
        let in_flight = kill_during_writes(cluster.node(active), &writes, 0, rng.between_ms(500, 1500));
        let acked_at_kill = writes.acked();
        let killed_at = Instant::now();
        // Writes go on through `via` while a new active controller is elected.
        std::thread::sleep(rng.between_ms(500, 1500));
        let new_active = other_active_controller(&cluster, via, active, Duration::from_secs(20));
        let ready = restart_timed(cluster.node(active));
        let listed =
            assert_acked_listed(&cluster.node(active).bootstrap(), &acked_at_kill, Duration::from_secs(30)).len();
        println!(
            "cycle {cycle}: active controller {active} killed with {in_flight} CreateTopics in flight (writing via \
             {via}); {} acknowledged at the kill; new active controller {new_active}; node {active} ready {ready:?} \
             after restart ({:?} after the kill), lists {listed} topics",
            acked_at_kill.len(),
            killed_at.elapsed()
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    stop_writers(&writes, writers);
    let acked = writes.acked();
    // Every node has every acknowledged topic, and (once they caught up) all list the same ones.
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let listed: Vec<BTreeMap<String, Uuid>> = (1..=3)
            .map(|id| assert_acked_listed(&cluster.node(id).bootstrap(), &acked, Duration::from_secs(30)))
            .collect();
        if listed.iter().all(|l| *l == listed[0]) {
            break listed[0].len();
        }
        let counts: Vec<usize> = listed.iter().map(BTreeMap::len).collect();
        assert!(Instant::now() < deadline, "the nodes list different topics: {counts:?} topics");
        std::thread::sleep(Duration::from_millis(200));
    };
    println!(
        "{CYCLES} active controllers killed in {:?}: {} topics acknowledged; all 3 nodes list the same {listed}; {}",
        started.elapsed(),
        acked.len(),
        writes.summary()
    );
    assert!(!acked.is_empty());
}
