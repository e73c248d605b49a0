//! OffsetCommit (key 8), versions 2-9: commits consumer offsets to the group coordinator.
//!
//! As Kafka's `KafkaApis`, the handler answers partitions the metadata image does not know with
//! UNKNOWN_TOPIC_OR_PARTITION itself and sends only the others to the coordinator; the response
//! lists every partition in request order. A simple commit (generation -1, no member) needs no
//! membership. Metadata strings are stored as given (null as ""). `retention_time_ms` (v2-4) is
//! ignored: Kafka turns it into a per-offset expiry, which the coordinator core does not have, so
//! offsets expire by `offsets.retention.minutes` only.
//! kafka-protocol decodes versions 2-9 of the request, so that is what is advertised.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{ApiKey, OffsetCommitRequest, OffsetCommitResponse};
use sluice_controller::image::MetadataImage;

use super::group_errors::group_error;
use super::{Handler, RequestContext};
use crate::broker::Broker;
use crate::coordinator::group::{CommitOffset, CommitRequest, GroupError};

pub struct OffsetCommitHandler;

/// First version that answers GROUP_ID_NOT_FOUND, instead of ILLEGAL_GENERATION, for a commit
/// with a generation to a group that does not exist (KIP-848).
const GROUP_ID_NOT_FOUND_VERSION: i16 = 9;

/// Whether the image knows `topic` with `partition`. Kafka checks this in the handler, before
/// the coordinator, for OffsetCommit and OffsetDelete alike.
pub(super) fn partition_exists(image: &MetadataImage, topic: &str, partition: i32) -> bool {
    image.topic_by_name(topic).is_some_and(|t| t.partitions.contains_key(&partition))
}

/// Per topic, per partition of a request: `Some(error)` for an answer the handler gives itself,
/// `None` for a partition sent to the coordinator.
pub(super) type LocalAnswers = Vec<Vec<Option<ResponseError>>>;

/// Merges the handler's own answers with the coordinator's results, which come in the order the
/// partitions were sent (request order, skipping the local answers). A result the coordinator
/// failed to give is UNKNOWN_SERVER_ERROR (a bug, never expected).
pub(super) fn merge_codes(local: LocalAnswers, coordinator: Vec<Result<(), GroupError>>) -> Vec<Vec<i16>> {
    let mut results = coordinator.into_iter();
    local
        .into_iter()
        .map(|partitions| {
            partitions
                .into_iter()
                .map(|answer| match answer {
                    Some(e) => e.code(),
                    None => match results.next() {
                        Some(Ok(())) => 0,
                        Some(Err(e)) => group_error(&e).code(),
                        None => ResponseError::UnknownServerError.code(),
                    },
                })
                .collect()
        })
        .collect()
}

