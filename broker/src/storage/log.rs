//! One partition's log: an ordered list of segments in one directory, with the offsets Kafka
//! clients see (log start, log end, high watermark), group-commit durability, recovery after a
//! crash, retention, timestamp lookups, idempotent-producer checks and the leader-epoch cache.
//! The replication paths (a follower's appends and truncations) live in `log_replication.rs`.
//!
//! The high watermark is the replica layer's to move ([`Log::set_high_watermark`]); storage only
//! keeps it within the log and checkpoints it.
//!
//! Concurrency: one mutex guards the segment list and the append path; a second, separate
//! mutex serializes fsyncs so appends continue while the disk syncs. Readers take the first
//! mutex only long enough to clone a file handle and a byte range, then read without it; a
//! truncation moves a generation counter first, and a read that sees it move discards what it
//! read and starts again, so it never returns bytes written after the cut in place of the old
//! ones. Lock order: `flush`, then `deleting`, then `inner`, then `hw_checkpoint`.

use std::fs::{self, File};
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use super::batch::{self, BatchHeader, BatchInfo, RecordWalker};
use super::checkpoint::{self, RecoveryPointFile, CLEAN_SHUTDOWN_FILE, HIGH_WATERMARK_FILE, LOG_START_FILE};
use super::config::LogConfig;
use super::error::{Result, StorageError};
use super::index::write_synced;
use super::leader_epoch::LeaderEpochCache;
use super::producer_state::{Prepared, ProducerStateManager};
use super::segment::{
    offset_file, read_batch, remove_if_exists, scan_headers, IndexSettings, Recovered, Segment, INDEX_SUFFIX,
    LOG_SUFFIX, MAX_SEGMENT_POSITION, TIME_INDEX_SUFFIX,
};

const SNAPSHOT_SUFFIX: &str = "snapshot";

/// How many times a read starts again after a truncation moved under it before giving up.
const READ_ATTEMPTS: usize = 4;

/// What an append did, in the terms a produce response needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The broker's timestamp when the log uses `LogAppendTime`, else `-1`.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    /// True when the set was a retry of batches already written: nothing was written and the
    /// offsets are the original ones.
    pub duplicate: bool,
}

/// A partition log. `Send + Sync`; share it behind an `Arc`.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    inner: Mutex<LogInner>,
    /// Held for the whole of a group-commit fsync; never while `inner` is wanted for long.
    /// Truncations hold it too, so that no fsync round can record a recovery point from before
    /// the cut.
    flush: Mutex<RecoveryPointFile>,
    /// Held by retention from choosing segments until their files are gone, and by truncations,
    /// so that a truncation never creates a segment file that retention is about to remove.
    deleting: Mutex<()>,
    /// The high watermark last written to its checkpoint (`None`: never, or unknown). Held
    /// while writing it, so that writes land in the order of the values they read.
    hw_checkpoint: Mutex<Option<i64>>,
    /// Moves (under `inner`) before a truncation changes any file; see the module doc.
    generation: AtomicU64,
    /// Every offset below this is on disk.
    flushed_offset: AtomicI64,
    last_flush_ms: AtomicI64,
    fsync_count: AtomicU64,
    /// Copies of the offsets in `inner`, updated under its lock, read without it (the fetch
    /// path must not wait behind an append's write).
    published: PublishedOffsets,
}

#[derive(Debug, Default)]
struct PublishedOffsets {
    log_start_offset: AtomicI64,
    log_end_offset: AtomicI64,
    high_watermark: AtomicI64,
}

impl PublishedOffsets {
    fn publish(&self, inner: &LogInner) {
        self.log_start_offset.store(inner.log_start_offset, Ordering::Release);
        self.log_end_offset.store(inner.log_end_offset, Ordering::Release);
        self.high_watermark.store(inner.high_watermark, Ordering::Release);
    }
}

#[derive(Debug)]
struct LogInner {
    config: LogConfig,
    /// Segments no longer written to, oldest first.
    rolled: Vec<Segment>,
    active: Segment,
    log_start_offset: i64,
    log_end_offset: i64,
    high_watermark: i64,
    producers: ProducerStateManager,
    epochs: LeaderEpochCache,
    /// The latest clock reading this log was given, for a segment created by a truncation.
    clock_ms: i64,
    /// No more appends or truncations: after `close`, `delete`, or a truncation that failed
    /// part way (the files and this state may then disagree; reopening recovers from the files).
    closed: bool,
}

/// A byte range of one segment, cloned out from under the lock for a lock-free read.
struct SegmentView {
    file: Arc<File>,
    start: u64,
    end: u64,
    next_offset: i64,
}

fn settings(config: &LogConfig) -> IndexSettings {
    IndexSettings { interval_bytes: config.index_interval_bytes, max_index_bytes: config.segment_index_bytes }
}

