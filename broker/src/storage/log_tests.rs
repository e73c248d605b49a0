//! Tests of `Log`: what a client would notice (every acknowledged batch comes back, in order,
//! exactly once, at the offsets it was given) across rolls, restarts, crashes and retention.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;

use super::super::batch::test_util::{fix_crc, TestBatch};
use super::super::leader_epoch::LEADER_EPOCH_FILE;
use super::*;

const NOW: i64 = 1_700_000_000_000;

fn small_config() -> LogConfig {
    LogConfig { segment_bytes: 1_000, index_interval_bytes: 150, ..LogConfig::default() }
}

fn open(dir: &Path, config: LogConfig) -> Log {
    Log::open(dir, config, NOW).unwrap()
}

fn append(log: &Log, batch: &TestBatch) -> AppendInfo {
    log.append(&mut batch.encode(), 0, NOW).unwrap()
}

fn append_n(log: &Log, batches: usize, records: usize) {
    for _ in 0..batches {
        append(log, &TestBatch::new(records));
    }
}

/// Headers of the batches in a read result, which must be whole, valid batches.
fn headers(bytes: &[u8]) -> Vec<BatchHeader> {
    batch::validate_record_set(bytes, i32::MAX).unwrap().into_iter().map(|b| b.header).collect()
}

fn bases(bytes: &[u8]) -> Vec<i64> {
    if bytes.is_empty() {
        return Vec::new();
    }
    headers(bytes).iter().map(|h| h.base_offset).collect()
}

fn read_all(log: &Log) -> Bytes {
    let start = log.log_start_offset();
    log.read(start, usize::MAX, i64::MAX, true).unwrap()
}

fn segment_count(dir: &Path) -> usize {
    checkpoint::list_offsets(dir, LOG_SUFFIX).unwrap().len()
}

fn active_log_file(dir: &Path) -> PathBuf {
    let last = *checkpoint::list_offsets(dir, LOG_SUFFIX).unwrap().last().unwrap();
    offset_file(dir, last, LOG_SUFFIX)
}

#[test]
fn log_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Log>();
}

#[test]
fn round_trip_across_segment_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    for i in 0..40 {
        let info = append(&log, &TestBatch::new(3));
        assert_eq!((info.base_offset, info.last_offset), (i * 3, i * 3 + 2));
        assert!(!info.duplicate);
        assert_eq!(info.log_append_time_ms, -1);
    }
    assert_eq!(log.log_end_offset(), 120);
    assert!(segment_count(dir.path()) > 4, "segments: {}", segment_count(dir.path()));
    let all = read_all(&log);
    assert_eq!(bases(&all), (0..40).map(|i| i * 3).collect::<Vec<_>>());
    for offset in 0..120 {
        let got = log.read(offset, 1, i64::MAX, true).unwrap();
        assert_eq!(bases(&got), vec![offset / 3 * 3], "fetch at {offset}");
    }
}

#[test]
fn read_inside_a_batch_returns_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    append_n(&log, 3, 5);
    let got = log.read(7, usize::MAX, i64::MAX, true).unwrap();
    assert_eq!(bases(&got), vec![5, 10]);
    assert_eq!(headers(&got)[0].record_count, 5);
}

#[test]
fn max_bytes_and_min_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    append_n(&log, 10, 2);
    let size = TestBatch::new(2).encode().len();
    assert_eq!(bases(&log.read(0, size - 1, i64::MAX, true).unwrap()), vec![0]);
    assert!(log.read(0, size - 1, i64::MAX, false).unwrap().is_empty());
    assert_eq!(bases(&log.read(0, 2 * size + 1, i64::MAX, false).unwrap()), vec![0, 2]);
    // Spans segments (segment_bytes 1000 holds fewer than 10 of these batches).
    assert_eq!(bases(&log.read(0, 10 * size, i64::MAX, false).unwrap()).len(), 10);
    // Never at or past max_offset.
    assert_eq!(bases(&log.read(0, usize::MAX, 5, true).unwrap()), vec![0, 2, 4]);
    assert!(log.read(6, usize::MAX, 6, true).unwrap().is_empty());
}

