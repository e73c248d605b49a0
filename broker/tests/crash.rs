//! Durability across crashes: an acks=all producer runs flat out while the broker is killed
//! with SIGKILL at a seeded random moment; after each restart every acknowledged record is at
//! its acknowledged offset exactly once, and nothing is duplicated. Then a torn write (the
//! last batch of a partition cut in half on disk) must be dropped on recovery, and a clean
//! stop must lose nothing.

// A test fails by panicking: expect/unwrap/panic are its assertions.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
mod rdkafka_util;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer, PurgeConfig};

use common::rng::Rng;
use common::{segment_batches, Broker};
use rdkafka_util::{assert_contiguous, await_deliveries, consume_all, create_topic, producer, secs, segment_files};

const PARTITIONS: i32 = 4;
const TOPIC: &str = "durable";
const SEGMENT_BYTES: &str = "262144";

/// What the test knows: every acknowledged record by partition and offset, and every value
/// ever sent (acknowledged or not), so consumed data can be told apart from garbage.
/// Order violations are collected, not asserted at once, so that the durability checks still
/// run; each test asserts there were none at its end.
#[derive(Default)]
struct Ledger {
    acked: Vec<BTreeMap<i64, String>>,
    sent: HashSet<String>,
    inversions: Vec<String>,
}

impl Ledger {
    fn new() -> Self {
        Ledger { acked: (0..PARTITIONS).map(|_| BTreeMap::new()).collect(), ..Ledger::default() }
    }

    /// A producer's records land in a partition in the order it sent them (no retries here).
    fn assert_send_order_kept(&self) {
        assert!(
            self.inversions.is_empty(),
            "{} times a record was acknowledged at a lower offset than the record sent before it; first: {:?}",
            self.inversions.len(),
            &self.inversions[..self.inversions.len().min(3)]
        );
    }

    fn acked_count(&self) -> usize {
        self.acked.iter().map(BTreeMap::len).sum()
    }
}

fn record_value(cycle: usize, seq: u64) -> String {
    format!("cycle-{cycle}-seq-{seq:09}-{}", "x".repeat(60 + (seq % 40) as usize))
}

/// A producer that never retries on its own: a retried send after a lost response could
/// legitimately be appended twice, and this test counts every duplicate as a broker bug.
fn strict_producer(broker: &Broker) -> FutureProducer {
    producer(
        &broker.bootstrap(),
        &[
            ("acks", "all"),
            ("linger.ms", "2"),
            ("message.send.max.retries", "0"),
            ("queue.buffering.max.messages", "50000"),
            ("message.timeout.ms", "30000"),
        ],
    )
}

/// Sends values of `cycle` round-robin over the partitions as fast as the producer takes them
/// until `stop`; returns each value with its delivery future.
fn produce_flat_out(
    producer: FutureProducer,
    cycle: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<(i32, String, rdkafka::producer::DeliveryFuture)>> {
    std::thread::spawn(move || {
        let mut sent = Vec::new();
        let mut seq = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let partition = (seq % PARTITIONS as u64) as i32;
            let value = record_value(cycle, seq);
            let record = FutureRecord::<(), str>::to(TOPIC).partition(partition).payload(&value);
            match producer.send_result(record) {
                Ok(f) => {
                    sent.push((partition, value, f));
                    seq += 1;
                }
                // The local queue is full: back off briefly, this is rate limiting, not a wait.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err((e, _)) => panic!("enqueue failed: {e}"),
            }
        }
        sent
    })
}

/// Records the outcome of every send in `ledger`; returns, in send order, the partition and
/// acknowledged offset of each send (`None` if it failed). Notes in `ledger.inversions` each
/// time a partition's acknowledged offsets do not rise in send order.
fn settle(ledger: &mut Ledger, sent: Vec<(i32, String, rdkafka::producer::DeliveryFuture)>) -> Vec<Option<(i32, i64)>> {
    let (meta, futures): (Vec<_>, Vec<_>) = sent.into_iter().map(|(p, v, f)| ((p, v), f)).unzip();
    let results = await_deliveries(futures, Duration::from_secs(60));
    let mut last_acked: HashMap<i32, (i64, String)> = HashMap::new();
    let mut outcomes = Vec::with_capacity(meta.len());
    for ((partition, value), result) in meta.into_iter().zip(results) {
        ledger.sent.insert(value.clone());
        match result {
            Ok(d) => {
                assert_eq!(d.partition, partition);
                if let Some((prev, prev_value)) = last_acked.insert(partition, (d.offset, value.clone())) {
                    if d.offset < prev {
                        ledger.inversions.push(format!(
                            "{TOPIC}-{partition}: {} was sent after {} but acknowledged at offset {}, before its {prev}",
                            &value[..25],
                            &prev_value[..25],
                            d.offset
                        ));
                    }
                }
                let old = ledger.acked[partition as usize].insert(d.offset, value);
                assert!(old.is_none(), "{TOPIC}-{partition}: offset {} acknowledged twice", d.offset);
                outcomes.push(Some((partition, d.offset)));
            }
            Err(_) => outcomes.push(None),
        }
    }
    outcomes
}

