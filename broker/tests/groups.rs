//! Consumer groups through librdkafka (classic protocol, range assignor, explicit commits): within
//! a group each record is processed by exactly one member while members join and leave; a member
//! killed with SIGKILL only causes the duplicates it processed after its last commit; committed
//! offsets survive a broker restart; a static member (group.instance.id) that restarts within its
//! session timeout gets its partitions back without the other members seeing a rebalance.
//!
//! Each member is a `BaseConsumer` with a context that commits what it has processed when its
//! partitions are revoked (and when it leaves). The SIGKILL victim runs as a child process: this
//! same test binary re-executed to run `group_member_child` (a no-op in a normal run).
//!
//! Broker settings the tests rely on: `group.initial.rebalance.delay.ms=0`,
//! `offsets.topic.replication.factor=1`; session timeouts of 6 s (the victim) to 30 s (static
//! members), so `group.min.session.timeout.ms` must be at most 6000.
//!
//! `SLUICE_TEST_BIN=<wrapper>` runs these tests against another broker (e.g. Apache Kafka).

// A test fails by panicking: expect/unwrap/panic are its assertions.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
mod rdkafka_util;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};

use common::Broker;
use rdkafka_util::{await_deliveries, client_config, create_topic, producer, secs, REQUEST_TIMEOUT};

const PARTITIONS: i32 = 6;

/// Broker settings every test here starts with.
const BROKER_ARGS: &[&str] =
    &["--set", "group.initial.rebalance.delay.ms=0", "--set", "offsets.topic.replication.factor=1"];

/// Env var that turns `group_member_child` into a group member (the SIGKILL victim).
const CHILD_ENV: &str = "SLUICE_GROUPS_TEST_MEMBER";

// ---------------------------------------------------------------------------------------------
// What members report, and the shared record of it.

/// Something a member did, as the test sees it.
#[derive(Debug, Clone)]
enum Event {
    /// A record handed to the application: partition, offset, the producer's sequence number.
    Processed {
        partition: i32,
        offset: i64,
        seq: u64,
    },
    /// A synchronous commit that the broker acknowledged: (partition, next offset to read).
    Committed(Vec<(i32, i64)>),
    CommitFailed(String),
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
    RebalanceError(String),
    /// A consumer error from poll (transport errors while the broker restarts, for instance).
    ClientError(String),
}

impl Event {
    /// One line on the child's stdout.
    fn to_line(&self) -> String {
        let list = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
        match self {
            Event::Processed { partition, offset, seq } => format!("EV P {partition} {offset} {seq}"),
            Event::Committed(o) => {
                format!("EV C {}", o.iter().map(|(p, o)| format!("{p}:{o}")).collect::<Vec<_>>().join(","))
            }
            Event::CommitFailed(e) => format!("EV F {}", e.replace('\n', " ")),
            Event::Assigned(p) => format!("EV A {}", list(p)),
            Event::Revoked(p) => format!("EV R {}", list(p)),
            Event::RebalanceError(e) => format!("EV E {}", e.replace('\n', " ")),
            Event::ClientError(e) => format!("EV X {}", e.replace('\n', " ")),
        }
    }

    fn from_line(line: &str) -> Option<Self> {
        // The first event shares its line with libtest's "test group_member_child ... ".
        let rest = &line[line.find("EV ")? + 3..];
        let (kind, body) = rest.split_once(' ').unwrap_or((rest, ""));
        let list = |s: &str| s.split(',').filter(|x| !x.is_empty()).map(|x| x.parse().expect("partition")).collect();
        Some(match kind {
            "P" => {
                let f: Vec<&str> = body.split(' ').collect();
                Event::Processed { partition: f[0].parse().ok()?, offset: f[1].parse().ok()?, seq: f[2].parse().ok()? }
            }
            "C" => Event::Committed(
                body.split(',')
                    .filter(|x| !x.is_empty())
                    .map(|x| {
                        let (p, o) = x.split_once(':').expect("p:o");
                        (p.parse().expect("partition"), o.parse().expect("offset"))
                    })
                    .collect(),
            ),
            "F" => Event::CommitFailed(body.into()),
            "A" => Event::Assigned(list(body)),
            "R" => Event::Revoked(list(body)),
            "E" => Event::RebalanceError(body.into()),
            "X" => Event::ClientError(body.into()),
            _ => return None,
        })
    }
}

/// One processing of one record.
#[derive(Debug, Clone)]
struct Processing {
    member: String,
    partition: i32,
    offset: i64,
}

/// Everything every member reported, with running figures the tests wait on.
#[derive(Default, Clone)]
struct Record {
    events: Vec<(String, Instant, Event)>,
    /// seq → every processing of it.
    by_seq: HashMap<u64, Vec<Processing>>,
    processed_total: u64,
    processed_by: BTreeMap<String, u64>,
    /// Current assignment of each member (empty after a revoke).
    assignment: BTreeMap<String, BTreeSet<i32>>,
    /// Assign + revoke + error callbacks per member.
    rebalances: BTreeMap<String, u32>,
    last_rebalance: Option<Instant>,
    commits_ok: BTreeMap<String, u32>,
    commit_failures: Vec<(String, String)>,
    client_errors: BTreeMap<String, u32>,
}

