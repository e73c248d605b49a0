//! Idempotent-producer state of one partition: per producer id, its current epoch and its last
//! five batches, so that a retried batch is answered with its original offsets instead of being
//! written twice, and a gap or a stale epoch is refused with Kafka's error.
//!
//! The rules follow Kafka's `ProducerAppendInfo.checkProducerEpoch` / `checkSequence` and
//! `ProducerStateEntry.findDuplicateBatch` (Kafka 3.x/4.x, non-transactional path). The state is
//! rebuilt from the log on open, starting from a snapshot (`<offset>.snapshot`). It never writes
//! to the log and never sees a request type.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::path::Path;

use super::batch::{increment_sequence, BatchHeader, BatchInfo};
use super::error::{Result, StorageError};
use super::index::write_synced;

/// How many recent batches per producer are remembered for duplicate detection (Kafka's
/// `NUM_BATCHES_TO_RETAIN`, matching `max.in.flight.requests.per.connection <= 5`).
pub const BATCHES_TO_RETAIN: usize = 5;

const SNAPSHOT_MAGIC: &[u8; 4] = b"SLPS";
const SNAPSHOT_VERSION: u16 = 1;
const SNAPSHOT_PREFIX_LEN: usize = 10; // magic + version + crc
const ENTRY_HEADER_LEN: usize = 11; // producer id + epoch + batch count
const BATCH_LEN: usize = 32;

/// Where one idempotent batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMetadata>,
}

impl ProducerEntry {
    fn new(epoch: i16) -> Self {
        ProducerEntry { epoch, batches: VecDeque::with_capacity(BATCHES_TO_RETAIN) }
    }

    /// Adds a batch; a new epoch forgets the old epoch's batches.
    fn record(&mut self, epoch: i16, batch: BatchMetadata) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.batches.clear();
        }
        self.batches.push_back(batch);
        while self.batches.len() > BATCHES_TO_RETAIN {
            self.batches.pop_front();
        }
    }

    fn find_duplicate(&self, header: &BatchHeader) -> Option<BatchMetadata> {
        if header.producer_epoch != self.epoch {
            return None;
        }
        let (first, last) = (header.base_sequence, header.last_sequence());
        self.batches.iter().find(|b| b.first_seq == first && b.last_seq == last).copied()
    }

    fn last_offset(&self) -> Option<i64> {
        self.batches.back().map(|b| b.last_offset)
    }
}

/// The outcome of checking a record set against producer state.
#[derive(Debug)]
pub enum Prepared {
    /// A batch of the set was already written: answer with its original offsets, write nothing.
    Duplicate(BatchMetadata),
    /// The set may be written; apply this with [`ProducerStateManager::commit`] once it is.
    Append(PendingUpdate),
}

/// Producer entries as they will be after a successful write.
#[derive(Debug, Default)]
pub struct PendingUpdate(Vec<(i64, ProducerEntry)>);

/// All producers' state for one partition.
#[derive(Debug, Default)]
pub struct ProducerStateManager {
    producers: HashMap<i64, ProducerEntry>,
}

