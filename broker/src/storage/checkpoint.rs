//! The small files beside a partition's segments: the recovery point (how far the log is known
//! to be fsynced), the log start offset, the high watermark, and the clean-shutdown marker; plus
//! directory helpers and the durable replace that every checkpoint (including the leader-epoch
//! one) is written with.
//!
//! Offset files hold 16 bytes: version `u32` (1), offset `i64`, CRC-32C `u32` of the first 12
//! bytes, big-endian. A missing or damaged file reads as `None`, and every caller has a safe
//! fallback for that (scan more, start at the first segment, or hold the high watermark back),
//! so these files only ever save work or hold information back; they never make the log show
//! more than it has.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::error::Result;
use super::index::write_synced;

pub(crate) const RECOVERY_POINT_FILE: &str = "recovery-point-offset-checkpoint";
pub(crate) const LOG_START_FILE: &str = "log-start-offset";
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = ".clean-shutdown";
pub(crate) const HIGH_WATERMARK_FILE: &str = "high-watermark";

const VERSION: u32 = 1;
const LEN: usize = 16;

fn encode(offset: i64) -> [u8; LEN] {
    let mut buf = [0u8; LEN];
    buf[..4].copy_from_slice(&VERSION.to_be_bytes());
    buf[4..12].copy_from_slice(&offset.to_be_bytes());
    let crc = crc32c::crc32c(&buf[..12]);
    buf[12..].copy_from_slice(&crc.to_be_bytes());
    buf
}

fn decode(buf: &[u8]) -> Option<i64> {
    let buf: &[u8; LEN] = buf.try_into().ok()?;
    let version = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let crc = u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]);
    if version != VERSION || crc != crc32c::crc32c(&buf[..12]) {
        return None;
    }
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&buf[4..12]);
    Some(i64::from_be_bytes(offset))
}

/// Reads an offset file; `None` when it is missing or damaged.
pub(crate) fn read_offset(path: &Path) -> Option<i64> {
    fs::read(path).ok().and_then(|b| decode(&b))
}

/// Replaces an offset file durably (temp file, fsync, rename, fsync of the directory).
///
/// # Errors
///
/// `Io` when any step fails.
pub(crate) fn write_offset_durably(dir: &Path, name: &str, offset: i64) -> Result<()> {
    write_durably(dir, name, &encode(offset))
}

/// Replaces `dir/name` with `bytes` durably: a temp file (`name.tmp`, removed on open if a crash
/// leaves it), fsync, rename over the old file, fsync of the directory. A crash at any point
/// leaves either the old file or the new one, whole.
///
/// # Errors
///
/// `Io` when any step fails.
pub(crate) fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    write_synced(&tmp, bytes)?;
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// The recovery-point file, kept open and overwritten in place after every fsync of the log.
///
/// It is written without its own fsync: a stale value only makes the next recovery scan more,
/// and a torn write fails the CRC and reads as "scan everything".
#[derive(Debug)]
pub(crate) struct RecoveryPointFile(File);

impl RecoveryPointFile {
    /// # Errors
    ///
    /// `Io` when the file cannot be opened or created.
    pub fn open(dir: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(RECOVERY_POINT_FILE))?;
        Ok(RecoveryPointFile(file))
    }

    /// # Errors
    ///
    /// `Io` when the write fails.
    pub fn write(&self, offset: i64) -> Result<()> {
        self.0.write_all_at(&encode(offset), 0)?;
        Ok(())
    }

    /// Writes and fsyncs, for when the recovery point moves back (truncation): a stale, higher
    /// value surviving a crash would make recovery trust bytes that were never fsynced.
    ///
    /// # Errors
    ///
    /// `Io` when the write or the fsync fails.
    pub fn write_synced(&self, offset: i64) -> Result<()> {
        self.write(offset)?;
        self.0.sync_data()?;
        Ok(())
    }
}

/// Fsyncs a directory so that files created, renamed or removed in it stay so after a crash.
///
/// # Errors
///
/// `Io` when the directory cannot be opened or synced.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Offsets named by the files `<20 digits>.<suffix>` in `dir`, ascending.
///
/// # Errors
///
/// `Io` when the directory cannot be listed.
pub(crate) fn list_offsets(dir: &Path, suffix: &str) -> Result<Vec<i64>> {
    let mut offsets = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((stem, ext)) = name.split_once('.') else {
            continue;
        };
        if ext == suffix && stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(offset) = stem.parse::<i64>() {
                offsets.push(offset);
            }
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

/// Removes the `*.tmp` files an interrupted write left behind.
///
/// # Errors
///
/// `Io` when the directory cannot be listed or a file cannot be removed.
pub(crate) fn remove_temp_files(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "tmp") {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn offset_files_round_trip_and_reject_damage() {
        let dir = tempfile::tempdir().unwrap();
        write_offset_durably(dir.path(), LOG_START_FILE, 42).unwrap();
        assert_eq!(read_offset(&dir.path().join(LOG_START_FILE)), Some(42));
        let rp = RecoveryPointFile::open(dir.path()).unwrap();
        rp.write(7).unwrap();
        rp.write(9).unwrap();
        let path = dir.path().join(RECOVERY_POINT_FILE);
        assert_eq!(read_offset(&path), Some(9));
        fs::write(&path, [1u8; 16]).unwrap();
        assert_eq!(read_offset(&path), None);
    }

    #[test]
    fn lists_only_offset_named_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["00000000000000000010.log", "00000000000000000002.log", "x.log", "1.log"] {
            fs::write(dir.path().join(name), b"").unwrap();
        }
        fs::write(dir.path().join("00000000000000000003.index"), b"").unwrap();
        assert_eq!(list_offsets(dir.path(), "log").unwrap(), vec![2, 10]);
    }
}