impl Record {
    fn add(&mut self, member: &str, event: Event) {
        let now = Instant::now();
        match &event {
            Event::Processed { partition, offset, seq } => {
                self.processed_total += 1;
                *self.processed_by.entry(member.into()).or_default() += 1;
                self.by_seq.entry(*seq).or_default().push(Processing {
                    member: member.into(),
                    partition: *partition,
                    offset: *offset,
                });
            }
            Event::Committed(_) => *self.commits_ok.entry(member.into()).or_default() += 1,
            Event::CommitFailed(e) => self.commit_failures.push((member.into(), e.clone())),
            Event::Assigned(p) => {
                self.assignment.insert(member.into(), p.iter().copied().collect());
                *self.rebalances.entry(member.into()).or_default() += 1;
                self.last_rebalance = Some(now);
            }
            Event::Revoked(p) => {
                let a = self.assignment.entry(member.into()).or_default();
                for x in p {
                    a.remove(x);
                }
                *self.rebalances.entry(member.into()).or_default() += 1;
                self.last_rebalance = Some(now);
            }
            Event::RebalanceError(_) => {
                *self.rebalances.entry(member.into()).or_default() += 1;
                self.last_rebalance = Some(now);
            }
            Event::ClientError(_) => *self.client_errors.entry(member.into()).or_default() += 1,
        }
        self.events.push((member.into(), now, event));
    }

    fn distinct(&self) -> usize {
        self.by_seq.len()
    }

    /// Sequence numbers processed more than once.
    fn duplicates(&self) -> BTreeMap<u64, Vec<Processing>> {
        self.by_seq.iter().filter(|(_, v)| v.len() > 1).map(|(s, v)| (*s, v.clone())).collect()
    }

    fn rebalances_of(&self, member: &str) -> u32 {
        self.rebalances.get(member).copied().unwrap_or(0)
    }

    fn summary(&self) -> String {
        format!(
            "processed {} ({} distinct) by member {:?}; rebalance callbacks {:?}; commits {:?}; \
             commit failures {}; client errors {:?}; assignment {:?}",
            self.processed_total,
            self.distinct(),
            self.processed_by,
            self.rebalances,
            self.commits_ok,
            self.commit_failures.len(),
            self.client_errors,
            self.assignment
        )
    }
}

type Shared = Arc<Mutex<Record>>;
type Sink = Arc<dyn Fn(Event) + Send + Sync>;

fn sink_for(record: &Shared, member: &str) -> Sink {
    let record = Arc::clone(record);
    let member = member.to_string();
    Arc::new(move |e| record.lock().expect("record lock").add(&member, e))
}

