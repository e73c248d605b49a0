//! The idempotent producer through a proxy that keeps severing connections: some produce
//! responses are lost after the broker appended, librdkafka retries with the same producer id
//! and sequence numbers, and the broker must neither lose nor duplicate nor reorder a record.

// A test fails by panicking: expect/unwrap/panic are its assertions.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
mod rdkafka_util;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;

use common::{Broker, FaultProxy};
use rdkafka_util::{assert_contiguous, await_deliveries, consume_all, create_topic, producer_config, secs};

const PARTITIONS: i32 = 3;
const RECORDS: usize = 50_000;

/// Producer counters from librdkafka's statistics: messages transmitted (resends counted
/// again) and request retries, with how many reports have come in.
#[derive(Default)]
struct Stats {
    transmitted: AtomicU64,
    request_retries: AtomicU64,
    reports: AtomicU64,
}

impl Stats {
    /// The counters once every record has been transmitted at least once by some report, or as
    /// last reported after 5 s.
    fn settled(&self, records: u64) -> (u64, u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let seen = self.reports.load(Ordering::SeqCst);
        while Instant::now() < deadline
            && (self.transmitted.load(Ordering::SeqCst) < records || self.reports.load(Ordering::SeqCst) < seen + 2)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        (self.transmitted.load(Ordering::SeqCst), self.request_retries.load(Ordering::SeqCst))
    }
}

struct StatsContext(Arc<Stats>);

impl ClientContext for StatsContext {
    fn stats(&self, statistics: Statistics) {
        let transmitted: u64 = statistics
            .topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter(|(p, _)| **p >= 0)
            .map(|(_, p)| p.txmsgs)
            .sum();
        let retries: u64 = statistics.brokers.values().map(|b| b.txretries).sum();
        self.0.transmitted.store(transmitted, Ordering::SeqCst);
        self.0.request_retries.store(retries, Ordering::SeqCst);
        self.0.reports.fetch_add(1, Ordering::SeqCst);
    }
}

fn seed() -> u64 {
    std::env::var("SLUICE_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    })
}

fn idempotent_producer(proxy: &FaultProxy, stats: &Arc<Stats>) -> FutureProducer<StatsContext> {
    producer_config(
        &proxy.address(),
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("max.in.flight.requests.per.connection", "5"),
            ("linger.ms", "5"),
            ("batch.num.messages", "500"),
            ("message.timeout.ms", "120000"),
            ("reconnect.backoff.ms", "20"),
            ("reconnect.backoff.max.ms", "200"),
            ("statistics.interval.ms", "100"),
        ],
    )
    .create_with_context(StatsContext(Arc::clone(stats)))
    .expect("producer")
}

/// Sends `values` round-robin over the partitions; returns, per partition in send order,
/// each acknowledged `(offset, value index)`. Every delivery must succeed, and the offsets of
/// each partition must be exactly `0..n` in send order.
fn produce_all(producer: &FutureProducer<StatsContext>, topic: &str, values: &[String]) -> Vec<Vec<(i64, usize)>> {
    let mut futures = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        let partition = (i % PARTITIONS as usize) as i32;
        let record = FutureRecord::<(), str>::to(topic).partition(partition).payload(value);
        match producer.send_result(record) {
            Ok(f) => futures.push(f),
            Err((e, _)) => panic!("enqueue of record {i} failed: {e}"),
        }
    }
    let mut sent: Vec<Vec<(i64, usize)>> = (0..PARTITIONS).map(|_| Vec::new()).collect();
    let mut failed = Vec::new();
    for (i, delivery) in await_deliveries(futures, Duration::from_secs(180)).into_iter().enumerate() {
        match delivery {
            Ok(d) => {
                assert_eq!(d.partition, (i % PARTITIONS as usize) as i32, "record {i} went to the partition asked for");
                sent[d.partition as usize].push((d.offset, i));
            }
            Err(e) => failed.push((i, e.to_string())),
        }
    }
    assert!(failed.is_empty(), "{} deliveries failed, first: {:?}", failed.len(), failed.first());
    for (p, acked) in sent.iter().enumerate() {
        let offsets: Vec<i64> = acked.iter().map(|a| a.0).collect();
        let expected: Vec<i64> = (0..acked.len() as i64).collect();
        if let Some(k) = offsets.iter().zip(&expected).position(|(a, b)| a != b) {
            panic!(
                "{topic}-{p}: acknowledged offsets in send order should be 0..{}; from send index {k}: {:?}",
                acked.len(),
                &offsets[k..(k + 5).min(offsets.len())]
            );
        }
    }
    sent
}

/// Consumes everything: each value exactly once, at the offset its delivery report gave.
fn check_consumed(bootstrap: &str, topic: &str, values: &[String], sent: &[Vec<(i64, usize)>]) {
    let consumed = consume_all(bootstrap, topic, PARTITIONS, Duration::from_secs(60));
    let mut seen: HashMap<&[u8], (usize, i64)> = HashMap::with_capacity(values.len());
    for (p, messages) in consumed.iter().enumerate() {
        println!("{topic}-{p}: {} acknowledged, {} consumed", sent[p].len(), messages.len());
        for m in messages {
            let value = m.payload().unwrap_or_default();
            if let Some(first) = seen.insert(value, (p, m.offset())) {
                panic!(
                    "value {:?} appears twice: at {first:?} and at ({p}, {})",
                    String::from_utf8_lossy(value),
                    m.offset()
                );
            }
        }
        assert_contiguous(topic, p, messages, sent[p].len() as i64);
        for (m, &(offset, i)) in messages.iter().zip(&sent[p]) {
            assert_eq!(m.payload(), Some(values[i].as_bytes()), "{topic}-{p} offset {offset}");
        }
    }
    assert_eq!(seen.len(), values.len(), "every value consumed exactly once");
}

#[test]
fn retries_through_severed_connections_keep_exactly_once_and_order() {
    let started = Instant::now();
    let seed = seed();
    println!("seed {seed} (rerun with SLUICE_TEST_SEED={seed})");
    let mut proxy = FaultProxy::bind();
    let advertised = format!("PLAINTEXT://127.0.0.1:{}", proxy.port);
    let broker = Broker::start(&["--advertised-listeners", &advertised]);
    proxy.start(broker.bootstrap(), (150, 300), seed);
    let topic = "idempotent";
    // Created directly, not through the proxy, so set-up cannot be cut.
    create_topic(&broker.bootstrap(), topic, PARTITIONS, &[]);

    let stats = Arc::new(Stats::default());
    let producer = idempotent_producer(&proxy, &stats);
    let values: Vec<String> = (0..RECORDS).map(|i| format!("idempotent-value-{i:06}")).collect();
    let sent = produce_all(&producer, topic, &values);
    let cuts = proxy.cuts();
    println!(
        "proxy accepted {} connections, severed {cuts} live ones, produce took {}",
        proxy.accepted(),
        secs(started)
    );
    let (transmitted, request_retries) = stats.settled(RECORDS as u64);
    println!(
        "librdkafka transmitted {transmitted} messages for {RECORDS} records ({} resent), {request_retries} request retries",
        transmitted.saturating_sub(RECORDS as u64)
    );
    assert!(cuts > 0, "the proxy never severed a live connection, so nothing was retried");
    assert!(transmitted > RECORDS as u64, "no record was sent twice, so the broker never had to drop a duplicate");

    drop(producer);
    // Consumers also reach the broker through the advertised (proxy) address.
    proxy.stop_cutting();
    check_consumed(&broker.bootstrap(), topic, &values, &sent);
    println!("checked {RECORDS} values in {}", secs(started));
}
