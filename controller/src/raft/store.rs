//! Raft storage in sled: the log, the vote and the committed pointer ([`LogStore`]), and the
//! metadata state machine with its durable snapshot ([`StateMachineStore`]).
//!
//! Layout of the sled database (one directory per controller):
//! - tree `raft_log`: one entry per log index, the key the index as big-endian `u64` (so sled's
//!   key order is log order), the value the `serde_json` encoded `Entry`;
//! - tree `raft_meta`: the vote, the committed log id and the last purged log id (JSON);
//! - tree `raft_snapshot`: the current snapshot, its meta (JSON) and its bytes, replaced whole.
//!
//! The state machine itself lives in memory: it is rebuilt from the stored snapshot on open, and
//! openraft re-applies the log from the snapshot up to the saved committed pointer. Every write
//! openraft must be able to rely on (vote, appended entries, truncation, purge, committed pointer,
//! snapshot) is made durable by [`Disk::sync`] before openraft hears that it happened.
//!
//! All sled writes and flushes run on tokio's blocking pool so an fsync never stalls a runtime
//! worker; small point reads (vote, committed, last entry) run inline, sled serves them from its
//! page cache.

// openraft's traits fix the error type (`StorageError`, ~224 bytes); the helpers return it as is.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Cursor};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, LogState, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{CommandResult, NodeId, TypeConfig};
use crate::error::ControllerError;
use crate::image::MetadataImage;

const LOG_TREE: &str = "raft_log";
const META_TREE: &str = "raft_meta";
const SNAPSHOT_TREE: &str = "raft_snapshot";

const KEY_FORMAT: &[u8] = b"format";
const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";
const KEY_SNAPSHOT_META: &[u8] = b"meta";
const KEY_SNAPSHOT_DATA: &[u8] = b"data";

/// `limited_get_log_entries` stops after this many entries...
const READ_MAX_ENTRIES: usize = 1024;
/// ...or once this many encoded bytes were read (always returning at least one entry).
const READ_MAX_BYTES: usize = 4 << 20;

/// The store's format, kept under `raft_meta/format`. 2: standard Raft leader ids (openraft's
/// `single-term-leader`: a vote names a term and the node voted for, a log id only the term).
/// Stores written before had no format key and openraft's default leader ids, which this build
/// cannot read.
const STORE_FORMAT: u8 = 2;

/// The snapshot payload's format byte.
const SNAPSHOT_FORMAT: u8 = 1;

type StoreResult<T> = Result<T, StorageError<NodeId>>;

/// Raft log + vote + committed pointer in sled. Clone (Arc inside).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<LogInner>,
}

struct LogInner {
    disk: Arc<Disk>,
    log: sled::Tree,
    meta: sled::Tree,
}

/// The metadata state machine: the image in memory, snapshots durable in sled.
#[derive(Clone)]
pub struct StateMachineStore {
    inner: Arc<SmInner>,
}

struct SmInner {
    disk: Arc<Disk>,
    snapshots: sled::Tree,
    state: Mutex<SmState>,
    images: watch::Sender<Arc<MetadataImage>>,
    /// Serializes snapshot writes, so a snapshot built from an older state never replaces a newer
    /// one (an installed snapshot racing a build).
    snapshot_write: Mutex<()>,
}

struct SmState {
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, BasicNode>,
    /// Shared with the published images: `apply` copies it on write.
    image: Arc<MetadataImage>,
}

/// The opened store: hand `log` and `state_machine` to `openraft::Raft::new`, watch `images`.
pub struct MetadataStore {
    pub log: LogStore,
    pub state_machine: StateMachineStore,
    /// Sees the image after every applied batch and every installed snapshot.
    pub images: watch::Receiver<Arc<MetadataImage>>,
}

