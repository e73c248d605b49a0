//! Tests of the follower's side of `Log`: what a replica would notice. A follower holds exactly
//! the leader's bytes; after a truncation it holds exactly the leader's prefix, also after a
//! clean or a crash-style reopen; producer state and leader epochs follow the log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::super::super::batch::test_util::TestBatch;
use super::super::super::checkpoint::{self, HIGH_WATERMARK_FILE, LOG_START_FILE};
use super::super::super::leader_epoch::LEADER_EPOCH_FILE;
use super::super::super::segment::{offset_file, scan_headers, LOG_SUFFIX};
use super::super::{Log, SNAPSHOT_SUFFIX};
use crate::storage::{batch, AppendInfo, BatchHeader, LogConfig, StorageError};

const NOW: i64 = 1_700_000_000_000;

fn small_config() -> LogConfig {
    LogConfig { segment_bytes: 1_000, index_interval_bytes: 150, ..LogConfig::default() }
}

fn open(dir: &Path, config: LogConfig) -> Log {
    Log::open(dir, config, NOW).unwrap()
}

fn headers(bytes: &[u8]) -> Vec<BatchHeader> {
    if bytes.is_empty() {
        return Vec::new();
    }
    batch::validate_replicated_set(bytes).unwrap().into_iter().map(|b| b.header).collect()
}

fn bases(bytes: &[u8]) -> Vec<i64> {
    headers(bytes).iter().map(|h| h.base_offset).collect()
}

fn read_all(log: &Log) -> Bytes {
    log.read(log.log_start_offset(), usize::MAX, i64::MAX, true).unwrap()
}

/// The leader's batches below `upto`, as a follower would hold them.
fn read_below(log: &Log, upto: i64) -> Bytes {
    log.read(log.log_start_offset(), usize::MAX, upto, true).unwrap()
}

fn segment_bases(dir: &Path) -> Vec<i64> {
    checkpoint::list_offsets(dir, LOG_SUFFIX).unwrap()
}

/// Leader appends: `batches` batches of `records` records at `epoch`.
fn lead(log: &Log, epoch: i32, batches: usize, records: usize) {
    for _ in 0..batches {
        log.append(&mut TestBatch::new(records).encode(), epoch, NOW).unwrap();
    }
}

/// A follower's fetch loop: copies the leader's batches below `upto`, in fetches of about
/// 700 bytes, as a replica fetcher would.
fn replicate_upto(leader: &Log, follower: &Log, upto: i64) {
    while follower.log_end_offset() < upto.min(leader.log_end_offset()) {
        let fetched = leader.read(follower.log_end_offset(), 700, upto, true).unwrap();
        let mut bytes = fetched.to_vec();
        let info = follower.append_replicated(&mut bytes, NOW).unwrap().unwrap();
        assert_eq!(info.base_offset, bases(&fetched)[0]);
        assert!(!info.duplicate);
    }
}

fn replicate(leader: &Log, follower: &Log) {
    replicate_upto(leader, follower, i64::MAX);
}

#[test]
fn a_follower_holds_exactly_the_leaders_bytes() {
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = open(leader_dir.path(), LogConfig { segment_bytes: 5_000, ..LogConfig::default() });
    lead(&leader, 0, 5, 3);
    leader.append(&mut TestBatch::new(30).encode(), 2, NOW).unwrap(); // larger than the follower allows
    let mut old = TestBatch::new(2);
    old.base_timestamp = 5; // far outside any timestamp bound
    leader.append(&mut old.encode(), 2, NOW).unwrap();
    for seq in 0..4 {
        leader.append(&mut TestBatch::new(2).idempotent(9, 0, seq * 2).encode(), 4, NOW).unwrap();
    }
    // The follower's own config would refuse or rewrite these batches on a leader append.
    let strict = LogConfig {
        max_message_bytes: 200,
        message_timestamp_type_log_append: true,
        message_timestamp_before_max_ms: 1_000,
        ..small_config()
    };
    let follower = open(follower_dir.path(), strict);
    replicate(&leader, &follower);
    assert_eq!(read_all(&follower), read_all(&leader), "byte for byte");
    assert_eq!(follower.log_end_offset(), 55);
    assert_eq!(follower.high_watermark(), 0, "a replicated append does not move the high watermark");
    assert!(segment_bases(follower_dir.path()).len() > 2, "rolls as the leader path does");
    for epoch in -1..6 {
        assert_eq!(follower.end_offset_for_epoch(epoch), leader.end_offset_for_epoch(epoch), "epoch {epoch}");
    }
    assert_eq!(follower.producer_last_sequence(9).unwrap(), Some((0, 7)));
    let expected = read_all(&leader);
    drop(follower); // crash
    let follower = open(follower_dir.path(), strict);
    assert_eq!(read_all(&follower), expected);
    assert_eq!(follower.end_offset_for_epoch(2), (2, 47));
    follower.close().unwrap();
    drop(follower);
    let follower = open(follower_dir.path(), strict);
    assert_eq!(read_all(&follower), expected);
    for offset in 0..55 {
        let got = follower.read(offset, 1, i64::MAX, true).unwrap();
        assert_eq!(bases(&got), bases(&leader.read(offset, 1, i64::MAX, true).unwrap()), "fetch at {offset}");
    }
}