impl LogInner {
    fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.rolled.iter().chain(std::iter::once(&self.active))
    }

    /// The segment holding `offset`, or the first one after it; `None` at or past the end.
    fn view_from(&self, offset: i64) -> Option<SegmentView> {
        let segment = self.segments().find(|s| s.next_offset > offset)?;
        Some(SegmentView {
            file: Arc::clone(&segment.log),
            start: segment.position_for_offset(offset),
            end: segment.size,
            next_offset: segment.next_offset,
        })
    }

    /// The non-empty segment based exactly at `base_offset`, from its start: where a read
    /// continues once it has read a segment up to `base_offset`. Should that segment have grown
    /// meanwhile instead (no segment starts there yet), the read stops rather than read it again.
    fn view_of_segment_at(&self, base_offset: i64) -> Option<SegmentView> {
        let segment = self.segments().find(|s| s.base_offset == base_offset && s.size > 0)?;
        Some(SegmentView {
            file: Arc::clone(&segment.log),
            start: 0,
            end: segment.size,
            next_offset: segment.next_offset,
        })
    }

    fn check_range(&self, offset: i64) -> Result<()> {
        if offset < self.log_start_offset || offset > self.log_end_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset,
                log_end: self.log_end_offset,
            });
        }
        Ok(())
    }

    /// Rolls before an append of `set_len` bytes ending at `last_offset` whose largest
    /// timestamp is `max_timestamp`, when the active segment would overflow a limit.
    fn roll_if_needed(
        &mut self,
        dir: &Path,
        set_len: u64,
        last_offset: i64,
        max_timestamp: i64,
        now_ms: i64,
    ) -> Result<()> {
        let active = &self.active;
        if active.size == 0 {
            return Ok(());
        }
        let limit = self.config.segment_bytes.min(MAX_SEGMENT_POSITION);
        let too_big = active.size.saturating_add(set_len) > limit;
        let offsets_overflow = last_offset - active.base_offset > i64::from(u32::MAX);
        let timestamp = if max_timestamp >= 0 { max_timestamp } else { now_ms };
        let too_old = active.roll_due(timestamp, now_ms, self.config.segment_ms);
        if too_big || offsets_overflow || too_old || active.index_full() {
            self.roll(dir, now_ms)?;
        }
        Ok(())
    }

    /// Closes the active segment (indexes saved) and starts a new one at the log end, leaving a
    /// producer-state snapshot at the boundary so recovery replays at most one segment.
    fn roll(&mut self, dir: &Path, now_ms: i64) -> Result<()> {
        let base = self.log_end_offset;
        self.active.save_indexes()?;
        self.producers.write_snapshot(&offset_file(dir, base, SNAPSHOT_SUFFIX))?;
        let segment = Segment::create(dir, base, settings(&self.config), now_ms)?;
        checkpoint::sync_dir(dir)?;
        let old = std::mem::replace(&mut self.active, segment);
        self.rolled.push(old);
        tracing::debug!(dir = %dir.display(), base_offset = base, "rolled segment");
        Ok(())
    }

    /// How many of the oldest rolled segments retention may delete now: those breaching
    /// `retention.ms` or `retention.bytes`, or wholly below the log start, and never one holding
    /// offsets at or above the high watermark.
    fn deletable_count(&self, now_ms: i64) -> usize {
        if !self.config.cleanup_delete {
            return 0;
        }
        let hw = self.high_watermark;
        let candidates = || self.rolled.iter().take_while(|s| s.next_offset <= hw);
        let below_start = candidates().take_while(|s| s.next_offset <= self.log_start_offset).count();
        let by_time = match self.config.retention_ms {
            ms if ms >= 0 => {
                let cutoff = now_ms.saturating_sub(ms);
                candidates().take_while(|s| s.max_timestamp < cutoff).count()
            }
            _ => 0,
        };
        let mut by_size = 0;
        if self.config.retention_bytes >= 0 {
            // As Kafka: delete a segment only if the log stays at least retention.bytes big.
            let total: u64 = self.segments().map(|s| s.size).sum();
            let mut excess = i128::from(total) - i128::from(self.config.retention_bytes);
            for segment in candidates() {
                if excess - i128::from(segment.size) < 0 {
                    break;
                }
                excess -= i128::from(segment.size);
                by_size += 1;
            }
        }
        below_start.max(by_time).max(by_size)
    }

    /// Files holding bytes at or above `flushed`, for a group-commit fsync.
    fn unflushed_files(&self, flushed: i64) -> Vec<Arc<File>> {
        self.segments().filter(|s| s.next_offset > flushed).map(|s| Arc::clone(&s.log)).collect()
    }
}

impl Log {
    /// Opens (or creates) the log in `dir`.
    ///
    /// After a clean shutdown (marker present) the saved indexes and end offset are trusted.
    /// Otherwise every segment from the recovery point on is scanned batch by batch (framing,
    /// magic, contiguous offsets, CRC); the file is cut at the first bad batch and later
    /// segments are deleted; indexes and producer state are rebuilt.
    ///
    /// The high watermark comes from its checkpoint, kept within `[log start, log end]`; without
    /// one (a directory from before the checkpoint existed) it is the log end, as it was then;
    /// with a damaged one, the log start (the replica layer moves it up again). The leader-epoch
    /// cache comes from its checkpoint, without the entries at or past the log end (a crash may
    /// have lost the batches they name); without a readable one it is rebuilt from the batch
    /// headers.
    ///
    /// # Errors
    ///
    /// `Io` when the directory or its files cannot be read or repaired; `Corrupted` when they
    /// are inconsistent beyond repair.
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<Log> {
        fs::create_dir_all(dir)?;
        checkpoint::remove_temp_files(dir)?;
        let marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean = marker.exists();
        if clean {
            fs::remove_file(&marker)?;
            checkpoint::sync_dir(dir)?;
        }
        let trusted_below = if clean {
            i64::MAX
        } else {
            checkpoint::read_offset(&dir.join(checkpoint::RECOVERY_POINT_FILE)).unwrap_or(i64::MIN)
        };
        let (rolled, active) = load_segments(dir, trusted_below, settings(&config), now_ms)?;
        let log_end_offset = active.next_offset;
        let first_base = rolled.first().unwrap_or(&active).base_offset;
        let log_start_offset =
            checkpoint::read_offset(&dir.join(LOG_START_FILE)).unwrap_or(first_base).clamp(first_base, log_end_offset);
        let (high_watermark, hw_checkpoint) = initial_high_watermark(dir, log_start_offset, log_end_offset);
        let mut inner = LogInner {
            config,
            rolled,
            active,
            log_start_offset,
            log_end_offset,
            high_watermark,
            producers: ProducerStateManager::default(),
            epochs: LeaderEpochCache::default(),
            clock_ms: now_ms,
            closed: false,
        };
        inner.producers = load_producer_state(dir, &inner)?;
        inner.epochs = load_epoch_cache(dir, &inner)?;
        if !clean {
            for file in inner.unflushed_files(i64::MIN) {
                file.sync_data()?;
            }
        }
        let recovery_point = RecoveryPointFile::open(dir)?;
        recovery_point.write(log_end_offset)?;
        tracing::info!(dir = %dir.display(), clean, log_start_offset, log_end_offset, high_watermark, "opened log");
        let published = PublishedOffsets::default();
        published.publish(&inner);
        Ok(Log {
            dir: dir.to_path_buf(),
            inner: Mutex::new(inner),
            flush: Mutex::new(recovery_point),
            deleting: Mutex::new(()),
            hw_checkpoint: Mutex::new(hw_checkpoint),
            generation: AtomicU64::new(0),
            flushed_offset: AtomicI64::new(log_end_offset),
            last_flush_ms: AtomicI64::new(now_ms),
            fsync_count: AtomicU64::new(0),
            published,
        })
    }