#[test]
fn offset_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    append_n(&log, 2, 2);
    assert!(log.read(4, 100, i64::MAX, true).unwrap().is_empty());
    let err = log.read(5, 100, i64::MAX, true).unwrap_err();
    assert!(matches!(err, StorageError::OffsetOutOfRange { offset: 5, log_start: 0, log_end: 4 }), "{err}");
    assert!(matches!(log.read(-1, 100, i64::MAX, true), Err(StorageError::OffsetOutOfRange { .. })));
}

#[test]
fn invalid_sets_are_refused_and_consume_no_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig { max_message_bytes: 200, ..LogConfig::default() });
    let mut big = TestBatch::new(20).encode();
    assert!(matches!(log.append(&mut big, 0, NOW), Err(StorageError::MessageTooLarge { .. })));
    let mut bad = TestBatch::new(2).encode();
    bad[70] ^= 1;
    assert!(matches!(log.append(&mut bad, 0, NOW), Err(StorageError::CorruptMessage)));
    assert_eq!(append(&log, &TestBatch::new(1)).base_offset, 0);
}

#[test]
fn reopen_after_close_trusts_the_marker() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    append_n(&log, 30, 2);
    let before = read_all(&log);
    log.close().unwrap();
    assert!(log.append(&mut TestBatch::new(1).encode(), 0, NOW).is_err(), "closed log takes no appends");
    drop(log);
    assert!(dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
    let log = open(dir.path(), small_config());
    assert!(!dir.path().join(CLEAN_SHUTDOWN_FILE).exists(), "marker is consumed on open");
    assert_eq!(log.log_end_offset(), 60);
    assert_eq!(read_all(&log), before);
    assert_eq!(bases(&log.read(33, 1, i64::MAX, true).unwrap()), vec![32]);
    assert_eq!(append(&log, &TestBatch::new(2)).base_offset, 60);
}

#[test]
fn crash_with_garbage_tail_recovers_everything_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    append_n(&log, 25, 2);
    log.flush().unwrap();
    append_n(&log, 5, 2); // not flushed: still in the page cache, survives a process crash
    let before = read_all(&log);
    drop(log); // no close: a crash
    let mut f = OpenOptions::new().append(true).open(active_log_file(dir.path())).unwrap();
    f.write_all(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 9]).unwrap();
    drop(f);
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_end_offset(), 60);
    assert_eq!(read_all(&log), before);
    assert_eq!(append(&log, &TestBatch::new(1)).base_offset, 60);
}

#[test]
fn crash_with_torn_batch_truncates_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    append_n(&log, 20, 2);
    let before = read_all(&log);
    append(&log, &TestBatch::new(4)); // offsets 40..=43, about to be torn
    drop(log);
    let path = active_log_file(dir.path());
    let len = std::fs::metadata(&path).unwrap().len();
    OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 10).unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_end_offset(), 40);
    assert_eq!(read_all(&log), before);
    let info = append(&log, &TestBatch::new(3));
    assert_eq!((info.base_offset, info.last_offset), (40, 42));
    assert_eq!(bases(&log.read(39, usize::MAX, i64::MAX, true).unwrap()), vec![38, 40]);
}

#[test]
fn crash_with_corrupt_middle_segment_drops_everything_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    append_n(&log, 30, 2);
    drop(log);
    let logs = checkpoint::list_offsets(dir.path(), LOG_SUFFIX).unwrap();
    assert!(logs.len() >= 3);
    // Flip a byte in the second segment's first batch (covered by its CRC).
    let second = offset_file(dir.path(), logs[1], LOG_SUFFIX);
    let f = OpenOptions::new().read(true).write(true).open(&second).unwrap();
    f.write_all_at(&[0xff], 70).unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_end_offset(), logs[1]);
    assert_eq!(segment_count(dir.path()), 2);
    assert_eq!(append(&log, &TestBatch::new(1)).base_offset, logs[1]);
}