/// Opens (or creates) the store under `dir` (a sled database directory).
///
/// # Errors
/// When the database cannot be opened (for instance another process holds it) or its stored state
/// does not decode.
pub fn open(dir: &Path) -> Result<MetadataStore, ControllerError> {
    let fail =
        |what: &str, e: &dyn std::fmt::Display| ControllerError::Storage(format!("{what} {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(|e| fail("cannot create", &e))?;
    let db = sled::Config::new().path(dir).open().map_err(|e| fail("cannot open sled database in", &e))?;
    let disk = Arc::new(Disk::new(db, dir).map_err(|e| fail("cannot open the sled log file in", &e))?);
    let tree = |name: &str| disk.db.open_tree(name).map_err(|e| fail(&format!("cannot open tree {name} in"), &e));
    let log = tree(LOG_TREE)?;
    let meta = tree(META_TREE)?;
    let snapshots = tree(SNAPSHOT_TREE)?;
    check_format(&meta, &log, &snapshots).map_err(|e| fail("metadata store", &e))?;

    // A purge persists the pointer and deletes the entries in one flush; should a crash have kept
    // only a prefix of it, drop what the pointer says is gone.
    if let Some(purged) = read_json::<LogId<NodeId>>(&meta, KEY_LAST_PURGED, ErrorSubject::Logs)
        .map_err(|e| fail("cannot read the purge pointer in", &e))?
    {
        remove_range(&log, ..=purged.index).map_err(|e| fail("cannot clean purged entries in", &e))?;
    }

    let mut state = SmState { last_applied: None, last_membership: StoredMembership::default(), image: Arc::default() };
    if let Some(snapshot) = read_snapshot(&snapshots).map_err(|e| fail("cannot read the snapshot in", &e))? {
        let (header, image) = decode_snapshot(&snapshot.meta, snapshot.snapshot.get_ref())
            .map_err(|e| fail("cannot decode the snapshot in", &e))?;
        state = SmState {
            last_applied: header.last_applied,
            last_membership: header.last_membership,
            image: Arc::new(image),
        };
    }

    let (images, receiver) = watch::channel(state.image.clone());
    let sm =
        SmInner { disk: disk.clone(), snapshots, state: Mutex::new(state), images, snapshot_write: Mutex::new(()) };
    Ok(MetadataStore {
        log: LogStore { inner: Arc::new(LogInner { disk, log, meta }) },
        state_machine: StateMachineStore { inner: Arc::new(sm) },
        images: receiver,
    })
}

/// Refuses a store in another format (with what to do about it); marks a new store with ours.
fn check_format(meta: &sled::Tree, log: &sled::Tree, snapshots: &sled::Tree) -> Result<(), String> {
    let io = |e: sled::Error| e.to_string();
    match meta.get(KEY_FORMAT).map_err(io)? {
        Some(format) if format.as_ref() == [STORE_FORMAT] => Ok(()),
        Some(format) => Err(format!(
            "has format {format:?}, this Sluice reads format {STORE_FORMAT}: use the Sluice version that wrote it"
        )),
        None if meta.is_empty() && log.is_empty() && snapshots.is_empty() => {
            // Becomes durable with the first vote, which fsyncs everything written before it.
            meta.insert(KEY_FORMAT, &[STORE_FORMAT]).map_err(io)?;
            Ok(())
        }
        None => Err("was written by an earlier Sluice whose Raft votes and log ids this version cannot read \
                     (it now runs standard Raft, one leader per term): start this node with an empty data \
                     directory, or run the earlier version"
            .to_owned()),
    }
}

// ---------------------------------------------------------------------------------------------
// Durability
// ---------------------------------------------------------------------------------------------

/// The sled database and what it takes to make its writes durable.
///
/// `sled::Db::flush` writes the dirty IO buffers and, on Linux, ends in `sync_file_range` rather
/// than `fsync`: that does not persist the file's metadata (its size when it grew) nor flush the
/// drive's write cache, and sled writes values too large for a log segment (~128 KiB) to separate
/// blob files without syncing them at all. sled's own `fsync` comes from its periodic flusher
/// thread (every 500 ms). So after the flush this `fsync`s the log file and the blob files too.
struct Disk {
    db: sled::Db,
    /// sled's log file, opened a second time only to `fsync` it (sled locks it with `flock`, which
    /// belongs to sled's own open file, so this handle does not affect the lock).
    db_file: File,
    blobs: PathBuf,
}

impl Disk {
    fn new(db: sled::Db, dir: &Path) -> io::Result<Self> {
        let db_file = OpenOptions::new().read(true).write(true).open(dir.join("db"))?;
        // The database files were possibly just created: make their directory entries durable.
        sync_dir(dir)?;
        Ok(Self { db, db_file, blobs: dir.join("blobs") })
    }

    /// Makes every write done so far durable. Blocking.
    fn sync(&self) -> io::Result<()> {
        self.db.flush()?;
        self.db_file.sync_all()?;
        self.sync_blobs()
    }

    fn sync_blobs(&self) -> io::Result<()> {
        let entries = match std::fs::read_dir(&self.blobs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut any = false;
        for entry in entries {
            // sled removes blobs it no longer needs concurrently: a vanished file is not an error.
            match OpenOptions::new().read(true).write(true).open(entry?.path()) {
                Ok(file) => file.sync_all()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            any = true;
        }
        if any {
            sync_dir(&self.blobs)?;
        }
        Ok(())
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Error and encoding helpers
// ---------------------------------------------------------------------------------------------

fn sto_err<E>(subject: ErrorSubject<NodeId>, verb: ErrorVerb, e: &E) -> StorageError<NodeId>
where
    E: std::error::Error + 'static,
{
    StorageIOError::new(subject, verb, AnyError::new(e)).into()
}

fn sto_msg(subject: ErrorSubject<NodeId>, verb: ErrorVerb, msg: impl ToString) -> StorageError<NodeId> {
    StorageIOError::new(subject, verb, AnyError::error(msg)).into()
}

/// Runs blocking sled work on tokio's blocking pool.
async fn blocking<T, F>(subject: ErrorSubject<NodeId>, verb: ErrorVerb, f: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> StoreResult<T> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => Err(sto_err(subject, verb, &e)),
    }
}

fn read_json<T: DeserializeOwned>(
    tree: &sled::Tree,
    key: &[u8],
    subject: ErrorSubject<NodeId>,
) -> StoreResult<Option<T>> {
    let Some(bytes) = tree.get(key).map_err(|e| sto_err(subject.clone(), ErrorVerb::Read, &e))? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| sto_err(subject, ErrorVerb::Read, &e))
}

fn to_json<T: Serialize>(value: &T, subject: ErrorSubject<NodeId>) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| sto_err(subject, ErrorVerb::Write, &e))
}

fn decode_entry(bytes: &[u8]) -> StoreResult<Entry<TypeConfig>> {
    serde_json::from_slice(bytes).map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Read, &e))
}