/// Calls `probe` on the record every 50 ms until it is true; panics after `timeout` with `what`
/// and the record's summary.
fn wait_for(record: &Shared, what: &str, timeout: Duration, probe: impl Fn(&Record) -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        {
            let r = record.lock().expect("record lock");
            if probe(&r) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}; {}", r.summary());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// A group member.

/// How to build one member.
#[derive(Clone, Debug)]
struct MemberSpec {
    name: String,
    bootstrap: String,
    group: String,
    topic: String,
    /// Also commit after this many processed records (0: only on revoke and on leaving).
    commit_every: u64,
    /// Consumer settings on top of the defaults below.
    extra: Vec<(String, String)>,
}

impl MemberSpec {
    fn new(name: &str, bootstrap: &str, group: &str, topic: &str) -> Self {
        Self {
            name: name.into(),
            bootstrap: bootstrap.into(),
            group: group.into(),
            topic: topic.into(),
            commit_every: 0,
            extra: Vec::new(),
        }
    }

    fn set(mut self, k: &str, v: &str) -> Self {
        self.extra.push((k.into(), v.into()));
        self
    }

    /// For the child's environment: fields separated by '|', extra settings as k=v;k=v.
    fn encode(&self) -> String {
        let extra: Vec<String> = self.extra.iter().map(|(k, v)| format!("{k}={v}")).collect();
        [
            self.name.clone(),
            self.bootstrap.clone(),
            self.group.clone(),
            self.topic.clone(),
            self.commit_every.to_string(),
            extra.join(";"),
        ]
        .join("|")
    }

    fn decode(s: &str) -> Self {
        let f: Vec<&str> = s.split('|').collect();
        assert_eq!(f.len(), 6, "member spec {s:?}");
        let extra = f[5]
            .split(';')
            .filter(|x| !x.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect("k=v");
                (k.to_string(), v.to_string())
            })
            .collect();
        Self {
            name: f[0].into(),
            bootstrap: f[1].into(),
            group: f[2].into(),
            topic: f[3].into(),
            commit_every: f[4].parse().expect("commit_every"),
            extra,
        }
    }

    /// A subscribed consumer. Defaults: range assignor (the classic protocol's eager path),
    /// explicit commits only, earliest when the group has no offset, heartbeats every 500 ms,
    /// a 10 s session timeout.
    fn subscribe(&self, sink: Sink) -> BaseConsumer<MemberContext> {
        let mut settings: Vec<(&str, &str)> = vec![
            ("group.id", &self.group),
            ("client.id", &self.name),
            ("partition.assignment.strategy", "range"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("enable.partition.eof", "false"),
            ("session.timeout.ms", "10000"),
            ("heartbeat.interval.ms", "500"),
        ];
        for (k, v) in &self.extra {
            settings.retain(|(dk, _)| dk != k);
            settings.push((k, v));
        }
        let context = MemberContext { topic: self.topic.clone(), sink, processed: Mutex::default() };
        let consumer: BaseConsumer<MemberContext> =
            client_config(&self.bootstrap, &settings).create_with_context(context).expect("group consumer");
        consumer.subscribe(&[&self.topic]).expect("subscribe");
        consumer
    }
}

/// Reports rebalances and commits what was processed when partitions are revoked.
struct MemberContext {
    topic: String,
    sink: Sink,
    /// Next offset to commit, per partition owned now and processed since it was assigned.
    processed: Mutex<BTreeMap<i32, i64>>,
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl MemberContext {
    /// Commits (synchronously) the processed offsets of `only`, or of every owned partition.
    fn commit_processed(&self, consumer: &BaseConsumer<Self>, only: Option<&[i32]>) {
        let offsets: Vec<(i32, i64)> = self
            .processed
            .lock()
            .expect("processed lock")
            .iter()
            .filter(|(p, _)| only.is_none_or(|o| o.contains(p)))
            .map(|(p, o)| (*p, *o))
            .collect();
        if offsets.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &offsets {
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o)).expect("tpl");
        }
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => (self.sink)(Event::Committed(offsets)),
            Err(e) => (self.sink)(Event::CommitFailed(format!("{e} committing {offsets:?}"))),
        }
    }

    fn process(&self, partition: i32, offset: i64, seq: u64) {
        self.processed.lock().expect("processed lock").insert(partition, offset + 1);
        (self.sink)(Event::Processed { partition, offset, seq });
    }
}

impl ClientContext for MemberContext {}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let parts = partitions_of(tpl);
                self.commit_processed(consumer, Some(&parts));
                self.processed.lock().expect("processed lock").retain(|p, _| !parts.contains(p));
                (self.sink)(Event::Revoked(parts));
            }
            Rebalance::Assign(tpl) => {
                let parts = partitions_of(tpl);
                // Offsets processed in an earlier ownership are stale now: never commit them.
                self.processed.lock().expect("processed lock").retain(|p, _| !parts.contains(p));
                (self.sink)(Event::Assigned(parts));
            }
            Rebalance::Error(e) => (self.sink)(Event::RebalanceError(e.to_string())),
        }
    }
}

/// One poll: processes a record if one arrives (and commits every `commit_every`). Returns
/// whether a record was processed.
fn poll_once(consumer: &BaseConsumer<MemberContext>, since_commit: &mut u64, commit_every: u64) -> bool {
    match consumer.poll(Duration::from_millis(100)) {
        None => false,
        Some(Err(e)) => {
            (consumer.context().sink)(Event::ClientError(e.to_string()));
            false
        }
        Some(Ok(m)) => {
            let seq: u64 = std::str::from_utf8(m.payload().expect("payload"))
                .expect("utf8 payload")
                .parse()
                .expect("payload is a sequence number");
            consumer.context().process(m.partition(), m.offset(), seq);
            *since_commit += 1;
            if commit_every > 0 && *since_commit >= commit_every {
                consumer.context().commit_processed(consumer, None);
                *since_commit = 0;
            }
            true
        }
    }
}

/// Polls until `stop` is set, then leaves gracefully: commits what it processed and closes
/// (LeaveGroup for a dynamic member; the revoke callback commits the same offsets again).
fn run_member(spec: &MemberSpec, sink: Sink, stop: &AtomicBool) {
    let consumer = spec.subscribe(sink);
    let mut since_commit = 0;
    while !stop.load(Ordering::SeqCst) {
        poll_once(&consumer, &mut since_commit, spec.commit_every);
    }
    consumer.context().commit_processed(&consumer, None);
    drop(consumer);
}

/// A member running on its own thread.
struct MemberThread {
    name: String,
    stop: Arc<AtomicBool>,
    done: mpsc::Receiver<()>,
}

impl MemberThread {
    fn spawn(spec: MemberSpec, record: &Shared) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, done) = mpsc::channel();
        let sink = sink_for(record, &spec.name);
        let name = spec.name.clone();
        let thread_stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            run_member(&spec, sink, &thread_stop);
            let _ = tx.send(());
        });
        println!("member {name} started");
        Self { name, stop, done }
    }

    /// Asks the member to leave and waits (bounded) until its consumer is closed.
    fn leave(self, timeout: Duration) {
        self.stop.store(true, Ordering::SeqCst);
        let started = Instant::now();
        self.done
            .recv_timeout(timeout)
            .unwrap_or_else(|_| panic!("member {} did not commit and close within {timeout:?}", self.name));
        println!("member {} left (close took {})", self.name, secs(started));
    }
}

