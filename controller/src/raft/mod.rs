//! openraft glue: the type config, the sled-backed log and state-machine storage, and the framed
//! TCP network between controllers. Nothing outside this module names an openraft type except
//! through the aliases below.
//!
//! What the Raft log carries is a [`Command`]: a batch of metadata records the active controller
//! validated against the image at `expected_count` records. The state machine applies the batch
//! only if its image is still at that count (no other write slipped in between validation and
//! commit, for instance across a leader change); otherwise it applies nothing and answers
//! [`CommandResult::Conflict`], and the controller validates again. Either way `apply` is
//! deterministic: every controller reaches the same image from the same log.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::records::MetadataRecord;

pub mod election;
pub mod network;
pub mod store;

/// A batch of records proposed by the active controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The image's `applied_count` the records were validated against; `None` applies
    /// unconditionally (records that cannot conflict, such as a cluster id that is set once).
    pub expected_count: Option<u64>,
    pub records: Vec<MetadataRecord>,
}

/// What applying a [`Command`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// The records were applied; the image is now at `applied_count`.
    Applied { applied_count: u64 },
    /// The image had moved past `expected_count`; nothing was applied.
    Conflict { applied_count: u64 },
}

impl Default for CommandResult {
    fn default() -> Self {
        Self::Applied { applied_count: 0 }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Command({} records at {:?})", self.records.len(), self.expected_count)
    }
}

openraft::declare_raft_types!(
    /// Sluice's Raft type configuration.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A running Raft node.
pub type Raft = openraft::Raft<TypeConfig>;
/// A controller's id in the quorum (the Kafka `node.id`).
pub type NodeId = u64;