#[test]
fn offsets_by_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let mut t = TestBatch::new(4);
    t.base_timestamp = 1_000;
    t.timestamp_deltas = vec![0, 50, 20, 10]; // 1000, 1050, 1020, 1010
    append(&log, &t); // offsets 0..=3
    let mut t = TestBatch::new(2);
    t.base_timestamp = 2_000;
    t.codec = 4; // compressed: records opaque
    append(&log, &t); // offsets 4..=5, max 2001
    append_n(&log, 10, 2); // timestamps 1000..=1001, 6..=25
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 1_000)));
    assert_eq!(log.offset_for_timestamp(1_015).unwrap(), Some((1, 1_050)));
    assert_eq!(log.offset_for_timestamp(1_051).unwrap(), Some((4, 2_000)));
    assert_eq!(log.offset_for_timestamp(2_001).unwrap(), Some((4, 2_001)));
    assert_eq!(log.offset_for_timestamp(2_002).unwrap(), None);
    assert_eq!(log.max_timestamp(), Some((5, 2_001)));
    let mut t = TestBatch::new(3);
    t.base_timestamp = 5_000;
    t.timestamp_deltas = vec![0, 9, 3];
    append(&log, &t); // offsets 26..=28
    assert_eq!(log.max_timestamp(), Some((27, 5_009)));
    assert_eq!(log.offset_for_timestamp(5_004).unwrap(), Some((27, 5_009)));
}

#[test]
fn log_append_time() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { message_timestamp_type_log_append: true, ..LogConfig::default() };
    let log = open(dir.path(), config);
    let info = log.append(&mut TestBatch::new(3).encode(), 0, 77_000).unwrap();
    assert_eq!(info.log_append_time_ms, 77_000);
    let h = headers(&read_all(&log))[0];
    assert!(h.is_log_append_time());
    assert_eq!(h.max_timestamp, 77_000);
    assert_eq!(log.offset_for_timestamp(50_000).unwrap(), Some((0, 77_000)));
    assert_eq!(log.max_timestamp(), Some((0, 77_000)));
}

#[test]
fn leader_epoch_is_written_into_batches() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    log.append(&mut TestBatch::new(1).encode(), 9, NOW).unwrap();
    assert_eq!(headers(&read_all(&log))[0].partition_leader_epoch, 9);
}

fn batch_at(timestamp: i64) -> TestBatch {
    let mut t = TestBatch::new(2);
    t.base_timestamp = timestamp;
    t
}

#[test]
fn retention_by_time_moves_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { retention_ms: 1_000, ..small_config() };
    let log = open(dir.path(), config);
    for _ in 0..20 {
        append(&log, &batch_at(NOW - 10_000));
    }
    for _ in 0..20 {
        append(&log, &batch_at(NOW));
    }
    assert_eq!(log.apply_retention(NOW).unwrap(), 0, "nothing is deleted above the high watermark");
    log.set_high_watermark(log.log_end_offset());
    let segments = segment_count(dir.path());
    let deleted = log.apply_retention(NOW).unwrap();
    assert!(deleted >= 2, "deleted {deleted}");
    assert_eq!(segment_count(dir.path()), segments - deleted);
    let start = log.log_start_offset();
    assert!(start > 0 && start <= 40, "log start {start}");
    assert!(matches!(log.read(0, 100, i64::MAX, true), Err(StorageError::OffsetOutOfRange { .. })));
    assert_eq!(bases(&log.read(start, 1, i64::MAX, true).unwrap()), vec![start]);
    // Every segment left holds something recent, or is after one that does.
    assert!(headers(&read_all(&log)).iter().all(|h| h.max_timestamp >= NOW - 10_000));
    drop(log); // crash: the log start survives anyway
    let log = open(dir.path(), config);
    assert_eq!(log.log_start_offset(), start);
    assert_eq!(log.apply_retention(NOW).unwrap(), 0);
}