#[test]
fn a_set_that_does_not_continue_the_log_writes_nothing() {
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = open(leader_dir.path(), LogConfig::default());
    lead(&leader, 1, 4, 2); // batches at 0, 2, 4, 6
    let follower = open(follower_dir.path(), LogConfig::default());
    assert_eq!(follower.append_replicated(&mut [], NOW).unwrap(), None);
    let all = read_all(&leader).to_vec();
    let size = all.len() / 4;
    let gap = |follower: &Log, bytes: &[u8]| follower.append_replicated(&mut bytes.to_vec(), NOW).unwrap_err();
    let err = gap(&follower, &all[size..]);
    assert!(matches!(err, StorageError::NonContiguousAppend { expected: 0, found: 2 }), "{err}");
    // Batches 0 and 4: the second does not follow the first, so not even the first is written.
    let mut skipping = all[..size].to_vec();
    skipping.extend_from_slice(&all[2 * size..3 * size]);
    let err = gap(&follower, &skipping);
    assert!(matches!(err, StorageError::NonContiguousAppend { expected: 2, found: 4 }), "{err}");
    assert_eq!(follower.log_end_offset(), 0);
    assert!(read_all(&follower).is_empty());
    assert_eq!(follower.latest_epoch(), None, "a refused set records no epoch");
    follower.append_replicated(&mut all[..2 * size].to_vec(), NOW).unwrap();
    let err = gap(&follower, &all[size..2 * size]);
    assert!(matches!(err, StorageError::NonContiguousAppend { expected: 4, found: 2 }), "overlap: {err}");
    let mut corrupt = all[2 * size..].to_vec();
    corrupt[70] ^= 1;
    assert!(matches!(gap(&follower, &corrupt), StorageError::CorruptMessage));
    let info = follower.append_replicated(&mut all[2 * size..].to_vec(), NOW).unwrap().unwrap();
    assert_eq!((info.base_offset, info.last_offset, info.log_append_time_ms), (4, 7, -1));
    assert_eq!(read_all(&follower), read_all(&leader));
}

fn idem(seq: i32) -> Vec<u8> {
    TestBatch::new(2).idempotent(7, 0, seq).encode()
}

fn produce(log: &Log, bytes: &[u8], epoch: i32) -> crate::storage::Result<AppendInfo> {
    log.append(&mut bytes.to_vec(), epoch, NOW)
}

#[test]
fn a_follower_that_becomes_leader_recognises_retries() {
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = open(leader_dir.path(), small_config());
    let mut original = Vec::new();
    for seq in (0..10).step_by(2) {
        original.push(produce(&leader, &idem(seq), 3).unwrap());
        lead(&leader, 3, 1, 3);
    }
    let follower = open(follower_dir.path(), small_config());
    replicate(&leader, &follower);
    drop(leader); // the leader dies; the follower takes over at epoch 4
    let check = |log: &Log, when: &str| {
        // The producer did not hear back about seq 8 and retries it against the new leader.
        let dup = produce(log, &idem(8), 4).unwrap();
        assert!(dup.duplicate, "{when}");
        assert_eq!((dup.base_offset, dup.last_offset), (original[4].base_offset, original[4].last_offset));
        let dup = produce(log, &idem(4), 4).unwrap();
        assert_eq!((dup.duplicate, dup.base_offset), (true, original[2].base_offset), "{when}");
        assert!(matches!(produce(log, &idem(14), 4), Err(StorageError::OutOfOrderSequence { .. })), "{when}");
        assert_eq!(log.log_end_offset(), 25, "{when}: duplicates and refusals write nothing");
    };
    check(&follower, "live");
    drop(follower); // crash
    let follower = open(follower_dir.path(), small_config());
    check(&follower, "after a crash");
    let next = produce(&follower, &idem(10), 4).unwrap();
    assert_eq!((next.duplicate, next.base_offset), (false, 25));
    assert_eq!(follower.end_offset_for_epoch(3), (3, 25));
    assert_eq!(follower.end_offset_for_epoch(4), (4, 27));
}

