//! The one place where storage and controller errors become Kafka error codes.

use kafka_protocol::error::ResponseError;
use sluice_controller::ControllerError;

use crate::replica::manager::PartitionError;
use crate::storage::StorageError;

/// The Kafka error for a storage failure on one partition.
pub fn storage_error(e: &StorageError) -> ResponseError {
    match e {
        StorageError::CorruptMessage => ResponseError::CorruptMessage,
        StorageError::InvalidRecord { .. } => ResponseError::InvalidRecord,
        StorageError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        StorageError::InvalidTimestamp { .. } => ResponseError::InvalidTimestamp,
        StorageError::UnsupportedForMessageFormat { .. } => ResponseError::UnsupportedForMessageFormat,
        StorageError::UnsupportedCompressionType { .. } => ResponseError::UnsupportedCompressionType,
        StorageError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        StorageError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        StorageError::Io { .. } | StorageError::Corrupted { .. } => ResponseError::KafkaStorageError,
        // Only a follower's append can meet it (the leader sent batches that do not follow on).
        StorageError::NonContiguousAppend { .. } => ResponseError::UnknownServerError,
    }
}

/// The Kafka error for a partition that cannot take a request here.
pub fn partition_error(e: &PartitionError) -> ResponseError {
    match e {
        PartitionError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
        PartitionError::NotLeader => ResponseError::NotLeaderOrFollower,
        PartitionError::NotEnoughReplicas => ResponseError::NotEnoughReplicas,
        PartitionError::NotEnoughReplicasAfterAppend => ResponseError::NotEnoughReplicasAfterAppend,
        PartitionError::Timeout => ResponseError::RequestTimedOut,
        PartitionError::Storage(s) => storage_error(s),
    }
}

/// The Kafka error for a refused controller operation.
pub fn controller_error(e: &ControllerError) -> ResponseError {
    match e {
        ControllerError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
        ControllerError::InvalidTopic(_) => ResponseError::InvalidTopicException,
        ControllerError::UnknownTopicOrPartition(_) => ResponseError::UnknownTopicOrPartition,
        ControllerError::UnknownTopicId(_) => ResponseError::UnknownTopicId,
        ControllerError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        ControllerError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        ControllerError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
        ControllerError::InvalidConfig(_) => ResponseError::InvalidConfig,
        ControllerError::InvalidRequest(_) => ResponseError::InvalidRequest,
        ControllerError::Storage(_) => ResponseError::KafkaStorageError,
        ControllerError::FencedLeaderEpoch(_) => ResponseError::FencedLeaderEpoch,
        ControllerError::InvalidUpdateVersion(_) => ResponseError::InvalidUpdateVersion,
        ControllerError::IneligibleReplica(_) => ResponseError::IneligibleReplica,
        ControllerError::NotLeaderOrFollower(_) => ResponseError::NotLeaderOrFollower,
        ControllerError::Unavailable(_) | ControllerError::NotController => ResponseError::RequestTimedOut,
    }
}