#[test]
fn retention_by_bytes_keeps_at_least_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { retention_bytes: 2_500, retention_ms: -1, ..small_config() };
    let log = open(dir.path(), config);
    append_n(&log, 60, 2);
    log.set_high_watermark(log.log_end_offset());
    let deleted = log.apply_retention(NOW).unwrap();
    assert!(deleted > 0);
    let remaining: u64 = checkpoint::list_offsets(dir.path(), LOG_SUFFIX)
        .unwrap()
        .iter()
        .map(|&b| std::fs::metadata(offset_file(dir.path(), b, LOG_SUFFIX)).unwrap().len())
        .sum();
    assert!((2_500..3_500).contains(&remaining), "remaining {remaining}");
    let start = log.log_start_offset();
    assert_eq!(bases(&read_all(&log))[0], start);
    log.close().unwrap();
    drop(log);
    assert_eq!(open(dir.path(), config).log_start_offset(), start);
}

#[test]
fn roll_if_due_rolls_an_idle_segment() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { segment_ms: 1_000, ..LogConfig::default() };
    let log = open(dir.path(), config);
    assert!(!log.roll_if_due(NOW + 5_000).unwrap(), "an empty segment never rolls");
    append(&log, &batch_at(NOW));
    assert!(!log.roll_if_due(NOW + 500).unwrap());
    assert!(log.roll_if_due(NOW + 5_000).unwrap());
    assert_eq!(segment_count(dir.path()), 2);
    // A batch whose timestamp is segment.ms past the first batch's rolls on append.
    append(&log, &batch_at(NOW + 6_000));
    append(&log, &batch_at(NOW + 8_000));
    assert_eq!(segment_count(dir.path()), 3);
}

fn idem(producer_id: i64, epoch: i16, sequence: i32, records: usize) -> TestBatch {
    TestBatch::new(records).idempotent(producer_id, epoch, sequence)
}

#[test]
fn idempotent_duplicate_gap_and_stale_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    append_n(&log, 1, 1); // offset 0, no producer id
    let first = append(&log, &idem(7, 0, 0, 3));
    assert_eq!((first.base_offset, first.last_offset), (1, 3));
    append(&log, &idem(7, 0, 3, 2));
    let before = read_all(&log);
    let dup = append(&log, &idem(7, 0, 0, 3));
    assert!(dup.duplicate);
    assert_eq!((dup.base_offset, dup.last_offset), (1, 3));
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(read_all(&log), before, "a duplicate writes nothing");
    let gap = log.append(&mut idem(7, 0, 9, 1).encode(), 0, NOW).unwrap_err();
    assert!(matches!(gap, StorageError::OutOfOrderSequence { last_sequence: 4, .. }), "{gap}");
    append(&log, &idem(7, 1, 0, 1));
    let stale = log.append(&mut idem(7, 0, 5, 1).encode(), 0, NOW).unwrap_err();
    assert!(matches!(stale, StorageError::InvalidProducerEpoch { current_epoch: 1, .. }), "{stale}");
    assert_eq!(log.log_end_offset(), 7);
}

fn check_producer_survived(log: &Log, next_offset: i64) {
    let dup = append(log, &idem(7, 0, 10, 2));
    assert!(dup.duplicate, "retry of the last batch is still a duplicate");
    assert!(log.append(&mut idem(7, 0, 20, 1).encode(), 0, NOW).is_err());
    let next = append(log, &idem(7, 0, 12, 1));
    assert_eq!(next.base_offset, next_offset);
}

fn write_producer_history(log: &Log) {
    for seq in (0..12).step_by(2) {
        append(log, &idem(7, 0, seq, 2));
        append_n(log, 2, 3);
    }
}

