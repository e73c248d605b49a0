//! Controller operations: validate a request against the image, return `(records, response)`.
//!
//! Nothing here does I/O or mutates the image: the controller writes the records to the metadata
//! log and applies them, and only then hands the response back (Kafka's QuorumController shape).
//! Ids may be drawn at random here (that happens once, before the records exist); `apply` never
//! draws anything.

pub mod cluster;
pub mod configs;
pub mod partitions;
pub mod producer_ids;
pub mod topics;

use crate::records::MetadataRecord;

/// What an operation wants written, and what it answers once that is committed.
#[derive(Debug)]
pub struct OpResult<T> {
    pub records: Vec<MetadataRecord>,
    pub response: T,
}
