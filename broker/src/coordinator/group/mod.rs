//! The consumer-group coordinator for one partition of `__consumer_offsets`: Kafka's classic group
//! protocol, the KIP-848 consumer group protocol, and committed offsets, as a deterministic state
//! machine.
//!
//! A [`GroupCoordinator`] owns every group whose id maps to its partition (see
//! [`super::partition::partition_for`]). Each API is a method that takes the request as plain
//! data and `now_ms`, and returns a [`Step`]: either the answer ([`Outcome::Done`]) or a
//! [`Ticket`] under which the caller parks the request ([`Outcome::Parked`]), plus [`Effects`]:
//! answers to earlier parked requests and [`Write`]s of records for the partition. The caller
//! appends each write's records, in the order given, and reports the result with
//! [`GroupCoordinator::write_completed`], which releases the answers that waited for them
//! (SyncGroup, OffsetCommit, DeleteGroups, OffsetDelete answer only once durable). Time-driven
//! work (session, rebalance and sync timeouts, the initial rebalance delay, offset retention)
//! happens in [`GroupCoordinator::tick`].
//!
//! Membership (members, heartbeats, parked requests) is soft state, changed at once; what is
//! persisted is a snapshot of each group after a rebalance and every offset commit. Committed
//! offsets change only when their records are durable, through the same function that replays
//! the partition on load ([`GroupCoordinator::replay`]), so the offsets a coordinator serves are
//! exactly those a successor rebuilds from the log.
//!
//! This module must never do I/O, read a clock, or see a protocol or storage type.

mod classic;
mod consumer;
mod coordinator;
mod ctx;
mod offsets;
pub mod records;
#[cfg(test)]
mod tests;

use bytes::Bytes;

pub use consumer::{
    ConsumerDescribedMember, ConsumerGroupDescription, ConsumerHeartbeatRequest, ConsumerHeartbeatResponse,
};
pub use coordinator::GroupCoordinator;
pub use records::TopicAssignment;

/// Identifies a parked request; the answer comes back in a [`Completion`] with the same ticket.
pub type Ticket = u64;
/// Identifies a batch of records handed to the caller to write.
pub type WriteId = u64;

/// The group type ListGroups reports for classic groups.
pub const GROUP_TYPE_CLASSIC: &str = "classic";
/// The group type ListGroups reports for KIP-848 consumer groups.
pub const GROUP_TYPE_CONSUMER: &str = "consumer";
/// The protocol type of Kafka's consumer, whose subscription metadata the coordinator reads.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// Limits and timeouts, under Kafka's configuration names and with Kafka's defaults.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`: how long a new (Empty) group waits for more members.
    pub initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.max.size`: members per group (also bounds KIP-394 pending member ids).
    pub max_size: usize,
    /// How long a new member's JoinGroup may stay parked before the member is dropped
    /// (Kafka's `group.coordinator.new.member.join.timeout.ms`, 5 minutes).
    pub new_member_join_timeout_ms: i64,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
    /// `offsets.retention.minutes`, in milliseconds.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: i64,
    /// Sluice's bound on groups per coordinator partition (Kafka has none).
    pub groups_max: usize,
    /// `group.consumer.session.timeout.ms`: a KIP-848 member silent this long is fenced.
    pub consumer_session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms`: returned to KIP-848 members.
    pub consumer_heartbeat_interval_ms: i32,
    /// `group.consumer.max.size`: members per KIP-848 group.
    pub consumer_max_size: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            initial_rebalance_delay_ms: 3_000,
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            max_size: i32::MAX as usize,
            new_member_join_timeout_ms: 300_000,
            offset_metadata_max_bytes: 4_096,
            offsets_retention_ms: 10_080 * 60_000,
            offsets_retention_check_interval_ms: 600_000,
            groups_max: 100_000,
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5_000,
            consumer_max_size: i32::MAX as usize,
        }
    }
}

/// Why a group operation failed. Each variant but the last is the Kafka error code of the same
/// name; the handler layer turns them into codes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("COORDINATOR_NOT_AVAILABLE")]
    CoordinatorNotAvailable,
    #[error("NOT_COORDINATOR")]
    NotCoordinator,
    #[error("UNKNOWN_SERVER_ERROR")]
    UnknownServerError,
    #[error("INVALID_GROUP_ID")]
    InvalidGroupId,
    #[error("UNKNOWN_MEMBER_ID")]
    UnknownMemberId,
    #[error("ILLEGAL_GENERATION")]
    IllegalGeneration,
    #[error("REBALANCE_IN_PROGRESS")]
    RebalanceInProgress,
    #[error("FENCED_INSTANCE_ID")]
    FencedInstanceId,
    #[error("INCONSISTENT_GROUP_PROTOCOL")]
    InconsistentGroupProtocol,
    #[error("GROUP_MAX_SIZE_REACHED")]
    GroupMaxSizeReached,
    #[error("INVALID_SESSION_TIMEOUT")]
    InvalidSessionTimeout,
    /// KIP-394: rejoin with this member id (the JoinGroup response carries it).
    #[error("MEMBER_ID_REQUIRED")]
    MemberIdRequired(String),
    #[error("GROUP_ID_NOT_FOUND")]
    GroupIdNotFound,
    #[error("NON_EMPTY_GROUP")]
    NonEmptyGroup,
    #[error("GROUP_SUBSCRIBED_TO_TOPIC")]
    GroupSubscribedToTopic,
    #[error("OFFSET_METADATA_TOO_LARGE")]
    OffsetMetadataTooLarge,
    #[error("FENCED_MEMBER_EPOCH")]
    FencedMemberEpoch,
    #[error("STALE_MEMBER_EPOCH")]
    StaleMemberEpoch,
    #[error("UNRELEASED_INSTANCE_ID")]
    UnreleasedInstanceId,
    #[error("UNSUPPORTED_ASSIGNOR")]
    UnsupportedAssignor,
    /// INVALID_REQUEST, with the message Kafka's `error_message` carries.
    #[error("INVALID_REQUEST: {0}")]
    InvalidRequest(&'static str),
    /// Not a Kafka code: this coordinator already holds `groups_max` groups. Handlers answer
    /// COORDINATOR_NOT_AVAILABLE (retriable) and log it.
    #[error("coordinator holds the maximum number of groups")]
    GroupsMaxReached,
}