#[test]
fn producer_state_survives_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    write_producer_history(&log);
    let end = log.log_end_offset();
    log.close().unwrap();
    drop(log);
    check_producer_survived(&open(dir.path(), small_config()), end);
}

#[test]
fn producer_state_survives_crash() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    write_producer_history(&log);
    let end = log.log_end_offset();
    drop(log);
    check_producer_survived(&open(dir.path(), small_config()), end);
    // And with every snapshot gone: rebuilt from the log alone.
    for offset in checkpoint::list_offsets(dir.path(), SNAPSHOT_SUFFIX).unwrap() {
        std::fs::remove_file(offset_file(dir.path(), offset, SNAPSHOT_SUFFIX)).unwrap();
    }
    let log = open(dir.path(), small_config());
    assert_eq!(log.producer_last_sequence(7).unwrap(), Some((0, 12)));
}

#[test]
fn concurrent_appends_share_fsyncs() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path(), LogConfig { segment_bytes: 20_000, ..LogConfig::default() }));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut offsets = Vec::new();
                for _ in 0..PER_THREAD {
                    let info = log.append(&mut TestBatch::new(2).encode(), 0, NOW).unwrap();
                    log.flush_to(info.last_offset + 1).unwrap();
                    assert!(log.flushed_offset() > info.last_offset);
                    offsets.extend(info.base_offset..=info.last_offset);
                }
                offsets
            })
        })
        .collect();
    let mut all: Vec<i64> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    all.sort_unstable();
    let expected: Vec<i64> = (0..(THREADS * PER_THREAD * 2) as i64).collect();
    assert_eq!(all, expected, "offsets unique and contiguous");
    let calls = (THREADS * PER_THREAD) as u64;
    assert!(log.fsync_count() < calls, "{} fsyncs for {calls} flush_to calls", log.fsync_count());
    assert_eq!(bases(&read_all(&log)).len(), THREADS * PER_THREAD);
}

#[test]
fn maybe_flush_follows_flush_messages_and_flush_ms() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { flush_messages: 10, flush_ms: 1_000, ..LogConfig::default() };
    assert!(!config.durable_acks());
    let log = open(dir.path(), config);
    append_n(&log, 4, 2);
    assert!(!log.maybe_flush(NOW + 10).unwrap());
    assert_eq!(log.flushed_offset(), 0);
    append_n(&log, 1, 2);
    assert!(log.maybe_flush(NOW + 20).unwrap(), "10 unflushed records");
    assert_eq!(log.flushed_offset(), 10);
    append_n(&log, 1, 1);
    assert!(!log.maybe_flush(NOW + 30).unwrap());
    assert!(log.maybe_flush(NOW + 1_100).unwrap(), "flush.ms elapsed");
    assert_eq!(log.flushed_offset(), 11);
}

#[test]
fn high_watermark_moves_only_when_set_and_stays_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    append_n(&log, 3, 2);
    assert_eq!(log.high_watermark(), 0, "append leaves the high watermark to the replica layer");
    assert_eq!(log.set_high_watermark(2), 2);
    assert_eq!(bases(&log.read(0, usize::MAX, log.high_watermark(), true).unwrap()), vec![0]);
    assert_eq!(log.set_high_watermark(100), 6, "clamped to the log end, no panic");
    assert_eq!(log.high_watermark(), 6);
    assert_eq!(log.set_high_watermark(-5), 0, "clamped to the log start");
    append_n(&log, 1, 2);
    assert_eq!(log.high_watermark(), 0);
}

fn hw_file(dir: &Path) -> PathBuf {
    dir.join(HIGH_WATERMARK_FILE)
}