// ---------------------------------------------------------------------------------------------
// Data.

/// Produces `total` records with payload = sequence number, record i to partition i % 6, in
/// chunks of `per_tick` every `tick` (a steady stream rather than one burst), then waits for
/// every delivery report.
fn produce_paced(
    bootstrap: &str,
    topic: &str,
    total: u64,
    per_tick: u64,
    tick: Duration,
) -> std::thread::JoinHandle<()> {
    let (bootstrap, topic) = (bootstrap.to_string(), topic.to_string());
    std::thread::spawn(move || {
        // Batches of at most 100 records, so that a consumer with a small fetch size moves
        // through all its partitions side by side rather than one whole partition at a time.
        let producer = producer(&bootstrap, &[("linger.ms", "5"), ("batch.num.messages", "100")]);
        let mut futures = Vec::with_capacity(total as usize);
        let mut next = Instant::now();
        for i in 0..total {
            let payload = i.to_string();
            let key = format!("k{i}");
            let record = FutureRecord::to(&topic).partition((i % PARTITIONS as u64) as i32).key(&key).payload(&payload);
            futures.push(producer.send_result(record).map_err(|(e, _)| e).expect("enqueue"));
            if (i + 1) % per_tick == 0 {
                next += tick;
                if let Some(d) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
            }
        }
        let failed: Vec<String> = await_deliveries(futures, Duration::from_secs(60))
            .into_iter()
            .filter_map(|r| r.err().map(|e| e.to_string()))
            .collect();
        assert!(failed.is_empty(), "{} of {total} records not acknowledged, e.g. {:?}", failed.len(), failed.first());
    })
}

fn join_producer(handle: std::thread::JoinHandle<()>) {
    handle.join().expect("producer thread panicked");
}

