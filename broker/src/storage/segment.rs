//! One segment of a partition log: a `.log` file of record batches stored exactly as produced
//! (after the broker's in-place header rewrite), named by its 20-digit base offset, with its
//! offset and time indexes.
//!
//! A segment knows how to append, how to rebuild itself from its `.log` file after an unclean
//! stop (truncating a torn tail), and how to load its saved indexes after a clean one. It never
//! decides when to roll or what to delete: that is the log's job.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::batch::{self, BatchHeader, BatchInfo, HEADER_LEN};
use super::error::{Result, StorageError};
use super::index::{OffsetIndex, TimeIndex};

pub(crate) const LOG_SUFFIX: &str = "log";
pub(crate) const INDEX_SUFFIX: &str = "index";
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";

/// Largest byte position an index entry can hold; segments never grow past it.
pub(crate) const MAX_SEGMENT_POSITION: u64 = u32::MAX as u64;

/// `dir/<20-digit offset>.<suffix>`, the name of every per-offset file in a partition directory.
pub(crate) fn offset_file(dir: &Path, offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{offset:020}.{suffix}"))
}

/// Index settings a segment is created with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexSettings {
    pub interval_bytes: u32,
    pub max_index_bytes: u32,
}

/// One segment. Fields are read by `log.rs` under the log's lock.
#[derive(Debug)]
pub(crate) struct Segment {
    pub base_offset: i64,
    /// Shared so readers and the flusher can use the file without the log's lock.
    pub log: Arc<File>,
    dir: PathBuf,
    /// Bytes of whole batches in the file; everything a reader may see.
    pub size: u64,
    /// One past the last offset stored here (`base_offset` when empty).
    pub next_offset: i64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    settings: IndexSettings,
    bytes_since_index: u64,
    /// Largest batch max timestamp stored here; `-1` when empty.
    pub max_timestamp: i64,
    /// Last offset of the first batch that reached `max_timestamp` (`-1` when empty).
    pub max_timestamp_offset: i64,
    /// The first batch's max timestamp, which `segment.ms` counts from (as Kafka does).
    first_batch_timestamp: Option<i64>,
    /// Wall-clock time this segment was created or loaded, for a segment without timestamps.
    created_ms: i64,
}

/// What recovery found in a `.log` file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Recovered {
    Intact,
    /// The file held a torn or corrupt tail, now cut off.
    Truncated,
}