#[test]
fn high_watermark_checkpoint_survives_close_and_crash() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    append_n(&log, 10, 2);
    log.set_high_watermark(8);
    log.checkpoint_high_watermark().unwrap();
    assert_eq!(checkpoint::read_offset(&hw_file(dir.path())), Some(8));
    log.set_high_watermark(14);
    drop(log); // crash: the move to 14 was never checkpointed
    let log = open(dir.path(), small_config());
    assert_eq!((log.log_end_offset(), log.high_watermark()), (20, 8));
    assert!(log.read(0, usize::MAX, log.high_watermark(), true).unwrap().len() < read_all(&log).len());
    log.set_high_watermark(18);
    log.close().unwrap();
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(log.high_watermark(), 18, "close writes it");
    // Writing again only when it changed: a removed file stays removed.
    std::fs::remove_file(hw_file(dir.path())).unwrap();
    log.checkpoint_high_watermark().unwrap();
    assert!(!hw_file(dir.path()).exists());
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(log.high_watermark(), 20, "no checkpoint (older directory): the log end");
}

#[test]
fn high_watermark_checkpoint_is_clamped_or_distrusted_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    append_n(&log, 10, 2);
    log.set_high_watermark(20);
    log.checkpoint_high_watermark().unwrap();
    drop(log);
    // A crash lost the tail the checkpoint covered: the high watermark stops at the log end.
    let path = active_log_file(dir.path());
    let len = std::fs::metadata(&path).unwrap().len();
    OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 3).unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!((log.log_end_offset(), log.high_watermark()), (18, 18));
    drop(log);
    std::fs::write(hw_file(dir.path()), [7u8; 16]).unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.high_watermark(), 0, "a damaged checkpoint holds the high watermark at the log start");
}

fn epoch_file(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(LEADER_EPOCH_FILE)).unwrap()
}

fn append_at_epoch(log: &Log, epoch: i32, batches: usize) {
    for _ in 0..batches {
        log.append(&mut TestBatch::new(2).encode(), epoch, NOW).unwrap();
    }
}

#[test]
fn leader_appends_fill_the_epoch_cache_and_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.latest_epoch(), None);
    assert_eq!(log.end_offset_for_epoch(0), (-1, -1));
    assert!(!dir.path().join(LEADER_EPOCH_FILE).exists(), "nothing to save yet");
    append_at_epoch(&log, 0, 3); // 0..=5
    append_at_epoch(&log, 2, 4); // 6..=13
    append_at_epoch(&log, 5, 2); // 14..=17
    assert_eq!(
        epoch_file(dir.path()),
        "0
3
0 0
2 6
5 14
"
    );
    assert_eq!(log.latest_epoch(), Some(5));
    assert_eq!(log.end_offset_for_epoch(5), (5, 18));
    assert_eq!(log.end_offset_for_epoch(2), (2, 14));
    assert_eq!(log.end_offset_for_epoch(3), (2, 14));
    assert_eq!(log.end_offset_for_epoch(1), (0, 6));
    assert_eq!(log.end_offset_for_epoch(6), (-1, -1));
    assert_eq!(log.end_offset_for_epoch(-1), (-1, -1));
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(log.end_offset_for_epoch(3), (2, 14));
    assert_eq!(log.end_offset_for_epoch(5), (5, 18));
    assert_eq!(
        epoch_file(dir.path()),
        "0
3
0 0
2 6
5 14
"
    );
}

#[test]
fn epoch_cache_is_rebuilt_from_the_batches_when_its_file_is_missing_or_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    append_at_epoch(&log, 1, 5);
    append_at_epoch(&log, 4, 20);
    log.close().unwrap();
    drop(log);
    let expected = "0
2
1 0
4 10
";
    assert_eq!(epoch_file(dir.path()), expected);
    std::fs::remove_file(dir.path().join(LEADER_EPOCH_FILE)).unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(epoch_file(dir.path()), expected, "rebuilt and saved");
    assert_eq!(log.end_offset_for_epoch(1), (1, 10));
    drop(log);
    std::fs::write(
        dir.path().join(LEADER_EPOCH_FILE),
        "0
5
1 0
",
    )
    .unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(epoch_file(dir.path()), expected);
    assert_eq!(log.latest_epoch(), Some(4));
}