/// Consumes everything and checks it against the ledger: contiguous offsets, every
/// acknowledged value at its offset, every value one we sent and present once.
/// Returns the high watermarks.
fn verify(broker: &Broker, ledger: &Ledger, label: &str) -> Vec<i64> {
    let consumed = consume_all(&broker.bootstrap(), TOPIC, PARTITIONS, Duration::from_secs(60));
    let mut seen: HashMap<&[u8], (usize, i64)> = HashMap::new();
    let mut highs = Vec::new();
    let mut unacked_present = 0usize;
    for (p, messages) in consumed.iter().enumerate() {
        let high = messages.len() as i64;
        assert_contiguous(TOPIC, p, messages, high);
        for m in messages {
            let value = m.payload().unwrap_or_default();
            let text = String::from_utf8_lossy(value);
            assert!(
                ledger.sent.contains(text.as_ref()),
                "{label}: {TOPIC}-{p} offset {} holds {text:?}, never sent",
                m.offset()
            );
            if let Some(first) = seen.insert(value, (p, m.offset())) {
                panic!("{label}: value {text:?} at {first:?} and again at ({p}, {})", m.offset());
            }
            if !ledger.acked[p].contains_key(&m.offset()) {
                unacked_present += 1;
            }
        }
        for (&offset, value) in &ledger.acked[p] {
            let found = messages.get(offset as usize).and_then(|m| m.payload());
            assert_eq!(
                found,
                Some(value.as_bytes()),
                "{label}: {TOPIC}-{p}: acknowledged {value:?} missing at offset {offset} (high watermark {high})"
            );
        }
        highs.push(high);
    }
    println!(
        "{label}: high watermarks {highs:?}; {} acknowledged all present; {unacked_present} unacknowledged present",
        ledger.acked_count()
    );
    highs
}

fn newest_segment(dir: &Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "log")
                && p.file_stem()
                    .is_some_and(|s| s.len() == 20 && s.to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    logs.sort();
    logs.pop().unwrap_or_else(|| panic!("no segment in {}", dir.display()))
}

/// Runs one crash cycle: produce flat out, SIGKILL after a random delay, settle, restart.
fn crash_cycle(broker: &mut Broker, ledger: &mut Ledger, rng: &mut Rng, cycle: usize) {
    let producer = strict_producer(broker);
    let stop = Arc::new(AtomicBool::new(false));
    let worker = produce_flat_out(producer.clone(), cycle, Arc::clone(&stop));
    let delay = Duration::from_millis(100 + rng.below(700));
    // The random delay is the crash schedule under test, not a wait for a condition.
    std::thread::sleep(delay);
    broker.kill9();
    stop.store(true, Ordering::SeqCst);
    let sent = worker.join().expect("producer thread");
    producer.purge(PurgeConfig::default().queue().inflight());
    let total = sent.len();
    let acked = settle(ledger, sent).iter().flatten().count();
    let failed = total - acked;
    drop(producer);
    println!("cycle {cycle}: killed after {delay:?}; {total} sent, {acked} acknowledged, {failed} not");
    let restarted = Instant::now();
    broker.restart();
    println!("cycle {cycle}: restarted in {}", secs(restarted));
    verify(broker, ledger, &format!("after crash {cycle}"));
}

/// Produces `count` values of `cycle` and waits until all are acknowledged.
fn produce_acked(broker: &Broker, ledger: &mut Ledger, cycle: usize, count: u64) -> Vec<(i32, i64)> {
    let producer = strict_producer(broker);
    let mut sent = Vec::new();
    for seq in 0..count {
        let partition = (seq % PARTITIONS as u64) as i32;
        let value = record_value(cycle, seq);
        let record = FutureRecord::<(), str>::to(TOPIC).partition(partition).payload(&value);
        let future = producer.send_result(record).unwrap_or_else(|(e, _)| panic!("enqueue: {e}"));
        sent.push((partition, value, future));
    }
    let outcomes = settle(ledger, sent);
    let failed = outcomes.iter().filter(|o| o.is_none()).count();
    assert_eq!(failed, 0, "cycle {cycle}: every one of {count} sends acknowledged");
    outcomes.into_iter().flatten().collect()
}

