//! Produce (key 0), versions 3-13: validate each partition's record batches, append them to the
//! leader's log, and answer when the acks level is met (acks=1/all: fsynced by default; acks=0:
//! no response at all). Topics are named (v3-12) or identified by topic id (v13).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ApiKey, BrokerId, ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use sluice_controller::image::MetadataImage;
use uuid::Uuid;

use super::errors::{partition_error, storage_error};
use super::new_leaders::NewLeaders;
use super::{Handler, RequestContext};
use crate::broker::Broker;
use crate::replica::manager::PartitionError;
use crate::replica::Partition;
use crate::storage::StorageError;

pub struct ProduceHandler;

/// First version that names topics by id instead of by name.
const TOPIC_ID_VERSION: i16 = 13;

fn error_partition(index: i32, error: ResponseError) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(error.code())
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
}

struct PartitionWrite {
    topic_id: Option<Uuid>,
    unknown_topic_error: ResponseError,
    index: i32,
    records: Option<Bytes>,
}

/// A partition's answer, and (when the append succeeded) the partition, the offset everything
/// below which must be durable (and, for acks=all, replicated) before it is sent, and the leader
/// epoch it was written in.
type Appended = (PartitionProduceResponse, Option<(Arc<Partition>, i64, i32)>);

/// Phase one: validate and append (page cache only). Runs in request order per connection.
async fn append_partition(broker: &Broker, image: &MetadataImage, write: PartitionWrite, acks_all: bool) -> Appended {
    let Some(topic_id) = write.topic_id else { return (error_partition(write.index, write.unknown_topic_error), None) };
    let partition = match broker.replicas.leader_partition(image, topic_id, write.index).await {
        Ok(p) => p,
        Err(e) => return (error_partition(write.index, partition_error(&e)), None),
    };
    let Some(records) = write.records.filter(|r| !r.is_empty()) else {
        return (error_partition(write.index, ResponseError::InvalidRecord), None);
    };
    // The one copy of the record bytes: into a buffer the log may rewrite in place.
    match partition.append_as_leader(records.to_vec(), acks_all).await {
        Ok((info, leader_epoch)) => {
            let response = PartitionProduceResponse::default()
                .with_index(write.index)
                .with_base_offset(info.base_offset)
                .with_log_append_time_ms(info.log_append_time_ms)
                .with_log_start_offset(info.log_start_offset);
            // A duplicate is acknowledged like the original, so it waits for the same durability.
            (response, Some((partition, info.last_offset + 1, leader_epoch)))
        }
        Err(PartitionError::Storage(e)) => (storage_failure(&partition, write.index, &e), None),
        Err(e) => (error_partition(write.index, partition_error(&e)), None),
    }
}

fn storage_failure(partition: &Partition, index: i32, e: &StorageError) -> PartitionProduceResponse {
    tracing::debug!(topic = %partition.topic, partition = index, error = %e, "produce refused");
    let mut response = error_partition(index, storage_error(e));
    response.error_message = Some(StrBytes::from_string(e.to_string()));
    response
}

/// Phase two: wait until the append is durable (group commit) and, for acks=all, held by every
/// in-sync replica (until `deadline`), or turn it into an error.
async fn await_acks(appended: Appended, acks: i16, deadline: Instant) -> PartitionProduceResponse {
    let (response, Some((partition, upto, leader_epoch))) = appended else { return appended.0 };
    if acks == 0 {
        return response;
    }
    if let Err(e) = partition.make_durable(upto).await {
        return storage_failure(&partition, response.index, &e);
    }
    if acks == -1 {
        if let Err(e) = partition.wait_replicated(upto, leader_epoch, deadline).await {
            return error_partition(response.index, partition_error(&e));
        }
    }
    response
}

impl Handler for ProduceHandler {
    type Request = ProduceRequest;
    type Response = ProduceResponse;
    const KEY: ApiKey = ApiKey::Produce;
    const VERSIONS: (i16, i16) = (3, 13);

