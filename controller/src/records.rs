//! Versioned metadata records: the payload of the metadata log.
//!
//! A record is a fact, not a command: applying it never fails and never consults a clock, so every
//! replica that applies the same records in the same order reaches the same image. Records are
//! encoded as JSON with an explicit `v` (record version) so that later versions can add fields.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The kind of resource a config record applies to (Kafka's ConfigResource types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ConfigResource {
    Topic,
    Broker,
}

/// One change to the cluster metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// A broker announced itself (node id, endpoint, rack). It starts fenced.
    RegisterBroker { node_id: i32, incarnation_id: Uuid, host: String, port: i32, rack: Option<String> },
    /// A topic came into existence.
    Topic { name: String, topic_id: Uuid },
    /// A partition's placement and leadership (created, or changed as a whole).
    Partition {
        topic_id: Uuid,
        partition: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
    },
    /// A config was set (`Some`) or reset to its default (`None`).
    Config { resource: ConfigResource, resource_name: String, name: String, value: Option<String> },
    /// A topic and all its partitions and configs were deleted.
    RemoveTopic { topic_id: Uuid },
    /// A block of producer ids was handed to a broker; the next block starts after it.
    ProducerIds { broker_id: i32, next_producer_id: i64 },
    /// The cluster got its id (written once, by the first active controller).
    ClusterId { cluster_id: String },
    /// A broker stopped heartbeating (or shut down): it leads nothing and is not in any ISR.
    FenceBroker { node_id: i32 },
    /// A registered broker caught up with metadata and heartbeats: it may lead partitions.
    UnfenceBroker { node_id: i32 },
}

/// The current record encoding version.
pub const RECORD_VERSION: u8 = 1;

/// A record in its on-log envelope.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u8,
    pub record: MetadataRecord,
}