/// Normalizes a range of log indexes to `[start, end)`, `end == None` meaning unbounded; `None`
/// for an empty range.
fn index_range<RB: RangeBounds<u64>>(range: &RB) -> Option<(u64, Option<u64>)> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.checked_add(1),
        Bound::Excluded(&e) => Some(e),
        Bound::Unbounded => None,
    };
    match end {
        Some(end) if start >= end => None,
        _ => Some((start, end)),
    }
}

fn sled_range(tree: &sled::Tree, start: u64, end: Option<u64>) -> sled::Iter {
    let start = Bound::Included(start.to_be_bytes());
    let end = end.map_or(Bound::Unbounded, |e| Bound::Excluded(e.to_be_bytes()));
    tree.range::<[u8; 8], _>((start, end))
}

/// Deletes the log entries in `range` in one atomic batch (no hole is ever visible).
fn remove_range<RB: RangeBounds<u64>>(log: &sled::Tree, range: RB) -> StoreResult<()> {
    let Some((start, end)) = index_range(&range) else {
        return Ok(());
    };
    let mut batch = sled::Batch::default();
    for key in sled_range(log, start, end).keys() {
        batch.remove(key.map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Read, &e))?);
    }
    log.apply_batch(batch).map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Delete, &e))
}

/// Reads the entries in `range`, stopping early once `max_entries`/`max_bytes` are reached (but
/// never before the first entry).
fn read_entries(
    log: &sled::Tree,
    start: u64,
    end: Option<u64>,
    max_entries: usize,
    max_bytes: usize,
) -> StoreResult<Vec<Entry<TypeConfig>>> {
    let mut entries = Vec::new();
    let mut bytes = 0usize;
    for item in sled_range(log, start, end) {
        let (_, value) = item.map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Read, &e))?;
        entries.push(decode_entry(&value)?);
        bytes = bytes.saturating_add(value.len());
        if entries.len() >= max_entries || bytes >= max_bytes {
            break;
        }
    }
    Ok(entries)
}

