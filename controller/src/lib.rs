//! The Sluice metadata plane.
//!
//! Owns the cluster metadata model: versioned [`records`] applied deterministically to a
//! [`image::MetadataImage`], the topic-config definitions ([`configs`]), the operations that
//! validate a request and turn it into records ([`ops`]), the Raft quorum that replicates them
//! ([`raft`]: openraft over sled storage and a framed TCP network), the controller that commits
//! operations and forwards them to the active controller ([`controller`]), and its service to
//! brokers ([`rpc`]). It never sees a Kafka wire type, and never reads a clock inside `apply`.

pub mod configs;
pub mod controller;
pub mod error;
pub mod image;
pub mod ops;
pub mod raft;
pub mod records;
pub mod rpc;

pub use controller::{Controller, ControllerConfig, QuorumTiming};
pub use error::ControllerError;
pub use image::MetadataImage;
pub use records::MetadataRecord;
