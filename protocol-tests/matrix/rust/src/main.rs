//! The client matrix's `rdkafka-rust` client: the `rdkafka` crate (librdkafka) running the
//! scenarios of protocol-tests/matrix/CONTRACT.md, one JSON line per scenario on stdout.
//!
//! `mx-rdkafka scenarios --bootstrap HOST:PORT --run-id RID [--only a,b]`
//! `mx-rdkafka member --bootstrap HOST:PORT --group G --topic T`
//!
//! Each scenario runs on its own thread with its own small tokio runtime (the admin calls and the
//! producer's delivery reports are futures); the main thread gives it 60 s. Diagnostics go to
//! stderr.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
    TopicResult,
};
use rdkafka::client::{Client, ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};

const CLIENT: &str = "rdkafka-rust";
const SCENARIOS: [&str; 13] = [
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
];
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(60);
/// Timeout of one client call (admin request, metadata, delivery report) inside a scenario.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Parser)]
#[command(name = "mx-rdkafka", about = "The client matrix's rdkafka-rust client (see CONTRACT.md)")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the scenarios and prints one JSON line per scenario.
    Scenarios {
        #[arg(long)]
        bootstrap: String,
        #[arg(long)]
        run_id: String,
        /// Comma-separated scenario names (default: all, in the contract's order).
        #[arg(long, default_value = "")]
        only: String,
    },
    /// One consumer-group member (roundrobin) for the runner's mixed_group scenario.
    Member {
        #[arg(long)]
        bootstrap: String,
        #[arg(long)]
        group: String,
        #[arg(long)]
        topic: String,
    },
}

fn main() {
    let args = Args::parse();
    let version = rdkafka::util::get_rdkafka_version().1;
    match args.command {
        Command::Scenarios { bootstrap, run_id, only } => {
            log(&format!("{CLIENT}: librdkafka {version}"));
            run_scenarios(&version, &bootstrap, &run_id, &only);
        }
        Command::Member { bootstrap, group, topic } => {
            if let Err(e) = member(&bootstrap, &group, &topic) {
                log(&format!("member: {e}"));
                std::process::exit(1);
            }
        }
    }
}

// ---- harness ----

/// Why a scenario failed. (rdkafka has an API for every scenario, so none is `unsupported`.)
struct Stop(String);

impl From<KafkaError> for Stop {
    fn from(e: KafkaError) -> Self {
        Stop(match e.rdkafka_error_code() {
            Some(code) => format!("{} ({e})", error_name(code)),
            None => e.to_string(),
        })
    }
}

type R<T> = Result<T, Stop>;

/// Fails the scenario with a formatted message unless the condition holds.
macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(Stop(format!($($msg)+)));
        }
    };
}

fn log(msg: &str) {
    eprintln!("{msg}");
}

fn emit(line: &Value) {
    let mut out = std::io::stdout().lock();
    // stdout gone (the runner died): nothing left to report to.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Ctx {
    scenario: String,
    bootstrap: String,
    run_id: String,
    step: Arc<Mutex<String>>,
    deadline: Instant,
    rt: tokio::runtime::Runtime,
}

impl Ctx {
    fn topic(&self, n: u32) -> String {
        let base = format!("mx-{CLIENT}-{}-{}", self.scenario, self.run_id).replace('_', "-");
        if n == 1 {
            base
        } else {
            format!("{base}-{n}")
        }
    }

    fn group(&self, n: u32) -> String {
        format!("{}-group", self.topic(n))
    }

    fn step(&self, what: &str) {
        *lock(&self.step) = what.to_string();
        log(&format!("[{CLIENT} {}] {what}", self.scenario));
    }

    /// Time left before the scenario's deadline (at least a little, for cleanup calls).
    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(500))
    }

    fn call_timeout(&self) -> Duration {
        self.remaining().min(CALL_TIMEOUT)
    }

    /// Runs a future (an admin call, a delivery report) to completion, within the call timeout.
    fn wait<F: Future>(&self, what: &str, fut: F) -> R<F::Output> {
        let limit = self.call_timeout();
        self.rt
            .block_on(async { tokio::time::timeout(limit, fut).await })
            .map_err(|_| Stop(format!("{what}: no answer in {} s", limit.as_secs())))
    }

    fn config(&self, extra: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("broker.address.family", "v4")
            // A metadata request for a topic must never create it (waiting for a deleted one).
            .set("allow.auto.create.topics", "false");
        for (k, v) in extra {
            c.set(*k, *v);
        }
        c
    }

    fn admin(&self) -> R<AdminClient<DefaultClientContext>> {
        Ok(self.config(&[]).create()?)
    }

    fn producer(&self, extra: &[(&str, &str)]) -> R<FutureProducer> {
        let mut conf = vec![("linger.ms", "5"), ("message.timeout.ms", "30000")];
        conf.extend_from_slice(extra);
        Ok(self.config(&conf).create()?)
    }

    /// A consumer (auto-commit off, from the earliest offset). A short fetch wait: closing a
    /// consumer waits for its in-flight long-poll Fetch.
    fn consumer(&self, group: Option<&str>) -> R<BaseConsumer> {
        let group = group.map(str::to_string).unwrap_or_else(|| self.group(99));
        Ok(self
            .config(&[
                ("group.id", &group),
                ("enable.auto.commit", "false"),
                ("auto.offset.reset", "earliest"),
                ("fetch.wait.max.ms", "100"),
            ])
            .create()?)
    }
}