/// A leader of `epoch_a` batches of varying sizes, and a follower holding all of it.
fn leader_and_follower(leader_dir: &Path, follower_dir: &Path) -> (Log, Log) {
    let leader = open(leader_dir, small_config());
    for i in 0..12 {
        lead(&leader, 1, 1, 1 + i % 4);
    }
    for seq in 0..6 {
        leader.append(&mut TestBatch::new(2).idempotent(7, 0, seq * 2).encode(), 2, NOW).unwrap();
    }
    lead(&leader, 2, 10, 3);
    let follower = open(follower_dir, small_config());
    replicate(&leader, &follower);
    follower.set_high_watermark(follower.log_end_offset());
    follower.flush().unwrap();
    (leader, follower)
}

fn snapshots(dir: &Path) -> Vec<i64> {
    checkpoint::list_offsets(dir, SNAPSHOT_SUFFIX).unwrap()
}

#[test]
fn truncate_to_cuts_whole_batches_across_segments_durably() {
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (leader, follower) = leader_and_follower(leader_dir.path(), follower_dir.path());
    let end = follower.log_end_offset();
    let segments_before = segment_bases(follower_dir.path()).len();
    assert!(segments_before >= 4, "{segments_before} segments");
    // Offset 8 lies inside the batch 6..=9 (the fourth batch holds 4 records): cut at 6.
    assert_eq!(bases(&leader.read(8, 1, i64::MAX, true).unwrap()), vec![6]);
    follower.truncate_to(8).unwrap();
    let cut = 6;
    assert_eq!(follower.log_end_offset(), cut);
    assert_eq!(read_all(&follower), read_below(&leader, cut));
    assert_eq!(follower.high_watermark(), cut);
    assert!(follower.flushed_offset() <= cut);
    assert_eq!(checkpoint::read_offset(&follower_dir.path().join(HIGH_WATERMARK_FILE)), Some(cut));
    assert!(segment_bases(follower_dir.path()).iter().all(|&b| b <= cut));
    assert!(snapshots(follower_dir.path()).iter().all(|&s| s <= cut), "{:?}", snapshots(follower_dir.path()));
    assert_eq!(follower.latest_epoch(), Some(1));
    assert_eq!(std::fs::read_to_string(follower_dir.path().join(LEADER_EPOCH_FILE)).unwrap(), "0\n1\n1 0\n");
    assert_eq!(follower.producer_last_sequence(7).unwrap(), None, "its batches are gone");
    assert!(matches!(follower.read(cut + 1, 100, i64::MAX, true), Err(StorageError::OffsetOutOfRange { .. })));
    assert_eq!(follower.max_timestamp().map(|(o, _)| o < cut), Some(true));
    assert!(end > cut);
    // Crash right after: the cut stays cut.
    drop(follower);
    let follower = open(follower_dir.path(), small_config());
    assert_eq!(follower.log_end_offset(), cut);
    assert_eq!(read_all(&follower), read_below(&leader, cut));
    assert_eq!(follower.high_watermark(), cut);
    // And the log grows again from there, at every offset readable, across restarts.
    replicate(&leader, &follower);
    assert_eq!(read_all(&follower), read_all(&leader));
    follower.close().unwrap();
    drop(follower);
    let follower = open(follower_dir.path(), small_config());
    assert_eq!(read_all(&follower), read_all(&leader));
    for offset in 0..end {
        let got = follower.read(offset, 1, i64::MAX, true).unwrap();
        assert_eq!(got, leader.read(offset, 1, i64::MAX, true).unwrap(), "fetch at {offset}");
    }
    assert_eq!(follower.producer_last_sequence(7).unwrap(), Some((0, 11)));
}