/// The group's committed offsets for every partition, through OffsetFetch from a consumer that
/// does not join the group. Retries while the coordinator is not available yet (after a
/// restart), up to `timeout`.
fn committed_offsets(bootstrap: &str, group: &str, topic: &str, timeout: Duration) -> BTreeMap<i32, Offset> {
    let consumer: BaseConsumer = client_config(bootstrap, &[("group.id", group), ("enable.auto.commit", "false")])
        .create()
        .expect("offset probe");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    let deadline = Instant::now() + timeout;
    loop {
        match consumer.committed_offsets(tpl.clone(), REQUEST_TIMEOUT) {
            Ok(list) => {
                let errors: Vec<String> = list
                    .elements()
                    .iter()
                    .filter_map(|e| e.error().err().map(|x| format!("{}: {x}", e.partition())))
                    .collect();
                if errors.is_empty() {
                    return list.elements().iter().map(|e| (e.partition(), e.offset())).collect();
                }
                assert!(
                    Instant::now() < deadline,
                    "OffsetFetch for {group} still failing after {timeout:?}: {errors:?}"
                );
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "OffsetFetch for {group} still failing after {timeout:?}: {e}")
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").subsec_nanos();
    format!("{prefix}-{}-{nanos:08x}", std::process::id())
}

/// Asserts every sequence number `0..total` was processed (at least once) and prints how many
/// were not, if any.
fn assert_all_processed(r: &Record, total: u64) {
    let missing: Vec<u64> = (0..total).filter(|s| !r.by_seq.contains_key(s)).collect();
    assert!(
        missing.is_empty(),
        "{} of {total} records never processed, e.g. {:?}; {}",
        missing.len(),
        &missing[..missing.len().min(10)],
        r.summary()
    );
}

/// Asserts the group committed the end of every partition (`total` records spread evenly).
fn assert_committed_everything(bootstrap: &str, group: &str, topic: &str, total: u64) {
    let committed = committed_offsets(bootstrap, group, topic, Duration::from_secs(30));
    let per_partition = (total / PARTITIONS as u64) as i64;
    let expected: BTreeMap<i32, Offset> = (0..PARTITIONS).map(|p| (p, Offset::Offset(per_partition))).collect();
    assert_eq!(committed, expected, "committed offsets after every member left");
    println!("committed offsets at the end: {per_partition} on each of {PARTITIONS} partitions");
}

// ---------------------------------------------------------------------------------------------
// Tests.

/// 60k records produced as a steady stream over ~15 s to a 6-partition topic; members m1 and m2
/// start, m3 joins, m1 leaves, m4 joins, m2 leaves, each graceful and committing on revoke:
/// every record is processed by exactly one member, none twice.
#[test]
fn each_record_processed_by_exactly_one_member_through_joins_and_leaves() {
    exactly_one_member_through_joins_and_leaves("range");
}

/// The same with librdkafka's cooperative-sticky assignor (KIP-429 incremental rebalancing):
/// members keep the partitions they are not asked to give up, and still every record is
/// processed exactly once.
#[test]
fn cooperative_sticky_rebalances_are_incremental_and_exactly_once() {
    let r = exactly_one_member_through_joins_and_leaves("cooperative-sticky");
    // Incremental: some revocation took away only part of what a member owned.
    let mut owned: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    let mut partial_revokes = 0;
    for (who, _, e) in &r.events {
        let mine = owned.entry(who.clone()).or_default();
        match e {
            Event::Assigned(p) => mine.extend(p.iter().copied()),
            Event::Revoked(p) => {
                if !p.is_empty() && p.len() < mine.len() {
                    partial_revokes += 1;
                }
                for x in p {
                    mine.remove(x);
                }
            }
            _ => {}
        }
    }
    println!("partial revocations: {partial_revokes}");
    assert!(partial_revokes > 0, "no incremental revocation seen; {}", r.summary());
}

fn exactly_one_member_through_joins_and_leaves(strategy: &str) -> Record {
    const TOTAL: u64 = 60_000;
    let started = Instant::now();
    let broker = Broker::start(BROKER_ARGS);
    let bootstrap = broker.bootstrap();
    let topic = unique("groups-exactly-one");
    let group = unique("g-exactly-one");
    create_topic(&bootstrap, &topic, PARTITIONS, &[]);
    let record: Shared = Arc::default();
    let spec =
        |name: &str| MemberSpec::new(name, &bootstrap, &group, &topic).set("partition.assignment.strategy", strategy);
    let m1 = MemberThread::spawn(spec("m1"), &record);
    let m2 = MemberThread::spawn(spec("m2"), &record);
    let producing = produce_paced(&bootstrap, &topic, TOTAL, 200, Duration::from_millis(50));
    let at = |n: u64| move |r: &Record| r.processed_total >= n;
    let timeout = Duration::from_secs(90);

    wait_for(&record, "6k records processed", timeout, at(6_000));
    let m3 = MemberThread::spawn(spec("m3"), &record);
    wait_for(&record, "20k records processed", timeout, at(20_000));
    m1.leave(Duration::from_secs(30));
    wait_for(&record, "30k records processed", timeout, at(30_000));
    let m4 = MemberThread::spawn(spec("m4"), &record);
    wait_for(&record, "42k records processed", timeout, at(42_000));
    m2.leave(Duration::from_secs(30));
    wait_for(&record, "every record processed", timeout, |r| r.distinct() as u64 >= TOTAL);
    join_producer(producing);
    // A record processed twice would show up now, not later: every member commits on revoke, and
    // the remaining members commit on leaving.
    m3.leave(Duration::from_secs(30));
    m4.leave(Duration::from_secs(30));

    let r = record.lock().expect("record lock");
    println!("{}", r.summary());
    let dups = r.duplicates();
    println!("duplicates: {} (expected 0); elapsed {}", dups.len(), secs(started));
    assert_all_processed(&r, TOTAL);
    assert!(
        dups.is_empty(),
        "{} records processed more than once, e.g. {:?}",
        dups.len(),
        dups.iter().take(5).collect::<Vec<_>>()
    );
    assert!(r.commit_failures.is_empty(), "commit failures: {:?}", r.commit_failures);
    for m in ["m1", "m2", "m3", "m4"] {
        let got = r.events.iter().any(|(who, _, e)| who == m && matches!(e, Event::Assigned(p) if !p.is_empty()));
        assert!(got, "member {m} was never assigned a partition; {}", r.summary());
    }
    let copy = r.clone();
    drop(r);
    assert_committed_everything(&bootstrap, &group, &topic, TOTAL);
    copy
}

/// The SIGKILL victim: runs a member in this (re-executed) test binary when `CHILD_ENV` holds
/// its spec, reporting every event as a line on stdout; a no-op otherwise.
#[test]
fn group_member_child() {
    let Ok(encoded) = std::env::var(CHILD_ENV) else { return };
    let spec = MemberSpec::decode(&encoded);
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let sink: Sink = Arc::new(move |e: Event| {
        use std::io::Write;
        let mut out = out.lock().expect("stdout lock");
        // Written and flushed before the record counts as processed: what the parent reads is
        // exactly what this member did before it was killed.
        let _ = writeln!(out, "{}", e.to_line());
        let _ = out.flush();
    });
    // Safety net in case the parent dies without killing us.
    let stop = Arc::new(AtomicBool::new(false));
    let timer_stop = Arc::clone(&stop);
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(180));
        timer_stop.store(true, Ordering::SeqCst);
    });
    run_member(&spec, sink, &stop);
}