fn run_scenarios(version: &str, bootstrap: &str, run_id: &str, only: &str) {
    let wanted: Vec<String> = if only.trim().is_empty() {
        SCENARIOS.iter().map(|s| s.to_string()).collect()
    } else {
        only.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
    };
    for name in wanted {
        let started = Instant::now();
        let step = Arc::new(Mutex::new("start".to_string()));
        let (tx, rx) = mpsc::channel();
        let worker = {
            let (name, bootstrap, run_id, step) =
                (name.clone(), bootstrap.to_string(), run_id.to_string(), step.clone());
            std::thread::Builder::new().name(format!("scenario {name}")).spawn(move || {
                let outcome = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| Stop(format!("tokio runtime: {e}")))
                    .and_then(|rt| {
                        let ctx = Ctx {
                            scenario: name.clone(),
                            bootstrap,
                            run_id,
                            step,
                            deadline: started + SCENARIO_TIMEOUT,
                            rt,
                        };
                        run_one(&name, &ctx)
                    });
                let _ = tx.send(outcome);
            })
        };
        let outcome = match worker {
            Err(e) => Err(format!("cannot start the scenario's thread: {e}")),
            Ok(_handle) => match rx.recv_timeout(SCENARIO_TIMEOUT) {
                Ok(outcome) => outcome.map_err(|Stop(why)| format!("{why} (step: {})", lock(&step))),
                // The thread is left behind (its calls end on their own timeouts).
                Err(mpsc::RecvTimeoutError::Timeout) => Err(format!("timed out after 60 s in {}", lock(&step))),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    Err(format!("the scenario's thread died (panic) in step {}", lock(&step)))
                }
            },
        };
        let (status, reason, observed) = match outcome {
            Ok(observed) => ("pass", String::new(), observed),
            Err(reason) => ("fail", reason, json!({})),
        };
        let reason: String = reason.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(1000).collect();
        let seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
        emit(&json!({
            "client": CLIENT,
            "version": version,
            "scenario": name,
            "status": status,
            "reason": reason,
            "seconds": seconds,
            "observed": observed,
        }));
    }
}

fn run_one(name: &str, ctx: &Ctx) -> R<Value> {
    match name {
        "metadata" => metadata(ctx),
        "topic_admin" => topic_admin(ctx),
        "keyed_partitioning" => keyed_partitioning(ctx),
        "headers_nulls" => headers_nulls(ctx),
        "idempotent" => idempotent(ctx),
        "group_resume" => group_resume(ctx),
        "timestamp_offsets" => timestamp_offsets(ctx),
        "large_records" => large_records(ctx),
        other => match other.strip_prefix("compression_") {
            Some(codec @ ("none" | "gzip" | "snappy" | "lz4" | "zstd")) => compression(ctx, codec),
            _ => Err(Stop(format!("no such scenario in this program: {other}"))),
        },
    }
}

// ---- errors ----

/// Kafka's protocol name of an error code as librdkafka reports it: broker errors keep Kafka's
/// codes (librdkafka's own names differ, e.g. MSG_SIZE_TOO_LARGE); librdkafka's local errors
/// (negative codes) are named `LOCAL:<variant>`.
fn error_name(code: RDKafkaErrorCode) -> String {
    let n = code as i32;
    match kafka_error_name(n) {
        Some(name) => name.to_string(),
        None if n > 0 => format!("ERROR_CODE_{n}"),
        None => format!("LOCAL:{code:?}"),
    }
}