impl Segment {
    /// Creates an empty segment starting at `base_offset`, replacing any stale files of that name.
    ///
    /// # Errors
    ///
    /// `Io` when the files cannot be created.
    pub fn create(dir: &Path, base_offset: i64, settings: IndexSettings, now_ms: i64) -> Result<Self> {
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            remove_if_exists(&offset_file(dir, base_offset, suffix))?;
        }
        let path = offset_file(dir, base_offset, LOG_SUFFIX);
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
        Ok(Self::empty(dir, base_offset, Arc::new(file), settings, now_ms))
    }

    fn empty(dir: &Path, base_offset: i64, log: Arc<File>, settings: IndexSettings, now_ms: i64) -> Self {
        Segment {
            base_offset,
            log,
            dir: dir.to_path_buf(),
            size: 0,
            next_offset: base_offset,
            offset_index: OffsetIndex::new(settings.max_index_bytes),
            time_index: TimeIndex::new(settings.max_index_bytes),
            settings,
            bytes_since_index: 0,
            max_timestamp: -1,
            max_timestamp_offset: -1,
            first_batch_timestamp: None,
            created_ms: now_ms,
        }
    }

    /// Opens an existing segment. When `trusted` (clean shutdown, or wholly below the recovery
    /// point) its saved indexes are loaded and only the tail after the last index entry is
    /// scanned, or nothing when `next_base` (the following segment's base) is known. Otherwise,
    /// or when the saved indexes do not check out, the whole file is scanned and rebuilt.
    ///
    /// # Errors
    ///
    /// `Io` when a file cannot be read or the torn tail cannot be cut off.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        next_base: Option<i64>,
        trusted: bool,
        settings: IndexSettings,
        now_ms: i64,
    ) -> Result<(Self, Recovered)> {
        let path = offset_file(dir, base_offset, LOG_SUFFIX);
        let file = Arc::new(OpenOptions::new().read(true).write(true).open(path)?);
        let mut segment = Self::empty(dir, base_offset, file, settings, now_ms);
        if trusted {
            match segment.load_indexes(next_base) {
                Ok(recovered) => return Ok((segment, recovered)),
                Err(StorageError::Corrupted(why)) => {
                    tracing::warn!(segment = base_offset, reason = %why, "rebuilding indexes");
                    let file = Arc::clone(&segment.log);
                    segment = Self::empty(dir, base_offset, file, settings, now_ms);
                }
                Err(e) => return Err(e),
            }
        }
        let recovered = segment.scan_and_truncate(0)?;
        Ok((segment, recovered))
    }

    /// Loads saved indexes and finds the end of the segment from them.
    fn load_indexes(&mut self, next_base: Option<i64>) -> Result<Recovered> {
        let file_len = self.log.metadata()?.len();
        let limit = u64::try_from(next_base.unwrap_or(i64::MAX) - self.base_offset).unwrap_or(0);
        let max = self.settings.max_index_bytes;
        let index_path = offset_file(&self.dir, self.base_offset, INDEX_SUFFIX);
        let time_path = offset_file(&self.dir, self.base_offset, TIME_INDEX_SUFFIX);
        self.offset_index = OffsetIndex::load(&index_path, max, file_len, limit).map_err(missing)?;
        self.time_index = TimeIndex::load(&time_path, max, limit).map_err(missing)?;
        let (rel, position) = self.offset_index.last().unwrap_or((0, 0));
        let start = self.base_offset + i64::from(rel);
        if file_len > 0 {
            self.check_batch_starts_at(u64::from(position), start)?;
            let first = read_header(&self.log, 0, file_len)?;
            self.first_batch_timestamp = first.map(|h| h.max_timestamp);
        }
        if let Some((ts, rel_ts)) = self.time_index.last() {
            self.max_timestamp = ts;
            self.max_timestamp_offset = self.base_offset + i64::from(rel_ts);
        } else if file_len > 0 {
            return Err(StorageError::Corrupted("non-empty segment with empty time index".into()));
        }
        match next_base {
            Some(next) => {
                self.size = file_len;
                self.next_offset = next;
                Ok(Recovered::Intact)
            }
            None => {
                self.size = u64::from(position);
                self.next_offset = start;
                self.scan_and_truncate(u64::from(position))
            }
        }
    }

    fn check_batch_starts_at(&self, position: u64, offset: i64) -> Result<()> {
        let file_len = self.log.metadata()?.len();
        match read_header(&self.log, position, file_len)? {
            Some(h) if h.base_offset == offset => Ok(()),
            _ => Err(StorageError::Corrupted("last index entry does not point at its batch".into())),
        }
    }

    /// Scans from `position` (a batch boundary matching `next_offset`), validating every batch
    /// (framing, magic, contiguous offsets, CRC) and indexing it; cuts the file at the first
    /// batch that fails.
    fn scan_and_truncate(&mut self, position: u64) -> Result<Recovered> {
        let file_len = self.log.metadata()?.len();
        let mut pos = position;
        while pos < file_len {
            let Some(header) = self.valid_batch_at(pos, file_len)? else {
                break;
            };
            let size = header.size() as u64;
            self.track_batch(pos, &header, size);
            pos += size;
        }
        if pos < file_len {
            tracing::warn!(segment = self.base_offset, position = pos, file_len, "truncating torn tail");
            self.log.set_len(pos)?;
            return Ok(Recovered::Truncated);
        }
        Ok(Recovered::Intact)
    }

    /// The header at `pos` if a whole, valid batch continuing this segment starts there.
    fn valid_batch_at(&self, pos: u64, file_len: u64) -> Result<Option<BatchHeader>> {
        let Some(header) = read_header(&self.log, pos, file_len).or_else(torn_is_none)? else {
            return Ok(None);
        };
        let size = header.size() as u64;
        let fits = size <= file_len - pos && pos + size <= MAX_SEGMENT_POSITION;
        let relative_last = header.last_offset() - self.base_offset;
        let offsets_ok = header.base_offset == self.next_offset
            && header.last_offset_delta >= 0
            && relative_last <= i64::from(u32::MAX);
        if !fits || !offsets_ok || header.record_count < 1 {
            return Ok(None);
        }
        if crc_of_range(&self.log, pos + 21, size - 21)? != header.crc {
            return Ok(None);
        }
        Ok(Some(header))
    }

    /// Records a batch just written (or found) at `position`: indexes, timestamps, end offset.
    fn track_batch(&mut self, position: u64, header: &BatchHeader, size: u64) {
        assert!(header.base_offset >= self.next_offset, "segment offsets must grow");
        let relative = relative(self.base_offset, header.base_offset);
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.max_timestamp_offset = header.last_offset();
        }
        if self.bytes_since_index >= u64::from(self.settings.interval_bytes) {
            // Positions stay below MAX_SEGMENT_POSITION: the log rolls before they would not.
            self.offset_index.append(relative, u32::try_from(position).unwrap_or(u32::MAX));
            let ts_relative = relative_or_zero(self.base_offset, self.max_timestamp_offset);
            self.time_index.maybe_append(self.max_timestamp, ts_relative);
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += size;
        self.first_batch_timestamp.get_or_insert(header.max_timestamp);
        self.next_offset = header.last_offset() + 1;
        self.size = position + size;
    }

    /// Writes a validated record set (offsets already assigned in `batches` and in the bytes) at
    /// the end of the file in one write, then indexes it.
    ///
    /// # Errors
    ///
    /// `Io` when the write fails; any partial write is cut off again.
    pub fn append(&mut self, bytes: &[u8], batches: &[BatchInfo]) -> Result<()> {
        let start = self.size;
        if let Err(e) = self.log.write_all_at(bytes, start) {
            let _ = self.log.set_len(start);
            return Err(e.into());
        }
        for info in batches {
            self.track_batch(start + info.position as u64, &info.header, info.size as u64);
        }
        assert_eq!(self.size, start + bytes.len() as u64, "record set size mismatch");
        Ok(())
    }

    /// True when either index has reached `segment.index.bytes`.
    pub fn index_full(&self) -> bool {
        self.offset_index.is_full() || self.time_index.is_full()
    }

    /// True when `segment.ms` has passed, counted as Kafka does: from the first batch's
    /// timestamp to `timestamp_ms` (an incoming batch's max timestamp, or the wall clock for an
    /// idle log), or from creation when the segment has no timestamp yet.
    pub fn roll_due(&self, timestamp_ms: i64, now_ms: i64, segment_ms: i64) -> bool {
        if self.size == 0 {
            return false;
        }
        match self.first_batch_timestamp.filter(|&t| t >= 0) {
            Some(first) => timestamp_ms.saturating_sub(first) > segment_ms,
            None => now_ms.saturating_sub(self.created_ms) > segment_ms,
        }
    }

    /// File position from which a scan finds the batch containing `offset`.
    pub fn position_for_offset(&self, offset: i64) -> u64 {
        let rel = relative_or_zero(self.base_offset, offset);
        self.offset_index.lookup(rel).map_or(0, |(_, p)| u64::from(p))
    }

    /// File position from which a scan finds the first batch with max timestamp `>= timestamp`.
    pub fn position_for_timestamp(&self, timestamp: i64) -> u64 {
        match self.time_index.lookup_below(timestamp) {
            Some((_, rel)) => self.position_for_offset(self.base_offset + i64::from(rel)),
            None => 0,
        }
    }

    /// Makes the segment ready to stop taking writes (roll or close): adds the final time-index
    /// entry and saves both indexes, fsynced.
    ///
    /// # Errors
    ///
    /// `Io` when an index file cannot be written.
    pub fn save_indexes(&mut self) -> Result<()> {
        if self.size > 0 {
            let rel = relative_or_zero(self.base_offset, self.max_timestamp_offset);
            self.time_index.maybe_append(self.max_timestamp, rel);
        }
        self.offset_index.save(&offset_file(&self.dir, self.base_offset, INDEX_SUFFIX))?;
        self.time_index.save(&offset_file(&self.dir, self.base_offset, TIME_INDEX_SUFFIX))
    }

    /// Where the batch holding `offset` starts, as `(file position, base offset)`; the first
    /// batch after `offset` when none holds it; `None` when `offset` is at or past the end.
    ///
    /// # Errors
    ///
    /// `Io` or `Corrupted` when the headers cannot be read back.
    pub fn find_batch(&self, offset: i64) -> Result<Option<(u64, i64)>> {
        let mut found = None;
        scan_headers(&self.log, self.position_for_offset(offset), self.size, |pos, h| {
            if h.last_offset() < offset {
                return Ok(ControlFlow::Continue(()));
            }
            found = Some((pos, h.base_offset));
            Ok(ControlFlow::Break(()))
        })?;
        Ok(found)
    }

    /// Cuts the segment at `position`, where the batch based at `base_offset` starts (found by
    /// [`find_batch`](Self::find_batch)): the file is shortened (not fsynced: the caller syncs),
    /// entries of both indexes at or after the cut are dropped, and the largest timestamp is
    /// found again from the last remaining time-index entry plus a header scan after it. The
    /// creation time is kept. The saved index files are left as they are; the caller removes
    /// them.
    ///
    /// # Errors
    ///
    /// `Io` when the file cannot be shortened; `Io` or `Corrupted` when the headers before the
    /// cut cannot be read back. The segment is then in doubt and must be reloaded.
    pub fn truncate_at(&mut self, position: u64, base_offset: i64) -> Result<()> {
        if position >= self.size {
            return Ok(());
        }
        self.log.set_len(position)?;
        self.size = position;
        self.next_offset = base_offset;
        let relative = relative_or_zero(self.base_offset, base_offset);
        self.offset_index.truncate_to(relative);
        self.time_index.truncate_to(relative);
        self.bytes_since_index = position - self.offset_index.last().map_or(0, |(_, p)| u64::from(p));
        if position == 0 {
            self.first_batch_timestamp = None;
        }
        self.reload_max_timestamp()
    }

    /// Recomputes `max_timestamp` / `max_timestamp_offset` after a cut. The last time-index entry
    /// holds the largest timestamp of every batch up to its offset; batches after it are scanned.
    fn reload_max_timestamp(&mut self) -> Result<()> {
        let (mut max, mut max_offset) = match self.time_index.last() {
            Some((ts, rel)) => (ts, self.base_offset + i64::from(rel)),
            None => (-1, -1),
        };
        let from = if max_offset >= 0 { self.position_for_offset(max_offset) } else { 0 };
        scan_headers(&self.log, from, self.size, |_, h| {
            if h.max_timestamp > max {
                max = h.max_timestamp;
                max_offset = h.last_offset();
            }
            Ok(ControlFlow::Continue(()))
        })?;
        self.max_timestamp = max;
        self.max_timestamp_offset = max_offset;
        Ok(())
    }

    /// Removes the saved `.index` and `.timeindex` files, which no longer describe the segment
    /// after a cut; they are written again on roll or close, and opening without them rebuilds
    /// the indexes by a scan.
    ///
    /// # Errors
    ///
    /// `Io` when a file exists but cannot be removed.
    pub fn remove_index_files(&self) -> Result<()> {
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            remove_if_exists(&offset_file(&self.dir, self.base_offset, suffix))?;
        }
        Ok(())
    }

    /// Removes the segment's files. Readers holding `log` keep reading the unlinked file.
    ///
    /// # Errors
    ///
    /// `Io` when a file exists but cannot be removed.
    pub fn delete_files(&self) -> Result<()> {
        for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            remove_if_exists(&offset_file(&self.dir, self.base_offset, suffix))?;
        }
        Ok(())
    }
}