    async fn handle(broker: Arc<Broker>, ctx: RequestContext, request: ProduceRequest) -> Option<ProduceResponse> {
        let image = broker.metadata.image();
        let acks = request.acks;
        // acks=all waits for the ISR up to the request's timeout.
        let deadline = Instant::now() + Duration::from_millis(u64::try_from(request.timeout_ms.max(0)).unwrap_or(0));
        let request_error = if !matches!(acks, -1..=1) {
            Some(ResponseError::InvalidRequiredAcks)
        } else if request.transactional_id.is_some() {
            // Transactions are a later issue; refuse rather than write outside a transaction.
            Some(ResponseError::InvalidTxnState)
        } else {
            None
        };
        let by_id = ctx.api_version >= TOPIC_ID_VERSION;
        let (broker, image) = (&broker, &image);
        // Every partition of every topic is appended concurrently; then the connection's next
        // request may start appending (order per connection is kept, as Kafka keeps it), while
        // this one waits for durability, so one fsync (group commit) covers many requests.
        let topics = request.topic_data.into_iter().map(|topic| async move {
            let (topic_id, unknown) = if by_id {
                (image.topics.get(&topic.topic_id).map(|t| t.topic_id), ResponseError::UnknownTopicId)
            } else {
                (image.topic_by_name(topic.name.0.as_str()).map(|t| t.topic_id), ResponseError::UnknownTopicOrPartition)
            };
            let writes = topic.partition_data.into_iter().map(|p| async move {
                let write =
                    PartitionWrite { topic_id, unknown_topic_error: unknown, index: p.index, records: p.records };
                match request_error {
                    Some(e) => (error_partition(write.index, e), None),
                    None => append_partition(broker, image, write, acks == -1).await,
                }
            });
            let appended = futures::future::join_all(writes).await;
            (topic.name, topic.topic_id, appended)
        });
        let appended = futures::future::join_all(topics).await;
        ctx.gate.release();
        let topics = appended.into_iter().map(|(name, topic_id, partitions)| async move {
            let partitions =
                futures::future::join_all(partitions.into_iter().map(|a| await_acks(a, acks, deadline))).await;
            TopicProduceResponse::default().with_name(name).with_topic_id(topic_id).with_partition_responses(partitions)
        });
        let mut topics = futures::future::join_all(topics).await;
        if acks == 0 {
            return None;
        }
        // KIP-951: a client told NOT_LEADER_OR_FOLLOWER also learns who leads now, and where.
        let mut node_endpoints = Vec::new();
        if ctx.api_version >= NEW_LEADER_VERSION {
            let mut leaders = NewLeaders::default();
            for topic in &mut topics {
                let topic_id = if by_id {
                    Some(topic.topic_id)
                } else {
                    image.topic_by_name(topic.name.0.as_str()).map(|t| t.topic_id)
                };
                for p in &mut topic.partition_responses {
                    if p.error_code != ResponseError::NotLeaderOrFollower.code() {
                        continue;
                    }
                    if let Some((leader, epoch)) = leaders.current(image, topic_id, p.index) {
                        p.current_leader =
                            LeaderIdAndEpoch::default().with_leader_id(BrokerId(leader)).with_leader_epoch(epoch);
                    }
                }
            }
            node_endpoints = leaders.endpoints(image, |id, b| {
                NodeEndpoint::default()
                    .with_node_id(BrokerId(id))
                    .with_host(StrBytes::from_string(b.host.clone()))
                    .with_port(b.port)
                    .with_rack(b.rack.clone().map(StrBytes::from_string))
            });
        }
        Some(ProduceResponse::default().with_responses(topics).with_node_endpoints(node_endpoints))
    }
}

/// First version whose responses name the new leader (KIP-951).
const NEW_LEADER_VERSION: i16 = 10;