    /// The log's state, for anything that changes it or relies on all of it being consistent.
    fn lock(&self) -> Result<MutexGuard<'_, LogInner>> {
        self.inner.lock().map_err(|_| poisoned())
    }

    /// The log's state for reading or replacing a field that is valid on its own (the config),
    /// even after a panic under the lock left the rest in doubt.
    fn lock_field(&self) -> MutexGuard<'_, LogInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Applies `change` to a copy of the leader-epoch cache and, when it reports a change, saves
    /// the copy durably before it replaces the cache: a failed save changes nothing.
    ///
    /// # Errors
    ///
    /// `Io` when the checkpoint cannot be written.
    fn update_epochs(&self, inner: &mut LogInner, change: impl FnOnce(&mut LeaderEpochCache) -> bool) -> Result<()> {
        let mut epochs = inner.epochs.clone();
        if change(&mut epochs) {
            epochs.write(&self.dir)?;
            inner.epochs = epochs;
        }
        Ok(())
    }

    /// Adds the leader-epoch entries that `batches` (about to be written, offsets final) start;
    /// before the write, as Kafka does, so a batch is never on disk with its epoch unrecorded.
    ///
    /// # Errors
    ///
    /// `Io` when the checkpoint cannot be written.
    fn note_epochs(&self, inner: &mut LogInner, batches: &[BatchInfo]) -> Result<()> {
        let epochs = || batches.iter().map(|b| (b.header.partition_leader_epoch, b.header.base_offset));
        if !epochs().any(|(epoch, _)| inner.epochs.is_new_epoch(epoch)) {
            return Ok(());
        }
        self.update_epochs(inner, |cache| {
            epochs().fold(false, |changed, (epoch, offset)| cache.assign(epoch, offset) || changed)
        })
    }

    /// True when a truncation started since `generation` was read.
    fn truncated_since(&self, generation: u64) -> bool {
        self.generation.load(Ordering::SeqCst) != generation
    }

    /// Appends one produce partition's record set as the partition leader, assigning offsets
    /// and stamping `leader_epoch` (the caller's current epoch) in place.
    ///
    /// The set is validated ([`batch::validate_record_set`]), stamped with `LogAppendTime` when
    /// configured, checked against producer state, then written with one write call. The write
    /// reaches the page cache only: call [`flush_to`](Self::flush_to) before acknowledging
    /// when [`LogConfig::durable_acks`]. The high watermark does not move: the replica layer
    /// moves it ([`set_high_watermark`](Self::set_high_watermark)) once enough replicas have the
    /// offsets. A `leader_epoch` above the cache's latest adds a leader-epoch entry, saved before
    /// the batches are written; an older one (the caller's bug) is written as given, with a
    /// warning, and leaves the cache alone.
    ///
    /// # Errors
    ///
    /// The validation errors of [`batch::validate_record_set`]; `InvalidRecord` too for a set
    /// claiming more offsets than one segment can index (over 2^32, compressed batches only);
    /// `OutOfOrderSequence` and `InvalidProducerEpoch` from producer state; `Io` when the write
    /// or the epoch checkpoint fails (nothing is then visible and offsets are not consumed).
    pub fn append(&self, records: &mut [u8], leader_epoch: i32, now_ms: i64) -> Result<AppendInfo> {
        let config = self.lock()?.config;
        let mut batches = batch::validate_record_set(records, config.max_message_bytes)?;
        let log_append_time_ms = if config.message_timestamp_type_log_append {
            stamp_log_append_time(records, &mut batches, now_ms);
            now_ms
        } else {
            check_timestamps(&batches, &config, now_ms)?;
            -1
        };
        let mut inner = self.lock()?;
        check_open(&inner)?;
        let base_offset = inner.log_end_offset;
        let update = match inner.producers.prepare(&batches, base_offset, now_ms)? {
            Prepared::Append(update) => update,
            Prepared::Duplicate(original) => {
                return Ok(AppendInfo {
                    base_offset: original.first_offset,
                    last_offset: original.last_offset,
                    log_append_time_ms: if log_append_time_ms >= 0 { original.timestamp } else { -1 },
                    log_start_offset: inner.log_start_offset,
                    duplicate: true,
                });
            }
        };
        let last_offset = last_offset_from(base_offset, &batches)?;
        assign_offsets(records, &mut batches, base_offset, leader_epoch);
        if inner.epochs.latest_epoch().is_some_and(|latest| leader_epoch < latest) {
            tracing::warn!(dir = %self.dir.display(), leader_epoch, "leader append with an epoch older than the log's");
        }
        let max_timestamp = batches.iter().map(|b| b.header.max_timestamp).max().unwrap_or(-1);
        inner.clock_ms = inner.clock_ms.max(now_ms);
        inner.roll_if_needed(&self.dir, records.len() as u64, last_offset, max_timestamp, now_ms)?;
        self.note_epochs(&mut inner, &batches)?;
        inner.active.append(records, &batches)?;
        inner.log_end_offset = last_offset + 1;
        inner.producers.commit(update);
        self.published.publish(&inner);
        Ok(AppendInfo {
            base_offset,
            last_offset,
            log_append_time_ms,
            log_start_offset: inner.log_start_offset,
            duplicate: false,
        })
    }

    /// Group commit: returns once every offset below `offset` is fsynced.
    ///
    /// Returns at once when that is already so. Otherwise one caller at a time fsyncs every
    /// file holding unflushed bytes, covering all writes made before it started; callers
    /// waiting meanwhile usually find their offset covered and return without an fsync.
    /// Appends continue during the fsync.
    ///
    /// # Errors
    ///
    /// `Io` when an fsync fails (the data's durability is then unknown: treat the write as
    /// failed); `Corrupted` after a panic under a lock.
    pub fn flush_to(&self, offset: i64) -> Result<()> {
        if self.flushed_offset.load(Ordering::Acquire) >= offset {
            return Ok(());
        }
        let recovery_point = self.flush.lock().map_err(|_| poisoned())?;
        let flushed = self.flushed_offset.load(Ordering::Acquire);
        if flushed >= offset {
            return Ok(());
        }
        let (target, files) = {
            let inner = self.lock()?;
            (inner.log_end_offset, inner.unflushed_files(flushed))
        };
        if target <= flushed {
            return Ok(());
        }
        for file in &files {
            file.sync_data()?;
        }
        self.fsync_count.fetch_add(1, Ordering::Relaxed);
        recovery_point.write(target)?;
        self.flushed_offset.store(target, Ordering::Release);
        Ok(())
    }

    /// Fsyncs everything appended so far.
    ///
    /// # Errors
    ///
    /// As [`flush_to`](Self::flush_to).
    pub fn flush(&self) -> Result<()> {
        self.flush_to(self.log_end_offset())
    }

    /// Kafka's `flush.messages` / `flush.ms` policy, for a background task to call: fsyncs when
    /// that many records are unflushed or that long has passed since the last fsync made here.
    /// Returns whether it flushed.
    ///
    /// # Errors
    ///
    /// As [`flush_to`](Self::flush_to).
    pub fn maybe_flush(&self, now_ms: i64) -> Result<bool> {
        let (log_end_offset, config) = (self.log_end_offset(), self.config());
        let unflushed = log_end_offset - self.flushed_offset();
        if unflushed <= 0 {
            return Ok(false);
        }
        let by_count = unflushed >= config.flush_messages.max(1);
        let since = now_ms.saturating_sub(self.last_flush_ms.load(Ordering::Relaxed));
        if !by_count && since < config.flush_ms {
            return Ok(false);
        }
        self.flush_to(log_end_offset)?;
        self.last_flush_ms.store(now_ms, Ordering::Relaxed);
        Ok(true)
    }

    /// Every offset below this is fsynced.
    pub fn flushed_offset(&self) -> i64 {
        self.flushed_offset.load(Ordering::Acquire)
    }

    /// How many group-commit fsync rounds have run since open (each may sync several files).
    pub fn fsync_count(&self) -> u64 {
        self.fsync_count.load(Ordering::Relaxed)
    }

    /// Reads whole stored batches, starting with the one containing `fetch_offset`.
    ///
    /// Stops before `max_bytes` would be exceeded, except that with `min_one_batch` (KIP-74)
    /// the first batch is returned whatever its size; never returns a batch whose base offset is
    /// at or above `max_offset` (the high watermark for consumers, `i64::MAX` or the log end for
    /// a follower). It reads the segments as they were when it reached each one, so batches
    /// appended meanwhile may be left for the next read; it never returns a batch twice. An
    /// empty result means nothing is available yet.
    ///
    /// # Errors
    ///
    /// `OffsetOutOfRange` when `fetch_offset` is below the log start or above the log end
    /// (also when a truncation under the read removed it); `Io` or `Corrupted` when the segment
    /// cannot be read back; `Io` when truncations moved under every one of a few attempts.
    pub fn read(&self, fetch_offset: i64, max_bytes: usize, max_offset: i64, min_one_batch: bool) -> Result<Bytes> {
        for _ in 0..READ_ATTEMPTS {
            if let Attempt::Done(bytes) = self.read_once(fetch_offset, max_bytes, max_offset, min_one_batch)? {
                return Ok(bytes);
            }
        }
        Err(truncated_under_read())
    }

    /// One attempt at [`read`](Self::read); `Retry` when a truncation started under it (what it
    /// read, or failed to read, may mix the old tail with what replaced it).
    fn read_once(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<Attempt<Bytes>> {
        let (generation, mut next) = {
            // Range check and first segment under one lock, so retention cannot slip between.
            let inner = self.lock()?;
            inner.check_range(fetch_offset)?;
            (self.generation.load(Ordering::SeqCst), inner.view_from(fetch_offset))
        };
        if fetch_offset >= max_offset {
            return Ok(Attempt::Done(Bytes::new()));
        }
        let mut plan =
            ReadPlan { fetch_offset, max_offset, max_bytes, min_one_batch, total: 0, ranges: Vec::new(), done: false };
        while let Some(view) = next.take() {
            let scanned = scan_headers(&view.file, view.start, view.end, |pos, h| Ok(plan.visit(&view.file, pos, h)));
            if self.truncated_since(generation) {
                return Ok(Attempt::Retry);
            }
            scanned?;
            if plan.done || view.next_offset >= max_offset {
                break;
            }
            next = self.lock()?.view_of_segment_at(view.next_offset);
        }
        let bytes = plan.into_bytes();
        if self.truncated_since(generation) {
            return Ok(Attempt::Retry);
        }
        bytes.map(Attempt::Done)
    }

    /// Offset of the first record with a timestamp `>= timestamp_ms`, with that timestamp (Kafka
    /// ListOffsets). Exact for uncompressed batches, whose records are walked. For a compressed
    /// batch the records cannot be seen without decompressing, so the answer is the batch's base
    /// offset, with its base timestamp when that already qualifies, else its max timestamp.
    /// `None` when no record is that recent.
    ///
    /// # Errors
    ///
    /// `Io` or `Corrupted` when a segment cannot be read back; `Io` when truncations moved under
    /// every one of a few attempts.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<(i64, i64)>> {
        for _ in 0..READ_ATTEMPTS {
            if let Attempt::Done(found) = self.offset_for_timestamp_once(timestamp_ms)? {
                return Ok(found);
            }
        }
        Err(truncated_under_read())
    }

    /// One attempt at [`offset_for_timestamp`](Self::offset_for_timestamp), as [`read_once`](Self::read_once).
    fn offset_for_timestamp_once(&self, timestamp_ms: i64) -> Result<Attempt<Option<(i64, i64)>>> {
        let generation = self.generation.load(Ordering::SeqCst);
        let mut after = i64::MIN;
        loop {
            let (view, log_start) = {
                let inner = self.lock()?;
                let min = inner.log_start_offset.max(after);
                let found = inner.segments().find(|s| s.next_offset > min && s.max_timestamp >= timestamp_ms);
                let Some(s) = found else { return Ok(Attempt::Done(None)) };
                let view = SegmentView {
                    file: Arc::clone(&s.log),
                    start: s.position_for_timestamp(timestamp_ms).max(s.position_for_offset(min)),
                    end: s.size,
                    next_offset: s.next_offset,
                };
                (view, inner.log_start_offset)
            };
            let found = find_timestamp(&view, timestamp_ms, log_start);
            if self.truncated_since(generation) {
                return Ok(Attempt::Retry);
            }
            if let Some(hit) = found? {
                return Ok(Attempt::Done(Some(hit)));
            }
            after = view.next_offset;
        }
    }

    /// Offset and timestamp of the record with the largest timestamp (the first such). Exact for
    /// uncompressed batches; a compressed batch answers with its last offset, a `LogAppendTime`
    /// batch with its base offset (all its records share the timestamp). `None` when empty.
    /// Should the batch fail to read back, the answer falls back to its last offset, and so it
    /// does when truncations keep moving under the search.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        let mut answer = None;
        for _ in 0..READ_ATTEMPTS {
            let generation = self.generation.load(Ordering::SeqCst);
            let (view, offset, timestamp) = self.max_timestamp_view()?;
            answer = Some((offset, timestamp));
            let exact = exact_max_timestamp_offset(&view, offset);
            if self.truncated_since(generation) {
                continue;
            }
            return match exact {
                Ok(exact) => Some((exact.unwrap_or(offset), timestamp)),
                Err(e) => {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "max timestamp falls back to batch granularity");
                    answer
                }
            };
        }
        answer
    }

    /// The segment holding the largest timestamp, from the batch that reached it, with that
    /// batch's last offset and the timestamp; `None` for an empty log.
    fn max_timestamp_view(&self) -> Option<(SegmentView, i64, i64)> {
        let inner = self.lock_field();
        let live = inner.segments().filter(|s| s.size > 0 && s.next_offset > inner.log_start_offset);
        let best = live.fold(None::<&Segment>, |best, s| match best {
            Some(b) if b.max_timestamp >= s.max_timestamp => Some(b),
            _ => Some(s),
        })?;
        let view = SegmentView {
            file: Arc::clone(&best.log),
            start: best.position_for_offset(best.max_timestamp_offset),
            end: best.size,
            next_offset: best.next_offset,
        };
        Some((view, best.max_timestamp_offset, best.max_timestamp))
    }

    /// The first offset a consumer may fetch.
    pub fn log_start_offset(&self) -> i64 {
        self.published.log_start_offset.load(Ordering::Acquire)
    }

    /// One past the last offset written.
    pub fn log_end_offset(&self) -> i64 {
        self.published.log_end_offset.load(Ordering::Acquire)
    }

    /// The offset consumers may read up to (exclusive).
    pub fn high_watermark(&self) -> i64 {
        self.published.high_watermark.load(Ordering::Acquire)
    }

    /// Sets the high watermark, kept within `[log start, log end]`; returns the value set. Only
    /// the replica layer calls this: a leader once the in-sync replicas hold the offsets (with
    /// itself the only one, right after each append), a follower to what its leader reports.
    /// It may move back (Kafka's follower does the same). Persisted by
    /// [`checkpoint_high_watermark`](Self::checkpoint_high_watermark) and [`close`](Self::close).
    pub fn set_high_watermark(&self, high_watermark: i64) -> i64 {
        let mut inner = self.lock_field();
        let high_watermark = high_watermark.max(inner.log_start_offset).min(inner.log_end_offset);
        inner.high_watermark = high_watermark;
        self.published.publish(&inner);
        high_watermark
    }

    /// Writes the high watermark to its checkpoint file (`high-watermark`), durably, when it
    /// changed since the last write; the next open starts from it. For the replica layer to call
    /// periodically (Kafka: `replica.high.watermark.checkpoint.interval.ms`); a crash loses at
    /// most the moves since, which only holds the high watermark back until replication moves
    /// it again.
    ///
    /// # Errors
    ///
    /// `Io` when the file cannot be written; the previous one is then still whole.
    pub fn checkpoint_high_watermark(&self) -> Result<()> {
        let mut written = self.hw_checkpoint.lock().map_err(|_| poisoned())?;
        // Read under the lock, so a write of an older value cannot land after a newer one.
        let high_watermark = self.high_watermark();
        if *written != Some(high_watermark) {
            checkpoint::write_offset_durably(&self.dir, HIGH_WATERMARK_FILE, high_watermark)?;
            *written = Some(high_watermark);
        }
        Ok(())
    }

    /// `(epoch, last sequence)` of an idempotent producer, when known (diagnostics, tests).
    ///
    /// # Errors
    ///
    /// `Corrupted` after a panic under the lock.
    pub fn producer_last_sequence(&self, producer_id: i64) -> Result<Option<(i16, i32)>> {
        Ok(self.lock()?.producers.last_sequence(producer_id))
    }

    /// Deletes whole rolled segments past `retention.ms` / `retention.bytes` (oldest first), never
    /// one holding offsets at or above the high watermark, and moves the log start offset to the
    /// first remaining offset, persisted (with the leader-epoch cache trimmed to it) before any
    /// file is removed. Returns how many segments were deleted.
    ///
    /// # Errors
    ///
    /// `Io` when the log start offset or the epoch cache cannot be persisted or a file cannot be
    /// removed.
    pub fn apply_retention(&self, now_ms: i64) -> Result<usize> {
        let _deleting = self.deleting.lock().map_err(|_| poisoned())?;
        let (removed, log_start_offset) = {
            let mut inner = self.lock()?;
            inner.clock_ms = inner.clock_ms.max(now_ms);
            let n = inner.deletable_count(now_ms);
            if n == 0 {
                return Ok(0);
            }
            let next_base = inner.rolled.get(n).unwrap_or(&inner.active).base_offset;
            let log_start_offset = next_base.max(inner.log_start_offset);
            checkpoint::write_offset_durably(&self.dir, LOG_START_FILE, log_start_offset)?;
            self.update_epochs(&mut inner, |epochs| epochs.truncate_from_start(log_start_offset))?;
            inner.log_start_offset = log_start_offset;
            inner.producers.remove_before(log_start_offset);
            self.published.publish(&inner);
            let removed: Vec<Segment> = inner.rolled.drain(..n).collect();
            (removed, log_start_offset)
        };
        for segment in &removed {
            segment.delete_files()?;
        }
        remove_snapshots(&self.dir, |offset| offset < log_start_offset)?;
        tracing::info!(dir = %self.dir.display(), deleted = removed.len(), log_start_offset, "retention");
        Ok(removed.len())
    }

    /// Rolls an idle active segment once `segment.ms` has passed since its first batch, so that
    /// time-based retention can delete it. Returns whether it rolled.
    ///
    /// # Errors
    ///
    /// `Io` when the new segment cannot be created.
    pub fn roll_if_due(&self, now_ms: i64) -> Result<bool> {
        let mut inner = self.lock()?;
        inner.clock_ms = inner.clock_ms.max(now_ms);
        if !inner.active.roll_due(now_ms, now_ms, inner.config.segment_ms) {
            return Ok(false);
        }
        inner.roll(&self.dir, now_ms)?;
        Ok(true)
    }

    /// Replaces the configuration. Index sizes apply to segments created from now on.
    pub fn update_config(&self, config: LogConfig) {
        self.lock_field().config = config;
    }

    /// The current configuration.
    pub fn config(&self) -> LogConfig {
        self.lock_field().config
    }

    /// Stops taking appends, fsyncs everything, saves the active segment's indexes, a
    /// producer-state snapshot and the high watermark, then writes the clean-shutdown marker so
    /// that the next open trusts all of it without scanning.
    ///
    /// # Errors
    ///
    /// `Io` when any of those writes fails; the marker is then absent and the next open
    /// recovers by scanning.
    pub fn close(&self) -> Result<()> {
        self.lock()?.closed = true;
        self.flush()?;
        let mut inner = self.lock()?;
        inner.active.save_indexes()?;
        // Snapshots of earlier closes inside the active segment are superseded by this one.
        let (base, end) = (inner.active.base_offset, inner.log_end_offset);
        remove_snapshots(&self.dir, |offset| offset > base && offset < end)?;
        inner.producers.write_snapshot(&offset_file(&self.dir, end, SNAPSHOT_SUFFIX))?;
        self.checkpoint_high_watermark()?;
        write_synced(&self.dir.join(CLEAN_SHUTDOWN_FILE), b"")?;
        checkpoint::sync_dir(&self.dir)?;
        tracing::info!(dir = %self.dir.display(), log_end_offset = inner.log_end_offset, "closed log");
        Ok(())
    }

    /// Deletes the partition directory and everything in it (topic deletion). The log takes no
    /// appends afterwards; reads already under way finish on the unlinked files.
    ///
    /// # Errors
    ///
    /// `Io` when the directory cannot be removed.
    pub fn delete(&self) -> Result<()> {
        self.lock_field().closed = true;
        fs::remove_dir_all(&self.dir)?;
        tracing::info!(dir = %self.dir.display(), "deleted log");
        Ok(())
    }
}