fn local_answers(image: &MetadataImage, topics: &[OffsetCommitRequestTopic]) -> LocalAnswers {
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
fn offsets_to_commit(topics: &[OffsetCommitRequestTopic], local: &LocalAnswers) -> Vec<CommitOffset> {
    let mut offsets = Vec::new();
    for (t, answers) in topics.iter().zip(local) {
        for (p, answer) in t.partitions.iter().zip(answers) {
            if answer.is_none() {
                offsets.push(CommitOffset {
                    topic: t.name.0.as_str().to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.as_ref().map(|m| m.as_str().to_string()),
                });
            }
        }
    }
    offsets
}

/// Whether the results may be those of a commit with a generation to an unknown group, which
/// v9+ answers GROUP_ID_NOT_FOUND: the core then fails every partition with ILLEGAL_GENERATION.
fn may_be_unknown_group(version: i16, generation_id: i32, results: &[Result<(), GroupError>]) -> bool {
    version >= GROUP_ID_NOT_FOUND_VERSION
        && generation_id >= 0
        && !results.is_empty()
        && results.iter().all(|r| *r == Err(GroupError::IllegalGeneration))
}

/// Sends `offsets` to the coordinator; a result per partition, in order.
async fn commit(broker: &Arc<Broker>, version: i16, req: CommitRequest) -> Vec<Result<(), GroupError>> {
    let (group_id, generation_id, count) = (req.group_id.clone(), req.generation_id, req.offsets.len());
    let results: Vec<Result<(), GroupError>> = match broker.groups.commit(broker, req).await {
        Ok(results) => results.into_iter().map(|r| r.result).collect(),
        Err(e) => vec![Err(e); count],
    };
    if !may_be_unknown_group(version, generation_id, &results) {
        return results;
    }
    // The core does not say why the generation was refused; a group that does not exist (now)
    // is the v9 case. Checking after the commit keeps it right whichever way a race goes: a group
    // created since did not exist when the commit was refused, and one deleted since is gone.
    match broker.groups.describe(broker, group_id).await {
        Err(GroupError::GroupIdNotFound) => vec![Err(GroupError::GroupIdNotFound); results.len()],
        _ => results,
    }
}

fn response(topics: &[OffsetCommitRequestTopic], codes: Vec<Vec<i16>>) -> OffsetCommitResponse {
    let topics = topics
        .iter()
        .zip(codes)
        .map(|(t, codes)| {
            let partitions = t
                .partitions
                .iter()
                .zip(codes)
                .map(|(p, code)| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

impl Handler for OffsetCommitHandler {
    type Request = OffsetCommitRequest;
    type Response = OffsetCommitResponse;
    const KEY: ApiKey = ApiKey::OffsetCommit;
    const VERSIONS: (i16, i16) = (2, 9);

    async fn handle(
        broker: Arc<Broker>,
        ctx: RequestContext,
        request: OffsetCommitRequest,
    ) -> Option<OffsetCommitResponse> {
        let local = local_answers(&broker.metadata.image(), &request.topics);
        let offsets = offsets_to_commit(&request.topics, &local);
        // As Kafka: when no partition is left for the coordinator, it is not asked at all.
        let results = if offsets.is_empty() {
            Vec::new()
        } else {
            let req = CommitRequest {
                group_id: request.group_id.0.as_str().to_string(),
                member_id: request.member_id.as_str().to_string(),
                generation_id: request.generation_id_or_member_epoch,
                group_instance_id: request.group_instance_id.as_ref().map(|s| s.as_str().to_string()),
                offsets,
            };
            commit(&broker, ctx.api_version, req).await
        };
        Some(response(&request.topics, merge_codes(local, results)))
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::messages::offset_commit_request::OffsetCommitRequestPartition;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use sluice_controller::records::MetadataRecord;
    use uuid::Uuid;

    use super::*;

    /// Topic "a" with partitions 0 and 1.
    fn image() -> MetadataImage {
        let mut image = MetadataImage::default();
        let topic_id = Uuid::from_u128(7);
        image.apply(&MetadataRecord::Topic { name: "a".into(), topic_id });
        for partition in 0..2 {
            image.apply(&MetadataRecord::Partition {
                topic_id,
                partition,
                replicas: vec![1],
                isr: vec![1],
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 0,
            });
        }
        image
    }

    fn topic(name: &str, partitions: &[i32]) -> OffsetCommitRequestTopic {
        OffsetCommitRequestTopic::default().with_name(TopicName(StrBytes::from_string(name.into()))).with_partitions(
            partitions
                .iter()
                .map(|p| {
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(*p)
                        .with_committed_offset(10 + i64::from(*p))
                        .with_committed_metadata(Some(StrBytes::from_static_str("m")))
                })
                .collect(),
        )
    }

    #[test]
    fn unknown_partitions_are_answered_here_and_the_rest_merged_in_request_order() {
        let topics = vec![topic("a", &[1, 5, 0]), topic("nope", &[0]), topic("a", &[0])];
        let local = local_answers(&image(), &topics);
        let offsets = offsets_to_commit(&topics, &local);
        let sent: Vec<(String, i32, i64)> = offsets.iter().map(|o| (o.topic.clone(), o.partition, o.offset)).collect();
        assert_eq!(sent, vec![("a".into(), 1, 11), ("a".into(), 0, 10), ("a".into(), 0, 10)]);
        assert!(offsets.iter().all(|o| o.metadata.as_deref() == Some("m")));

        let coordinator = vec![Ok(()), Err(GroupError::OffsetMetadataTooLarge), Ok(())];
        let unknown = ResponseError::UnknownTopicOrPartition.code();
        let too_large = ResponseError::OffsetMetadataTooLarge.code();
        assert_eq!(merge_codes(local, coordinator), vec![vec![0, unknown, too_large], vec![unknown], vec![0]]);
    }

    #[test]
    fn missing_coordinator_results_are_server_errors() {
        let local = vec![vec![None, None]];
        assert_eq!(merge_codes(local, vec![Ok(())]), vec![vec![0, ResponseError::UnknownServerError.code()]]);
    }

    #[test]
    fn unknown_group_check_only_from_v9_with_a_generation() {
        let illegal = vec![Err(GroupError::IllegalGeneration); 2];
        assert!(may_be_unknown_group(9, 0, &illegal));
        assert!(!may_be_unknown_group(8, 0, &illegal));
        assert!(!may_be_unknown_group(9, -1, &illegal));
        assert!(!may_be_unknown_group(9, 3, &[Ok(()), Err(GroupError::IllegalGeneration)]));
        assert!(!may_be_unknown_group(9, 3, &[]));
    }

    #[test]
    fn every_advertised_version_encodes() {
        let topics = vec![topic("a", &[0]), topic("nope", &[3])];
        let codes = vec![vec![0], vec![ResponseError::UnknownTopicOrPartition.code()]];
        let resp = response(&topics, codes);
        for version in OffsetCommitHandler::VERSIONS.0..=OffsetCommitHandler::VERSIONS.1 {
            resp.encode(&mut BytesMut::new(), version).unwrap_or_else(|e| panic!("v{version}: {e}"));
        }
    }
}
