//! The follower's side of a partition log (Kafka's ISR replication, storage half): appending
//! batches exactly as the leader wrote them, answering from the leader-epoch cache where an
//! epoch ends, and cutting a divergent tail or the whole log.
//!
//! No networking and no replica state here: the replica layer decides when to fetch, what to
//! truncate and where the high watermark is. What this module guarantees is that each call
//! leaves the log, its producer state and its leader-epoch cache consistent with one another,
//! and that a truncation is durable before it returns, so that a crash right after it cannot
//! bring the cut tail back.

use std::sync::atomic::Ordering;

use super::super::batch::{self, BatchInfo};
use super::super::checkpoint::{self, RecoveryPointFile, LOG_START_FILE};
use super::super::error::{Result, StorageError};
use super::super::leader_epoch::LeaderEpochCache;
use super::super::producer_state::ProducerStateManager;
use super::super::segment::Segment;
use super::{check_open, load_producer_state, poisoned, remove_snapshots, settings, AppendInfo, Log, LogInner};

impl Log {
    /// Appends batches fetched from the partition leader exactly as it wrote them: offsets,
    /// partition leader epochs, timestamps, producer ids and sequences are kept (no offset
    /// assignment, no `LogAppendTime` stamp, no timestamp bounds, no `max.message.bytes`: the
    /// leader accepted them). Batches are checked as [`batch::validate_replicated_set`] does;
    /// the first must start at the log end offset and each next one right after the previous
    /// one. Producer state records the batches without sequence checks, so that a retry of
    /// one is still recognised as a duplicate should this replica become the leader. Leader
    /// epochs above the cache's latest add entries (saved before the write); older ones are
    /// ignored. The segment rolls as for [`append`](Self::append). The high watermark does not
    /// move, and the write reaches the page cache only, as for `append`.
    ///
    /// Returns `None` for an empty set, else the first and last offsets written.
    ///
    /// # Errors
    ///
    /// `NonContiguousAppend` when the set does not continue the log; the validation errors of
    /// [`batch::validate_replicated_set`]; `InvalidRecord` for a set spanning more offsets than
    /// a segment can index; `Io` when the write or the epoch checkpoint fails. Nothing is
    /// written in any of these cases.
    pub fn append_replicated(&self, records: &mut [u8], now_ms: i64) -> Result<Option<AppendInfo>> {
        if records.is_empty() {
            return Ok(None);
        }
        let batches = batch::validate_replicated_set(records)?;
        let mut inner = self.lock()?;
        check_open(&inner)?;
        let base_offset = inner.log_end_offset;
        let last_offset = check_contiguous(&batches, base_offset)?;
        let max_timestamp = batches.iter().map(|b| b.header.max_timestamp).max().unwrap_or(-1);
        inner.clock_ms = inner.clock_ms.max(now_ms);
        inner.roll_if_needed(&self.dir, records.len() as u64, last_offset, max_timestamp, now_ms)?;
        self.note_epochs(&mut inner, &batches)?;
        inner.active.append(records, &batches)?;
        inner.log_end_offset = last_offset + 1;
        for info in &batches {
            inner.producers.replay(&info.header);
        }
        self.published.publish(&inner);
        Ok(Some(AppendInfo {
            base_offset,
            last_offset,
            log_append_time_ms: -1,
            log_start_offset: inner.log_start_offset,
            duplicate: false,
        }))
    }