/// `next` directly follows `last`, wrapping from `i32::MAX` to 0 (Kafka's `inSequence`).
fn in_sequence(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

/// Kafka's epoch and sequence rules for a batch that is not a duplicate.
fn check_sequence(entry: Option<&ProducerEntry>, h: &BatchHeader) -> Result<()> {
    // A producer we hold no state for (new, or removed because retention deleted all of its
    // batches) may start at any sequence: Kafka >= 2.5 (KIP-360) accepts it the same way, since
    // the broker cannot tell a gap from state that expired.
    let Some(entry) = entry else { return Ok(()) };
    let out_of_order = |last_sequence| StorageError::OutOfOrderSequence {
        producer_id: h.producer_id,
        producer_epoch: h.producer_epoch,
        base_sequence: h.base_sequence,
        last_sequence,
    };
    if h.producer_epoch < entry.epoch {
        return Err(StorageError::InvalidProducerEpoch {
            producer_id: h.producer_id,
            producer_epoch: h.producer_epoch,
            current_epoch: entry.epoch,
        });
    }
    let last = entry.batches.back().map_or(-1, |b| b.last_seq);
    if h.producer_epoch > entry.epoch {
        // A bumped epoch starts its sequences again at 0.
        return if h.base_sequence == 0 { Ok(()) } else { Err(out_of_order(-1)) };
    }
    if entry.batches.is_empty() || in_sequence(last, h.base_sequence) {
        Ok(())
    } else {
        Err(out_of_order(last))
    }
}

impl ProducerStateManager {
    /// Checks every idempotent batch of a record set about to be written at `base_offset`,
    /// in order, as if the earlier ones had been written already.
    ///
    /// # Errors
    ///
    /// `InvalidProducerEpoch` for an epoch older than the producer's current one;
    /// `OutOfOrderSequence` for a sequence that does not follow the last one.
    pub fn prepare(&self, batches: &[BatchInfo], base_offset: i64, now_ms: i64) -> Result<Prepared> {
        let mut staged: Vec<(i64, ProducerEntry)> = Vec::new();
        let mut offset = base_offset;
        for info in batches {
            let h = &info.header;
            let first_offset = offset;
            offset += i64::from(h.record_count);
            if !h.has_producer_id() {
                continue;
            }
            let slot = staged.iter().position(|(id, _)| *id == h.producer_id);
            let current = match slot {
                Some(i) => Some(&staged[i].1),
                None => self.producers.get(&h.producer_id),
            };
            if let Some(duplicate) = current.and_then(|e| e.find_duplicate(h)) {
                return Ok(Prepared::Duplicate(duplicate));
            }
            check_sequence(current, h)?;
            let mut entry = current.cloned().unwrap_or_else(|| ProducerEntry::new(h.producer_epoch));
            let timestamp = if h.max_timestamp >= 0 { h.max_timestamp } else { now_ms };
            entry.record(h.producer_epoch, metadata(h, first_offset, offset - 1, timestamp));
            match slot {
                Some(i) => staged[i].1 = entry,
                None => staged.push((h.producer_id, entry)),
            }
        }
        Ok(Prepared::Append(PendingUpdate(staged)))
    }

    /// Applies the result of [`prepare`](Self::prepare) after the write succeeded.
    pub fn commit(&mut self, update: PendingUpdate) {
        self.producers.extend(update.0);
    }

    /// Rebuilds state from a batch already in the log (recovery): no checks, as Kafka does for
    /// batches it reloads. Control batches carry no sequences and are skipped.
    pub fn replay(&mut self, h: &BatchHeader) {
        if !h.has_producer_id() || h.is_control() {
            return;
        }
        let entry = self.producers.entry(h.producer_id).or_insert_with(|| ProducerEntry::new(h.producer_epoch));
        if h.producer_epoch < entry.epoch {
            return;
        }
        let meta = metadata(h, h.base_offset, h.last_offset(), h.max_timestamp);
        entry.record(h.producer_epoch, meta);
    }

    /// Forgets producers whose every batch lies below `log_start_offset` (deleted by retention),
    /// as Kafka does when the log start moves.
    pub fn remove_before(&mut self, log_start_offset: i64) {
        self.producers.retain(|_, e| e.last_offset().is_some_and(|o| o >= log_start_offset));
    }

    /// `(epoch, last sequence)` of a producer, when known.
    pub fn last_sequence(&self, producer_id: i64) -> Option<(i16, i32)> {
        let entry = self.producers.get(&producer_id)?;
        Some((entry.epoch, entry.batches.back().map_or(-1, |b| b.last_seq)))
    }

    /// Number of producers tracked.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// True when no producer is tracked.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Writes the whole state to `path` (versioned, CRC-32C protected), fsynced.
    ///
    /// # Errors
    ///
    /// `Io` when the file cannot be written.
    pub fn write_snapshot(&self, path: &Path) -> Result<()> {
        let mut body = Vec::with_capacity(4 + self.producers.len() * (ENTRY_HEADER_LEN + BATCH_LEN));
        body.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        for (id, entry) in &self.producers {
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&entry.epoch.to_be_bytes());
            body.push(entry.batches.len() as u8); // at most BATCHES_TO_RETAIN
            for b in &entry.batches {
                body.extend_from_slice(&b.first_seq.to_be_bytes());
                body.extend_from_slice(&b.last_seq.to_be_bytes());
                body.extend_from_slice(&b.first_offset.to_be_bytes());
                body.extend_from_slice(&b.last_offset.to_be_bytes());
                body.extend_from_slice(&b.timestamp.to_be_bytes());
            }
        }
        let mut file = Vec::with_capacity(SNAPSHOT_PREFIX_LEN + body.len());
        file.extend_from_slice(SNAPSHOT_MAGIC);
        file.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        file.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        file.extend_from_slice(&body);
        let tmp = path.with_extension("snapshot.tmp");
        write_synced(&tmp, &file)?;
        fs::rename(&tmp, path)?;
        Ok(())
    }

    /// Reads a snapshot written by [`write_snapshot`](Self::write_snapshot).
    ///
    /// # Errors
    ///
    /// `Io` when the file cannot be read; `Corrupted` when its magic, version, CRC or layout is
    /// wrong.
    pub fn read_snapshot(path: &Path) -> Result<Self> {
        let bytes = fs::read(path)?;
        let bad = |why: &str| StorageError::Corrupted(format!("{}: {why}", path.display()));
        if bytes.len() < SNAPSHOT_PREFIX_LEN + 4 || &bytes[..4] != SNAPSHOT_MAGIC {
            return Err(bad("not a producer snapshot"));
        }
        if u16::from_be_bytes([bytes[4], bytes[5]]) != SNAPSHOT_VERSION {
            return Err(bad("unknown snapshot version"));
        }
        let crc = u32::from_be_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]);
        let body = &bytes[SNAPSHOT_PREFIX_LEN..];
        if crc32c::crc32c(body) != crc {
            return Err(bad("CRC mismatch"));
        }
        decode_body(body).ok_or_else(|| bad("malformed entries"))
    }
}