fn kafka_error_name(code: i32) -> Option<&'static str> {
    const NAMES: [&str; 120] = [
        "NONE",
        "OFFSET_OUT_OF_RANGE",
        "CORRUPT_MESSAGE",
        "UNKNOWN_TOPIC_OR_PARTITION",
        "INVALID_FETCH_SIZE",
        "LEADER_NOT_AVAILABLE",
        "NOT_LEADER_OR_FOLLOWER",
        "REQUEST_TIMED_OUT",
        "BROKER_NOT_AVAILABLE",
        "REPLICA_NOT_AVAILABLE",
        "MESSAGE_TOO_LARGE",
        "STALE_CONTROLLER_EPOCH",
        "OFFSET_METADATA_TOO_LARGE",
        "NETWORK_EXCEPTION",
        "COORDINATOR_LOAD_IN_PROGRESS",
        "COORDINATOR_NOT_AVAILABLE",
        "NOT_COORDINATOR",
        "INVALID_TOPIC_EXCEPTION",
        "RECORD_LIST_TOO_LARGE",
        "NOT_ENOUGH_REPLICAS",
        "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        "INVALID_REQUIRED_ACKS",
        "ILLEGAL_GENERATION",
        "INCONSISTENT_GROUP_PROTOCOL",
        "INVALID_GROUP_ID",
        "UNKNOWN_MEMBER_ID",
        "INVALID_SESSION_TIMEOUT",
        "REBALANCE_IN_PROGRESS",
        "INVALID_COMMIT_OFFSET_SIZE",
        "TOPIC_AUTHORIZATION_FAILED",
        "GROUP_AUTHORIZATION_FAILED",
        "CLUSTER_AUTHORIZATION_FAILED",
        "INVALID_TIMESTAMP",
        "UNSUPPORTED_SASL_MECHANISM",
        "ILLEGAL_SASL_STATE",
        "UNSUPPORTED_VERSION",
        "TOPIC_ALREADY_EXISTS",
        "INVALID_PARTITIONS",
        "INVALID_REPLICATION_FACTOR",
        "INVALID_REPLICA_ASSIGNMENT",
        "INVALID_CONFIG",
        "NOT_CONTROLLER",
        "INVALID_REQUEST",
        "UNSUPPORTED_FOR_MESSAGE_FORMAT",
        "POLICY_VIOLATION",
        "OUT_OF_ORDER_SEQUENCE_NUMBER",
        "DUPLICATE_SEQUENCE_NUMBER",
        "INVALID_PRODUCER_EPOCH",
        "INVALID_TXN_STATE",
        "INVALID_PRODUCER_ID_MAPPING",
        "INVALID_TRANSACTION_TIMEOUT",
        "CONCURRENT_TRANSACTIONS",
        "TRANSACTION_COORDINATOR_FENCED",
        "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
        "SECURITY_DISABLED",
        "OPERATION_NOT_ATTEMPTED",
        "KAFKA_STORAGE_ERROR",
        "LOG_DIR_NOT_FOUND",
        "SASL_AUTHENTICATION_FAILED",
        "UNKNOWN_PRODUCER_ID",
        "REASSIGNMENT_IN_PROGRESS",
        "DELEGATION_TOKEN_AUTH_DISABLED",
        "DELEGATION_TOKEN_NOT_FOUND",
        "DELEGATION_TOKEN_OWNER_MISMATCH",
        "DELEGATION_TOKEN_REQUEST_NOT_ALLOWED",
        "DELEGATION_TOKEN_AUTHORIZATION_FAILED",
        "DELEGATION_TOKEN_EXPIRED",
        "INVALID_PRINCIPAL_TYPE",
        "NON_EMPTY_GROUP",
        "GROUP_ID_NOT_FOUND",
        "FETCH_SESSION_ID_NOT_FOUND",
        "INVALID_FETCH_SESSION_EPOCH",
        "LISTENER_NOT_FOUND",
        "TOPIC_DELETION_DISABLED",
        "FENCED_LEADER_EPOCH",
        "UNKNOWN_LEADER_EPOCH",
        "UNSUPPORTED_COMPRESSION_TYPE",
        "STALE_BROKER_EPOCH",
        "OFFSET_NOT_AVAILABLE",
        "MEMBER_ID_REQUIRED",
        "PREFERRED_LEADER_NOT_AVAILABLE",
        "GROUP_MAX_SIZE_REACHED",
        "FENCED_INSTANCE_ID",
        "ELIGIBLE_LEADERS_NOT_AVAILABLE",
        "ELECTION_NOT_NEEDED",
        "NO_REASSIGNMENT_IN_PROGRESS",
        "GROUP_SUBSCRIBED_TO_TOPIC",
        "INVALID_RECORD",
        "UNSTABLE_OFFSET_COMMIT",
        "THROTTLING_QUOTA_EXCEEDED",
        "PRODUCER_FENCED",
        "RESOURCE_NOT_FOUND",
        "DUPLICATE_RESOURCE",
        "UNACCEPTABLE_CREDENTIAL",
        "INCONSISTENT_VOTER_SET",
        "INVALID_UPDATE_VERSION",
        "FEATURE_UPDATE_FAILED",
        "PRINCIPAL_DESERIALIZATION_FAILURE",
        "SNAPSHOT_NOT_FOUND",
        "POSITION_OUT_OF_RANGE",
        "UNKNOWN_TOPIC_ID",
        "DUPLICATE_BROKER_REGISTRATION",
        "BROKER_ID_NOT_REGISTERED",
        "INCONSISTENT_TOPIC_ID",
        "INCONSISTENT_CLUSTER_ID",
        "TRANSACTIONAL_ID_NOT_FOUND",
        "FETCH_SESSION_TOPIC_ID_ERROR",
        "INELIGIBLE_REPLICA",
        "NEW_LEADER_ELECTED",
        "OFFSET_MOVED_TO_TIERED_STORAGE",
        "FENCED_MEMBER_EPOCH",
        "UNRELEASED_INSTANCE_ID",
        "UNSUPPORTED_ASSIGNOR",
        "STALE_MEMBER_EPOCH",
        "MISMATCHED_ENDPOINT_TYPE",
        "UNSUPPORTED_ENDPOINT_TYPE",
        "UNKNOWN_CONTROLLER_ID",
        "UNKNOWN_SUBSCRIPTION_ID",
        "TELEMETRY_TOO_LARGE",
        "INVALID_REGISTRATION",
    ];
    match code {
        -1 => Some("UNKNOWN_SERVER_ERROR"),
        0.. => NAMES.get(code as usize).copied(),
        _ => None,
    }
}

/// The Kafka error name of a per-topic admin result, `"no error"` when it succeeded.
fn topic_result_name(results: Vec<TopicResult>, topic: &str) -> R<String> {
    match results.into_iter().next() {
        Some(Ok(_)) => Ok("no error".to_string()),
        Some(Err((_, code))) => Ok(error_name(code)),
        None => Err(Stop(format!("no result for {topic} in the admin response"))),
    }
}

fn admin_options(ctx: &Ctx) -> AdminOptions {
    AdminOptions::new().request_timeout(Some(ctx.call_timeout())).operation_timeout(Some(ctx.call_timeout()))
}

// ---- topics, producing, consuming ----

fn create_topic(ctx: &Ctx, topic: &str, partitions: i32, config: &[(&str, &str)]) -> R<()> {
    let admin = ctx.admin()?;
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (k, v) in config {
        new = new.set(k, v);
    }
    let results = ctx.wait("CreateTopics", admin.create_topics([&new], &admin_options(ctx)))??;
    let outcome = topic_result_name(results, topic)?;
    check!(outcome == "no error", "create topic {topic}: {outcome}");
    wait_for_leaders(ctx, admin.inner(), topic, partitions)
}

