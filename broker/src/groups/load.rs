//! The `__consumer_offsets` side of group coordination: creating the topic, replaying a partition
//! into a coordinator, and appending a coordinator's records durably.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record as WireRecord, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use sluice_controller::ops::topics::CreateTopicSpec;
use sluice_controller::ControllerError;

use super::{GroupHostConfig, OFFSETS_TOPIC};
use crate::broker::Broker;
use crate::coordinator::group::records::{self, Record};
use crate::coordinator::group::{GroupConfig, GroupCoordinator, GroupError};
use crate::replica::manager::PartitionError;
use crate::replica::Partition;

/// Bytes read per step while replaying a partition.
const REPLAY_READ_BYTES: usize = 1 << 20;

/// The hosted partition `index` of the offsets topic, creating the topic if it does not exist.
///
/// # Errors
/// COORDINATOR_NOT_AVAILABLE when the topic cannot be created or the partition is not led here.
pub async fn offsets_partition(
    broker: &Arc<Broker>,
    config: &GroupHostConfig,
    index: i32,
) -> Result<Arc<Partition>, GroupError> {
    let mut image = broker.metadata.image();
    if image.topic_by_name(OFFSETS_TOPIC).is_none() {
        // Capped at the live brokers, so that a single node can host it (Kafka would wait for
        // `offsets.topic.replication.factor` brokers).
        let live = image.brokers.values().filter(|b| !b.fenced).count();
        let brokers = i16::try_from(live).unwrap_or(i16::MAX).max(1);
        let spec = CreateTopicSpec {
            name: OFFSETS_TOPIC.to_string(),
            num_partitions: config.partitions,
            replication_factor: config.replication_factor.min(brokers),
            configs: [("cleanup.policy", "compact"), ("segment.bytes", "104857600")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        match broker.controller.create_topics(&[spec], false).await.pop() {
            Some(Ok(_)) | Some(Err(ControllerError::TopicAlreadyExists(_))) => {}
            other => {
                tracing::warn!(result = ?other, "could not create {OFFSETS_TOPIC}");
                return Err(GroupError::CoordinatorNotAvailable);
            }
        }
        image = broker.metadata.image();
    }
    let topic = image.topic_by_name(OFFSETS_TOPIC).ok_or(GroupError::CoordinatorNotAvailable)?;
    broker.replicas.leader_partition(&image, topic.topic_id, index).await.map_err(|e| {
        tracing::warn!(partition = index, error = %e, "offsets partition not available");
        GroupError::NotCoordinator
    })
}

/// Rebuilds the coordinator of `partition` from its log.
///
/// # Errors
/// COORDINATOR_NOT_AVAILABLE when the log cannot be read.
pub async fn replay(partition: &Arc<Partition>, config: &GroupConfig) -> Result<GroupCoordinator, GroupError> {
    let log = Arc::clone(&partition.log);
    let records = tokio::task::spawn_blocking(move || read_all(&log))
        .await
        .map_err(|_| GroupError::CoordinatorNotAvailable)??;
    let seed = rand_seed();
    tracing::info!(topic = %partition.topic, partition = partition.index, records = records.len(), "replaying group records");
    Ok(GroupCoordinator::replay(config.clone(), seed, records, crate::clock::now_ms()))
}

fn read_all(log: &crate::storage::Log) -> Result<Vec<Record>, GroupError> {
    // To the log end, not the high watermark: a new leader's log is the partition's truth, and
    // its tail becomes committed as the followers copy it (Kafka loads the same way).
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    let mut out = Vec::new();
    while offset < end {
        let bytes = log.read(offset, REPLAY_READ_BYTES, end, true).map_err(|e| {
            tracing::warn!(error = %e, "cannot read the offsets log");
            GroupError::CoordinatorNotAvailable
        })?;
        if bytes.is_empty() {
            break;
        }
        let mut buf = bytes;
        let sets = RecordBatchDecoder::decode_all(&mut buf).map_err(|e| {
            tracing::warn!(error = %e, "cannot decode the offsets log");
            GroupError::CoordinatorNotAvailable
        })?;
        let mut next = offset;
        for record in sets.into_iter().flat_map(|s| s.records) {
            next = next.max(record.offset + 1);
            if record.offset < offset {
                continue;
            }
            let Some(key) = record.key else { continue };
            match records::decode(&key, record.value.as_deref()) {
                Ok(r) => out.push(r),
                Err(e) => tracing::warn!(offset = record.offset, error = %e, "skipping an undecodable group record"),
            }
        }
        if next <= offset {
            break;
        }
        offset = next;
    }
    Ok(out)
}

/// A seed for member ids, different on every load.
fn rand_seed() -> u64 {
    let id = uuid::Uuid::new_v4();
    let (high, low) = id.as_u64_pair();
    high ^ low
}

/// Appends `records` as one batch and waits until it is durable.
///
/// # Errors
/// The coordinator error Kafka answers with when an append fails.
pub async fn append_records(partition: &Partition, group_records: &[Record]) -> Result<(), GroupError> {
    if group_records.is_empty() {
        return Ok(());
    }
    let now = crate::clock::now_ms();
    let mut wire = Vec::with_capacity(group_records.len());
    for (i, record) in group_records.iter().enumerate() {
        let (key, value) = records::encode(record).map_err(|_| GroupError::UnknownServerError)?;
        let i32_index = i32::try_from(i).map_err(|_| GroupError::UnknownServerError)?;
        wire.push(WireRecord {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i64::from(i32_index),
            // Sequence kept in step with the offset, so the encoder writes one batch.
            sequence: i32_index,
            timestamp: now,
            key: Some(Bytes::from(key)),
            value: value.map(Bytes::from),
            headers: Default::default(),
            delete_horizon: false,
        });
    }
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        wire.iter(),
        &RecordEncodeOptions { version: 2, compression: Compression::None },
    )
    .map_err(|_| GroupError::UnknownServerError)?;
    let (info, leader_epoch) = partition.append_as_leader(buf.to_vec(), false).await.map_err(|e| {
        tracing::warn!(error = %e, "group records append failed");
        match e {
            PartitionError::NotLeader => GroupError::NotCoordinator,
            _ => GroupError::UnknownServerError,
        }
    })?;
    partition.make_durable(info.last_offset + 1).await.map_err(|e| {
        tracing::warn!(error = %e, "group records fsync failed");
        GroupError::UnknownServerError
    })?;
    // As Kafka writes group records with acks=all: the ISR holds them before they count.
    let deadline = std::time::Instant::now() + COMMIT_TIMEOUT;
    partition.wait_replicated(info.last_offset + 1, leader_epoch, deadline).await.map_err(|e| {
        tracing::warn!(error = %e, "group records not replicated");
        match e {
            PartitionError::NotLeader => GroupError::NotCoordinator,
            _ => GroupError::CoordinatorNotAvailable,
        }
    })
}

/// How long a coordinator waits for its records to reach the ISR (`offsets.commit.timeout.ms`).
const COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