#[test]
fn epoch_entries_past_a_crash_lost_tail_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    append_at_epoch(&log, 3, 4); // 0..=7
    append_at_epoch(&log, 7, 1); // 8..=9, about to be torn
    drop(log);
    assert_eq!(
        epoch_file(dir.path()),
        "0
2
3 0
7 8
"
    );
    let path = active_log_file(dir.path());
    let len = std::fs::metadata(&path).unwrap().len();
    OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 5).unwrap();
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(log.log_end_offset(), 8);
    assert_eq!(log.latest_epoch(), Some(3));
    assert_eq!(log.end_offset_for_epoch(3), (3, 8));
    assert_eq!(
        epoch_file(dir.path()),
        "0
1
3 0
"
    );
    append_at_epoch(&log, 8, 1);
    assert_eq!(
        epoch_file(dir.path()),
        "0
2
3 0
8 8
"
    );
}

#[test]
fn retention_moves_the_first_epoch_up_to_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { retention_bytes: 1_500, retention_ms: -1, ..small_config() };
    let log = open(dir.path(), config);
    append_at_epoch(&log, 1, 10); // 0..=19
    append_at_epoch(&log, 2, 30); // 20..=79
    log.set_high_watermark(log.log_end_offset());
    assert!(log.apply_retention(NOW).unwrap() > 0);
    let start = log.log_start_offset();
    assert!(start > 20, "log start {start}");
    assert_eq!(
        epoch_file(dir.path()),
        format!(
            "0
1
2 {start}
"
        )
    );
    assert_eq!(log.end_offset_for_epoch(1), (1, start), "older epochs now end at the first kept offset");
    drop(log);
    let log = open(dir.path(), config);
    assert_eq!(log.end_offset_for_epoch(2), (2, 80));
    assert_eq!(log.end_offset_for_epoch(1), (1, start));
}

/// A compressed batch (records never walked) claiming `records` records.
fn claiming(records: i32) -> Vec<u8> {
    let mut t = TestBatch::new(1);
    t.codec = 4;
    let mut b = t.encode();
    b[23..27].copy_from_slice(&(records - 1).to_be_bytes());
    b[57..61].copy_from_slice(&records.to_be_bytes());
    fix_crc(&mut b);
    b
}

#[test]
fn a_set_claiming_more_offsets_than_a_segment_indexes_is_refused_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    let mut set = Vec::new();
    for _ in 0..3 {
        set.extend_from_slice(&claiming(i32::MAX));
    }
    let err = log.append(&mut set, 0, NOW).unwrap_err();
    assert!(matches!(err, StorageError::InvalidRecord(_)), "{err}");
    assert_eq!(log.log_end_offset(), 0);
    let info = log.append(&mut claiming(i32::MAX), 0, NOW).unwrap();
    assert_eq!(info.last_offset, i64::from(i32::MAX) - 1);
    let info = log.append(&mut claiming(5), 0, NOW).unwrap();
    assert_eq!(info.base_offset, i64::from(i32::MAX));
    drop(log);
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(log.log_end_offset(), i64::from(i32::MAX) + 5);
}

#[test]
fn delete_removes_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topic-0");
    let log = open(&path, LogConfig::default());
    append_n(&log, 2, 2);
    log.delete().unwrap();
    assert!(!path.exists());
}

#[test]
fn reads_racing_appends_never_repeat_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path(), small_config()));
    append_n(&log, 3, 2);
    let writer = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || append_n(&log, 2_000, 2))
    };
    let mut reads = 0;
    while !writer.is_finished() || reads == 0 {
        // Up to the log end, as a follower's fetch reads (not stopped at the high watermark).
        let got = log.read(0, usize::MAX, i64::MAX, true).unwrap();
        let got = bases(&got);
        let expected: Vec<i64> = (0..got.len() as i64).map(|i| i * 2).collect();
        assert_eq!(got, expected, "batches contiguous, none twice");
        reads += 1;
    }
    writer.join().unwrap();
}
