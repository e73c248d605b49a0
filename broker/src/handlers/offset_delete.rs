//! OffsetDelete (key 47), version 0: removes a group's committed offsets for some partitions.
//!
//! As Kafka: an empty group id is INVALID_GROUP_ID; partitions the metadata image does not know
//! are answered UNKNOWN_TOPIC_OR_PARTITION here and the rest go to the coordinator, which is asked
//! even when none are left (so an unknown group still answers GROUP_ID_NOT_FOUND). A group error
//! (GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP for a non-consumer group with members) is the top-level
//! code with no topics; GROUP_SUBSCRIBED_TO_TOPIC is per partition.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestTopic;
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::{ApiKey, OffsetDeleteRequest, OffsetDeleteResponse};
use sluice_controller::image::MetadataImage;

use super::group_errors::group_error;
use super::offset_commit::{merge_codes, partition_exists, LocalAnswers};
use super::{Handler, RequestContext};
use crate::broker::Broker;
use crate::coordinator::group::TopicPartition;

pub struct OffsetDeleteHandler;

fn local_answers(image: &MetadataImage, topics: &[OffsetDeleteRequestTopic]) -> LocalAnswers {
    topics
        .iter()
        .map(|t| {
            t.partitions
                .iter()
                .map(|p| {
                    (!partition_exists(image, t.name.0.as_str(), p.partition_index))
                        .then_some(ResponseError::UnknownTopicOrPartition)
                })
                .collect()
        })
        .collect()
}

/// The partitions sent to the coordinator, in request order.
fn partitions_to_delete(topics: &[OffsetDeleteRequestTopic], local: &LocalAnswers) -> Vec<TopicPartition> {
    topics
        .iter()
        .zip(local)
        .flat_map(|(t, answers)| {
            t.partitions
                .iter()
                .zip(answers)
                .filter(|(_, answer)| answer.is_none())
                .map(|(p, _)| TopicPartition { topic: t.name.0.as_str().to_string(), partition: p.partition_index })
        })
        .collect()
}

fn response(topics: &[OffsetDeleteRequestTopic], codes: Vec<Vec<i16>>) -> OffsetDeleteResponse {
    let topics = topics
        .iter()
        .zip(codes)
        .map(|(t, codes)| {
            let partitions = t
                .partitions
                .iter()
                .zip(codes)
                .map(|(p, code)| {
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetDeleteResponseTopic::default().with_name(t.name.clone()).with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}

impl Handler for OffsetDeleteHandler {
    type Request = OffsetDeleteRequest;
    type Response = OffsetDeleteResponse;
    const KEY: ApiKey = ApiKey::OffsetDelete;
    const VERSIONS: (i16, i16) = (0, 0);

    async fn handle(
        broker: Arc<Broker>,
        _ctx: RequestContext,
        request: OffsetDeleteRequest,
    ) -> Option<OffsetDeleteResponse> {
        let group_id = request.group_id.0.as_str().to_string();
        if group_id.is_empty() {
            return Some(OffsetDeleteResponse::default().with_error_code(ResponseError::InvalidGroupId.code()));
        }
        let local = local_answers(&broker.metadata.image(), &request.topics);
        let partitions = partitions_to_delete(&request.topics, &local);
        match broker.groups.delete_offsets(&broker, group_id, partitions).await {
            Ok(results) => {
                let results = results.into_iter().map(|r| r.result).collect();
                Some(response(&request.topics, merge_codes(local, results)))
            }
            Err(e) => Some(OffsetDeleteResponse::default().with_error_code(group_error(&e).code())),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestPartition;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use sluice_controller::records::MetadataRecord;
    use uuid::Uuid;

    use super::*;
    use crate::coordinator::group::GroupError;

    fn image() -> MetadataImage {
        let mut image = MetadataImage::default();
        let topic_id = Uuid::from_u128(9);
        image.apply(&MetadataRecord::Topic { name: "a".into(), topic_id });
        image.apply(&MetadataRecord::Partition {
            topic_id,
            partition: 0,
            replicas: vec![1],
            isr: vec![1],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
        });
        image
    }

    fn topic(name: &str, partitions: &[i32]) -> OffsetDeleteRequestTopic {
        OffsetDeleteRequestTopic::default().with_name(TopicName(StrBytes::from_string(name.into()))).with_partitions(
            partitions.iter().map(|p| OffsetDeleteRequestPartition::default().with_partition_index(*p)).collect(),
        )
    }

    #[test]
    fn unknown_partitions_answered_here_others_merged() {
        let topics = vec![topic("x", &[0]), topic("a", &[1, 0])];
        let local = local_answers(&image(), &topics);
        let sent = partitions_to_delete(&topics, &local);
        assert_eq!(sent, vec![TopicPartition { topic: "a".into(), partition: 0 }]);
        let resp = response(&topics, merge_codes(local, vec![Err(GroupError::GroupSubscribedToTopic)]));
        let unknown = ResponseError::UnknownTopicOrPartition.code();
        let codes: Vec<Vec<i16>> =
            resp.topics.iter().map(|t| t.partitions.iter().map(|p| p.error_code).collect()).collect();
        assert_eq!(codes, vec![vec![unknown], vec![unknown, ResponseError::GroupSubscribedToTopic.code()]]);
        resp.encode(&mut BytesMut::new(), 0).expect("v0 encodes");
        OffsetDeleteResponse::default().with_error_code(69).encode(&mut BytesMut::new(), 0).expect("v0 encodes");
    }
}
