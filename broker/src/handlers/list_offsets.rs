//! ListOffsets (key 2), versions 1-10: earliest (-2), latest (-1), max timestamp (-3), earliest
//! local (-4), and by timestamp (the first offset whose record timestamp is >= the target; -1
//! when there is none).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ApiKey, ListOffsetsRequest, ListOffsetsResponse};

use super::errors::{partition_error, storage_error};
use super::{Handler, RequestContext};
use crate::broker::Broker;
use crate::replica::Partition;

pub struct ListOffsetsHandler;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

/// First version whose response carries the leader epoch.
const LEADER_EPOCH_VERSION: i16 = 4;

fn answer(
    index: i32,
    error: Option<ResponseError>,
    timestamp: i64,
    offset: i64,
    leader_epoch: i32,
) -> ListOffsetsPartitionResponse {
    ListOffsetsPartitionResponse::default()
        .with_partition_index(index)
        .with_error_code(error.map_or(0, |e| e.code()))
        .with_timestamp(timestamp)
        .with_offset(offset)
        .with_leader_epoch(leader_epoch)
}

fn lookup(partition: &Partition, timestamp: i64) -> Result<(i64, i64), ResponseError> {
    let log = &partition.log;
    match timestamp {
        LATEST => Ok((-1, log.high_watermark())),
        EARLIEST | EARLIEST_LOCAL => Ok((-1, log.log_start_offset())),
        LATEST_TIERED => Ok((-1, -1)),
        MAX_TIMESTAMP => Ok(log.max_timestamp().map_or((-1, -1), |(offset, ts)| (ts, offset))),
        ts if ts >= 0 => Ok(log
            .offset_for_timestamp(ts)
            .map_err(|e| storage_error(&e))?
            .map_or((-1, -1), |(offset, ts)| (ts, offset))),
        _ => Err(ResponseError::InvalidRequest),
    }
}

impl Handler for ListOffsetsHandler {
    type Request = ListOffsetsRequest;
    type Response = ListOffsetsResponse;
    const KEY: ApiKey = ApiKey::ListOffsets;
    const VERSIONS: (i16, i16) = (1, 10);

    async fn handle(
        broker: Arc<Broker>,
        ctx: RequestContext,
        request: ListOffsetsRequest,
    ) -> Option<ListOffsetsResponse> {
        let image = broker.metadata.image();
        let mut topics = Vec::with_capacity(request.topics.len());
        for topic in request.topics {
            let topic_image = image.topic_by_name(topic.name.0.as_str());
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for p in topic.partitions {
                let index = p.partition_index;
                let Some(t) = topic_image else {
                    partitions.push(answer(index, Some(ResponseError::UnknownTopicOrPartition), -1, -1, -1));
                    continue;
                };
                let epoch = t.partitions.get(&index).map_or(-1, |pi| pi.leader_epoch);
                let reported_epoch = if ctx.api_version >= LEADER_EPOCH_VERSION { epoch } else { -1 };
                if p.current_leader_epoch >= 0 && epoch >= 0 && p.current_leader_epoch != epoch {
                    let e = if p.current_leader_epoch > epoch {
                        ResponseError::UnknownLeaderEpoch
                    } else {
                        ResponseError::FencedLeaderEpoch
                    };
                    partitions.push(answer(index, Some(e), -1, -1, reported_epoch));
                    continue;
                }
                let result = match broker.replicas.leader_partition(&image, t.topic_id, index).await {
                    Ok(partition) => {
                        let ts = p.timestamp;
                        tokio::task::spawn_blocking(move || lookup(&partition, ts))
                            .await
                            .unwrap_or(Err(ResponseError::UnknownServerError))
                    }
                    Err(e) => Err(partition_error(&e)),
                };
                partitions.push(match result {
                    Ok((timestamp, offset)) => answer(index, None, timestamp, offset, reported_epoch),
                    Err(e) => answer(index, Some(e), -1, -1, reported_epoch),
                });
            }
            topics.push(ListOffsetsTopicResponse::default().with_name(topic.name).with_partitions(partitions));
        }
        Some(ListOffsetsResponse::default().with_topics(topics))
    }
}