fn poisoned() -> StorageError {
    StorageError::Corrupted("log state poisoned by a panic under its lock; reopen the log".into())
}

/// The outcome of one attempt at a lock-free read: done, or to be retried because a truncation
/// moved under it.
enum Attempt<T> {
    Done(T),
    Retry,
}

fn truncated_under_read() -> StorageError {
    StorageError::Io(std::io::Error::other("the log was truncated under every attempt to read it"))
}

fn check_open(inner: &LogInner) -> Result<()> {
    if inner.closed {
        return Err(StorageError::Io(std::io::Error::other("log is closed")));
    }
    Ok(())
}

/// The last offset of a set of `batches` written from `base_offset` on.
///
/// # Errors
///
/// `InvalidRecord` when the set claims more offsets than one segment can index (relative
/// offsets are `u32`), which only compressed batches claiming billions of records can, or when
/// the offsets would overflow.
fn last_offset_from(base_offset: i64, batches: &[BatchInfo]) -> Result<i64> {
    // Each count is validated >= 1, and there are fewer batches than bytes: no overflow.
    let records: i64 = batches.iter().map(|b| i64::from(b.header.record_count)).sum();
    if records - 1 > i64::from(u32::MAX) {
        return Err(StorageError::InvalidRecord("record set spans more offsets than a segment can index".into()));
    }
    base_offset.checked_add(records - 1).ok_or_else(|| StorageError::InvalidRecord("offsets overflow".into()))
}