// ---------------------------------------------------------------------------------------------
// Log store
// ---------------------------------------------------------------------------------------------

impl LogStore {
    /// Runs `write` then makes it durable, on the blocking pool.
    async fn write_durably<F>(&self, subject: ErrorSubject<NodeId>, verb: ErrorVerb, write: F) -> StoreResult<()>
    where
        F: FnOnce(&LogInner) -> StoreResult<()> + Send + 'static,
    {
        let inner = self.inner.clone();
        let sync_subject = subject.clone();
        blocking(subject, verb, move || {
            write(&inner)?;
            inner.disk.sync().map_err(|e| sto_err(sync_subject, ErrorVerb::Write, &e))
        })
        .await
    }

    async fn read_range<RB: RangeBounds<u64>>(
        &self,
        range: RB,
        max_entries: usize,
        max_bytes: usize,
    ) -> StoreResult<Vec<Entry<TypeConfig>>> {
        let Some((start, end)) = index_range(&range) else {
            return Ok(Vec::new());
        };
        let inner = self.inner.clone();
        blocking(ErrorSubject::Logs, ErrorVerb::Read, move || {
            read_entries(&inner.log, start, end, max_entries, max_bytes)
        })
        .await
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<Entry<TypeConfig>>> {
        self.read_range(range, usize::MAX, usize::MAX).await
    }

    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> StoreResult<Vec<Entry<TypeConfig>>> {
        self.read_range(start..end, READ_MAX_ENTRIES, READ_MAX_BYTES).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StoreResult<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<NodeId>> =
            read_json(&self.inner.meta, KEY_LAST_PURGED, ErrorSubject::Logs)?;
        let last = match self.inner.log.last().map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Read, &e))? {
            Some((_, value)) => Some(decode_entry(&value)?.log_id),
            None => None,
        };
        Ok(LogState { last_purged_log_id, last_log_id: last.max(last_purged_log_id) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StoreResult<()> {
        let bytes = to_json(vote, ErrorSubject::Vote)?;
        self.write_durably(ErrorSubject::Vote, ErrorVerb::Write, move |inner| {
            inner.meta.insert(KEY_VOTE, bytes).map_err(|e| sto_err(ErrorSubject::Vote, ErrorVerb::Write, &e))?;
            Ok(())
        })
        .await
    }

    async fn read_vote(&mut self) -> StoreResult<Option<Vote<NodeId>>> {
        read_json(&self.inner.meta, KEY_VOTE, ErrorSubject::Vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StoreResult<()> {
        let bytes = committed.as_ref().map(|c| to_json(c, ErrorSubject::Store)).transpose()?;
        self.write_durably(ErrorSubject::Store, ErrorVerb::Write, move |inner| {
            let result = match bytes {
                Some(bytes) => inner.meta.insert(KEY_COMMITTED, bytes),
                None => inner.meta.remove(KEY_COMMITTED),
            };
            result.map_err(|e| sto_err(ErrorSubject::Store, ErrorVerb::Write, &e))?;
            Ok(())
        })
        .await
    }

    async fn read_committed(&mut self) -> StoreResult<Option<LogId<NodeId>>> {
        read_json(&self.inner.meta, KEY_COMMITTED, ErrorSubject::Store)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StoreResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let value = to_json(&entry, ErrorSubject::Log(entry.log_id))?;
            batch.insert(&entry.log_id.index.to_be_bytes(), value);
        }
        // One atomic batch, durable before the callback: openraft counts these entries towards a
        // quorum as soon as it hears of them.
        let result = self
            .write_durably(ErrorSubject::Logs, ErrorVerb::Write, move |inner| {
                inner.log.apply_batch(batch).map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Write, &e))
            })
            .await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        tracing::debug!(%log_id, "truncating the raft log");
        self.write_durably(ErrorSubject::Logs, ErrorVerb::Delete, move |inner| remove_range(&inner.log, log_id.index..))
            .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        tracing::debug!(%log_id, "purging the raft log");
        let pointer = to_json(&log_id, ErrorSubject::Logs)?;
        self.write_durably(ErrorSubject::Logs, ErrorVerb::Delete, move |inner| {
            let previous: Option<LogId<NodeId>> = read_json(&inner.meta, KEY_LAST_PURGED, ErrorSubject::Logs)?;
            if previous < Some(log_id) {
                // The pointer is written first: whatever prefix of this survives a crash, the
                // entries it covers are never read as if they were still there.
                inner
                    .meta
                    .insert(KEY_LAST_PURGED, pointer)
                    .map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Write, &e))?;
            }
            remove_range(&inner.log, ..=log_id.index)
        })
        .await
    }
}