/// Fills the active segment of partition 0 with at least 3 small acknowledged batches, kills
/// the broker, and truncates that segment in the middle of its last batch. Forgets the
/// acknowledged records of the torn batch and returns (segment base offset, torn batch's base
/// offset).
fn tear_last_batch(broker: &mut Broker, ledger: &mut Ledger) -> (i64, i64) {
    let partition_dir = broker.data_dir.join(format!("{TOPIC}-0"));
    let batches_in_active =
        || segment_batches(&std::fs::read(newest_segment(&partition_dir)).expect("read segment")).len();
    for round in 0.. {
        assert!(round < 50, "the active segment of {TOPIC}-0 never held 3 batches");
        produce_acked(broker, ledger, 5 + round, 40);
        if batches_in_active() >= 3 {
            break;
        }
    }
    broker.kill9();
    let segment = newest_segment(&partition_dir);
    let bytes = std::fs::read(&segment).expect("read segment");
    let spans = segment_batches(&bytes);
    let last = *spans.last().unwrap_or_else(|| panic!("no batch in {}", segment.display()));
    assert_eq!(
        last.position + last.size,
        bytes.len() as u64,
        "{}: batches should end at the file's end",
        segment.display()
    );
    let cut_at = last.position + last.size / 2;
    println!(
        "tearing {}: {} batches, last at {} ({} bytes, offsets {}..={}); truncating {} -> {cut_at}",
        segment.display(),
        spans.len(),
        last.position,
        last.size,
        last.base_offset,
        last.base_offset + i64::from(last.last_offset_delta),
        bytes.len()
    );
    std::fs::OpenOptions::new().write(true).open(&segment).and_then(|f| f.set_len(cut_at)).expect("truncate segment");
    let lost: Vec<i64> = ledger.acked[0].range(last.base_offset..).map(|(o, _)| *o).collect();
    for offset in &lost {
        ledger.acked[0].remove(offset);
    }
    println!("the torn batch held {} acknowledged records of {TOPIC}-0", lost.len());
    let segment_base =
        segment.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse().ok()).expect("20-digit name");
    (segment_base, last.base_offset)
}

#[test]
fn acknowledged_records_survive_kill9_and_torn_tail_is_dropped() {
    let started = Instant::now();
    let mut rng = Rng::from_env_or_clock();
    let mut broker = Broker::start(&["--set", &format!("log.segment.bytes={SEGMENT_BYTES}")]);
    create_topic(&broker.bootstrap(), TOPIC, PARTITIONS, &[]);
    let mut ledger = Ledger::new();
    for cycle in 0..5 {
        crash_cycle(&mut broker, &mut ledger, &mut rng, cycle);
    }
    let segments: Vec<usize> = (0..PARTITIONS).map(|p| segment_files(&broker.data_dir, TOPIC, p).len()).collect();
    println!("after 5 crashes: segments per partition {segments:?}, {} acknowledged", ledger.acked_count());
    assert!(ledger.acked_count() > 0, "nothing was acknowledged in 5 cycles, so nothing was tested");

    let (segment_base, torn_base) = tear_last_batch(&mut broker, &mut ledger);
    let log_before = broker.log_text().len();
    broker.restart();
    let recovery_log = broker.log_text()[log_before..].to_string();
    let recovery_lines: Vec<&str> = recovery_log
        .lines()
        .filter(|l| {
            let l = l.to_lowercase();
            (l.contains("torn") || l.contains("truncat")) && l.contains(&segment_base.to_string())
        })
        .collect();
    println!("recovery log lines: {recovery_lines:#?}");
    assert!(
        !recovery_lines.is_empty(),
        "the broker should log that it cut segment {segment_base}'s torn tail; log:\n{recovery_log}"
    );
    let highs = verify(&broker, &ledger, "after torn write");
    assert_eq!(highs[0], torn_base, "{TOPIC}-0: the torn batch is gone, everything before it stays");

    let positions = produce_acked(&broker, &mut ledger, 100, 400);
    let first_new = positions.iter().find(|(p, _)| *p == 0).map(|(_, o)| *o);
    assert_eq!(first_new, Some(torn_base), "{TOPIC}-0: new records continue at the offset the torn batch had");
    verify(&broker, &ledger, "after producing past the torn write");
    println!("took {}", secs(started));
    ledger.assert_send_order_kept();
}

#[test]
fn clean_stop_and_restart_lose_nothing() {
    let started = Instant::now();
    let mut broker = Broker::start(&["--set", &format!("log.segment.bytes={SEGMENT_BYTES}")]);
    create_topic(&broker.bootstrap(), TOPIC, PARTITIONS, &[]);
    let mut ledger = Ledger::new();
    for cycle in 0..3 {
        produce_acked(&broker, &mut ledger, cycle, 5_000);
        let before = verify(&broker, &ledger, &format!("before stop {cycle}"));
        assert!(broker.stop(), "SIGTERM: the broker exits cleanly");
        broker.restart();
        let after = verify(&broker, &ledger, &format!("after clean restart {cycle}"));
        assert_eq!(before, after, "a clean restart keeps exactly what was there");
    }
    let expected: Vec<i64> = (0..PARTITIONS).map(|_| 3 * 5_000 / i64::from(PARTITIONS)).collect();
    assert_eq!(verify(&broker, &ledger, "final"), expected);
    println!("took {}", secs(started));
    ledger.assert_send_order_kept();
}