/// Kafka's classic group states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name Kafka uses in ListGroups and DescribeGroups.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
            Self::Dead => "Dead",
        }
    }
}

/// A topic partition, by name as the classic offset APIs address it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

/// One (name, metadata) pair from a JoinGroup, in the member's order of preference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    pub metadata: Bytes,
}

/// A JoinGroup request, as plain data.
#[derive(Clone, Debug)]
pub struct JoinRequest {
    pub group_id: String,
    /// "" for a member that has no id yet.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    /// JoinGroup v4+: a new dynamic member first gets MEMBER_ID_REQUIRED (KIP-394).
    pub require_known_member_id: bool,
    /// JoinGroup v9+: a static leader rejoining a Stable group may be told to skip assignment.
    pub supports_skip_assignment: bool,
}

/// A member as the leader's JoinGroup response lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

/// A successful JoinGroup answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinResponse {
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader_id: String,
    pub member_id: String,
    /// Every member with its metadata for the chosen protocol; only the leader gets them.
    pub members: Vec<JoinedMember>,
    pub skip_assignment: bool,
}

/// A SyncGroup request.
#[derive(Clone, Debug)]
pub struct SyncRequest {
    pub group_id: String,
    pub member_id: String,
    pub generation_id: i32,
    pub group_instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// (member id, assignment bytes); only the leader's are used.
    pub assignments: Vec<(String, Bytes)>,
}

/// A successful SyncGroup answer: this member's assignment (empty if the leader gave none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncResponse {
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

/// A Heartbeat request.
#[derive(Clone, Debug)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub member_id: String,
    pub generation_id: i32,
    pub group_instance_id: Option<String>,
}

/// One member of a (batched, v3+) LeaveGroup request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaveMember {
    /// "" to remove a static member by its instance id alone.
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// The result for one member of a LeaveGroup request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaveResult {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub result: Result<(), GroupError>,
}

/// One partition of an OffsetCommit request.
#[derive(Clone, Debug)]
pub struct CommitOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// -1 when the client sent none.
    pub leader_epoch: i32,
    /// None is stored as "" (Kafka's `NO_METADATA`).
    pub metadata: Option<String>,
}

/// An OffsetCommit request (classic groups; generation -1 and member "" for a simple commit).
#[derive(Clone, Debug)]
pub struct CommitRequest {
    pub group_id: String,
    pub member_id: String,
    pub generation_id: i32,
    pub group_instance_id: Option<String>,
    pub offsets: Vec<CommitOffset>,
}

/// The result for one partition of OffsetCommit or OffsetDelete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionResult {
    pub topic: String,
    pub partition: i32,
    pub result: Result<(), GroupError>,
}

/// A committed offset as OffsetFetch returns it; an unknown partition is -1 / -1 / "".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

/// A group as ListGroups reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    /// "" for a simple (offsets-only) group.
    pub protocol_type: String,
    /// Kafka's name of the state: a [`GroupState`] for classic groups; Empty, Assigning,
    /// Reconciling, Stable or Dead for consumer groups.
    pub state: &'static str,
    pub group_type: &'static str,
}

/// A member as DescribeGroups reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Empty unless the group is Stable (as Kafka).
    pub metadata: Bytes,
    /// Empty unless the group is Stable (as Kafka).
    pub assignment: Bytes,
}

/// A group as DescribeGroups reports it (plus its generation, which Kafka's response lacks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: GroupState,
    pub protocol_type: String,
    /// "" unless the group is Stable (as Kafka).
    pub protocol: String,
    pub generation_id: i32,
    pub members: Vec<DescribedMember>,
}

/// The answer to a parked request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Join(Result<JoinResponse, GroupError>),
    Sync(Result<SyncResponse, GroupError>),
    Commit(Vec<PartitionResult>),
    DeleteGroups(Vec<(String, Result<(), GroupError>)>),
    DeleteOffsets(Result<Vec<PartitionResult>, GroupError>),
    ConsumerHeartbeat(Result<ConsumerHeartbeatResponse, GroupError>),
}

/// An answer for the request parked under `ticket`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    pub ticket: Ticket,
    pub reply: Reply,
}

/// Records for the caller to append to this coordinator's `__consumer_offsets` partition, then
/// report on with [`GroupCoordinator::write_completed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub id: WriteId,
    pub records: Vec<records::Record>,
}

/// What a call asks of the caller besides its own answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Answers to requests parked earlier: send each to the request holding its ticket.
    pub completions: Vec<Completion>,
    /// Records to append, in this order, before anything waiting on them is answered.
    pub writes: Vec<Write>,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.completions.is_empty() && self.writes.is_empty()
    }
}

/// A request's own answer, or the ticket to park it under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<T> {
    Done(T),
    Parked(Ticket),
}

/// What a call returns: its outcome and the effects it caused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "effects carry answers and records the caller must deliver and write"]
pub struct Step<T> {
    pub outcome: Outcome<T>,
    pub effects: Effects,
}