// ---------------------------------------------------------------------------------------------
// State machine
// ---------------------------------------------------------------------------------------------

/// What a snapshot payload carries besides the image.
#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, BasicNode>,
}

/// Snapshot payload: `[format: u8][header length: u32 BE][header JSON][image snapshot]`.
fn encode_snapshot(header: &SnapshotHeader, image: &MetadataImage) -> StoreResult<Vec<u8>> {
    let subject = || ErrorSubject::Snapshot(None);
    let header = to_json(header, subject())?;
    let image = image.encode_snapshot().map_err(|e| sto_err(subject(), ErrorVerb::Write, &e))?;
    let header_len = u32::try_from(header.len()).map_err(|e| sto_err(subject(), ErrorVerb::Write, &e))?;
    let mut data = Vec::with_capacity(5 + header.len() + image.len());
    data.push(SNAPSHOT_FORMAT);
    data.extend_from_slice(&header_len.to_be_bytes());
    data.extend_from_slice(&header);
    data.extend_from_slice(&image);
    Ok(data)
}

/// Decodes a payload and checks it against the meta it came with.
fn decode_snapshot(
    meta: &SnapshotMeta<NodeId, BasicNode>,
    data: &[u8],
) -> StoreResult<(SnapshotHeader, MetadataImage)> {
    let subject = || ErrorSubject::Snapshot(Some(meta.signature()));
    let bad = |what: &str| sto_msg(subject(), ErrorVerb::Read, format!("malformed snapshot payload: {what}"));
    let (&format, rest) = data.split_first().ok_or_else(|| bad("empty"))?;
    if format != SNAPSHOT_FORMAT {
        return Err(bad(&format!("unknown format {format}")));
    }
    let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(|| bad("truncated header length"))?;
    let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| bad("header length"))?;
    if rest.len() < len {
        return Err(bad("truncated header"));
    }
    let (header, image) = rest.split_at(len);
    let header: SnapshotHeader = serde_json::from_slice(header).map_err(|e| sto_err(subject(), ErrorVerb::Read, &e))?;
    if header.last_applied != meta.last_log_id || header.last_membership != meta.last_membership {
        return Err(bad("header does not match the snapshot meta"));
    }
    let image = MetadataImage::decode_snapshot(image).map_err(|e| sto_err(subject(), ErrorVerb::Read, &e))?;
    Ok((header, image))
}

/// The stored snapshot, if any. Blocking.
fn read_snapshot(tree: &sled::Tree) -> StoreResult<Option<Snapshot<TypeConfig>>> {
    let Some(meta) =
        read_json::<SnapshotMeta<NodeId, BasicNode>>(tree, KEY_SNAPSHOT_META, ErrorSubject::Snapshot(None))?
    else {
        return Ok(None);
    };
    let subject = || ErrorSubject::Snapshot(Some(meta.signature()));
    let data = tree.get(KEY_SNAPSHOT_DATA).map_err(|e| sto_err(subject(), ErrorVerb::Read, &e))?;
    let data = data.ok_or_else(|| sto_msg(subject(), ErrorVerb::Read, "snapshot meta without data"))?;
    Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(data.to_vec())) }))
}