/// Removes the producer-state snapshots whose offset is `doomed`.
///
/// # Errors
///
/// `Io` when the directory cannot be listed or a file cannot be removed.
fn remove_snapshots(dir: &Path, doomed: impl Fn(i64) -> bool) -> Result<()> {
    for offset in checkpoint::list_offsets(dir, SNAPSHOT_SUFFIX)? {
        if doomed(offset) {
            remove_if_exists(&offset_file(dir, offset, SNAPSHOT_SUFFIX))?;
        }
    }
    Ok(())
}

/// The high watermark to open with, and the value its checkpoint holds (see [`Log::open`]).
fn initial_high_watermark(dir: &Path, log_start: i64, log_end: i64) -> (i64, Option<i64>) {
    let path = dir.join(HIGH_WATERMARK_FILE);
    if !path.exists() {
        return (log_end, None);
    }
    match checkpoint::read_offset(&path) {
        Some(high_watermark) => (high_watermark.max(log_start).min(log_end), Some(high_watermark)),
        None => {
            tracing::warn!(path = %path.display(), "damaged high-watermark checkpoint: starting from the log start");
            (log_start, None)
        }
    }
}

/// The leader-epoch cache on open (see [`Log::open`]), saved again when opening changed it.
fn load_epoch_cache(dir: &Path, inner: &LogInner) -> Result<LeaderEpochCache> {
    let (mut epochs, mut changed) = match LeaderEpochCache::read(dir)? {
        Some(epochs) => (epochs, false),
        None if inner.segments().any(|s| s.size > 0) => (rebuild_epoch_cache(inner)?, true),
        None => (LeaderEpochCache::default(), false),
    };
    changed |= epochs.truncate_from_end(inner.log_end_offset);
    changed |= epochs.truncate_from_start(inner.log_start_offset);
    if changed {
        epochs.write(dir)?;
    }
    Ok(epochs)
}

