//! The leader-epoch cache of one partition (Kafka's `LeaderEpochFileCache`): for every leader
//! epoch that wrote to the log, the offset of its first batch. A follower asks the leader where
//! its latest epoch ends (OffsetsForLeaderEpoch, answered by [`LeaderEpochCache::end_offset_for`])
//! and cuts whatever it holds past that answer: this is how the divergent tail a former leader
//! left behind is found (KIP-101, KIP-279).
//!
//! Persisted as Kafka's `leader-epoch-checkpoint` text file: a version line (`0`), a count line,
//! then one `epoch startOffset` line per entry, replaced durably whenever the cache changes.
//! This module never reads the log: the log tells it the epochs of the batches it appends and
//! where it was truncated. The cache is a pure value; only [`read`](LeaderEpochCache::read) and
//! [`write`](LeaderEpochCache::write) touch the disk.

use std::fs;
use std::io;
use std::path::Path;

use super::checkpoint;
use super::error::Result;

/// The file's name in the partition directory, as Kafka names it.
pub(crate) const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";

const VERSION: &str = "0";
/// Kafka's `UNDEFINED_EPOCH` and `UNDEFINED_EPOCH_OFFSET`.
const UNDEFINED_EPOCH: i32 = -1;
const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// One leader epoch and the offset of the first batch it wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// The entries, epochs strictly increasing, start offsets non-decreasing (entries this module
/// creates have strictly increasing offsets; a file written by Kafka may repeat one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    #[cfg(test)]
    pub fn from_entries(entries: &[(i32, i64)]) -> Option<Self> {
        let entries: Vec<EpochEntry> =
            entries.iter().map(|&(epoch, start_offset)| EpochEntry { epoch, start_offset }).collect();
        is_well_formed(&entries).then_some(LeaderEpochCache { entries })
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest epoch that wrote to the log.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// True when a batch stamped `epoch` starts a new entry: it is a real epoch (`>= 0`; `-1`
    /// means "none") above the latest one. A batch with an older epoch changes nothing.
    pub fn is_new_epoch(&self, epoch: i32) -> bool {
        epoch >= 0 && self.latest_epoch().is_none_or(|latest| epoch > latest)
    }

    /// Records that `epoch` wrote its first batch at `start_offset` when
    /// [`is_new_epoch`](Self::is_new_epoch); returns whether the cache changed. As Kafka's
    /// `assign`, entries that start at or after `start_offset` are dropped first: such an epoch
    /// wrote nothing that is still in the log.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if !self.is_new_epoch(epoch) || start_offset < 0 {
            return false;
        }
        while self.entries.last().is_some_and(|e| e.start_offset >= start_offset) {
            self.entries.pop();
        }
        self.entries.push(EpochEntry { epoch, start_offset });
        true
    }

    /// Kafka's `LeaderEpochFileCache.endOffsetFor`: `(epoch, end offset)` for a follower or
    /// consumer that last saw `requested`. The end offset is where the next epoch starts (the
    /// log end for the latest epoch); the epoch is the largest one at or below `requested`, or
    /// `requested` itself when the log no longer holds anything older. `(-1, -1)` for
    /// `requested == -1`, for an epoch above every known one, and for an empty cache.
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        if requested == UNDEFINED_EPOCH {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, log_end_offset);
        }
        let higher = self.entries.partition_point(|e| e.epoch <= requested);
        let Some(next) = self.entries.get(higher) else {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        };
        match higher.checked_sub(1).map(|i| self.entries[i]) {
            None => (requested, next.start_offset),
            Some(floor) => (floor.epoch, next.start_offset),
        }
    }

    /// Drops the entries starting at or after `end_offset` (the log was cut there); returns
    /// whether any was dropped.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let keep = self.entries.partition_point(|e| e.start_offset < end_offset);
        let changed = keep < self.entries.len();
        self.entries.truncate(keep);
        changed
    }

    /// The log now starts at `start_offset`: entries starting at or before it are dropped except
    /// the latest of them, which now starts at `start_offset` (Kafka's `truncateFromStart`: that
    /// epoch still owns the first offsets left). Returns whether anything changed.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let covered = self.entries.partition_point(|e| e.start_offset <= start_offset);
        let Some(last_covered) = covered.checked_sub(1) else {
            return false;
        };
        let moved = EpochEntry { epoch: self.entries[last_covered].epoch, start_offset };
        let changed = covered > 1 || self.entries[0] != moved;
        self.entries.drain(..last_covered);
        self.entries[0] = moved;
        changed
    }

    /// Forgets every entry; returns whether there was any.
    pub fn clear(&mut self) -> bool {
        let changed = !self.entries.is_empty();
        self.entries.clear();
        changed
    }

    /// The checkpoint file's text.
    pub fn encode(&self) -> String {
        let mut text = format!("{VERSION}\n{}\n", self.entries.len());
        for e in &self.entries {
            text.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        text
    }

    /// Parses checkpoint text; `None` unless it is exactly a version-0 file whose count matches
    /// its entry lines and whose entries are well formed (non-negative, epochs strictly
    /// increasing, offsets non-decreasing).
    pub fn decode(text: &str) -> Option<Self> {
        let mut lines = text.lines().map(str::trim);
        if lines.next()? != VERSION {
            return None;
        }
        let count: usize = lines.next()?.parse().ok()?;
        let mut entries = Vec::new();
        for _ in 0..count {
            let mut fields = lines.next()?.split_whitespace();
            let epoch = fields.next()?.parse().ok()?;
            let start_offset = fields.next()?.parse().ok()?;
            if fields.next().is_some() {
                return None;
            }
            entries.push(EpochEntry { epoch, start_offset });
        }
        if lines.any(|line| !line.is_empty()) || !is_well_formed(&entries) {
            return None;
        }
        Some(LeaderEpochCache { entries })
    }

    /// Reads `dir`'s checkpoint; `Ok(None)` when there is none or it does not parse (the
    /// caller rebuilds the cache from the log).
    ///
    /// # Errors
    ///
    /// `Io` when the file exists but cannot be read.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(LEADER_EPOCH_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let cache = std::str::from_utf8(&bytes).ok().and_then(Self::decode);
        if cache.is_none() {
            tracing::warn!(path = %path.display(), "ignoring unreadable leader-epoch checkpoint");
        }
        Ok(cache)
    }

    /// Replaces `dir`'s checkpoint durably (temp file, fsync, rename, directory fsync).
    ///
    /// # Errors
    ///
    /// `Io` when any step fails; the old file is then still whole.
    pub fn write(&self, dir: &Path) -> Result<()> {
        checkpoint::write_durably(dir, LEADER_EPOCH_FILE, self.encode().as_bytes())
    }
}