/// `offset - base` as a `u32`. The log rolls before a relative offset could overflow.
fn relative(base: i64, offset: i64) -> u32 {
    let rel = offset - base;
    assert!((0..=i64::from(u32::MAX)).contains(&rel), "relative offset out of range");
    rel as u32
}

/// `offset - base` clamped into `u32` (for lookups, where out-of-range just means "an end").
fn relative_or_zero(base: i64, offset: i64) -> u32 {
    u32::try_from(offset.saturating_sub(base).max(0)).unwrap_or(u32::MAX)
}

fn missing(e: StorageError) -> StorageError {
    match e {
        StorageError::Io(io) if io.kind() == io::ErrorKind::NotFound => {
            StorageError::Corrupted("index file missing".into())
        }
        other => other,
    }
}

fn torn_is_none(e: StorageError) -> Result<Option<BatchHeader>> {
    match e {
        StorageError::Io(io) => Err(StorageError::Io(io)),
        _ => Ok(None),
    }
}

pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Reads and parses the batch header at `pos`; `Ok(None)` when fewer than a header's bytes
/// remain before `end`.
///
/// # Errors
///
/// `Io` on a failed read; the errors of [`batch::parse_header`] on a bad header.
pub(crate) fn read_header(file: &File, pos: u64, end: u64) -> Result<Option<BatchHeader>> {
    if end.saturating_sub(pos) < HEADER_LEN as u64 {
        return Ok(None);
    }
    let mut buf = [0u8; HEADER_LEN];
    file.read_exact_at(&mut buf, pos)?;
    batch::parse_header(&buf).map(Some)
}

