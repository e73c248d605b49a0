//! The two sparse indexes of a segment, held in memory and saved whole to disk on roll and on
//! close. Both map from something a reader knows (an offset, a timestamp) to where a scan of the
//! `.log` file may start; neither is ever the only record of anything (the log can rebuild them).
//!
//! On-disk formats (big-endian, fixed-size entries, no header):
//! `.index`: relative offset `u32` + file position `u32` of a batch starting there.
//! `.timeindex`: max timestamp so far `i64` + relative last offset `u32` of the first batch that
//! reached it.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use super::error::{Result, StorageError};

const OFFSET_ENTRY_LEN: usize = 8;
const TIME_ENTRY_LEN: usize = 12;

/// Sparse map from a batch's offset (relative to the segment base) to its file position.
#[derive(Debug, Default)]
pub(crate) struct OffsetIndex {
    entries: Vec<(u32, u32)>,
    max_entries: usize,
}

impl OffsetIndex {
    /// An empty index that reports full after `max_bytes` worth of entries.
    pub fn new(max_bytes: u32) -> Self {
        OffsetIndex { entries: Vec::new(), max_entries: max_bytes as usize / OFFSET_ENTRY_LEN }
    }

    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.max_entries
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn last(&self) -> Option<(u32, u32)> {
        self.entries.last().copied()
    }

    /// Adds an entry; entries must grow in both offset and position.
    pub fn append(&mut self, relative_offset: u32, position: u32) {
        if let Some((o, p)) = self.last() {
            assert!(relative_offset > o && position > p, "offset index must grow");
        }
        self.entries.push((relative_offset, position));
    }

    /// Drops the entries at or after `relative_offset` (the segment was cut there).
    pub fn truncate_to(&mut self, relative_offset: u32) {
        let keep = self.entries.partition_point(|&(o, _)| o < relative_offset);
        self.entries.truncate(keep);
    }

    /// The entry with the largest offset `<= relative_offset`, if any.
    pub fn lookup(&self, relative_offset: u32) -> Option<(u32, u32)> {
        let n = self.entries.partition_point(|&(o, _)| o <= relative_offset);
        n.checked_sub(1).map(|i| self.entries[i])
    }

    /// Writes the whole index to `path` and fsyncs it.
    ///
    /// # Errors
    ///
    /// `Io` when the file cannot be written.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut buf = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY_LEN);
        for &(o, p) in &self.entries {
            buf.extend_from_slice(&o.to_be_bytes());
            buf.extend_from_slice(&p.to_be_bytes());
        }
        write_synced(path, &buf)
    }

    /// Reads an index written by [`save`](Self::save), checking that entries grow and point
    /// inside a log of `log_size` bytes covering relative offsets below `offset_limit`.
    ///
    /// # Errors
    ///
    /// `Io` when the file cannot be read, `Corrupted` when its contents break those rules.
    pub fn load(path: &Path, max_bytes: u32, log_size: u64, offset_limit: u64) -> Result<Self> {
        let buf = fs::read(path)?;
        if buf.len() % OFFSET_ENTRY_LEN != 0 {
            return Err(corrupted(path, "length is not a whole number of entries"));
        }
        let mut index = OffsetIndex::new(max_bytes);
        for e in buf.chunks_exact(OFFSET_ENTRY_LEN) {
            let o = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
            let p = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
            let grows = index.last().is_none_or(|(lo, lp)| o > lo && p > lp);
            if !grows || u64::from(p) >= log_size || u64::from(o) >= offset_limit {
                return Err(corrupted(path, "entry out of order or out of bounds"));
            }
            index.entries.push((o, p));
        }
        Ok(index)
    }
}

/// Sparse map from the largest timestamp seen so far to the first batch that reached it.
#[derive(Debug, Default)]
pub(crate) struct TimeIndex {
    entries: Vec<(i64, u32)>,
    max_entries: usize,
}

