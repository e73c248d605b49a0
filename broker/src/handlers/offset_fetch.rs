//! OffsetFetch (key 9), versions 1-9: the committed offsets of consumer groups.
//!
//! Versions 1-7 ask for one group, v8+ for several (each answered by its own coordinator, all at
//! once). Null topics (v2+) means every partition the group has committed. A partition without a
//! committed offset answers offset -1, leader epoch -1 and metadata "", with no error, as Kafka.
//! A group-level error is the top-level `error_code` in v2-7 and the group's `error_code` in v8+,
//! with no topics (as Kafka); v1 has no group-level code, so each requested partition carries it.
//!
//! `require_stable` (v7+) is ignored: it asks to wait for pending transactional offsets, and
//! Sluice has no transactional offset commits yet, so every fetch is already stable. The v9
//! `member_id` / `member_epoch` identify a KIP-848 consumer; classic groups do not check them
//! (Kafka's `ClassicGroup.validateOffsetFetch` does not either), so they are accepted and ignored.

use std::sync::Arc;

use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{ApiKey, GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::group_errors::group_error;
use super::{Handler, RequestContext};
use crate::broker::Broker;
use crate::coordinator::group::{FetchedOffset, GroupError, TopicPartition};

pub struct OffsetFetchHandler;

/// First version with a top-level (group) error code.
const GROUP_ERROR_VERSION: i16 = 2;
/// First version of the v1-7 layout whose partitions carry the committed leader epoch.
const LEADER_EPOCH_VERSION: i16 = 5;
/// First version that asks for several groups.
const GROUPS_VERSION: i16 = 8;

/// Requested partitions per topic, in request order; None asks for every committed partition.
type Requested = Option<Vec<(String, Vec<i32>)>>;

/// One group's answer, before it is shaped for the version.
#[derive(Debug, PartialEq)]
struct GroupOffsets {
    error: Option<ResponseError>,
    /// Per topic, its partitions' offsets: the requested ones in request order (with -1 offsets
    /// when `error` is set), or every committed one ordered by topic and partition.
    topics: Vec<(String, Vec<FetchedOffset>)>,
}

fn unknown(topic: &str, partition: i32) -> FetchedOffset {
    FetchedOffset { topic: topic.to_string(), partition, offset: -1, leader_epoch: -1, metadata: String::new() }
}

/// Shapes the coordinator's answer (given in the order asked) after the request.
fn shape(requested: &Requested, result: Result<Vec<FetchedOffset>, GroupError>) -> GroupOffsets {
    let (error, fetched) = match result {
        Ok(fetched) => (None, fetched),
        Err(e) => (Some(group_error(&e)), Vec::new()),
    };
    let Some(requested) = requested else {
        let mut topics: Vec<(String, Vec<FetchedOffset>)> = Vec::new();
        for f in fetched {
            match topics.last_mut() {
                Some((name, partitions)) if *name == f.topic => partitions.push(f),
                _ => topics.push((f.topic.clone(), vec![f])),
            }
        }
        return GroupOffsets { error, topics };
    };
    let mut fetched = fetched.into_iter();
    let topics = requested
        .iter()
        .map(|(name, partitions)| {
            let offsets = partitions.iter().map(|p| fetched.next().unwrap_or_else(|| unknown(name, *p))).collect();
            (name.clone(), offsets)
        })
        .collect();
    GroupOffsets { error, topics }
}

async fn fetch_group(broker: &Arc<Broker>, group_id: String, requested: Requested) -> GroupOffsets {
    let partitions = requested.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|(topic, partitions)| {
                partitions.iter().map(|p| TopicPartition { topic: topic.clone(), partition: *p })
            })
            .collect()
    });
    let result = broker.groups.fetch_offsets(broker, group_id, partitions).await;
    shape(&requested, result)
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// The v1-7 answer for the one group.
fn response_v1_7(version: i16, g: GroupOffsets) -> OffsetFetchResponse {
    let error = g.error.map_or(0, |e| e.code());
    if version >= GROUP_ERROR_VERSION && error != 0 {
        return OffsetFetchResponse::default().with_error_code(error);
    }
    let topics = g
        .topics
        .into_iter()
        .map(|(name, offsets)| {
            let partitions = offsets
                .into_iter()
                .map(|f| {
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(f.partition)
                        .with_committed_offset(f.offset)
                        .with_committed_leader_epoch(if version >= LEADER_EPOCH_VERSION { f.leader_epoch } else { -1 })
                        .with_metadata(Some(StrBytes::from_string(f.metadata)))
                        .with_error_code(error)
                })
                .collect();
            OffsetFetchResponseTopic::default().with_name(topic_name(&name)).with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

/// One group of a v8+ answer.
fn group_v8(group_id: GroupId, g: GroupOffsets) -> OffsetFetchResponseGroup {
    let group = OffsetFetchResponseGroup::default().with_group_id(group_id);
    if let Some(e) = g.error {
        return group.with_error_code(e.code());
    }
    let topics = g
        .topics
        .into_iter()
        .map(|(name, offsets)| {
            let partitions = offsets
                .into_iter()
                .map(|f| {
                    OffsetFetchResponsePartitions::default()
                        .with_partition_index(f.partition)
                        .with_committed_offset(f.offset)
                        .with_committed_leader_epoch(f.leader_epoch)
                        .with_metadata(Some(StrBytes::from_string(f.metadata)))
                })
                .collect();
            OffsetFetchResponseTopics::default().with_name(topic_name(&name)).with_partitions(partitions)
        })
        .collect();
    group.with_topics(topics)
}

impl Handler for OffsetFetchHandler {
    type Request = OffsetFetchRequest;
    type Response = OffsetFetchResponse;
    const KEY: ApiKey = ApiKey::OffsetFetch;
    const VERSIONS: (i16, i16) = (1, 9);

    async fn handle(
        broker: Arc<Broker>,
        ctx: RequestContext,
        request: OffsetFetchRequest,
    ) -> Option<OffsetFetchResponse> {
        if ctx.api_version < GROUPS_VERSION {
            let requested: Requested = request.topics.map(|topics| {
                topics.into_iter().map(|t| (t.name.0.as_str().to_string(), t.partition_indexes)).collect()
            });
            let g = fetch_group(&broker, request.group_id.0.as_str().to_string(), requested).await;
            return Some(response_v1_7(ctx.api_version, g));
        }
        let broker = &broker;
        let fetches = request.groups.into_iter().map(|g| async move {
            let requested: Requested = g.topics.map(|topics| {
                topics.into_iter().map(|t| (t.name.0.as_str().to_string(), t.partition_indexes)).collect()
            });
            let offsets = fetch_group(broker, g.group_id.0.as_str().to_string(), requested).await;
            group_v8(g.group_id, offsets)
        });
        Some(OffsetFetchResponse::default().with_groups(join_all(fetches).await))
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::protocol::Encodable;

    use super::*;

    fn committed(topic: &str, partition: i32, offset: i64) -> FetchedOffset {
        FetchedOffset { topic: topic.into(), partition, offset, leader_epoch: 3, metadata: "meta".into() }
    }

    fn requested() -> Requested {
        Some(vec![("a".into(), vec![1, 0]), ("b".into(), vec![]), ("a".into(), vec![2])])
    }

    #[test]
    fn requested_partitions_keep_request_order() {
        let fetched = vec![committed("a", 1, 5), unknown("a", 0), committed("a", 2, 7)];
        let g = shape(&requested(), Ok(fetched));
        assert_eq!(g.error, None);
        let expected = vec![
            ("a".to_string(), vec![committed("a", 1, 5), unknown("a", 0)]),
            ("b".to_string(), vec![]),
            ("a".to_string(), vec![committed("a", 2, 7)]),
        ];
        assert_eq!(g.topics, expected);
    }

    #[test]
    fn all_partitions_are_grouped_by_topic() {
        let fetched = vec![committed("a", 0, 1), committed("a", 1, 2), committed("b", 0, 3)];
        let g = shape(&None, Ok(fetched));
        let names: Vec<(&str, usize)> = g.topics.iter().map(|(n, p)| (n.as_str(), p.len())).collect();
        assert_eq!(names, vec![("a", 2), ("b", 1)]);
    }

    #[test]
    fn a_group_error_is_top_level_from_v2_and_per_partition_in_v1() {
        let g = || shape(&Some(vec![("a".into(), vec![0, 1])]), Err(GroupError::NotCoordinator));
        let code = ResponseError::NotCoordinator.code();

        let v1 = response_v1_7(1, g());
        assert_eq!(v1.error_code, 0);
        let partitions = &v1.topics[0].partitions;
        assert_eq!(partitions.len(), 2);
        assert!(partitions.iter().all(|p| p.error_code == code && p.committed_offset == -1));

        let v2 = response_v1_7(2, g());
        assert_eq!((v2.error_code, v2.topics.len()), (code, 0));

        let v8 = group_v8(GroupId(StrBytes::from_static_str("g")), g());
        assert_eq!((v8.error_code, v8.topics.len()), (code, 0));
    }

    #[test]
    fn leader_epoch_only_where_the_version_has_it() {
        let g = || shape(&Some(vec![("a".into(), vec![0])]), Ok(vec![committed("a", 0, 9)]));
        assert_eq!(response_v1_7(4, g()).topics[0].partitions[0].committed_leader_epoch, -1);
        assert_eq!(response_v1_7(5, g()).topics[0].partitions[0].committed_leader_epoch, 3);
    }

    #[test]
    fn every_advertised_version_encodes() {
        let ok = || shape(&requested(), Ok(vec![committed("a", 1, 5), unknown("a", 0), committed("a", 2, 7)]));
        let failed = || shape(&requested(), Err(GroupError::CoordinatorNotAvailable));
        for version in OffsetFetchHandler::VERSIONS.0..=OffsetFetchHandler::VERSIONS.1 {
            let responses = if version < GROUPS_VERSION {
                vec![response_v1_7(version, ok()), response_v1_7(version, failed())]
            } else {
                let id = || GroupId(StrBytes::from_static_str("g"));
                vec![OffsetFetchResponse::default().with_groups(vec![group_v8(id(), ok()), group_v8(id(), failed())])]
            };
            for resp in responses {
                resp.encode(&mut BytesMut::new(), version).unwrap_or_else(|e| panic!("v{version}: {e}"));
            }
        }
    }
}