    /// The latest leader epoch that wrote to the log, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.lock_field().epochs.latest_epoch()
    }

    /// Where the leader epoch `requested` ends in this log, as `(epoch, end offset)`, with the
    /// exact rules of Kafka's `LeaderEpochFileCache.endOffsetFor` (the OffsetsForLeaderEpoch
    /// answer): `(-1, -1)` for `-1`, for an epoch above every known one and for an empty cache;
    /// `(latest, log end)` for the latest epoch; otherwise the start offset of the first epoch
    /// above `requested`, with the largest known epoch at or below it, or with `requested`
    /// itself when none is known (the log no longer holds them).
    pub fn end_offset_for_epoch(&self, requested: i32) -> (i32, i64) {
        let inner = self.lock_field();
        inner.epochs.end_offset_for(requested, inner.log_end_offset)
    }

    /// Removes every batch holding offsets at or above `offset` (a follower cutting the
    /// divergent tail a former leader left it). Kafka truncates whole batches only: when
    /// `offset` falls inside a batch, the log is cut at that batch's base offset, so the log end
    /// may end up below `offset`.
    ///
    /// Segments above the cut are deleted, the one holding it is shortened (file, indexes,
    /// largest timestamp); the log end moves to the cut, the high watermark, the flushed offset
    /// and the recovery point no higher than it; producer state is rebuilt from the newest
    /// snapshot at or below the cut (later ones are deleted) and the batches after it; the
    /// leader-epoch cache loses the epochs starting at or after the cut. All of it is fsynced
    /// (files, directory, checkpoints) before this returns. At or past the log end only the epoch
    /// cache is cut there (an epoch that wrote nothing); below the log start this is
    /// [`truncate_fully_and_start_at`](Self::truncate_fully_and_start_at)`(offset)`.
    ///
    /// Reads under way when the log is cut start again, and fail with `OffsetOutOfRange` if
    /// their offset is gone.
    ///
    /// # Errors
    ///
    /// `OffsetOutOfRange` for a negative `offset`; `Io` or `Corrupted` when a file cannot be
    /// read, cut, removed or synced. Should that happen once files have started to change, the
    /// log takes no more writes (`Io`, "log is closed"): reopen it, and recovery finds a prefix
    /// of the old log, which the replica layer truncates again.
    pub fn truncate_to(&self, offset: i64) -> Result<()> {
        let recovery_point = self.flush.lock().map_err(|_| poisoned())?;
        let _deleting = self.deleting.lock().map_err(|_| poisoned())?;
        let mut inner = self.lock()?;
        check_open(&inner)?;
        if offset >= inner.log_end_offset {
            let end = inner.log_end_offset;
            return self.update_epochs(&mut inner, |epochs| epochs.truncate_from_end(end));
        }
        if offset < inner.log_start_offset {
            check_new_start(&inner, offset)?;
            return self.destructive(&mut inner, |log, inner| log.start_empty_at(inner, &recovery_point, offset));
        }
        // The first segment starts at or below the log start, so `keep >= 1`.
        let keep = inner.segments().take_while(|s| s.base_offset <= offset).count();
        let segment = keep.checked_sub(1).and_then(|i| inner.segments().nth(i));
        let found = match segment {
            Some(segment) => segment.find_batch(offset)?,
            None => None,
        };
        let Some((position, cut)) = found else {
            return Err(StorageError::Corrupted(format!("no batch holds offset {offset} below the log end")));
        };
        self.destructive(&mut inner, |log, inner| log.cut_tail(inner, &recovery_point, keep, position, cut))
    }

    /// Deletes every segment and starts an empty log whose start and end are `offset` (a
    /// follower whose fetch offset fell below the leader's log start), with the high watermark
    /// there too, no producer state and an empty leader-epoch cache. Durable before it returns
    /// (segment files, log start and high-watermark checkpoints, epoch cache, directory).
    ///
    /// # Errors
    ///
    /// `OffsetOutOfRange` for a negative `offset`; `Io` when a file cannot be removed, created
    /// or synced, after which the log takes no more writes, as for
    /// [`truncate_to`](Self::truncate_to).
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<()> {
        let recovery_point = self.flush.lock().map_err(|_| poisoned())?;
        let _deleting = self.deleting.lock().map_err(|_| poisoned())?;
        let mut inner = self.lock()?;
        check_open(&inner)?;
        check_new_start(&inner, offset)?;
        self.destructive(&mut inner, |log, inner| log.start_empty_at(inner, &recovery_point, offset))
    }

    /// Runs a change that rewrites files under `inner`, after moving the generation so that
    /// reads under way start again. When it fails the log is closed to writes: the files and
    /// the in-memory state may disagree, and only reopening reconciles them.
    fn destructive(&self, inner: &mut LogInner, change: impl FnOnce(&Self, &mut LogInner) -> Result<()>) -> Result<()> {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let result = change(self, inner);
        if let Err(e) = &result {
            inner.closed = true;
            tracing::error!(dir = %self.dir.display(), error = %e, "truncation failed: the log takes no writes until reopened");
        }
        self.published.publish(inner);
        result
    }

    /// Lowers the flushed offset and the recovery point to `offset` when they are above it,
    /// the latter fsynced: a stale, higher recovery point would make recovery trust files
    /// written after the cut without scanning them.
    fn lower_recovery_point(&self, recovery_point: &RecoveryPointFile, offset: i64) -> Result<()> {
        if self.flushed_offset.load(Ordering::Acquire) > offset {
            self.flushed_offset.store(offset, Ordering::Release);
            recovery_point.write_synced(offset)?;
        }
        Ok(())
    }

    /// [`truncate_to`](Self::truncate_to) once the cut is found: the batch at `position` of the
    /// segment at index `keep - 1`, based at `cut`. Files change from the end backwards, so a
    /// crash part way leaves a prefix of the old log.
    fn cut_tail(
        &self,
        inner: &mut LogInner,
        recovery_point: &RecoveryPointFile,
        keep: usize,
        position: u64,
        cut: i64,
    ) -> Result<()> {
        self.lower_recovery_point(recovery_point, cut)?;
        remove_snapshots(&self.dir, |offset| offset > cut)?;
        while inner.rolled.len() >= keep {
            let Some(previous) = inner.rolled.pop() else { break };
            let removed = std::mem::replace(&mut inner.active, previous);
            removed.delete_files()?;
        }
        inner.active.truncate_at(position, cut)?;
        inner.active.remove_index_files()?;
        inner.active.log.sync_all()?;
        checkpoint::sync_dir(&self.dir)?;
        inner.log_end_offset = cut;
        if inner.log_start_offset > cut {
            // Only when the log start sat inside the cut batch: Kafka's min(target, log start).
            checkpoint::write_offset_durably(&self.dir, LOG_START_FILE, cut)?;
            inner.log_start_offset = cut;
        }
        inner.producers = load_producer_state(&self.dir, inner)?;
        self.update_epochs(inner, |epochs| epochs.truncate_from_end(cut))?;
        inner.high_watermark = inner.high_watermark.min(cut);
        self.published.publish(inner);
        // Always written: a missing or higher checkpoint would let the next open expose the
        // batches appended after the cut before they are replicated.
        self.checkpoint_high_watermark()?;
        tracing::info!(dir = %self.dir.display(), log_end_offset = cut, "truncated log");
        Ok(())
    }

    /// [`truncate_fully_and_start_at`](Self::truncate_fully_and_start_at) under the locks.
    fn start_empty_at(&self, inner: &mut LogInner, recovery_point: &RecoveryPointFile, offset: i64) -> Result<()> {
        self.lower_recovery_point(recovery_point, offset)?;
        remove_snapshots(&self.dir, |_| true)?;
        // Newest first, so that a crash part way leaves a prefix of the old log.
        for segment in std::iter::once(&inner.active).chain(inner.rolled.iter().rev()) {
            segment.delete_files()?;
        }
        let segment = Segment::create(&self.dir, offset, settings(&inner.config), inner.clock_ms)?;
        inner.rolled.clear();
        inner.active = segment;
        self.update_epochs(inner, LeaderEpochCache::clear)?;
        // Also syncs the directory, making the removals and the new segment durable.
        checkpoint::write_offset_durably(&self.dir, LOG_START_FILE, offset)?;
        inner.log_start_offset = offset;
        inner.log_end_offset = offset;
        inner.high_watermark = offset;
        inner.producers = ProducerStateManager::default();
        self.published.publish(inner);
        self.checkpoint_high_watermark()?;
        recovery_point.write_synced(offset)?;
        self.flushed_offset.store(offset, Ordering::Release);
        tracing::info!(dir = %self.dir.display(), log_start_offset = offset, "truncated log fully");
        Ok(())
    }
}