/// As above with one member killed with SIGKILL mid-stream (a child process committing every
/// 500 records): no record is lost, and the only records processed twice are ones the victim
/// processed after its last commit, which the member that takes over its partitions reprocesses.
#[test]
fn sigkilled_member_duplicates_only_what_it_processed_after_its_last_commit() {
    const TOTAL: u64 = 60_000;
    let started = Instant::now();
    let broker = Broker::start(BROKER_ARGS);
    let bootstrap = broker.bootstrap();
    let topic = unique("groups-sigkill");
    let group = unique("g-sigkill");
    create_topic(&bootstrap, &topic, PARTITIONS, &[]);
    let record: Shared = Arc::default();
    let spec = |name: &str| MemberSpec::new(name, &bootstrap, &group, &topic);

    let m1 = MemberThread::spawn(spec("m1"), &record);
    let m2 = MemberThread::spawn(spec("m2"), &record);
    let mut victim_spec = spec("victim").set("session.timeout.ms", "6000");
    victim_spec.commit_every = 500;
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["group_member_child", "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, victim_spec.encode())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the victim member");
    let stdout = child.stdout.take().expect("child stdout");
    let victim_sink = sink_for(&record, "victim");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(e) = Event::from_line(&line) {
                victim_sink(e);
            }
        }
    });
    println!("member victim started (child pid {})", child.id());
    let producing = produce_paced(&bootstrap, &topic, TOTAL, 200, Duration::from_millis(50));

    // Killed between two of its commits (150 to 499 records past the last one), so that there
    // is something to reprocess.
    wait_for(
        &record,
        "the victim to process 4000 records, commit, and be midway to its next commit",
        Duration::from_secs(90),
        |r| {
            let n = r.processed_by.get("victim").copied().unwrap_or(0);
            n >= 4_000 && n % 500 >= 150 && r.commits_ok.contains_key("victim")
        },
    );
    child.kill().expect("SIGKILL the victim");
    let _ = child.wait();
    reader.join().expect("reader thread");
    let killed_at = Instant::now();
    let (victim_partitions, uncommitted) = {
        let r = record.lock().expect("record lock");
        let owned = r.assignment.get("victim").cloned().unwrap_or_default();
        // Per owned partition: the offset the victim last committed since it was last assigned
        // it (records below it are safe), and what it processed from there on.
        let mut last_commit: BTreeMap<i32, i64> = BTreeMap::new();
        let mut since_assign: BTreeMap<i32, Vec<(i64, u64)>> = BTreeMap::new();
        for (who, _, e) in r.events.iter().filter(|(w, _, _)| w == "victim") {
            let _ = who;
            match e {
                Event::Assigned(ps) => {
                    for p in ps {
                        last_commit.remove(p);
                        since_assign.insert(*p, Vec::new());
                    }
                }
                Event::Committed(os) => {
                    for (p, o) in os {
                        last_commit.insert(*p, *o);
                    }
                }
                Event::Processed { partition, offset, seq } => {
                    since_assign.entry(*partition).or_default().push((*offset, *seq))
                }
                _ => {}
            }
        }
        let mut uncommitted: BTreeSet<u64> = BTreeSet::new();
        for p in &owned {
            let from = last_commit.get(p).copied().unwrap_or(i64::MIN);
            for (o, s) in since_assign.get(p).into_iter().flatten() {
                if *o >= from {
                    uncommitted.insert(*s);
                }
            }
        }
        println!(
            "killed the victim after {} records ({} commits) owning partitions {owned:?}; last commits {last_commit:?}; \
             {} records processed after its last commit",
            r.processed_by.get("victim").copied().unwrap_or(0),
            r.commits_ok.get("victim").copied().unwrap_or(0),
            uncommitted.len()
        );
        (owned, uncommitted)
    };

    assert!(!uncommitted.is_empty(), "the victim was killed right after a commit: nothing to check");

    wait_for(&record, "every record processed", Duration::from_secs(120), |r| r.distinct() as u64 >= TOTAL);
    join_producer(producing);
    m1.leave(Duration::from_secs(30));
    m2.leave(Duration::from_secs(30));

    let r = record.lock().expect("record lock");
    println!("{}", r.summary());
    let takeover = r
        .events
        .iter()
        .find(|(w, t, e)| {
            w != "victim"
                && *t > killed_at
                && matches!(e, Event::Processed { partition, .. } if victim_partitions.contains(partition))
        })
        .map(|(_, t, _)| t.duration_since(killed_at));
    println!("the victim's partitions were consumed again {takeover:?} after the kill");
    assert_all_processed(&r, TOTAL);
    let dups = r.duplicates();
    let mut unexpected = Vec::new();
    for (seq, ps) in &dups {
        let by_victim = ps.iter().filter(|p| p.member == "victim").count();
        let same_record = ps.iter().all(|p| (p.partition, p.offset) == (ps[0].partition, ps[0].offset));
        if ps.len() != 2 || by_victim != 1 || !same_record || !uncommitted.contains(seq) {
            unexpected.push((*seq, ps.clone()));
        }
    }
    println!(
        "duplicates: {} (records the victim processed after its last commit: {}); unexpected duplicates: {}; elapsed {}",
        dups.len(),
        uncommitted.len(),
        unexpected.len(),
        secs(started)
    );
    assert!(
        unexpected.is_empty(),
        "{} records processed twice that the victim had committed (or not by the victim), e.g. {:?}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(5)]
    );
    if dups.len() != uncommitted.len() {
        // Possible only if the victim was killed between a commit's acknowledgement and its report.
        println!("note: {} of the victim's uncommitted records were not reprocessed", uncommitted.len() - dups.len());
    }
    let survivors_failures: Vec<_> = r.commit_failures.iter().filter(|(m, _)| m != "victim").collect();
    assert!(survivors_failures.is_empty(), "commit failures: {survivors_failures:?}");
    drop(r);
    assert_committed_everything(&bootstrap, &group, &topic, TOTAL);
}