#[test]
fn a_divergent_tail_is_replaced_by_the_new_leaders() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (old_leader, follower) = leader_and_follower(dirs[0].path(), dirs[1].path());
    // The new leader (epoch 5) had the log up to offset 40 only (epoch 2 starts at 30), then
    // wrote batches of its own.
    let new_leader = open(dirs[2].path(), small_config());
    replicate_upto(&old_leader, &new_leader, 40);
    let diverged_at = new_leader.log_end_offset();
    let mut t = TestBatch::new(5);
    t.value_len = 37; // different sizes: positions no longer line up with the old tail
    for _ in 0..8 {
        new_leader.append(&mut t.encode(), 5, NOW).unwrap();
    }
    // KIP-279: the follower asks where its latest epoch ends on the new leader, and cuts there.
    let (epoch, end) = new_leader.end_offset_for_epoch(follower.latest_epoch().unwrap());
    assert_eq!((epoch, end), (2, 40));
    follower.truncate_to(end).unwrap();
    assert_eq!(follower.log_end_offset(), diverged_at);
    replicate(&new_leader, &follower);
    assert_eq!(read_all(&follower), read_all(&new_leader));
    assert_eq!(follower.end_offset_for_epoch(2), (2, diverged_at));
    assert_eq!(follower.end_offset_for_epoch(5), (5, new_leader.log_end_offset()));
    assert_eq!(follower.offset_for_timestamp(0).unwrap(), new_leader.offset_for_timestamp(0).unwrap());
    assert_eq!(follower.producer_last_sequence(7).unwrap(), Some((0, 9)), "seq 10..=11 were in the cut tail");
    drop(follower);
    let follower = open(dirs[1].path(), small_config());
    assert_eq!(read_all(&follower), read_all(&new_leader));
    assert_eq!(follower.end_offset_for_epoch(2), (2, diverged_at));
}

#[test]
fn producer_state_after_truncation_forgets_the_cut_batches_only() {
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (leader, follower) = leader_and_follower(leader_dir.path(), follower_dir.path());
    // Producer 7's batches: seq 0..=11 at offsets 30..=41 (2 records each).
    let first = headers(&leader.read(30, 1, i64::MAX, true).unwrap())[0];
    assert_eq!((first.producer_id, first.base_offset), (7, 30));
    follower.truncate_to(37).unwrap(); // inside seq 6..=7 (offsets 36..=37): cut at 36
    assert_eq!(follower.log_end_offset(), 36);
    assert_eq!(follower.producer_last_sequence(7).unwrap(), Some((0, 5)));
    let check = |log: &Log, when: &str| {
        let dup = produce(log, &idem(4), 3).unwrap();
        assert_eq!((dup.duplicate, dup.base_offset), (true, 34), "{when}");
        let retry = produce(log, &idem(6), 3).unwrap();
        assert_eq!((retry.duplicate, retry.base_offset), (false, 36), "{when}: the cut batch is new again");
    };
    check(&follower, "live");
    follower.truncate_to(36).unwrap();
    drop(follower); // crash
    let follower = open(follower_dir.path(), small_config());
    check(&follower, "after a crash");
}

#[test]
fn truncate_at_or_past_the_end_changes_nothing() {
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_leader, follower) = leader_and_follower(leader_dir.path(), follower_dir.path());
    let before = read_all(&follower);
    let end = follower.log_end_offset();
    follower.truncate_to(end).unwrap();
    follower.truncate_to(end + 100).unwrap();
    assert_eq!((read_all(&follower), follower.log_end_offset(), follower.high_watermark()), (before, end, end));
    // Cutting at a batch boundary keeps that boundary exactly.
    let boundaries = bases(&read_all(&follower));
    let at = boundaries[boundaries.len() / 2];
    follower.truncate_to(at).unwrap();
    assert_eq!(follower.log_end_offset(), at);
    assert!(matches!(follower.truncate_to(-1), Err(StorageError::OffsetOutOfRange { .. })));
    assert_eq!(follower.log_end_offset(), at, "a refused truncation changes nothing");
    follower.truncate_to(0).unwrap();
    assert_eq!((follower.log_start_offset(), follower.log_end_offset()), (0, 0));
    assert_eq!(segment_bases(follower_dir.path()), vec![0]);
    assert_eq!(follower.latest_epoch(), None);
}