/// Refuses a negative new log start.
fn check_new_start(inner: &LogInner, offset: i64) -> Result<()> {
    if offset < 0 {
        return Err(StorageError::OffsetOutOfRange {
            offset,
            log_start: inner.log_start_offset,
            log_end: inner.log_end_offset,
        });
    }
    Ok(())
}

/// The last offset of a replicated set that must continue a log ending at `log_end_offset`.
///
/// # Errors
///
/// `NonContiguousAppend` for a batch that does not start where the previous one (or the log)
/// ends; `InvalidRecord` when the offsets overflow or span more than a segment can index.
fn check_contiguous(batches: &[BatchInfo], log_end_offset: i64) -> Result<i64> {
    let mut expected = log_end_offset;
    for info in batches {
        let h = &info.header;
        if h.base_offset != expected {
            return Err(StorageError::NonContiguousAppend { expected, found: h.base_offset });
        }
        // Validated: 0 <= last_offset_delta < i32::MAX.
        let next = h.base_offset.checked_add(i64::from(h.last_offset_delta) + 1);
        expected = next.ok_or_else(|| StorageError::InvalidRecord("offsets overflow".into()))?;
    }
    let last_offset = expected - 1;
    if last_offset - log_end_offset > i64::from(u32::MAX) {
        return Err(StorageError::InvalidRecord("record set spans more offsets than a segment can index".into()));
    }
    Ok(last_offset)
}

#[cfg(test)]
#[path = "log_replication_tests.rs"]
mod tests;