/// The leader-epoch cache as the batch headers tell it (a directory from before the cache
/// existed, or an unreadable checkpoint).
fn rebuild_epoch_cache(inner: &LogInner) -> Result<LeaderEpochCache> {
    let mut epochs = LeaderEpochCache::default();
    for segment in inner.segments() {
        scan_headers(&segment.log, 0, segment.size, |_, h| {
            epochs.assign(h.partition_leader_epoch, h.base_offset);
            Ok(ControlFlow::Continue(()))
        })?;
    }
    tracing::info!(entries = epochs.entries().len(), "rebuilt the leader-epoch cache from the log");
    Ok(epochs)
}

/// Checks CreateTime batches against `message.timestamp.before.max.ms` and
/// `message.timestamp.after.max.ms`, as Kafka does (KIP-937), without decompressing: the batch
/// header's first and largest timestamps stand for its records.
fn check_timestamps(batches: &[BatchInfo], config: &LogConfig, now_ms: i64) -> Result<()> {
    for b in batches {
        let (first, max) = (b.header.base_timestamp, b.header.max_timestamp);
        if max > now_ms.saturating_add(config.message_timestamp_after_max_ms) {
            return Err(StorageError::InvalidTimestamp {
                timestamp: max,
                now_ms,
                bound: "message.timestamp.after.max.ms",
            });
        }
        // A timestamp of -1 means "none given", which Kafka accepts.
        if first >= 0 && first < now_ms.saturating_sub(config.message_timestamp_before_max_ms) {
            return Err(StorageError::InvalidTimestamp {
                timestamp: first,
                now_ms,
                bound: "message.timestamp.before.max.ms",
            });
        }
    }
    Ok(())
}