#[test]
fn truncate_fully_starts_an_empty_log_at_the_offset() {
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_leader, follower) = leader_and_follower(leader_dir.path(), follower_dir.path());
    let start = 1_000;
    follower.truncate_fully_and_start_at(start).unwrap();
    let offsets = |log: &Log| (log.log_start_offset(), log.log_end_offset(), log.high_watermark());
    assert_eq!(offsets(&follower), (start, start, start));
    assert_eq!(segment_bases(follower_dir.path()), vec![start]);
    assert!(snapshots(follower_dir.path()).is_empty());
    assert_eq!(checkpoint::read_offset(&follower_dir.path().join(LOG_START_FILE)), Some(start));
    assert_eq!(follower.latest_epoch(), None);
    assert_eq!(std::fs::read_to_string(follower_dir.path().join(LEADER_EPOCH_FILE)).unwrap(), "0\n0\n");
    assert_eq!(follower.producer_last_sequence(7).unwrap(), None);
    assert!(read_all(&follower).is_empty());
    assert!(matches!(follower.read(0, 100, i64::MAX, true), Err(StorageError::OffsetOutOfRange { .. })));
    drop(follower); // crash
    let follower = open(follower_dir.path(), small_config());
    assert_eq!(offsets(&follower), (start, start, start));
    // A leader whose log starts at 1000 feeds it.
    let mut t = TestBatch::new(3);
    let mut bytes = t.encode();
    batch::set_base_offset_and_epoch(&mut bytes, start, 9);
    follower.append_replicated(&mut bytes, NOW).unwrap();
    t.records = 2;
    follower.append(&mut t.encode(), 10, NOW).unwrap();
    assert_eq!(bases(&read_all(&follower)), vec![1_000, 1_003]);
    assert_eq!(follower.end_offset_for_epoch(9), (9, 1_003));
    follower.close().unwrap();
    drop(follower);
    let follower = open(follower_dir.path(), small_config());
    assert_eq!(bases(&read_all(&follower)), vec![1_000, 1_003]);
    // Below the log start, truncate_to is a full truncation; negative offsets are refused.
    follower.truncate_to(500).unwrap();
    assert_eq!(offsets(&follower), (500, 500, 500));
    assert!(matches!(follower.truncate_fully_and_start_at(-3), Err(StorageError::OffsetOutOfRange { .. })));
    follower.truncate_fully_and_start_at(500).unwrap();
    assert_eq!(segment_bases(follower_dir.path()), vec![500]);
}

#[test]
fn a_reader_holding_a_view_of_a_cut_file_gets_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    lead(&log, 0, 10, 3);
    let view = log.lock().unwrap().view_from(0).unwrap();
    log.truncate_to(6).unwrap();
    let mut seen = Vec::new();
    let scanned = scan_headers(&view.file, view.start, view.end, |_, h| {
        seen.push(h.base_offset);
        Ok(std::ops::ControlFlow::Continue(()))
    });
    assert!(scanned.is_err());
    assert_eq!(seen, vec![0, 3], "stale bytes up to the cut, then an error");
    // New, differently sized batches now fill the old positions.
    let mut t = TestBatch::new(1);
    t.value_len = 3;
    for _ in 0..40 {
        log.append(&mut t.encode(), 1, NOW).unwrap();
    }
    let _ = scan_headers(&view.file, view.start, view.end, |_, _| Ok(std::ops::ControlFlow::Continue(())));
}

/// Path of the one `.log` file of a single-segment log.
fn only_log_file(dir: &Path) -> PathBuf {
    let bases = segment_bases(dir);
    assert_eq!(bases.len(), 1);
    offset_file(dir, bases[0], LOG_SUFFIX)
}

#[test]
fn reads_racing_truncations_return_whole_batches_of_one_history() {
    let (a_dir, b_dir, dir) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Two leaders' histories of 200 offsets with batches of different sizes.
    let history = |path: &Path, records: usize, value_len: usize, epoch: i32| {
        let log = open(path, LogConfig::default());
        let mut t = TestBatch::new(records);
        t.value_len = value_len;
        while log.log_end_offset() < 200 {
            log.append(&mut t.encode(), epoch, NOW).unwrap();
        }
        log
    };
    let a = history(a_dir.path(), 4, 20, 1);
    let b = history(b_dir.path(), 5, 33, 2);
    let log = Arc::new(open(dir.path(), LogConfig::default()));
    replicate(&a, &log);
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (log, done) = (Arc::clone(&log), Arc::clone(&done));
        let (a_all, b_all) = (read_all(&a), read_all(&b));
        std::thread::spawn(move || {
            let mut reads = 0;
            while !done.load(Ordering::Relaxed) {
                match log.read(0, usize::MAX, i64::MAX, true) {
                    Ok(bytes) => {
                        // Whole, valid batches, each one from one of the two histories.
                        for h in headers(&bytes) {
                            assert!(h.partition_leader_epoch == 1 || h.partition_leader_epoch == 2);
                        }
                        assert!(a_all.starts_with(&bytes) || b_all.starts_with(&bytes), "a read mixed two histories");
                        reads += 1;
                    }
                    Err(StorageError::Io(e)) if e.to_string().contains("truncated") => {}
                    Err(e) => panic!("read failed: {e}"),
                }
            }
            reads
        })
    };
    for round in 0..200 {
        // Cut everything, refill from the other leader: same file, new bytes at old positions.
        log.truncate_to(0).unwrap();
        replicate(if round % 2 == 0 { &b } else { &a }, &log);
    }
    done.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    assert_eq!(read_all(&log), read_all(&a));
    let file_len = std::fs::metadata(only_log_file(dir.path())).unwrap().len();
    assert_eq!(file_len, read_all(&a).len() as u64);
}