/// A member consumes part of a topic committing every 1000 records; the broker restarts (clean
/// stop, or SIGKILL) while the member is still in the group; the committed offsets read back
/// after the restart are the ones committed before, and a new member of the group resumes from
/// exactly them: together the two members processed every record once.
fn committed_offsets_survive_restart(kill: bool) {
    const TOTAL: u64 = 30_000;
    let started = Instant::now();
    let mut broker = Broker::start(BROKER_ARGS);
    let bootstrap = broker.bootstrap();
    let topic = unique("groups-restart");
    let group = unique("g-restart");
    create_topic(&bootstrap, &topic, PARTITIONS, &[]);
    join_producer(produce_paced(&bootstrap, &topic, TOTAL, TOTAL, Duration::ZERO));
    let record: Shared = Arc::default();

    // Small fetches: member a advances on every partition at once, so that its commits are
    // somewhere in the middle of each.
    let mut a_spec = MemberSpec::new("a", &bootstrap, &group, &topic).set("max.partition.fetch.bytes", "4096");
    a_spec.commit_every = 1000;
    let a = a_spec.subscribe(sink_for(&record, "a"));
    let mut since_commit = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while record.lock().expect("record lock").processed_total < 10_000 {
        assert!(
            Instant::now() < deadline,
            "member a did not process 10k records in 60 s; {}",
            record.lock().expect("lock").summary()
        );
        poll_once(&a, &mut since_commit, a_spec.commit_every);
    }
    a.context().commit_processed(&a, None);
    let committed_before: BTreeMap<i32, i64> = a.context().processed.lock().expect("processed lock").clone();
    {
        let r = record.lock().expect("record lock");
        assert!(r.commit_failures.is_empty(), "commit failures before the restart: {:?}", r.commit_failures);
        assert!(matches!(r.events.last(), Some((_, _, Event::Committed(_)))), "last commit acknowledged");
    }
    println!(
        "member a processed {} records and committed {committed_before:?}",
        record.lock().expect("lock").processed_total
    );

    let restart_started = Instant::now();
    if kill {
        broker.kill9();
    } else {
        let clean = broker.stop();
        println!("broker stopped (clean exit: {clean})");
    }
    broker.restart();
    println!("broker {} and started again in {}", if kill { "killed" } else { "stopped" }, secs(restart_started));

    // Offsets survive: OffsetFetch after the restart gives what was committed before it.
    let after = committed_offsets(&bootstrap, &group, &topic, Duration::from_secs(60));
    let expected: BTreeMap<i32, Offset> = (0..PARTITIONS)
        .map(|p| (p, committed_before.get(&p).map_or(Offset::Invalid, |o| Offset::Offset(*o))))
        .collect();
    assert_eq!(after, expected, "committed offsets after the restart");
    println!("committed offsets after the restart: {after:?}");

    // Member a leaves (it rejoined or kept its membership across the restart; it processes
    // nothing more), then b joins the group and must start exactly where a committed.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        drop(a);
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(60)).expect("member a closes within 60 s after the restart");
    let processed_by_a = record.lock().expect("lock").processed_total;

    let b_spec = MemberSpec::new("b", &bootstrap, &group, &topic);
    let b = b_spec.subscribe(sink_for(&record, "b"));
    let mut since_commit = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    while (record.lock().expect("record lock").distinct() as u64) < TOTAL {
        assert!(
            Instant::now() < deadline,
            "member b did not finish within 90 s; {}",
            record.lock().expect("lock").summary()
        );
        poll_once(&b, &mut since_commit, 0);
    }
    drop(b);

    let r = record.lock().expect("record lock");
    println!("{}", r.summary());
    if !r.commit_failures.is_empty() {
        // Member a's commit on closing repeats offsets already committed; it may be refused
        // if the group expired it while the broker was down.
        println!("commit failures (after the restart): {:?}", r.commit_failures);
    }
    let mut first_of_b: BTreeMap<i32, i64> = BTreeMap::new();
    for (who, _, e) in &r.events {
        if let (true, Event::Processed { partition, offset, .. }) = (who == "b", e) {
            first_of_b.entry(*partition).or_insert(*offset);
        }
    }
    let per_partition = (TOTAL / PARTITIONS as u64) as i64;
    for p in 0..PARTITIONS {
        let resume = committed_before.get(&p).copied().unwrap_or(0);
        if resume < per_partition {
            assert_eq!(first_of_b.get(&p), Some(&resume), "member b's first offset on partition {p} is a's commit");
        }
    }
    assert_all_processed(&r, TOTAL);
    let dups = r.duplicates();
    println!(
        "a processed {processed_by_a}, b processed {}, duplicates {} (expected 0); b started at {first_of_b:?}; elapsed {}",
        r.processed_by.get("b").copied().unwrap_or(0),
        dups.len(),
        secs(started)
    );
    assert!(
        dups.is_empty(),
        "{} records processed twice, e.g. {:?}",
        dups.len(),
        dups.iter().take(5).collect::<Vec<_>>()
    );
}