impl SmInner {
    fn state(&self) -> MutexGuard<'_, SmState> {
        // Nothing panics while holding the lock; should it ever, the state is still whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the stored snapshot (unless `keep_newer` and the stored one is newer) and makes it
    /// durable. Blocking.
    fn store_snapshot(&self, meta: &SnapshotMeta<NodeId, BasicNode>, data: &[u8], keep_newer: bool) -> StoreResult<()> {
        let subject = || ErrorSubject::Snapshot(Some(meta.signature()));
        let _write = self.snapshot_write.lock().unwrap_or_else(PoisonError::into_inner);
        if keep_newer {
            let stored: Option<SnapshotMeta<NodeId, BasicNode>> =
                read_json(&self.snapshots, KEY_SNAPSHOT_META, subject())?;
            if stored.is_some_and(|s| s.last_log_id > meta.last_log_id) {
                return Ok(());
            }
        }
        let mut batch = sled::Batch::default();
        batch.insert(KEY_SNAPSHOT_META, to_json(meta, subject())?);
        batch.insert(KEY_SNAPSHOT_DATA, data);
        self.snapshots.apply_batch(batch).map_err(|e| sto_err(subject(), ErrorVerb::Write, &e))?;
        self.disk.sync().map_err(|e| sto_err(subject(), ErrorVerb::Write, &e))
    }
}

