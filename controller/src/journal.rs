//! The durable metadata log of a single node: a file of checksummed frames.
//!
//! Frame: `len: u32 BE | crc32c(payload): u32 BE | payload (JSON envelope)`. `append` returns only
//! after `fsync`, so a record the controller has answered for survives a crash. On open, a torn or
//! corrupt tail (a crash mid-append) is cut off; everything before it was acknowledged whole.
//! The openraft quorum implements the same [`MetadataLog`] seam in a later issue.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::ControllerError;
use crate::records::{Envelope, MetadataRecord, RECORD_VERSION};

/// Largest frame the journal writes or accepts back (a record is small; this bounds reads).
const FRAME_MAX_BYTES: u32 = 16 * 1024 * 1024;

/// Where committed metadata records are kept.
pub trait MetadataLog: Send + Sync {
    /// Appends records durably and in order.
    ///
    /// # Errors
    /// Fails when the records could not be made durable; none of them then counts as committed.
    fn append(&self, records: &[MetadataRecord]) -> Result<(), ControllerError>;

    /// Every committed record, in order.
    ///
    /// # Errors
    /// Fails when the log cannot be read.
    fn read_all(&self) -> Result<Vec<MetadataRecord>, ControllerError>;
}

/// A [`MetadataLog`] in one append-only file.
pub struct FileJournal {
    path: PathBuf,
    file: Mutex<File>,
}

fn io_err(context: &str, e: impl std::fmt::Display) -> ControllerError {
    ControllerError::Storage(format!("{context}: {e}"))
}

impl FileJournal {
    /// Opens (or creates) the journal at `path`, truncating a torn tail.
    ///
    /// # Errors
    /// Fails when the file cannot be opened, read or truncated.
    pub fn open(path: &Path) -> Result<Self, ControllerError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_err("create metadata dir", e))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io_err("open metadata journal", e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| io_err("read metadata journal", e))?;
        let (_, valid_len) = decode_frames(&bytes);
        if valid_len < bytes.len() {
            tracing::warn!(path = %path.display(), valid_len, file_len = bytes.len(), "truncating torn metadata journal tail");
            file.set_len(valid_len as u64).map_err(|e| io_err("truncate metadata journal", e))?;
            file.sync_all().map_err(|e| io_err("sync metadata journal", e))?;
        }
        file.seek(SeekFrom::End(0)).map_err(|e| io_err("seek metadata journal", e))?;
        Ok(Self { path: path.to_path_buf(), file: Mutex::new(file) })
    }
}

/// Decodes whole, valid frames from the start of `bytes`; returns them and the length they cover.
fn decode_frames(bytes: &[u8]) -> (Vec<MetadataRecord>, usize) {
    let mut records = Vec::new();
    let mut pos = 0usize;
    while let Some(header) = bytes.get(pos..pos + 8) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        if len > FRAME_MAX_BYTES {
            break;
        }
        let Some(payload) = bytes.get(pos + 8..pos + 8 + len as usize) else { break };
        if crc32c::crc32c(payload) != crc {
            break;
        }
        let Ok(envelope) = serde_json::from_slice::<Envelope>(payload) else { break };
        records.push(envelope.record);
        pos += 8 + len as usize;
    }
    (records, pos)
}

fn encode_frame(record: &MetadataRecord, out: &mut Vec<u8>) -> Result<(), ControllerError> {
    let envelope = Envelope { v: RECORD_VERSION, record: record.clone() };
    let payload = serde_json::to_vec(&envelope).map_err(|e| io_err("encode record", e))?;
    let len = u32::try_from(payload.len()).ok().filter(|l| *l <= FRAME_MAX_BYTES);
    let len = len.ok_or_else(|| ControllerError::InvalidRequest("metadata record too large".into()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

impl MetadataLog for FileJournal {
    fn append(&self, records: &[MetadataRecord]) -> Result<(), ControllerError> {
        let mut buf = Vec::new();
        for record in records {
            encode_frame(record, &mut buf)?;
        }
        let mut file = self.file.lock().map_err(|_| io_err("journal lock", "poisoned"))?;
        let start = file.stream_position().map_err(|e| io_err("journal position", e))?;
        let result = file.write_all(&buf).and_then(|()| file.sync_data());
        if let Err(e) = result {
            // Leave no half-written frames behind a failed append.
            let _ = file.set_len(start);
            let _ = file.seek(SeekFrom::Start(start));
            return Err(io_err("append metadata journal", e));
        }
        Ok(())
    }

    fn read_all(&self) -> Result<Vec<MetadataRecord>, ControllerError> {
        let bytes = std::fs::read(&self.path).map_err(|e| io_err("read metadata journal", e))?;
        Ok(decode_frames(&bytes).0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn topic(n: u128) -> MetadataRecord {
        MetadataRecord::Topic { name: format!("t{n}"), topic_id: Uuid::from_u128(n) }
    }

    #[test]
    fn records_survive_reopen_and_torn_tail_is_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meta").join("journal");
        let journal = FileJournal::open(&path).expect("open");
        journal.append(&[topic(1), topic(2)]).expect("append");
        journal.append(&[topic(3)]).expect("append");
        drop(journal);
        // A crash mid-append leaves half a frame behind.
        let mut f = OpenOptions::new().append(true).open(&path).expect("open raw");
        f.write_all(&[0, 0, 0, 40, 1, 2, 3, 4, b'{']).expect("write torn");
        drop(f);
        let journal = FileJournal::open(&path).expect("reopen");
        assert_eq!(journal.read_all().expect("read"), vec![topic(1), topic(2), topic(3)]);
        journal.append(&[topic(4)]).expect("append after recovery");
        assert_eq!(journal.read_all().expect("read").len(), 4);
    }
}
