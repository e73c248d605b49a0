//! The Sluice metadata plane.
//!
//! Owns the cluster metadata model: versioned [`records`] applied deterministically to a
//! [`image::MetadataImage`], the topic-config definitions ([`configs`]), the operations that
//! validate a request and turn it into records ([`ops`]), and the durable log those records live
//! in ([`journal`] on a single node; the openraft quorum later implements the same
//! [`MetadataLog`] seam). It never sees a Kafka wire type, never reads a clock inside `apply`, and
//! never does I/O outside the journal.

pub mod configs;
pub mod controller;
pub mod error;
pub mod image;
pub mod journal;
pub mod ops;
pub mod raft;
pub mod records;

pub use controller::{Controller, ControllerConfig};
pub use error::ControllerError;
pub use image::MetadataImage;
pub use journal::{FileJournal, MetadataLog};
pub use records::MetadataRecord;