fn is_well_formed(entries: &[EpochEntry]) -> bool {
    let non_negative = entries.iter().all(|e| e.epoch >= 0 && e.start_offset >= 0);
    let ordered = entries.windows(2).all(|w| w[0].epoch < w[1].epoch && w[0].start_offset <= w[1].start_offset);
    non_negative && ordered
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        LeaderEpochCache::from_entries(entries).unwrap()
    }

    fn pairs(cache: &LeaderEpochCache) -> Vec<(i32, i64)> {
        cache.entries().iter().map(|e| (e.epoch, e.start_offset)).collect()
    }

    #[test]
    fn end_offset_for_follows_kafka() {
        let c = cache(&[(1, 0), (3, 100), (5, 250)]);
        let leo = 400;
        assert_eq!(c.end_offset_for(-1, leo), (-1, -1));
        assert_eq!(c.end_offset_for(5, leo), (5, 400), "latest epoch ends at the log end");
        assert_eq!(c.end_offset_for(6, leo), (-1, -1), "above every known epoch");
        assert_eq!(c.end_offset_for(1, leo), (1, 100));
        assert_eq!(c.end_offset_for(2, leo), (1, 100), "unknown epoch: the floor epoch, the next start");
        assert_eq!(c.end_offset_for(3, leo), (3, 250));
        assert_eq!(c.end_offset_for(4, leo), (3, 250));
        assert_eq!(c.end_offset_for(0, leo), (0, 0), "below every known epoch: requested, first start");
        let c = cache(&[(4, 30)]);
        assert_eq!(c.end_offset_for(2, leo), (2, 30));
        assert_eq!(LeaderEpochCache::default().end_offset_for(0, leo), (-1, -1));
        assert_eq!(LeaderEpochCache::default().end_offset_for(-1, leo), (-1, -1));
    }

    #[test]
    fn assign_takes_only_newer_epochs() {
        let mut c = LeaderEpochCache::default();
        assert!(!c.assign(-1, 0), "no epoch");
        assert!(c.assign(0, 0));
        assert!(!c.assign(0, 10), "same epoch");
        assert!(c.assign(2, 10));
        assert!(!c.assign(1, 20), "older epoch");
        assert_eq!(pairs(&c), vec![(0, 0), (2, 10)]);
        // An epoch that wrote nothing before the new one's start is dropped, as Kafka does.
        assert!(c.assign(3, 10));
        assert_eq!(pairs(&c), vec![(0, 0), (3, 10)]);
        assert_eq!(c.latest_epoch(), Some(3));
    }

    #[test]
    fn truncation_from_either_end() {
        let mut c = cache(&[(1, 0), (3, 100), (5, 250)]);
        assert!(!c.truncate_from_end(251));
        assert!(c.truncate_from_end(250));
        assert_eq!(pairs(&c), vec![(1, 0), (3, 100)]);
        assert!(!c.truncate_from_start(0));
        assert!(c.truncate_from_start(50));
        assert_eq!(pairs(&c), vec![(1, 50), (3, 100)]);
        assert!(c.truncate_from_start(100));
        assert_eq!(pairs(&c), vec![(3, 100)]);
        assert!(!c.truncate_from_start(100));
        assert!(c.truncate_from_start(120));
        assert_eq!(pairs(&c), vec![(3, 120)]);
        assert!(c.truncate_from_end(0));
        assert!(c.entries().is_empty());
        assert!(!c.clear());
    }

    #[test]
    fn file_format_is_kafkas() {
        let c = cache(&[(0, 0), (7, 1234)]);
        assert_eq!(c.encode(), "0\n2\n0 0\n7 1234\n");
        assert_eq!(LeaderEpochCache::decode(&c.encode()), Some(c));
        assert_eq!(LeaderEpochCache::decode("0\n0\n"), Some(LeaderEpochCache::default()));
        for bad in [
            "",
            "1\n0\n",
            "0\n2\n0 0\n",
            "0\n1\n0 0\n1 5\n",
            "0\n1\n0\n",
            "0\n1\n0 0 0\n",
            "0\n2\n3 0\n2 5\n",
            "0\n2\n1 9\n2 5\n",
            "0\n1\n-1 0\n",
            "0\n18446744073709551615\n",
            "0\nx\n",
        ] {
            assert_eq!(LeaderEpochCache::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn read_and_write_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(LeaderEpochCache::read(dir.path()).unwrap(), None);
        let c = cache(&[(2, 5), (9, 77)]);
        c.write(dir.path()).unwrap();
        let text = fs::read_to_string(dir.path().join(LEADER_EPOCH_FILE)).unwrap();
        assert_eq!(text, "0\n2\n2 5\n9 77\n");
        assert_eq!(LeaderEpochCache::read(dir.path()).unwrap(), Some(c));
        fs::write(dir.path().join(LEADER_EPOCH_FILE), b"0\n3\n\xff").unwrap();
        assert_eq!(LeaderEpochCache::read(dir.path()).unwrap(), None);
    }
}
