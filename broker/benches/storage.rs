//! Micro-benchmarks of partition storage ([`sluice::storage`]) on one record batch of 16
//! uncompressed records of 1 KiB each (about 16 KiB), encoded with kafka-protocol in setup.
//! kafka-protocol is built without its compression features, so there is no compressed case.
//!
//! - `storage/validate`: `batch::validate_record_set` (header checks, CRC-32C, walking the
//!   records), pure CPU.
//! - `storage/append_page_cache`: `Log::append` with `flush_messages = i64::MAX`, so nothing is
//!   fsynced: this is validation, offset assignment and one `write` into the page cache. The log
//!   is replaced by an empty one (untimed) every 64 MiB so the benchmark's disk use stays bounded.
//! - `storage/append_fsync`: `Log::append` then `Log::flush_to`, the group commit a produce with
//!   the default `flush.messages = 1` waits for. One append per fsync, so this measures the disk
//!   under the temporary directory (one `fdatasync` of the active segment, plus the unsynced
//!   write of the recovery point), not Sluice; it takes 10 samples instead of 100.
//! - `storage/read`: `Log::read` of 1 MiB from the middle of a 64 MiB log whose pages are all
//!   in the page cache (just written, then read once): index lookup, header scan and one copy out
//!   of the page cache.
//!
//! Throughput is in record-set bytes. Logs live under a fresh temporary directory (`$TMPDIR`);
//! on tmpfs the fsync figure means nothing.
//!
//! Run: `cargo bench -p sluice --bench storage` (add `-- --warm-up-time 1 --measurement-time 3`
//! for a quicker pass, or `-- --test` to run each function once).

// Setup that cannot build its input has nothing to measure: stopping there is the right answer.
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Bencher, Criterion, SamplingMode, Throughput};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use sluice::storage::batch::validate_record_set;
use sluice::storage::{Log, LogConfig};

const RECORDS_PER_BATCH: i64 = 16;
const RECORD_VALUE_BYTES: usize = 1024;
/// Size of the log `storage/read` reads from, and of the logs appends fill before replacement.
const LOG_BYTES: usize = 64 << 20;
const READ_BYTES: usize = 1 << 20;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0))
}

/// One uncompressed v2 batch of 16 records with 1 KiB values that do not repeat (so a
/// compressed variant, if one is ever added, would not shrink to nothing).
fn record_batch() -> Vec<u8> {
    let timestamp = now_ms();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let records: Vec<Record> = (0..RECORDS_PER_BATCH)
        .map(|i| {
            let value: Vec<u8> = (0..RECORD_VALUE_BYTES)
                .map(|_| {
                    // xorshift64: cheap, deterministic filler.
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state.to_le_bytes()[0]
                })
                .collect();
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i,
                // Offset and sequence in step keep kafka-protocol from starting a new batch.
                sequence: i32::try_from(i).unwrap_or(0),
                timestamp,
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(value)),
                headers: Default::default(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("bench setup: batch encodes");
    buf.to_vec()
}

/// A log that acknowledges without fsync (`flush.messages` never reached).
fn page_cache_config() -> LogConfig {
    LogConfig { flush_messages: i64::MAX, ..LogConfig::default() }
}

/// Opens an empty log in a new subdirectory of `root`.
fn open_log(root: &Path, generation: &mut u32) -> Log {
    *generation += 1;
    Log::open(&root.join(format!("bench-{generation}")), page_cache_config(), now_ms()).expect("bench setup: log opens")
}

/// Times `iters` appends (each followed by `flush_to` when `fsync`), replacing the log with an
/// empty one, outside the timed part, whenever it reaches [`LOG_BYTES`].
fn append_loop(b: &mut Bencher<'_>, root: &Path, batch: &[u8], fsync: bool) {
    let mut generation = 0;
    let mut log = open_log(root, &mut generation);
    let mut records = batch.to_vec();
    let batches_per_log = (LOG_BYTES / batch.len()).max(1);
    let mut in_log = 0;
    b.iter_custom(|iters| {
        let mut elapsed = Duration::ZERO;
        let mut remaining = iters;
        while remaining > 0 {
            if in_log == batches_per_log {
                log.delete().expect("bench: old log deleted");
                log = open_log(root, &mut generation);
                in_log = 0;
            }
            let run = remaining.min((batches_per_log - in_log) as u64);
            let now = now_ms();
            let start = Instant::now();
            for _ in 0..run {
                let info = log.append(&mut records, 0, now).expect("bench: append");
                if fsync {
                    log.flush_to(info.last_offset + 1).expect("bench: fsync");
                }
                black_box(info);
            }
            elapsed += start.elapsed();
            in_log += run as usize;
            remaining -= run;
        }
        elapsed
    });
    log.delete().expect("bench: log deleted");
}

fn bench_validate(c: &mut Criterion, batch: &[u8]) {
    let max_message_bytes = LogConfig::default().max_message_bytes;
    let mut group = c.benchmark_group("storage/validate");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("16x1KiB_uncompressed", |b| {
        b.iter(|| validate_record_set(black_box(batch), max_message_bytes).expect("valid batch"));
    });
    group.finish();
}

fn bench_append(c: &mut Criterion, root: &Path, batch: &[u8]) {
    let mut group = c.benchmark_group("storage/append_page_cache");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("16x1KiB", |b| append_loop(b, root, batch, false));
    group.finish();

    let mut group = c.benchmark_group("storage/append_fsync");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.bench_function("16x1KiB", |b| append_loop(b, root, batch, true));
    group.finish();
}

fn bench_read(c: &mut Criterion, root: &Path, batch: &[u8]) {
    let log = Log::open(&root.join("read"), page_cache_config(), now_ms()).expect("bench setup: log opens");
    let mut records = batch.to_vec();
    let now = now_ms();
    for _ in 0..(LOG_BYTES / batch.len()).max(1) {
        log.append(&mut records, 0, now).expect("bench setup: append");
    }
    // On disk, so writeback does not run under the reads; the pages stay cached.
    log.flush().expect("bench setup: fsync");
    let middle = log.log_end_offset() / 2;
    // A lone replica: everything appended is committed (the replica layer does this in the broker).
    let high_watermark = log.set_high_watermark(log.log_end_offset());
    let read = || log.read(middle, READ_BYTES, high_watermark, false).expect("bench: read");
    let bytes = read().len();
    assert!(bytes > READ_BYTES / 2 && bytes <= READ_BYTES, "read returns close to 1 MiB of whole batches, got {bytes}");

    let mut group = c.benchmark_group("storage/read");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("1MiB_from_middle_of_64MiB", |b| b.iter(read));
    group.finish();
    log.delete().expect("bench: log deleted");
}

fn storage(c: &mut Criterion) {
    let batch = record_batch();
    let root = tempfile::tempdir().expect("bench setup: temporary directory");
    bench_validate(c, &batch);
    bench_append(c, root.path(), &batch);
    bench_read(c, root.path(), &batch);
}

criterion_group!(benches, storage);
criterion_main!(benches);
