//! Partition storage: each partition is a directory of segment files (`.log` holding record
//! batches exactly as produced, `.index`, `.timeindex`), plus producer-state snapshots and
//! small checkpoint files (recovery point, log start, high watermark, leader epochs). Storage
//! owns offsets, durability (group-commit fsync), recovery after a crash, retention,
//! idempotent-producer sequence checks, and the storage half of replication: appending a
//! leader's batches unchanged, the leader-epoch cache, and truncation.
//!
//! It must never see a Kafka request or response type, never decode or re-encode records on the
//! hot path (batches are validated by header and CRC and stored as received), never use async
//! I/O or a runtime, never decide replication (who leads, where the high watermark is), and
//! never panic on bytes that came from a client, a leader or the disk.

pub mod batch;
mod checkpoint;
pub mod config;
pub mod error;
mod index;
mod leader_epoch;
pub mod log;
pub mod producer_state;
mod segment;

pub use batch::{BatchHeader, BatchInfo};
pub use config::LogConfig;
pub use error::{Result, StorageError};
pub use log::{AppendInfo, Log};