/// Waits until Metadata shows `topic` with `partitions` partitions, each with a leader.
fn wait_for_leaders<C: ClientContext>(ctx: &Ctx, client: &Client<C>, topic: &str, partitions: i32) -> R<()> {
    loop {
        let md = client.fetch_metadata(Some(topic), ctx.call_timeout())?;
        let ready = md.topics().iter().find(|t| t.name() == topic).is_some_and(|t| {
            t.error().is_none()
                && t.partitions().len() == partitions as usize
                && t.partitions().iter().all(|p| p.leader() >= 0)
        });
        if ready {
            return Ok(());
        }
        check!(ctx.remaining() > Duration::from_secs(2), "{topic} did not show {partitions} partitions with leaders");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One record to produce.
#[derive(Default, Clone)]
struct Rec {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    partition: Option<i32>,
    timestamp: Option<i64>,
}

impl Rec {
    fn kv(key: &str, value: &str) -> Rec {
        Rec { key: Some(key.into()), value: Some(value.into()), ..Rec::default() }
    }

    fn value(value: &str) -> Rec {
        Rec { value: Some(value.into()), ..Rec::default() }
    }
}

/// What the broker answered for one record: (partition, offset) or the error's Kafka name.
type Ack = Result<(i32, i64), String>;

/// Produces every record, then waits for each delivery report; returns them in send order. A
/// record librdkafka refuses before sending it is an error `local:<name>`.
fn produce_all(ctx: &Ctx, p: &FutureProducer, topic: &str, recs: &[Rec]) -> R<Vec<Ack>> {
    let mut pending = Vec::with_capacity(recs.len());
    for rec in recs {
        let mut r: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
        if let Some(k) = &rec.key {
            r = r.key(k.as_slice());
        }
        if let Some(v) = &rec.value {
            r = r.payload(v.as_slice());
        }
        if let Some(part) = rec.partition {
            r = r.partition(part);
        }
        if let Some(ts) = rec.timestamp {
            r = r.timestamp(ts);
        }
        if !rec.headers.is_empty() {
            let mut h = OwnedHeaders::new_with_capacity(rec.headers.len());
            for (name, value) in &rec.headers {
                h = h.insert(Header { key: name, value: value.as_deref() });
            }
            r = r.headers(h);
        }
        pending.push(p.send_result(r).map_err(|(e, _)| match e.rdkafka_error_code() {
            Some(code) => format!("local:{}", error_name(code)),
            None => format!("local:{e}"),
        }));
    }
    let mut acks = Vec::with_capacity(pending.len());
    for fut in pending {
        acks.push(match fut {
            Err(e) => Err(e),
            Ok(fut) => match ctx.wait("delivery report", fut)? {
                Err(_canceled) => return Err(Stop("producer dropped a delivery report".into())),
                Ok(Ok(delivery)) => Ok((delivery.partition, delivery.offset)),
                Ok(Err((e, _msg))) => Err(match e.rdkafka_error_code() {
                    Some(code) => error_name(code),
                    None => e.to_string(),
                }),
            },
        });
    }
    Ok(acks)
}

/// The acknowledged (partition, offset) of every record; fails on the first error.
fn acked(acks: Vec<Ack>) -> R<Vec<(i32, i64)>> {
    acks.into_iter()
        .enumerate()
        .map(|(i, a)| a.map_err(|e| Stop(format!("produce of record {i} failed: {e}"))))
        .collect()
}

/// Reads `count` records of one partition from its beginning (assigned, no group), and checks the
/// partition holds exactly that many.
fn read_partition(ctx: &Ctx, topic: &str, partition: i32, count: usize) -> R<Vec<OwnedMessage>> {
    read_partitions(ctx, topic, &[(partition, count)])
}

/// Reads the given partitions from their beginnings with one assigned consumer (no group) until it
/// has `count` records of each, and checks each partition holds exactly that many. The records of
/// one partition come in offset order.
fn read_partitions(ctx: &Ctx, topic: &str, counts: &[(i32, usize)]) -> R<Vec<OwnedMessage>> {
    let c = ctx.consumer(None)?;
    let mut tpl = TopicPartitionList::new();
    for &(partition, _) in counts {
        tpl.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let total: usize = counts.iter().map(|&(_, n)| n).sum();
    let mut out = Vec::with_capacity(total);
    while out.len() < total && ctx.remaining() > Duration::from_secs(1) {
        match c.poll(Duration::from_millis(500)) {
            None => {}
            Some(Ok(m)) => out.push(m.detach()),
            Some(Err(e)) => return Err(Stop(format!("consume error: {}", Stop::from(e).0))),
        }
    }
    for &(partition, count) in counts {
        let read = out.iter().filter(|m| m.partition() == partition).count();
        check!(read == count, "read {read} records of {topic}[{partition}], expected {count}");
        let (low, high) = c.fetch_watermarks(topic, partition, ctx.call_timeout())?;
        check!((low, high) == (0, count as i64), "{topic}[{partition}] has offsets {low}..{high}, expected 0..{count}");
    }
    Ok(out)
}

fn text(b: Option<&[u8]>) -> Option<String> {
    b.map(|b| String::from_utf8_lossy(b).into_owned())
}

// ---- scenarios ----

fn metadata(ctx: &Ctx) -> R<Value> {
    let topic = ctx.topic(1);
    ctx.step("create topic");
    create_topic(ctx, &topic, 3, &[])?;
    ctx.step("metadata");
    let admin = ctx.admin()?;
    let md = admin.inner().fetch_metadata(None, ctx.call_timeout())?;
    let brokers: BTreeMap<i32, (String, i32)> =
        md.brokers().iter().map(|b| (b.id(), (b.host().to_string(), b.port()))).collect();
    check!(!brokers.is_empty(), "no brokers listed");
    let (host, port) = ctx.bootstrap.rsplit_once(':').unwrap_or((&ctx.bootstrap, ""));
    check!(
        brokers.values().any(|(h, p)| h == host && p.to_string() == port),
        "no broker at {}: {brokers:?}",
        ctx.bootstrap
    );
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Err(Stop(format!("{topic} not in the metadata")));
    };
    check!(t.partitions().len() == 3, "{} partitions, expected 3", t.partitions().len());
    let mut parts: Vec<_> = t.partitions().iter().collect();
    parts.sort_by_key(|p| p.id());
    for p in &parts {
        check!(brokers.contains_key(&p.leader()), "partition {} leader {} not a listed broker", p.id(), p.leader());
        check!(p.replicas().len() == 1, "partition {} has replicas {:?}, expected 1", p.id(), p.replicas());
    }
    Ok(json!({
        "brokers": brokers.len(),
        "partitions": parts.len(),
        "replicas": parts.iter().map(|p| p.replicas().len()).collect::<Vec<_>>(),
        // librdkafka's metadata (rd_kafka_metadata_t) carries no controller id.
        "controller_listed": null,
    }))
}

fn topic_admin(ctx: &Ctx) -> R<Value> {
    let admin = ctx.admin()?;
    let topic = ctx.topic(1);
    let mut obs = serde_json::Map::new();
    ctx.step("create topic with retention.ms");
    create_topic(ctx, &topic, 3, &[("retention.ms", "3600000")])?;

    // rdkafka has no DescribeTopics: its description of a topic is the Metadata one.
    ctx.step("describe topic (metadata)");
    let partition_count = |ctx: &Ctx| -> R<usize> {
        let md = admin.inner().fetch_metadata(Some(&topic), ctx.call_timeout())?;
        Ok(md.topics().iter().find(|t| t.name() == topic).map_or(0, |t| t.partitions().len()))
    };
    let n = partition_count(ctx)?;
    obs.insert("partitions".into(), json!(n));
    check!(n == 3, "describe: {n} partitions, expected 3");

    let describe = |ctx: &Ctx| -> R<rdkafka::admin::ConfigResource> {
        let spec = ResourceSpecifier::Topic(&topic);
        let results = ctx.wait("DescribeConfigs", admin.describe_configs([&spec], &admin_options(ctx)))??;
        match results.into_iter().next() {
            Some(Ok(res)) => Ok(res),
            Some(Err(code)) => Err(Stop(format!("describe configs: {}", error_name(code)))),
            None => Err(Stop("describe configs: no result".into())),
        }
    };
    ctx.step("describe configs");
    let cfg = describe(ctx)?;
    let Some(retention) = cfg.get("retention.ms") else {
        return Err(Stop("describe configs: no retention.ms".into()));
    };
    let Some(cleanup) = cfg.get("cleanup.policy") else {
        return Err(Stop("describe configs: no cleanup.policy".into()));
    };
    obs.insert("retention_ms".into(), json!(retention.value));
    obs.insert("cleanup_policy".into(), json!(cleanup.value));
    check!(
        retention.source == ConfigSource::DynamicTopic,
        "retention.ms source {:?}, expected a topic override",
        retention.source
    );
    check!(cleanup.source != ConfigSource::DynamicTopic, "cleanup.policy is a topic override, expected a default");
    check!(retention.value.as_deref() == Some("3600000"), "retention.ms {:?}, expected 3600000", retention.value);
    check!(cleanup.value.as_deref() == Some("delete"), "cleanup.policy {:?}, expected delete", cleanup.value);
    // Every topic config the broker describes, with its value where it is not the override we set:
    // the differential run lists names and defaults that differ from Kafka's.
    let all: BTreeMap<&str, Value> = cfg
        .entries
        .iter()
        .filter(|e| e.name != "retention.ms")
        .map(|e| (e.name.as_str(), if e.is_sensitive { json!("<sensitive>") } else { json!(e.value) }))
        .collect();
    obs.insert("topic_configs".into(), json!(all));

    // rdkafka has only the older AlterConfigs (it replaces the topic's overrides): set retention.ms.
    ctx.step("alter configs");
    let alter = AlterConfig::new(ResourceSpecifier::Topic(&topic)).set("retention.ms", "7200000");
    let results = ctx.wait("AlterConfigs", admin.alter_configs([&alter], &admin_options(ctx)))??;
    if let Some(Err((_, code))) = results.first() {
        return Err(Stop(format!("alter configs: {}", error_name(*code))));
    }
    // Kafka applies an acknowledged config change to its brokers asynchronously: poll.
    let altered = loop {
        let value = describe(ctx)?.get("retention.ms").and_then(|e| e.value.clone());
        if value.as_deref() == Some("7200000") || ctx.remaining() < Duration::from_secs(2) {
            break value;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    obs.insert("retention_ms_altered".into(), json!(altered));
    check!(altered.as_deref() == Some("7200000"), "retention.ms after alter {altered:?}, expected 7200000");

    ctx.step("create partitions");
    let results =
        ctx.wait("CreatePartitions", admin.create_partitions([&NewPartitions::new(&topic, 4)], &admin_options(ctx)))??;
    let outcome = topic_result_name(results, &topic)?;
    check!(outcome == "no error", "create partitions: {outcome}");
    wait_for_leaders(ctx, admin.inner(), &topic, 4)?;
    let n = partition_count(ctx)?;
    obs.insert("partitions_after_create_partitions".into(), json!(n));
    check!(n == 4, "{n} partitions after create partitions, expected 4");

    ctx.step("create again");
    let again = NewTopic::new(&topic, 3, TopicReplication::Fixed(1));
    let results = ctx.wait("CreateTopics", admin.create_topics([&again], &admin_options(ctx)))??;
    let outcome = topic_result_name(results, &topic)?;
    obs.insert("create_again".into(), json!(outcome));
    check!(outcome == "TOPIC_ALREADY_EXISTS", "create again: {outcome}, expected TOPIC_ALREADY_EXISTS");

    ctx.step("delete topic");
    let results = ctx.wait("DeleteTopics", admin.delete_topics(&[&topic], &admin_options(ctx)))??;
    let outcome = topic_result_name(results, &topic)?;
    check!(outcome == "no error", "delete topic: {outcome}");
    loop {
        let md = admin.inner().fetch_metadata(None, ctx.call_timeout())?;
        if !md.topics().iter().any(|t| t.name() == topic) {
            break;
        }
        check!(ctx.remaining() > Duration::from_secs(2), "deleted topic still in metadata");
        std::thread::sleep(Duration::from_millis(100));
    }

    ctx.step("delete unknown topic");
    let never = format!("{topic}-never");
    let results = ctx.wait("DeleteTopics", admin.delete_topics(&[&never], &admin_options(ctx)))??;
    let outcome = topic_result_name(results, &never)?;
    obs.insert("delete_unknown".into(), json!(outcome));
    check!(outcome == "UNKNOWN_TOPIC_OR_PARTITION", "delete unknown: {outcome}, expected UNKNOWN_TOPIC_OR_PARTITION");
    Ok(Value::Object(obs))
}

fn compression(ctx: &Ctx, codec: &str) -> R<Value> {
    let topic = ctx.topic(1);
    ctx.step("create topic");
    create_topic(ctx, &topic, 1, &[])?;
    ctx.step(&format!("produce with {codec}"));
    let p = ctx.producer(&[("compression.type", codec)])?;
    let recs: Vec<Rec> = (0..100).map(|i| Rec::kv(&format!("k-{i}"), &format!("v-{i}"))).collect();
    let acks = acked(produce_all(ctx, &p, &topic, &recs)?)?;
    let offsets: Vec<i64> = acks.iter().map(|a| a.1).collect();
    check!(offsets == (0..100).collect::<Vec<i64>>(), "acked offsets {:?}..., expected 0..99", &offsets[..3]);
    ctx.step("consume");
    let msgs = read_partition(ctx, &topic, 0, 100)?;
    for (i, m) in msgs.iter().enumerate() {
        let want = (i as i64, Some(format!("k-{i}")), Some(format!("v-{i}")));
        let got = (m.offset(), text(m.key()), text(m.payload()));
        check!(got == want, "read back {got:?}, expected {want:?}");
    }
    Ok(json!({"records": msgs.len(), "offsets": [msgs[0].offset(), msgs[msgs.len() - 1].offset()]}))
}

fn keyed_partitioning(ctx: &Ctx) -> R<Value> {
    let topic = ctx.topic(1);
    ctx.step("create topic");
    create_topic(ctx, &topic, 6, &[])?;
    let p = ctx.producer(&[])?;
    let keys: Vec<String> = (0..60).map(|i| format!("key-{i}")).collect();
    let mut partition_of: BTreeMap<String, i32> = BTreeMap::new();
    for round in 1..=2 {
        ctx.step(&format!("produce round {round}"));
        let recs: Vec<Rec> = keys.iter().map(|k| Rec::kv(k, &format!("r{round}-{k}"))).collect();
        let acks = acked(produce_all(ctx, &p, &topic, &recs)?)?;
        for (k, (part, _)) in keys.iter().zip(acks) {
            if round == 1 {
                partition_of.insert(k.clone(), part);
            } else {
                let first = partition_of.get(k).copied();
                check!(first == Some(part), "{k} went to {first:?} then {part}");
            }
        }
    }
    ctx.step("read every partition");
    let counts: Vec<(i32, usize)> =
        (0..6).map(|part| (part, partition_of.values().filter(|&&v| v == part).count() * 2)).collect();
    let mut found: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for m in read_partitions(ctx, &topic, &counts)? {
        found.entry(text(m.key()).unwrap_or_default()).or_default().push(m.partition());
    }
    for k in &keys {
        let want = partition_of.get(k).map(|&p| vec![p, p]);
        check!(found.get(k) == want.as_ref(), "{k} reported in {want:?}, found in {:?}", found.get(k));
    }
    Ok(json!({"records": 120, "partition_of": partition_of}))
}

/// A record read back: key, value, headers (name, value); `None` is null.
type Record = (Option<String>, Option<String>, Vec<(String, Option<String>)>);
/// A record to send, in the same form.
type Sent = (Option<&'static str>, Option<&'static str>, Vec<(&'static str, Option<&'static str>)>);

fn headers_nulls(ctx: &Ctx) -> R<Value> {
    let topic = ctx.topic(1);
    ctx.step("create topic");
    create_topic(ctx, &topic, 1, &[])?;
    let sent: Vec<Sent> = vec![
        (None, Some("v1"), vec![]),
        (Some("k2"), None, vec![]),
        (Some("k3"), Some(""), vec![]),
        (Some("k4"), Some("v4"), vec![("h1", Some("a")), ("h1", Some("b")), ("empty", Some(""))]),
        (Some("k5"), Some("v5"), vec![("n", None)]),
    ];
    ctx.step("produce");
    let recs: Vec<Rec> = sent
        .iter()
        .map(|(k, v, h)| Rec {
            key: k.map(Into::into),
            value: v.map(Into::into),
            headers: h.iter().map(|(n, x)| (n.to_string(), x.map(Into::into))).collect(),
            ..Rec::default()
        })
        .collect();
    acked(produce_all(ctx, &ctx.producer(&[])?, &topic, &recs)?)?;
    ctx.step("consume");
    let msgs = read_partition(ctx, &topic, 0, sent.len())?;
    let got: Vec<Record> = msgs
        .iter()
        .map(|m| {
            let headers = m.headers().map_or_else(Vec::new, |h| {
                (0..h.count()).map(|i| h.get(i)).map(|h| (h.key.to_string(), text(h.value))).collect()
            });
            (text(m.key()), text(m.payload()), headers)
        })
        .collect();
    let want: Vec<Record> = sent
        .iter()
        .map(|(k, v, h)| {
            (
                k.map(str::to_string),
                v.map(str::to_string),
                h.iter().map(|(n, x)| (n.to_string(), x.map(str::to_string))).collect(),
            )
        })
        .collect();
    check!(got == want, "read {got:?}, sent {want:?}");
    let records: Vec<Value> =
        got.iter().map(|(k, v, h)| json!([k, v, h.iter().map(|(n, x)| json!([n, x])).collect::<Vec<_>>()])).collect();
    Ok(json!({ "records": records }))
}

fn idempotent(ctx: &Ctx) -> R<Value> {
    let topic = ctx.topic(1);
    ctx.step("create topic");
    create_topic(ctx, &topic, 1, &[])?;
    ctx.step("idempotent produce");
    let p = ctx.producer(&[("enable.idempotence", "true"), ("acks", "all")])?;
    let recs: Vec<Rec> = (0..200).map(|i| Rec::value(&format!("i-{i}"))).collect();
    let offsets: Vec<i64> = acked(produce_all(ctx, &p, &topic, &recs)?)?.iter().map(|a| a.1).collect();
    check!(
        offsets == (0..200).collect::<Vec<i64>>(),
        "acked offsets {:?}..{:?}, expected 0..199",
        &offsets[..3],
        &offsets[offsets.len() - 3..]
    );
    ctx.step("consume");
    let msgs = read_partition(ctx, &topic, 0, 200)?;
    for (i, m) in msgs.iter().enumerate() {
        let value = text(m.payload());
        check!(value == Some(format!("i-{i}")), "record {i} has value {value:?}, expected i-{i} (send order)");
    }
    Ok(json!({"records": msgs.len(), "offsets": [msgs[0].offset(), msgs[msgs.len() - 1].offset()]}))
}

/// Polls a subscribed consumer until it has read `count` records.
fn read_group(ctx: &Ctx, c: &BaseConsumer, count: usize) -> R<Vec<OwnedMessage>> {
    let mut out = Vec::with_capacity(count);
    while out.len() < count && ctx.remaining() > Duration::from_secs(1) {
        match c.poll(Duration::from_millis(500)) {
            None => {}
            Some(Ok(m)) => out.push(m.detach()),
            Some(Err(e)) => return Err(Stop(format!("consume error: {}", Stop::from(e).0))),
        }
    }
    check!(out.len() == count, "group read {} records, expected {count}", out.len());
    Ok(out)
}

fn group_resume(ctx: &Ctx) -> R<Value> {
    let (topic, group) = (ctx.topic(1), ctx.group(1));
    ctx.step("create topic");
    create_topic(ctx, &topic, 3, &[])?;
    let p = ctx.producer(&[])?;
    ctx.step("produce 30");
    let recs: Vec<Rec> = (0..30).map(|i| Rec { partition: Some(i % 3), ..Rec::value(&format!("a-{i}")) }).collect();
    acked(produce_all(ctx, &p, &topic, &recs)?)?;

    ctx.step("consumer A");
    let first = {
        let a = ctx.consumer(Some(&group))?;
        a.subscribe(&[&topic])?;
        let first = read_group(ctx, &a, 30)?;
        let mut values: Vec<String> = first.iter().filter_map(|m| text(m.payload())).collect();
        values.sort();
        let mut want: Vec<String> = (0..30).map(|i| format!("a-{i}")).collect();
        want.sort();
        check!(values == want, "consumer A read {values:?}");
        ctx.step("consumer A commit");
        a.commit_consumer_state(CommitMode::Sync)?;
        ctx.step("consumer A close");
        first.len()
        // dropping `a` leaves the group and closes it
    };

    ctx.step("produce 10 more");
    let recs: Vec<Rec> = (0..10).map(|i| Rec { partition: Some(i % 3), ..Rec::value(&format!("b-{i}")) }).collect();
    acked(produce_all(ctx, &p, &topic, &recs)?)?;

    ctx.step("consumer B");
    let b = ctx.consumer(Some(&group))?;
    b.subscribe(&[&topic])?;
    let second = read_group(ctx, &b, 10)?;
    let mut values: Vec<String> = second.iter().filter_map(|m| text(m.payload())).collect();
    values.sort();
    let mut want: Vec<String> = (0..10).map(|i| format!("b-{i}")).collect();
    want.sort();
    check!(values == want, "consumer B read {values:?}, expected the 10 new records");
    ctx.step("consumer B commit");
    b.commit_consumer_state(CommitMode::Sync)?;
    ctx.step("committed offsets");
    let mut tpl = TopicPartitionList::new();
    for part in 0..3 {
        tpl.add_partition(&topic, part);
    }
    let committed = b.committed_offsets(tpl, ctx.call_timeout())?;
    let mut offsets = Vec::new();
    for part in 0..3 {
        let elem = committed.find_partition(&topic, part);
        let offset = elem.as_ref().map(|e| e.offset());
        match (elem.map(|e| e.error()), offset) {
            (Some(Ok(())), Some(Offset::Offset(o))) => offsets.push(o),
            other => return Err(Stop(format!("committed offset of partition {part}: {other:?}"))),
        }
    }
    check!(offsets == [14, 13, 13], "committed {offsets:?}, expected [14, 13, 13]");
    drop(b);
    Ok(json!({"first": first, "second": second.len(), "committed": offsets}))
}

fn timestamp_offsets(ctx: &Ctx) -> R<Value> {
    let topic = ctx.topic(1);
    ctx.step("create topic");
    create_topic(ctx, &topic, 1, &[])?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| Stop(e.to_string()))?;
    let t0 = (now.as_secs() as i64 - 60) * 1000;
    ctx.step("produce with timestamps");
    let recs: Vec<Rec> =
        (0..3).map(|i| Rec { timestamp: Some(t0 + 1000 * i), ..Rec::value(&format!("t-{i}")) }).collect();
    acked(produce_all(ctx, &ctx.producer(&[])?, &topic, &recs)?)?;
    let c = ctx.consumer(None)?;
    ctx.step("list offsets (watermarks)");
    let (low, high) = c.fetch_watermarks(&topic, 0, ctx.call_timeout())?;
    let for_time = |ts: i64| -> R<i64> {
        ctx.step(&format!("list offsets for time t0+{}", ts - t0));
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(ts))?;
        let res = c.offsets_for_times(tpl, ctx.call_timeout())?;
        let Some(elem) = res.find_partition(&topic, 0) else {
            return Err(Stop("offsets_for_times: no result for partition 0".into()));
        };
        elem.error()?;
        match elem.offset() {
            Offset::Offset(o) => Ok(o),
            // librdkafka's -1 (no record at or after the time)
            Offset::End => Ok(-1),
            other => Err(Stop(format!("offsets_for_times({ts}): {other:?}"))),
        }
    };
    let obs = json!({
        "earliest": low,
        "latest": high,
        "t0+500": for_time(t0 + 500)?,
        "t0+2000": for_time(t0 + 2000)?,
        "after_last": for_time(t0 + 10000)?,
    });
    let want = json!({"earliest": 0, "latest": 3, "t0+500": 1, "t0+2000": 2, "after_last": -1});
    check!(obs == want, "saw {obs}, expected {want}");
    Ok(obs)
}

fn large_records(ctx: &Ctx) -> R<Value> {
    let topic = ctx.topic(1);
    ctx.step("create topic");
    create_topic(ctx, &topic, 1, &[("max.message.bytes", "200000")])?;
    let p = ctx.producer(&[
        ("message.max.bytes", "1048576"),
        ("compression.type", "none"),
        ("retries", "0"),
        ("linger.ms", "0"),
    ])?;
    let near: Vec<u8> = (0..190_000u32).map(|i| ((i * 7) % 251) as u8).collect();
    let mut obs = serde_json::Map::new();

    ctx.step("produce 190000 bytes");
    let ack = produce_all(ctx, &p, &topic, &[Rec { value: Some(near.clone()), ..Rec::default() }])?;
    check!(matches!(ack.as_slice(), [Ok(_)]), "190000-byte record refused: {ack:?}");
    obs.insert("near_limit".into(), json!("ok"));

    ctx.step("produce 210000 bytes");
    let ack = produce_all(ctx, &p, &topic, &[Rec { value: Some(vec![b'x'; 210_000]), ..Rec::default() }])?;
    let over = match ack.as_slice() {
        [Err(name)] => name.clone(),
        [Ok(_)] => "no error".to_string(),
        other => format!("{other:?}"),
    };
    obs.insert("over_limit".into(), json!(over));
    check!(over == "MESSAGE_TOO_LARGE", "210000-byte record: {over}, expected MESSAGE_TOO_LARGE");

    ctx.step("produce after");
    let ack = produce_all(ctx, &p, &topic, &[Rec::value("small")])?;
    let after = match ack.as_slice() {
        [Ok(_)] => "ok".to_string(),
        [Err(name)] => name.clone(),
        other => format!("{other:?}"),
    };
    obs.insert("after".into(), json!(after));
    check!(after == "ok", "small record after the refusal: {after}");

    ctx.step("read back");
    let msgs = read_partition(ctx, &topic, 0, 2)?;
    check!(msgs[0].payload() == Some(near.as_slice()), "190000-byte value read back differs");
    check!(msgs[1].payload() == Some(b"small".as_slice()), "small value read back differs");
    Ok(Value::Object(obs))
}

// ---- member ----

/// Prints the member's whole assignment after every rebalance callback.
struct MemberContext;

impl ClientContext for MemberContext {}

impl ConsumerContext for MemberContext {
    fn post_rebalance(&self, base_consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Error(e) = rebalance {
            log(&format!("member: rebalance error: {e}"));
            return;
        }
        let partitions: BTreeSet<i32> = match base_consumer.assignment() {
            Ok(tpl) => tpl.elements().iter().map(|e| e.partition()).collect(),
            Err(e) => {
                log(&format!("member: cannot read the assignment: {e}"));
                return;
            }
        };
        emit(&json!({"event": "assigned", "partitions": partitions}));
    }
}

fn member(bootstrap: &str, group: &str, topic: &str) -> Result<(), KafkaError> {
    let done = Arc::new(AtomicBool::new(false));
    {
        let done = done.clone();
        std::thread::spawn(move || {
            let stdin = std::io::stdin();
            let mut line = String::new();
            while matches!(stdin.lock().read_line(&mut line), Ok(n) if n > 0) {
                line.clear();
            }
            done.store(true, Ordering::SeqCst);
        });
    }
    let c: BaseConsumer<MemberContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", group)
        .set("partition.assignment.strategy", "roundrobin")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create_with_context(MemberContext)?;
    c.subscribe(&[topic])?;
    while !done.load(Ordering::SeqCst) {
        let mut batch = Vec::new();
        let mut timeout = Duration::from_millis(200);
        while batch.len() < 100 {
            match c.poll(timeout) {
                None => break,
                Some(Ok(m)) => batch.push(m.detach()),
                Some(Err(e)) => {
                    log(&format!("member: consume error: {e}"));
                    break;
                }
            }
            timeout = Duration::ZERO;
        }
        if batch.is_empty() {
            continue;
        }
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for m in &batch {
            next.insert(m.partition(), m.offset() + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for (part, offset) in next {
            tpl.add_partition_offset(topic, part, Offset::Offset(offset))?;
        }
        if let Err(e) = c.commit(&tpl, CommitMode::Sync) {
            log(&format!("member: commit failed: {e}"));
        }
        for m in &batch {
            emit(&json!({
                "event": "record",
                "partition": m.partition(),
                "offset": m.offset(),
                "value": text(m.payload()),
            }));
        }
    }
    // Dropping the consumer leaves the group (revoking its partitions) and closes it.
    drop(c);
    emit(&json!({"event": "closed"}));
    Ok(())
}