/// Sets `LogAppendTime` on every batch of a validated set, keeping `batches` in step.
fn stamp_log_append_time(records: &mut [u8], batches: &mut [BatchInfo], now_ms: i64) {
    for info in batches {
        batch::set_log_append_time(&mut records[info.position..info.position + info.size], now_ms);
        info.header.base_timestamp = now_ms;
        info.header.max_timestamp = now_ms;
        info.header.attributes |= 0x08;
    }
}

/// Writes consecutive offsets from `base_offset` into every batch (the caller checked with
/// [`last_offset_from`] that they fit).
fn assign_offsets(records: &mut [u8], batches: &mut [BatchInfo], base_offset: i64, leader_epoch: i32) {
    let mut next = base_offset;
    for info in batches {
        let bytes = &mut records[info.position..info.position + info.size];
        batch::set_base_offset_and_epoch(bytes, next, leader_epoch);
        info.header.base_offset = next;
        info.header.partition_leader_epoch = leader_epoch;
        next += i64::from(info.header.record_count);
    }
}

/// Loads every segment in `dir` (see [`Log::open`]); returns the rolled ones and the active one.
fn load_segments(
    dir: &Path,
    trusted_below: i64,
    settings: IndexSettings,
    now_ms: i64,
) -> Result<(Vec<Segment>, Segment)> {
    let bases = checkpoint::list_offsets(dir, LOG_SUFFIX)?;
    if bases.is_empty() {
        let active = Segment::create(dir, 0, settings, now_ms)?;
        checkpoint::sync_dir(dir)?;
        return Ok((Vec::new(), active));
    }
    // Segments before the one holding the recovery point are known to be fsynced.
    let first_scanned = bases.partition_point(|&b| b <= trusted_below).saturating_sub(1);
    let clean = trusted_below == i64::MAX;
    let mut segments: Vec<Segment> = Vec::with_capacity(bases.len());
    for (i, &base) in bases.iter().enumerate() {
        if segments.last().is_some_and(|prev| prev.next_offset != base) {
            delete_segment_files(dir, &bases[i..])?;
            break;
        }
        let next_base = bases.get(i + 1).copied();
        let trusted = clean || i < first_scanned;
        let (mut segment, recovered) =
            Segment::open(dir, base, next_base.filter(|_| trusted), trusted, settings, now_ms)?;
        if !trusted && next_base.is_some() && recovered == Recovered::Intact {
            segment.save_indexes()?;
        }
        segments.push(segment);
        if recovered == Recovered::Truncated {
            delete_segment_files(dir, &bases[i + 1..])?;
            break;
        }
    }
    let active = segments.pop().ok_or_else(|| StorageError::Corrupted("no segment survived loading".into()))?;
    Ok((segments, active))
}

/// Removes the files of the segments based at `bases` (recovery found they do not continue the
/// log).
fn delete_segment_files(dir: &Path, bases: &[i64]) -> Result<()> {
    for &base in bases {
        tracing::warn!(dir = %dir.display(), base_offset = base, "deleting segment past a truncation");
        for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            remove_if_exists(&offset_file(dir, base, suffix))?;
        }
    }
    Ok(())
}

