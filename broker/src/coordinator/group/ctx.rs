//! What a state-machine step produces before the coordinator hands it to the caller: answers to
//! tickets, and writes together with what to do when each becomes durable (or fails).

use std::collections::BTreeMap;

use bytes::Bytes;

use super::records::Record;
use super::{
    Completion, ConsumerHeartbeatResponse, GroupConfig, GroupError, JoinResponse, PartitionResult, Protocol, Reply,
    SyncResponse, Ticket, TopicPartition,
};

/// A member's settings before a static-member replacement, restored if its write fails.
#[derive(Debug)]
pub(super) struct SavedMember {
    pub(super) protocols: Vec<Protocol>,
    pub(super) rebalance_timeout_ms: i32,
    pub(super) session_timeout_ms: i32,
}

/// What to do when a write completes.
#[derive(Debug)]
pub(super) enum WriteKind {
    /// A group snapshot nobody waits for (a group created, or emptied by a rebalance).
    Metadata,
    /// The leader's assignment: on success the group becomes Stable and members get theirs.
    Sync {
        group_id: String,
        generation_id: i32,
        assignment: BTreeMap<String, Bytes>,
    },
    /// A static member rejoined a Stable group under a new member id (KIP-345).
    StaticReplace {
        group_id: String,
        ticket: Ticket,
        old_member_id: String,
        new_member_id: String,
        old_leader_id: Option<String>,
        saved: SavedMember,
        supports_skip_assignment: bool,
    },
    Commit {
        ticket: Ticket,
        group_id: String,
        results: Vec<PartitionResult>,
        keys: Vec<TopicPartition>,
    },
    DeleteOffsets {
        ticket: Ticket,
        group_id: String,
        results: Vec<PartitionResult>,
        keys: Vec<TopicPartition>,
    },
    DeleteGroups {
        ticket: Ticket,
        results: Vec<(String, Result<(), GroupError>)>,
        deleted: Vec<(String, Vec<TopicPartition>)>,
    },
    /// A ConsumerGroupHeartbeat answered once the group's changed records are durable.
    ConsumerHeartbeat {
        ticket: Ticket,
        response: ConsumerHeartbeatResponse,
    },
    /// Retention: expired offsets, and the group itself when it is Empty with none left.
    Expire {
        group_id: String,
        keys: Vec<TopicPartition>,
        group_deleted: bool,
    },
}

impl WriteKind {
    /// The request waiting on this write, if any.
    pub(super) fn ticket(&self) -> Option<Ticket> {
        match self {
            Self::StaticReplace { ticket, .. }
            | Self::Commit { ticket, .. }
            | Self::DeleteOffsets { ticket, .. }
            | Self::DeleteGroups { ticket, .. }
            | Self::ConsumerHeartbeat { ticket, .. } => Some(*ticket),
            Self::Metadata | Self::Sync { .. } | Self::Expire { .. } => None,
        }
    }

    /// The answer to send if the coordinator gives up on this write (unload).
    pub(super) fn failed_reply(&self, error: &GroupError) -> Option<Reply> {
        let fail = |results: &[PartitionResult]| -> Vec<PartitionResult> {
            results.iter().map(|r| PartitionResult { result: Err(error.clone()), ..r.clone() }).collect()
        };
        match self {
            Self::StaticReplace { .. } => Some(Reply::Join(Err(error.clone()))),
            Self::ConsumerHeartbeat { .. } => Some(Reply::ConsumerHeartbeat(Err(error.clone()))),
            Self::Commit { results, .. } => Some(Reply::Commit(fail(results))),
            Self::DeleteOffsets { .. } => Some(Reply::DeleteOffsets(Err(error.clone()))),
            Self::DeleteGroups { results, .. } => {
                Some(Reply::DeleteGroups(results.iter().map(|(g, _)| (g.clone(), Err(error.clone()))).collect()))
            }
            Self::Metadata | Self::Sync { .. } | Self::Expire { .. } => None,
        }
    }
}

/// Answers and writes produced by one step.
#[derive(Debug, Default)]
pub(super) struct Out {
    pub(super) completions: Vec<Completion>,
    pub(super) writes: Vec<(WriteKind, Vec<Record>)>,
}

impl Out {
    pub(super) fn reply(&mut self, ticket: Ticket, reply: Reply) {
        self.completions.push(Completion { ticket, reply });
    }
}

/// The context a group's state machine runs in: configuration, the time, and where effects go.
pub(super) struct Ctx<'a> {
    pub(super) cfg: &'a GroupConfig,
    pub(super) now_ms: i64,
    pub(super) out: &'a mut Out,
}

impl Ctx<'_> {
    pub(super) fn reply_join(&mut self, ticket: Ticket, result: Result<JoinResponse, GroupError>) {
        self.out.reply(ticket, Reply::Join(result));
    }

    pub(super) fn reply_sync(&mut self, ticket: Ticket, result: Result<SyncResponse, GroupError>) {
        self.out.reply(ticket, Reply::Sync(result));
    }

    pub(super) fn write(&mut self, kind: WriteKind, records: Vec<Record>) {
        self.out.writes.push((kind, records));
    }
}