fn metadata(h: &BatchHeader, first_offset: i64, last_offset: i64, timestamp: i64) -> BatchMetadata {
    BatchMetadata {
        first_seq: h.base_sequence,
        last_seq: increment_sequence(h.base_sequence, h.last_offset_delta),
        first_offset,
        last_offset,
        timestamp,
    }
}

/// Bounds-checked big-endian reader over a snapshot body.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_at_checked(N)?;
        self.0 = rest;
        head.try_into().ok()
    }
    fn i16(&mut self) -> Option<i16> {
        self.take().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
}

fn decode_body(body: &[u8]) -> Option<ProducerStateManager> {
    let mut r = Reader(body);
    let count = u32::from_be_bytes(r.take()?);
    let mut state = ProducerStateManager::default();
    for _ in 0..count {
        let id = r.i64()?;
        let mut entry = ProducerEntry::new(r.i16()?);
        let [n] = r.take::<1>()?;
        if usize::from(n) > BATCHES_TO_RETAIN {
            return None;
        }
        for _ in 0..n {
            entry.batches.push_back(BatchMetadata {
                first_seq: r.i32()?,
                last_seq: r.i32()?,
                first_offset: r.i64()?,
                last_offset: r.i64()?,
                timestamp: r.i64()?,
            });
        }
        state.producers.insert(id, entry);
    }
    r.0.is_empty().then_some(state)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::super::batch::test_util::TestBatch;
    use super::super::batch::validate_record_set;
    use super::*;

    fn infos(batches: &[TestBatch]) -> Vec<BatchInfo> {
        let mut set = Vec::new();
        for b in batches {
            set.extend_from_slice(&b.encode());
        }
        validate_record_set(&set, 1 << 20).unwrap()
    }

    /// Prepares and commits; returns the duplicate's first offset if it was one.
    fn append(state: &mut ProducerStateManager, batches: &[TestBatch], at: i64) -> Result<Option<i64>> {
        match state.prepare(&infos(batches), at, 0)? {
            Prepared::Duplicate(m) => Ok(Some(m.first_offset)),
            Prepared::Append(u) => {
                state.commit(u);
                Ok(None)
            }
        }
    }

    #[test]
    fn sequence_rules() {
        let mut s = ProducerStateManager::default();
        assert_eq!(append(&mut s, &[TestBatch::new(2).idempotent(1, 0, 0)], 0).unwrap(), None);
        assert_eq!(append(&mut s, &[TestBatch::new(2).idempotent(1, 0, 2)], 2).unwrap(), None);
        // Retry of the first batch: duplicate with its original offset.
        assert_eq!(append(&mut s, &[TestBatch::new(2).idempotent(1, 0, 0)], 4).unwrap(), Some(0));
        // Gap.
        let e = append(&mut s, &[TestBatch::new(1).idempotent(1, 0, 9)], 4).unwrap_err();
        assert!(matches!(e, StorageError::OutOfOrderSequence { last_sequence: 3, .. }), "{e}");
        // New epoch must restart at 0.
        let e = append(&mut s, &[TestBatch::new(1).idempotent(1, 1, 4)], 4).unwrap_err();
        assert!(matches!(e, StorageError::OutOfOrderSequence { .. }), "{e}");
        assert_eq!(append(&mut s, &[TestBatch::new(1).idempotent(1, 1, 0)], 4).unwrap(), None);
        // Old epoch is fenced.
        let e = append(&mut s, &[TestBatch::new(1).idempotent(1, 0, 4)], 5).unwrap_err();
        assert!(matches!(e, StorageError::InvalidProducerEpoch { current_epoch: 1, .. }), "{e}");
        // Unknown producer may start anywhere.
        assert_eq!(append(&mut s, &[TestBatch::new(1).idempotent(2, 0, 77)], 5).unwrap(), None);
        assert_eq!(s.last_sequence(2), Some((0, 77)));
    }

    #[test]
    fn only_five_batches_are_remembered() {
        let mut s = ProducerStateManager::default();
        for i in 0..6 {
            append(&mut s, &[TestBatch::new(1).idempotent(1, 0, i)], i64::from(i)).unwrap();
        }
        assert_eq!(append(&mut s, &[TestBatch::new(1).idempotent(1, 0, 1)], 6).unwrap(), Some(1));
        assert!(append(&mut s, &[TestBatch::new(1).idempotent(1, 0, 0)], 6).is_err());
    }

    #[test]
    fn sequence_wraps_at_i32_max() {
        let mut s = ProducerStateManager::default();
        append(&mut s, &[TestBatch::new(1).idempotent(1, 0, i32::MAX)], 0).unwrap();
        assert_eq!(append(&mut s, &[TestBatch::new(2).idempotent(1, 0, 0)], 1).unwrap(), None);
    }

    #[test]
    fn batches_in_one_set_are_checked_in_order() {
        let mut s = ProducerStateManager::default();
        let set = [TestBatch::new(2).idempotent(1, 0, 0), TestBatch::new(2).idempotent(1, 0, 2)];
        assert_eq!(append(&mut s, &set, 10).unwrap(), None);
        assert_eq!(s.last_sequence(1), Some((0, 3)));
        let bad = [TestBatch::new(1).idempotent(1, 0, 4), TestBatch::new(1).idempotent(1, 0, 9)];
        assert!(append(&mut s, &bad, 14).is_err());
        assert_eq!(s.last_sequence(1), Some((0, 3)), "a refused set changes nothing");
    }

    #[test]
    fn snapshot_round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ProducerStateManager::default();
        for i in 0..7 {
            append(&mut s, &[TestBatch::new(1).idempotent(i64::from(i % 3), 2, i / 3)], 0).unwrap();
        }
        let p = dir.path().join("00000000000000000007.snapshot");
        s.write_snapshot(&p).unwrap();
        let back = ProducerStateManager::read_snapshot(&p).unwrap();
        assert_eq!(back.producers, s.producers);
        let mut bytes = fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&p, &bytes).unwrap();
        assert!(matches!(ProducerStateManager::read_snapshot(&p), Err(StorageError::Corrupted(_))));
    }

    #[test]
    fn remove_before_drops_producers_below_log_start() {
        let mut s = ProducerStateManager::default();
        append(&mut s, &[TestBatch::new(1).idempotent(1, 0, 0)], 0).unwrap();
        append(&mut s, &[TestBatch::new(1).idempotent(2, 0, 0)], 10).unwrap();
        s.remove_before(5);
        assert_eq!(s.len(), 1);
        assert!(s.last_sequence(1).is_none());
    }
}