/// Producer state: the latest usable snapshot, then every batch after it replayed.
fn load_producer_state(dir: &Path, inner: &LogInner) -> Result<ProducerStateManager> {
    let (start, end) = (inner.log_start_offset, inner.log_end_offset);
    let mut loaded = None;
    for offset in checkpoint::list_offsets(dir, SNAPSHOT_SUFFIX)?.into_iter().rev() {
        let path = offset_file(dir, offset, SNAPSHOT_SUFFIX);
        if offset > end || offset < start {
            remove_if_exists(&path)?;
            continue;
        }
        if loaded.is_some() {
            continue;
        }
        match ProducerStateManager::read_snapshot(&path) {
            Ok(state) => loaded = Some((state, offset)),
            Err(StorageError::Corrupted(why)) => {
                tracing::warn!(path = %path.display(), reason = %why, "ignoring producer snapshot");
                remove_if_exists(&path)?;
            }
            Err(e) => return Err(e),
        }
    }
    let (mut state, from) = loaded.unwrap_or_else(|| (ProducerStateManager::default(), start));
    for segment in inner.segments().filter(|s| s.next_offset > from) {
        let begin = segment.position_for_offset(from);
        scan_headers(&segment.log, begin, segment.size, |_, h| {
            if h.last_offset() >= from {
                state.replay(h);
            }
            Ok(ControlFlow::Continue(()))
        })?;
    }
    state.remove_before(start);
    Ok(state)
}

/// Accumulates the byte ranges a read returns.
struct ReadPlan {
    fetch_offset: i64,
    max_offset: i64,
    max_bytes: usize,
    min_one_batch: bool,
    total: usize,
    ranges: Vec<(Arc<File>, u64, usize)>,
    done: bool,
}

impl ReadPlan {
    fn visit(&mut self, file: &Arc<File>, pos: u64, h: &BatchHeader) -> ControlFlow<()> {
        if h.last_offset() < self.fetch_offset {
            return ControlFlow::Continue(());
        }
        let size = h.size();
        let first = self.total == 0;
        let fits = self.total.saturating_add(size) <= self.max_bytes;
        if h.base_offset >= self.max_offset || !(fits || first && self.min_one_batch) {
            self.done = true;
            return ControlFlow::Break(());
        }
        self.total += size;
        match self.ranges.last_mut() {
            Some((f, start, len)) if Arc::ptr_eq(f, file) && *start + *len as u64 == pos => *len += size,
            _ => self.ranges.push((Arc::clone(file), pos, size)),
        }
        ControlFlow::Continue(())
    }

    fn into_bytes(self) -> Result<Bytes> {
        let mut buf = vec![0u8; self.total];
        let mut at = 0;
        for (file, pos, len) in &self.ranges {
            file.read_exact_at(&mut buf[at..at + len], *pos)?;
            at += len;
        }
        Ok(Bytes::from(buf))
    }
}

/// Scans a segment view for the first record with timestamp `>= target` at or after
/// `log_start`.
fn find_timestamp(view: &SegmentView, target: i64, log_start: i64) -> Result<Option<(i64, i64)>> {
    let mut found = None;
    scan_headers(&view.file, view.start, view.end, |pos, h| {
        if h.max_timestamp < target || h.last_offset() < log_start {
            return Ok(ControlFlow::Continue(()));
        }
        found = first_record_at_or_after(&view.file, pos, h, target, log_start)?;
        Ok(if found.is_some() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
    })?;
    Ok(found)
}

fn first_record_at_or_after(
    file: &File,
    pos: u64,
    h: &BatchHeader,
    target: i64,
    min_offset: i64,
) -> Result<Option<(i64, i64)>> {
    if h.is_log_append_time() || h.compression() != 0 {
        let timestamp =
            if !h.is_log_append_time() && h.base_timestamp >= target { h.base_timestamp } else { h.max_timestamp };
        return Ok(Some((h.base_offset.max(min_offset), timestamp)));
    }
    let bytes = read_batch(file, pos, h.size())?;
    for record in RecordWalker::new(&bytes).map_err(stored_corrupt)? {
        let record = record.map_err(stored_corrupt)?;
        let offset = h.base_offset + i64::from(record.offset_delta);
        let timestamp = h.base_timestamp.saturating_add(record.timestamp_delta);
        if timestamp >= target && offset >= min_offset {
            return Ok(Some((offset, timestamp)));
        }
    }
    Ok(None)
}

fn offset_of_max_timestamp(file: &File, pos: u64, h: &BatchHeader) -> Result<i64> {
    if h.is_log_append_time() {
        return Ok(h.base_offset);
    }
    if h.compression() != 0 {
        return Ok(h.last_offset());
    }
    let bytes = read_batch(file, pos, h.size())?;
    for record in RecordWalker::new(&bytes).map_err(stored_corrupt)? {
        let record = record.map_err(stored_corrupt)?;
        if h.base_timestamp.saturating_add(record.timestamp_delta) == h.max_timestamp {
            return Ok(h.base_offset + i64::from(record.offset_delta));
        }
    }
    Ok(h.last_offset())
}

/// The offset of the record holding the largest timestamp, in the batch of `view` holding
/// `offset` (the last offset of the batch that reached it); `None` when no batch holds it.
fn exact_max_timestamp_offset(view: &SegmentView, offset: i64) -> Result<Option<i64>> {
    let mut exact = None;
    scan_headers(&view.file, view.start, view.end, |pos, h| {
        if h.last_offset() < offset {
            return Ok(ControlFlow::Continue(()));
        }
        exact = Some(offset_of_max_timestamp(&view.file, pos, h)?);
        Ok(ControlFlow::Break(()))
    })?;
    Ok(exact)
}

fn stored_corrupt(e: StorageError) -> StorageError {
    StorageError::Corrupted(format!("stored batch does not parse: {e}"))
}

#[path = "log_replication.rs"]
mod replication;

#[cfg(test)]
#[path = "log_tests.rs"]
mod tests;