fn apply_entry(state: &mut SmState, entry: Entry<TypeConfig>) -> CommandResult {
    state.last_applied = Some(entry.log_id);
    match entry.payload {
        EntryPayload::Blank => CommandResult::default(),
        EntryPayload::Membership(membership) => {
            state.last_membership = StoredMembership::new(Some(entry.log_id), membership);
            CommandResult::default()
        }
        EntryPayload::Normal(command) => {
            let applied_count = state.image.applied_count;
            if command.expected_count.is_some_and(|expected| expected != applied_count) {
                return CommandResult::Conflict { applied_count };
            }
            if !command.records.is_empty() {
                let image = Arc::make_mut(&mut state.image);
                for record in &command.records {
                    image.apply(record);
                }
            }
            CommandResult::Applied { applied_count: state.image.applied_count }
        }
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> StoreResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        let state = self.inner.state();
        Ok((state.last_applied, state.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StoreResult<Vec<CommandResult>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut state = self.inner.state();
        let results = entries.into_iter().map(|entry| apply_entry(&mut state, entry)).collect();
        // Published under the lock, so the watch sees images in apply order.
        self.inner.images.send_replace(state.image.clone());
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StoreResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StoreResult<()> {
        tracing::info!(%meta, "installing a metadata snapshot");
        let inner = self.inner.clone();
        let meta = meta.clone();
        let subject = ErrorSubject::Snapshot(Some(meta.signature()));
        blocking(subject, ErrorVerb::Write, move || {
            let data = snapshot.into_inner();
            let (header, image) = decode_snapshot(&meta, &data)?;
            // Durable first: the state machine only moves to what a restart would find.
            inner.store_snapshot(&meta, &data, false)?;
            let image = Arc::new(image);
            let mut state = inner.state();
            *state = SmState {
                last_applied: header.last_applied,
                last_membership: header.last_membership,
                image: image.clone(),
            };
            inner.images.send_replace(image);
            Ok(())
        })
        .await
    }

    async fn get_current_snapshot(&mut self) -> StoreResult<Option<Snapshot<TypeConfig>>> {
        let inner = self.inner.clone();
        blocking(ErrorSubject::Snapshot(None), ErrorVerb::Read, move || read_snapshot(&inner.snapshots)).await
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> StoreResult<Snapshot<TypeConfig>> {
        // A consistent view costs an Arc clone; encoding happens outside the lock.
        let (header, image) = {
            let state = self.inner.state();
            let header =
                SnapshotHeader { last_applied: state.last_applied, last_membership: state.last_membership.clone() };
            (header, state.image.clone())
        };
        let inner = self.inner.clone();
        blocking(ErrorSubject::Snapshot(None), ErrorVerb::Write, move || {
            let data = encode_snapshot(&header, &image)?;
            let snapshot_id = match header.last_applied {
                Some(id) => format!("{}-{}-{}", id.leader_id, id.index, uuid::Uuid::new_v4().simple()),
                None => format!("none-{}", uuid::Uuid::new_v4().simple()),
            };
            let meta =
                SnapshotMeta { last_log_id: header.last_applied, last_membership: header.last_membership, snapshot_id };
            inner.store_snapshot(&meta, &data, true)?;
            tracing::info!(%meta, bytes = data.len(), "built a metadata snapshot");
            Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftLogStorageExt;
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::{CommittedLeaderId, Membership, StorageHelper};
    use tempfile::TempDir;
    use uuid::Uuid;

    use super::*;
    use crate::raft::Command;
    use crate::records::MetadataRecord;

    struct TempStoreBuilder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempStoreBuilder {
        async fn build(&self) -> StoreResult<(TempDir, LogStore, StateMachineStore)> {
            let dir = tempfile::tempdir().map_err(|e| sto_err(ErrorSubject::Store, ErrorVerb::Write, &e))?;
            let store = open(dir.path()).map_err(|e| sto_err(ErrorSubject::Store, ErrorVerb::Read, &e))?;
            Ok((dir, store.log, store.state_machine))
        }
    }

    /// openraft's storage conformance suite. It starts a fresh runtime per case, so it must not
    /// run inside one.
    #[test]
    fn openraft_conformance_suite() {
        Suite::test_all(TempStoreBuilder).unwrap();
    }

    fn log_id(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn command(term: u64, index: u64, expected_count: Option<u64>, records: Vec<MetadataRecord>) -> Entry<TypeConfig> {
        Entry { log_id: log_id(term, index), payload: EntryPayload::Normal(Command { expected_count, records }) }
    }

    fn topic(name: &str, id: u128) -> MetadataRecord {
        MetadataRecord::Topic { name: name.into(), topic_id: Uuid::from_u128(id) }
    }

    #[tokio::test]
    async fn stale_expected_count_conflicts_and_matching_one_applies() {
        let dir = tempfile::tempdir().unwrap();
        let MetadataStore { mut state_machine, mut images, .. } = open(dir.path()).unwrap();

        let first = command(1, 1, None, vec![MetadataRecord::ClusterId { cluster_id: "c".into() }, topic("a", 1)]);
        let out = state_machine.apply([first]).await.unwrap();
        assert_eq!(out, vec![CommandResult::Applied { applied_count: 2 }]);
        assert!(images.has_changed().unwrap());
        let before = images.borrow_and_update().clone();
        assert_eq!(before.applied_count, 2);

        // Validated against an image at 1 record, but the image is at 2: nothing applies.
        let stale = command(1, 2, Some(1), vec![topic("b", 2)]);
        let blank = Entry { log_id: log_id(1, 3), payload: EntryPayload::Blank };
        let out = state_machine.apply([stale, blank]).await.unwrap();
        assert_eq!(out, vec![CommandResult::Conflict { applied_count: 2 }, CommandResult::default()]);
        assert_eq!(*images.borrow_and_update().as_ref(), *before);
        assert!(images.borrow().topic_by_name("b").is_none());

        let matching = command(1, 4, Some(2), vec![topic("b", 2)]);
        let out = state_machine.apply([matching]).await.unwrap();
        assert_eq!(out, vec![CommandResult::Applied { applied_count: 3 }]);
        let after = images.borrow_and_update().clone();
        assert!(after.topic_by_name("b").is_some());
        // The image published before is a snapshot: applying did not mutate it.
        assert!(before.topic_by_name("b").is_none());
        assert_eq!(state_machine.applied_state().await.unwrap().0, Some(log_id(1, 4)));
    }

    #[tokio::test]
    async fn a_store_in_another_format_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        {
            let MetadataStore { mut log, .. } = open(dir.path()).unwrap();
            log.save_vote(&Vote::new(3, 1)).await.unwrap();
        }
        // Our own format reopens.
        drop(open(dir.path()).unwrap());
        let set_format = |format: Option<&[u8]>| {
            let db = sled::Config::new().path(dir.path()).open().unwrap();
            let meta = db.open_tree(META_TREE).unwrap();
            match format {
                Some(format) => meta.insert(KEY_FORMAT, format).unwrap(),
                None => meta.remove(KEY_FORMAT).unwrap(),
            };
            db.flush().unwrap();
        };

        // Written before the format key existed (openraft's default leader ids).
        set_format(None);
        let error = open(dir.path()).map(|_| ()).unwrap_err().to_string();
        assert!(error.contains("earlier Sluice") && error.contains("empty data directory"), "{error}");

        // A later format.
        set_format(Some(&[9]));
        let error = open(dir.path()).map(|_| ()).unwrap_err().to_string();
        assert!(error.contains("format [9]") && error.contains("reads format 2"), "{error}");

        set_format(Some(&[STORE_FORMAT]));
        let MetadataStore { mut log, .. } = open(dir.path()).unwrap();
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 1)));
    }

    #[tokio::test]
    async fn everything_openraft_relies_on_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let vote = Vote::new(3, 1);
        let membership = Membership::new(vec![[1u64].into_iter().collect()], None);
        let entries = || {
            let mut entries =
                vec![Entry { log_id: log_id(1, 1), payload: EntryPayload::Membership(membership.clone()) }];
            entries.extend((2..=6).map(|i| command(1, i, None, vec![topic(&format!("t{i}"), u128::from(i))])));
            entries
        };

        let built = {
            let MetadataStore { mut log, mut state_machine, images } = open(dir.path()).unwrap();
            log.save_vote(&vote).await.unwrap();
            log.blocking_append(entries()).await.unwrap();
            state_machine.apply(entries().into_iter().take(4)).await.unwrap();
            let built = state_machine.get_snapshot_builder().await.build_snapshot().await.unwrap();
            assert_eq!(built.meta.last_log_id, Some(log_id(1, 4)));
            state_machine.apply(entries().into_iter().skip(4).take(1)).await.unwrap();
            log.save_committed(Some(log_id(1, 5))).await.unwrap();
            log.purge(log_id(1, 2)).await.unwrap();
            assert_eq!(images.borrow().applied_count, 4);
            built
        };
        let snapshot_image = {
            let (_, image) = decode_snapshot(&built.meta, built.snapshot.get_ref()).unwrap();
            assert_eq!(image.applied_count, 3);
            image
        };

        let MetadataStore { mut log, mut state_machine, images } = open(dir.path()).unwrap();
        assert_eq!(log.read_vote().await.unwrap(), Some(vote));
        assert_eq!(
            log.get_log_state().await.unwrap(),
            LogState { last_purged_log_id: Some(log_id(1, 2)), last_log_id: Some(log_id(1, 6)) }
        );
        assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 5)));
        let kept: Vec<u64> = log.try_get_log_entries(..).await.unwrap().iter().map(|e| e.log_id.index).collect();
        assert_eq!(kept, vec![3, 4, 5, 6]);

        let current = state_machine.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, built.meta);
        assert_eq!(current.snapshot.get_ref(), built.snapshot.get_ref());
        let (applied, stored_membership) = state_machine.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(1, 4)));
        assert_eq!(stored_membership, StoredMembership::new(Some(log_id(1, 1)), membership));
        assert_eq!(*images.borrow().as_ref(), snapshot_image);

        // openraft's startup re-applies the committed entries after the snapshot.
        StorageHelper::new(&mut log, &mut state_machine).get_initial_state().await.unwrap();
        assert_eq!(state_machine.applied_state().await.unwrap().0, Some(log_id(1, 5)));
        assert_eq!(images.borrow().applied_count, 4);
        assert!(images.borrow().topic_by_name("t5").is_some());
    }

    /// Values above ~128 KiB go to sled blob files, which `Disk::sync` must fsync too.
    #[tokio::test]
    async fn a_snapshot_larger_than_a_sled_segment_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let records: Vec<_> = (0..3000).map(|i| topic(&format!("topic-with-a-long-name-{i:05}"), i)).collect();
        let built = {
            let MetadataStore { mut state_machine, .. } = open(dir.path()).unwrap();
            state_machine.apply([command(1, 1, Some(0), records)]).await.unwrap();
            state_machine.get_snapshot_builder().await.build_snapshot().await.unwrap()
        };
        assert!(built.snapshot.get_ref().len() > 256 << 10);
        assert!(std::fs::read_dir(dir.path().join("blobs")).unwrap().next().is_some(), "expected a sled blob");

        let MetadataStore { mut state_machine, images, .. } = open(dir.path()).unwrap();
        let current = state_machine.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.snapshot.get_ref(), built.snapshot.get_ref());
        assert_eq!(images.borrow().applied_count, 3000);
    }
}