/// Visits the headers of the batches in `[start, end)` of `file` until `visit` breaks.
///
/// # Errors
///
/// `Io` on a failed read; `Corrupted` when the bytes there are not whole batches (the range
/// was written and recovered by us, so that is on-disk corruption); whatever `visit` returns.
pub(crate) fn scan_headers<F>(file: &File, start: u64, end: u64, mut visit: F) -> Result<()>
where
    F: FnMut(u64, &BatchHeader) -> Result<ControlFlow<()>>,
{
    let mut pos = start;
    while pos < end {
        let header = read_header(file, pos, end).map_err(|e| match e {
            StorageError::Io(io) => StorageError::Io(io),
            other => StorageError::Corrupted(format!("bad batch header at {pos}: {other}")),
        })?;
        let header = header.ok_or_else(|| StorageError::Corrupted(format!("short batch at {pos}")))?;
        let size = header.size() as u64;
        if size > end - pos {
            return Err(StorageError::Corrupted(format!("batch at {pos} overruns the segment")));
        }
        if visit(pos, &header)?.is_break() {
            break;
        }
        pos += size;
    }
    Ok(())
}

/// Reads one whole batch of `size` bytes at `pos`.
///
/// # Errors
///
/// `Io` on a failed read.
pub(crate) fn read_batch(file: &File, pos: u64, size: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; size];
    file.read_exact_at(&mut buf, pos)?;
    Ok(buf)
}

