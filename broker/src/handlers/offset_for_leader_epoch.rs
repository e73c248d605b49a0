//! OffsetForLeaderEpoch (key 23), versions 2-4 (KIP-101, KIP-320): where a leader epoch ends in
//! the leader's log. A consumer that saw a leader change asks it to check that the offset it is
//! at still exists (its log was not truncated under it); a follower can use it to find where its
//! log diverged (Sluice's followers use Fetch's diverging epoch instead).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{ApiKey, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::errors::partition_error;
use super::{Handler, RequestContext};
use crate::broker::Broker;

pub struct OffsetForLeaderEpochHandler;

fn answer(partition: i32, error: Option<ResponseError>, leader_epoch: i32, end_offset: i64) -> EpochEndOffset {
    EpochEndOffset::default()
        .with_partition(partition)
        .with_error_code(error.map_or(0, |e| e.code()))
        .with_leader_epoch(leader_epoch)
        .with_end_offset(end_offset)
}

impl Handler for OffsetForLeaderEpochHandler {
    type Request = OffsetForLeaderEpochRequest;
    type Response = OffsetForLeaderEpochResponse;
    const KEY: ApiKey = ApiKey::OffsetForLeaderEpoch;
    const VERSIONS: (i16, i16) = (2, 4);

    async fn handle(
        broker: Arc<Broker>,
        _ctx: RequestContext,
        request: OffsetForLeaderEpochRequest,
    ) -> Option<OffsetForLeaderEpochResponse> {
        let image = broker.metadata.image();
        let mut topics = Vec::with_capacity(request.topics.len());
        for topic in request.topics {
            let topic_image = image.topic_by_name(topic.topic.0.as_str());
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for p in topic.partitions {
                let Some(t) = topic_image.filter(|t| t.partitions.contains_key(&p.partition)) else {
                    partitions.push(answer(p.partition, Some(ResponseError::UnknownTopicOrPartition), -1, -1));
                    continue;
                };
                let current = t.partitions.get(&p.partition).map_or(-1, |pi| pi.leader_epoch);
                if p.current_leader_epoch >= 0 && p.current_leader_epoch != current {
                    let error = if p.current_leader_epoch > current {
                        ResponseError::UnknownLeaderEpoch
                    } else {
                        ResponseError::FencedLeaderEpoch
                    };
                    partitions.push(answer(p.partition, Some(error), -1, -1));
                    continue;
                }
                match broker.replicas.leader_partition(&image, t.topic_id, p.partition).await {
                    Ok(partition) => {
                        let (epoch, end) = partition.log.end_offset_for_epoch(p.leader_epoch);
                        partitions.push(answer(p.partition, None, epoch, end));
                    }
                    Err(e) => partitions.push(answer(p.partition, Some(partition_error(&e)), -1, -1)),
                }
            }
            topics.push(OffsetForLeaderTopicResult::default().with_topic(topic.topic).with_partitions(partitions));
        }
        Some(OffsetForLeaderEpochResponse::default().with_topics(topics))
    }
}