#[test]
fn committed_offsets_survive_clean_restart_and_consumption_resumes_from_them() {
    committed_offsets_survive_restart(false);
}

#[test]
fn committed_offsets_survive_kill9_restart_and_consumption_resumes_from_them() {
    committed_offsets_survive_restart(true);
}

/// Three static members (group.instance.id, 30 s session timeout). One closes (a static member
/// sends no LeaveGroup) and a new consumer with the same instance id joins a moment later: it
/// gets the same partitions back, the other two see no rebalance callback at all, and records
/// produced afterwards are each consumed once, by their partition's owner.
#[test]
fn static_member_restart_within_session_timeout_causes_no_rebalance() {
    let started = Instant::now();
    let broker = Broker::start(BROKER_ARGS);
    let bootstrap = broker.bootstrap();
    let topic = unique("groups-static");
    let group = unique("g-static");
    create_topic(&bootstrap, &topic, PARTITIONS, &[]);
    let record: Shared = Arc::default();
    let spec = |name: &str, instance: &str| {
        MemberSpec::new(name, &bootstrap, &group, &topic)
            .set("group.instance.id", instance)
            .set("session.timeout.ms", "30000")
    };
    let s1 = MemberThread::spawn(spec("s1", "static-1"), &record);
    let s2 = MemberThread::spawn(spec("s2", "static-2"), &record);
    let s3 = MemberThread::spawn(spec("s3", "static-3"), &record);
    wait_for(&record, "three members with two partitions each", Duration::from_secs(60), |r| {
        let sets: Vec<&BTreeSet<i32>> = ["s1", "s2", "s3"].iter().filter_map(|m| r.assignment.get(*m)).collect();
        sets.len() == 3
            && sets.iter().all(|s| s.len() == 2)
            && sets.iter().flat_map(|s| s.iter()).collect::<BTreeSet<_>>().len() == PARTITIONS as usize
    });
    // Stable: no rebalance callback for 3 s.
    wait_for(&record, "no rebalance for 3 s", Duration::from_secs(60), |r| {
        r.last_rebalance.is_some_and(|t| t.elapsed() >= Duration::from_secs(3))
    });
    let (before, s1_partitions) = {
        let r = record.lock().expect("record lock");
        println!("stable group: {}", r.summary());
        ((r.rebalances_of("s2"), r.rebalances_of("s3")), r.assignment["s1"].clone())
    };

    let restart = Instant::now();
    s1.leave(Duration::from_secs(20));
    let s1b = MemberThread::spawn(spec("s1-restarted", "static-1"), &record);
    wait_for(&record, "the restarted static member to get its partitions", Duration::from_secs(25), |r| {
        r.assignment.get("s1-restarted").is_some_and(|a| !a.is_empty())
    });
    let back_after = restart.elapsed();
    // Watch the others for longer than several heartbeat intervals.
    std::thread::sleep(Duration::from_secs(5));

    join_producer(produce_paced(&bootstrap, &topic, 600, 600, Duration::ZERO));
    wait_for(&record, "the 600 new records consumed", Duration::from_secs(30), |r| r.distinct() >= 600);

    let r = record.lock().expect("record lock");
    println!("{}", r.summary());
    let after = (r.rebalances_of("s2"), r.rebalances_of("s3"));
    println!(
        "static member back with {:?} (had {s1_partitions:?}) {back_after:?} after it closed; rebalance callbacks of \
         s2,s3: {before:?} before, {after:?} after; elapsed {}",
        r.assignment.get("s1-restarted"),
        secs(started)
    );
    assert_eq!(
        r.assignment.get("s1-restarted"),
        Some(&s1_partitions),
        "restarted static member gets its partitions back"
    );
    assert_eq!(after, before, "the other members saw no rebalance");
    let dups = r.duplicates();
    assert!(dups.is_empty(), "{} records consumed twice", dups.len());
    for (seq, ps) in &r.by_seq {
        let owner = ["s1-restarted", "s2", "s3"]
            .into_iter()
            .find(|m| r.assignment.get(*m).is_some_and(|a| a.contains(&ps[0].partition)));
        assert_eq!(owner, Some(ps[0].member.as_str()), "record {seq} consumed by its partition's owner");
    }
    drop(r);
    for m in [s1b, s2, s3] {
        m.leave(Duration::from_secs(30));
    }
}