/// CRC-32C of `len` bytes at `pos`, read in bounded chunks so a garbage length never sizes an
/// allocation.
fn crc_of_range(file: &File, pos: u64, len: u64) -> Result<u32> {
    const CHUNK: u64 = 64 * 1024;
    let mut buf = vec![0u8; CHUNK.min(len) as usize];
    let mut crc = 0u32;
    let mut done = 0u64;
    while done < len {
        let n = CHUNK.min(len - done) as usize;
        file.read_exact_at(&mut buf[..n], pos + done)?;
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        done += n as u64;
    }
    Ok(crc)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::super::batch::test_util::TestBatch;
    use super::super::batch::{set_base_offset_and_epoch, validate_record_set};
    use super::*;

    const SETTINGS: IndexSettings = IndexSettings { interval_bytes: 200, max_index_bytes: 4096 };

    fn append_n(seg: &mut Segment, n: usize) {
        for _ in 0..n {
            let mut bytes = TestBatch::new(3).encode();
            set_base_offset_and_epoch(&mut bytes, seg.next_offset, 0);
            let infos = validate_record_set(&bytes, 1 << 20).unwrap();
            seg.append(&bytes, &infos).unwrap();
        }
    }

    #[test]
    fn recover_rebuilds_the_same_indexes_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 100, SETTINGS, 0).unwrap();
        append_n(&mut seg, 20);
        let (size, next) = (seg.size, seg.next_offset);
        assert_eq!(next, 160);
        assert!(seg.offset_index.len() > 3);
        let pos_for = seg.position_for_offset(150);
        seg.log.write_all_at(&[1, 2, 3, 4, 5], size).unwrap();
        drop(seg);
        let (seg, rec) = Segment::open(dir.path(), 100, None, false, SETTINGS, 0).unwrap();
        assert_eq!(rec, Recovered::Truncated);
        assert_eq!((seg.size, seg.next_offset), (size, next));
        assert_eq!(seg.position_for_offset(150), pos_for);
        assert_eq!(seg.log.metadata().unwrap().len(), size);
    }

    #[test]
    fn trusted_open_uses_saved_indexes_and_scans_only_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 0, SETTINGS, 0).unwrap();
        append_n(&mut seg, 10);
        seg.save_indexes().unwrap();
        let (size, next, max_ts) = (seg.size, seg.next_offset, seg.max_timestamp);
        drop(seg);
        let (seg, rec) = Segment::open(dir.path(), 0, None, true, SETTINGS, 0).unwrap();
        assert_eq!(rec, Recovered::Intact);
        assert_eq!((seg.size, seg.next_offset, seg.max_timestamp), (size, next, max_ts));
        // A damaged index falls back to a full scan with the same result.
        fs::write(offset_file(dir.path(), 0, INDEX_SUFFIX), [9u8; 8]).unwrap();
        let (seg, _) = Segment::open(dir.path(), 0, None, true, SETTINGS, 0).unwrap();
        assert_eq!((seg.size, seg.next_offset), (size, next));
    }

    /// What a segment derives from its file, for comparing two segments. (The time index may
    /// differ: a cut keeps entries made after the cut point that describe batches before it, as
    /// Kafka's does; both answer lookups correctly.)
    fn state(seg: &Segment) -> (u64, i64, i64, i64, Vec<u64>) {
        let positions = (seg.base_offset..seg.next_offset).map(|o| seg.position_for_offset(o)).collect();
        (seg.size, seg.next_offset, seg.max_timestamp, seg.max_timestamp_offset, positions)
    }

    #[test]
    fn truncate_at_matches_a_fresh_scan_of_the_cut_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 100, SETTINGS, 0).unwrap();
        for i in 0..20i64 {
            let mut t = TestBatch::new(3);
            // Timestamps rise, fall back, then peak in batch 12 (offsets 136..=138).
            t.base_timestamp = if i == 12 { 9_000 } else { 1_000 + (i % 7) * 100 };
            let mut bytes = t.encode();
            set_base_offset_and_epoch(&mut bytes, seg.next_offset, 0);
            let infos = validate_record_set(&bytes, 1 << 20).unwrap();
            seg.append(&bytes, &infos).unwrap();
        }
        assert_eq!(seg.max_timestamp_offset, 138);
        for cut in [160, 140, 137, 125, 101, 100] {
            let (position, base) = match seg.find_batch(cut).unwrap() {
                Some(found) => found,
                None => (seg.size, seg.next_offset),
            };
            assert_eq!(base, (cut - 100) / 3 * 3 + 100, "cut {cut} rounds down to its batch");
            seg.truncate_at(position, base).unwrap();
            assert_eq!(seg.log.metadata().unwrap().len(), position);
            let (fresh, rec) = Segment::open(dir.path(), 100, None, false, SETTINGS, 0).unwrap();
            assert_eq!(rec, Recovered::Intact);
            assert_eq!(state(&seg), state(&fresh), "cut at {cut}");
            assert_eq!(seg.bytes_since_index, fresh.bytes_since_index, "cut at {cut}");
        }
        assert_eq!((seg.size, seg.next_offset, seg.max_timestamp), (0, 100, -1));
        // The emptied segment takes appends again, indexing as a new one would.
        append_n(&mut seg, 20);
        let (fresh, _) = Segment::open(dir.path(), 100, None, false, SETTINGS, 0).unwrap();
        assert_eq!(state(&seg), state(&fresh));
    }

    #[test]
    fn scan_headers_visits_every_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 0, SETTINGS, 0).unwrap();
        append_n(&mut seg, 5);
        let mut bases = Vec::new();
        scan_headers(&seg.log, 0, seg.size, |_, h| {
            bases.push(h.base_offset);
            Ok(ControlFlow::Continue(()))
        })
        .unwrap();
        assert_eq!(bases, vec![0, 3, 6, 9, 12]);
    }
}