impl TimeIndex {
    /// An empty index that reports full after `max_bytes` worth of entries.
    pub fn new(max_bytes: u32) -> Self {
        TimeIndex { entries: Vec::new(), max_entries: max_bytes as usize / TIME_ENTRY_LEN }
    }

    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.max_entries
    }

    pub fn last(&self) -> Option<(i64, u32)> {
        self.entries.last().copied()
    }

    /// Adds an entry when `timestamp` is larger than the last one; otherwise does nothing.
    pub fn maybe_append(&mut self, timestamp: i64, relative_offset: u32) {
        match self.last() {
            Some((t, o)) if timestamp <= t => {
                assert!(relative_offset >= o, "time index offsets must not go back");
            }
            Some((_, o)) => {
                assert!(relative_offset >= o, "time index offsets must not go back");
                self.entries.push((timestamp, relative_offset));
            }
            None => self.entries.push((timestamp, relative_offset)),
        }
    }

    /// Drops the entries whose batch lies at or after `relative_offset` (the segment was cut
    /// there). Each remaining entry still holds: its timestamp is the largest among the batches
    /// up to its offset, all of which remain.
    pub fn truncate_to(&mut self, relative_offset: u32) {
        let keep = self.entries.partition_point(|&(_, o)| o < relative_offset);
        self.entries.truncate(keep);
    }

    /// The entry with the largest timestamp strictly below `timestamp`. Every batch before
    /// that entry's batch has a max timestamp below `timestamp` too, so a search may skip them.
    pub fn lookup_below(&self, timestamp: i64) -> Option<(i64, u32)> {
        let n = self.entries.partition_point(|&(t, _)| t < timestamp);
        n.checked_sub(1).map(|i| self.entries[i])
    }

    /// Writes the whole index to `path` and fsyncs it.
    ///
    /// # Errors
    ///
    /// `Io` when the file cannot be written.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut buf = Vec::with_capacity(self.entries.len() * TIME_ENTRY_LEN);
        for &(t, o) in &self.entries {
            buf.extend_from_slice(&t.to_be_bytes());
            buf.extend_from_slice(&o.to_be_bytes());
        }
        write_synced(path, &buf)
    }

    /// Reads an index written by [`save`](Self::save), checking that timestamps grow and offsets
    /// stay below `offset_limit` (relative) without going back.
    ///
    /// # Errors
    ///
    /// `Io` when the file cannot be read, `Corrupted` when its contents break those rules.
    pub fn load(path: &Path, max_bytes: u32, offset_limit: u64) -> Result<Self> {
        let buf = fs::read(path)?;
        if buf.len() % TIME_ENTRY_LEN != 0 {
            return Err(corrupted(path, "length is not a whole number of entries"));
        }
        let mut index = TimeIndex::new(max_bytes);
        for e in buf.chunks_exact(TIME_ENTRY_LEN) {
            let mut t = [0u8; 8];
            t.copy_from_slice(&e[..8]);
            let t = i64::from_be_bytes(t);
            let o = u32::from_be_bytes([e[8], e[9], e[10], e[11]]);
            let grows = index.last().is_none_or(|(lt, lo)| t > lt && o >= lo);
            if !grows || u64::from(o) >= offset_limit {
                return Err(corrupted(path, "entry out of order or out of bounds"));
            }
            index.entries.push((t, o));
        }
        Ok(index)
    }
}

fn corrupted(path: &Path, what: &str) -> StorageError {
    StorageError::Corrupted(format!("{}: {what}", path.display()))
}

/// Replaces `path` with `bytes` and fsyncs the file.
///
/// # Errors
///
/// `Io` when the file cannot be created, written or synced.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn offset_lookup_finds_floor_entry() {
        let mut idx = OffsetIndex::new(1024);
        assert_eq!(idx.lookup(5), None);
        idx.append(10, 100);
        idx.append(20, 200);
        assert_eq!(idx.lookup(5), None);
        assert_eq!(idx.lookup(10), Some((10, 100)));
        assert_eq!(idx.lookup(19), Some((10, 100)));
        assert_eq!(idx.lookup(1000), Some((20, 200)));
    }

    #[test]
    fn truncate_drops_entries_at_or_after_the_cut() {
        let mut idx = OffsetIndex::new(1024);
        idx.append(10, 100);
        idx.append(20, 200);
        idx.truncate_to(20);
        assert_eq!(idx.last(), Some((10, 100)));
        idx.append(15, 150);
        let mut tidx = TimeIndex::new(1024);
        tidx.maybe_append(100, 4);
        tidx.maybe_append(200, 12);
        tidx.truncate_to(12);
        assert_eq!(tidx.last(), Some((100, 4)));
        tidx.truncate_to(0);
        assert_eq!(tidx.last(), None);
    }

    #[test]
    fn time_lookup_is_strictly_below() {
        let mut idx = TimeIndex::new(1024);
        idx.maybe_append(100, 0);
        idx.maybe_append(100, 5); // not larger: ignored
        idx.maybe_append(200, 7);
        assert_eq!(idx.lookup_below(100), None);
        assert_eq!(idx.lookup_below(101), Some((100, 0)));
        assert_eq!(idx.lookup_below(500), Some((200, 7)));
    }

    #[test]
    fn save_load_round_trip_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.index");
        let mut idx = OffsetIndex::new(16);
        idx.append(1, 10);
        idx.append(2, 20);
        assert!(idx.is_full());
        idx.save(&p).unwrap();
        let back = OffsetIndex::load(&p, 16, 100, 10).unwrap();
        assert_eq!(back.lookup(5), Some((2, 20)));
        assert!(OffsetIndex::load(&p, 16, 15, 10).is_err()); // position past log end
        fs::write(&p, [0u8; 7]).unwrap();
        assert!(OffsetIndex::load(&p, 16, 100, 10).is_err());
        let t = dir.path().join("x.timeindex");
        let mut tidx = TimeIndex::new(1024);
        tidx.maybe_append(5, 0);
        tidx.maybe_append(9, 3);
        tidx.save(&t).unwrap();
        assert_eq!(TimeIndex::load(&t, 1024, 4).unwrap().last(), Some((9, 3)));
        assert!(TimeIndex::load(&t, 1024, 3).is_err());
    }
}
