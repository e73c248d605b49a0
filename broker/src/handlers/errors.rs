//! The one place where storage and controller errors become Kafka error codes.

use kafka_protocol::error::ResponseError;
use sluice_controller::ControllerError;

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
        ControllerError::Unavailable(_) | ControllerError::NotController => ResponseError::RequestTimedOut,
    }
}
