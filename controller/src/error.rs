//! Controller errors: one enum, mapped to Kafka error codes at the broker's handler boundary.

/// Why a controller operation was refused. Each variant corresponds to one Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum ControllerError {
    #[error("topic '{0}' already exists")]
    TopicAlreadyExists(String),
    #[error("invalid topic: {0}")]
    InvalidTopic(String),
    #[error("unknown topic or partition: {0}")]
    UnknownTopicOrPartition(String),
    #[error("unknown topic id: {0}")]
    UnknownTopicId(String),
    #[error("invalid partitions: {0}")]
    InvalidPartitions(String),
    #[error("invalid replication factor: {0}")]
    InvalidReplicationFactor(String),
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("metadata log failure: {0}")]
    Storage(String),
    /// An ISR change from a leader whose leader epoch is not the partition's current one
    /// (`FENCED_LEADER_EPOCH`).
    #[error("fenced leader epoch: {0}")]
    FencedLeaderEpoch(String),
    /// An ISR change based on an older partition epoch (`INVALID_UPDATE_VERSION`).
    #[error("invalid update version: {0}")]
    InvalidUpdateVersion(String),
    /// An ISR change adding a replica that is fenced or not registered (`INELIGIBLE_REPLICA`).
    #[error("ineligible replica: {0}")]
    IneligibleReplica(String),
    /// An ISR change from a broker that does not lead the partition (`NOT_LEADER_OR_FOLLOWER`).
    #[error("not the leader: {0}")]
    NotLeaderOrFollower(String),
    /// No active controller could be reached in time (Kafka answers REQUEST_TIMED_OUT).
    #[error("no active controller: {0}")]
    Unavailable(String),
    /// This node is not the active controller (internal: the caller retries elsewhere; a Kafka
    /// client never sees it).
    #[error("not the active controller")]
    NotController,
}
