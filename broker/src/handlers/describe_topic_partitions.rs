//! DescribeTopicPartitions (key 75), version 0 (KIP-966): topics by name (all topics when the
//! list is empty) with each partition's leader, leader epoch, replicas, ISR and offline replicas.
//! Eligible leader replicas are always empty: Sluice has no ELR.
//!
//! Paging: partitions go out sorted by topic name, then partition index, starting at the request's
//! cursor, at most `response_partition_limit` of them (capped at Kafka's default of 2000);
//! `next_cursor` names the first partition left out. Unknown topics are UNKNOWN_TOPIC_OR_PARTITION
//! and take no room in the page. A cursor whose topic is not among the requested topics, or whose
//! partition index is negative, is INVALID_REQUEST, as in Kafka.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_controller::image::{MetadataImage, PartitionImage, TopicImage};
use sluice_controller::ops::topics::validate_topic_name;
use uuid::Uuid;

use super::{Handler, RequestContext};
use crate::broker::Broker;

pub struct DescribeTopicPartitionsHandler;

/// Kafka's `max.request.partition.size.limit` default: the most partitions one page holds.
pub const PARTITION_LIMIT_MAX: i32 = 2000;

/// Where a page starts: a topic name and the first partition index to describe in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageStart {
    pub topic: String,
    pub partition: i32,
}

/// One page of the answer.
#[derive(Debug, Default)]
pub struct Page {
    pub topics: Vec<DescribeTopicPartitionsResponseTopic>,
    pub next: Option<PageStart>,
}

fn topic_name(name: &str) -> Option<TopicName> {
    Some(TopicName(StrBytes::from_string(name.to_string())))
}

fn error_topic(name: &str, error: ResponseError) -> DescribeTopicPartitionsResponseTopic {
    DescribeTopicPartitionsResponseTopic::default()
        .with_name(topic_name(name))
        .with_topic_id(Uuid::nil())
        .with_error_code(error.code())
}

fn partition(image: &MetadataImage, p: &PartitionImage) -> DescribeTopicPartitionsResponsePartition {
    let leader_known = image.is_broker_alive(p.leader);
    let offline = p.replicas.iter().filter(|r| !image.is_broker_alive(**r)).map(|r| BrokerId(*r)).collect();
    DescribeTopicPartitionsResponsePartition::default()
        .with_error_code(if leader_known { 0 } else { ResponseError::LeaderNotAvailable.code() })
        .with_partition_index(p.partition)
        .with_leader_id(BrokerId(if leader_known { p.leader } else { -1 }))
        .with_leader_epoch(p.leader_epoch)
        .with_replica_nodes(p.replicas.iter().map(|r| BrokerId(*r)).collect())
        .with_isr_nodes(p.isr.iter().map(|r| BrokerId(*r)).collect())
        .with_eligible_leader_replicas(Some(Vec::new()))
        .with_last_known_elr(Some(Vec::new()))
        .with_offline_replicas(offline)
}

/// Describes `topic` from partition `first` on, at most `budget` partitions; also returns the
/// index of the first partition left out, if any.
fn describe_topic(
    image: &MetadataImage,
    topic: &TopicImage,
    first: i32,
    budget: usize,
) -> (DescribeTopicPartitionsResponseTopic, Option<i32>) {
    let mut remaining = topic.partitions.range(first..).map(|(_, p)| p);
    let partitions: Vec<_> = remaining.by_ref().take(budget).map(|p| partition(image, p)).collect();
    let left_out = remaining.next().map(|p| p.partition);
    let response = DescribeTopicPartitionsResponseTopic::default()
        .with_name(topic_name(&topic.name))
        .with_topic_id(topic.topic_id)
        .with_is_internal(topic.name.starts_with("__"))
        .with_partitions(partitions)
        // Kafka always fills this in here (the request has no flag for it).
        .with_topic_authorized_operations(super::authorized_operations::TOPIC);
    (response, left_out)
}

/// One page of topics `names` (sorted and deduplicated here), from `start` on, holding at most
/// `limit` partitions.
///
/// # Errors
/// A message for INVALID_REQUEST when `start` is not a place in `names`.
pub fn page(
    image: &MetadataImage,
    mut names: Vec<String>,
    start: Option<PageStart>,
    limit: i32,
) -> Result<Page, String> {
    names.sort_unstable();
    names.dedup();
    if let Some(start) = &start {
        if start.partition < 0 {
            return Err(format!("The cursor's partition index {} is negative.", start.partition));
        }
        if names.binary_search(&start.topic).is_err() {
            return Err(format!("The cursor topic {} is not among the requested topics.", start.topic));
        }
    }
    let mut budget = usize::try_from(limit.clamp(1, PARTITION_LIMIT_MAX)).unwrap_or(1);
    let from = start.as_ref().map_or(0, |s| names.partition_point(|n| *n < s.topic));
    let mut page = Page::default();
    let mut names = names[from..].iter().peekable();
    while let Some(name) = names.next() {
        let Some(topic) = image.topic_by_name(name) else {
            let error = if validate_topic_name(name).is_err() {
                ResponseError::InvalidTopicException
            } else {
                ResponseError::UnknownTopicOrPartition
            };
            page.topics.push(error_topic(name, error));
            continue;
        };
        let first = start.as_ref().filter(|s| s.topic == *name).map_or(0, |s| s.partition);
        let (response, left_out) = describe_topic(image, topic, first, budget);
        budget -= response.partitions.len();
        page.topics.push(response);
        if let Some(partition) = left_out {
            page.next = Some(PageStart { topic: name.clone(), partition });
            break;
        }
        if budget == 0 {
            page.next = names.peek().map(|n| PageStart { topic: (*n).clone(), partition: 0 });
            break;
        }
    }
    Ok(page)
}

impl Handler for DescribeTopicPartitionsHandler {
    type Request = DescribeTopicPartitionsRequest;
    type Response = DescribeTopicPartitionsResponse;
    const KEY: ApiKey = ApiKey::DescribeTopicPartitions;
    const VERSIONS: (i16, i16) = (0, 0);

    async fn handle(
        broker: Arc<Broker>,
        _ctx: RequestContext,
        request: DescribeTopicPartitionsRequest,
    ) -> Option<DescribeTopicPartitionsResponse> {
        let image = broker.metadata.image();
        let requested: Vec<String> = request.topics.iter().map(|t| t.name.0.as_str().to_string()).collect();
        let start = request
            .cursor
            .map(|c| PageStart { topic: c.topic_name.0.as_str().to_string(), partition: c.partition_index });
        let cursor_topic = start.as_ref().map(|s| s.topic.clone());
        let names = if requested.is_empty() {
            // All topics; the cursor's topic too, so one deleted between pages is reported unknown.
            image.topic_ids_by_name.keys().cloned().chain(cursor_topic.clone()).collect()
        } else {
            requested.clone()
        };
        let response = match page(&image, names, start, request.response_partition_limit) {
            Ok(page) => DescribeTopicPartitionsResponse::default().with_topics(page.topics).with_next_cursor(
                page.next.map(|n| {
                    Cursor::default()
                        .with_topic_name(TopicName(StrBytes::from_string(n.topic)))
                        .with_partition_index(n.partition)
                }),
            ),
            Err(message) => {
                tracing::debug!(%message, "DescribeTopicPartitions refused");
                let named = if requested.is_empty() { cursor_topic.into_iter().collect() } else { requested };
                let topics = named.iter().map(|n| error_topic(n, ResponseError::InvalidRequest)).collect();
                DescribeTopicPartitionsResponse::default().with_topics(topics)
            }
        };
        Some(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_controller::records::MetadataRecord;

    /// Brokers 1 and 2; topic "a" with 3 partitions, "b" with 2, "c" with 1.
    fn image() -> MetadataImage {
        let mut image = MetadataImage::default();
        for node_id in [1, 2] {
            image.apply(&MetadataRecord::RegisterBroker {
                node_id,
                incarnation_id: Uuid::from_u128(node_id as u128),
                host: "127.0.0.1".into(),
                port: 9092,
                rack: None,
            });
            image.apply(&MetadataRecord::UnfenceBroker { node_id });
        }
        for (i, (name, count)) in [("a", 3), ("b", 2), ("c", 1)].into_iter().enumerate() {
            let topic_id = Uuid::from_u128(100 + i as u128);
            image.apply(&MetadataRecord::Topic { name: name.into(), topic_id });
            for partition in 0..count {
                image.apply(&MetadataRecord::Partition {
                    topic_id,
                    partition,
                    replicas: vec![1, 3],
                    isr: vec![1],
                    leader: 1,
                    leader_epoch: 4,
                    partition_epoch: 0,
                });
            }
        }
        image
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn start(topic: &str, partition: i32) -> Option<PageStart> {
        Some(PageStart { topic: topic.into(), partition })
    }

    /// (topic, partition) pairs a page holds.
    fn listed(page: &Page) -> Vec<(String, i32)> {
        page.topics
            .iter()
            .flat_map(|t| {
                let name = t.name.as_ref().map(|n| n.0.as_str().to_string()).unwrap_or_default();
                t.partitions.iter().map(move |p| (name.clone(), p.partition_index))
            })
            .collect()
    }

    #[test]
    fn paging_visits_every_partition_once_in_order() {
        let image = image();
        let all = names(&["c", "a", "b"]);
        let mut seen = Vec::new();
        let mut cursor = None;
        for _ in 0..10 {
            let page = page(&image, all.clone(), cursor.clone(), 2).expect("valid cursor");
            assert!(listed(&page).len() <= 2);
            seen.extend(listed(&page));
            cursor = page.next;
            if cursor.is_none() {
                break;
            }
        }
        let expected: Vec<(String, i32)> = [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1), ("c", 0)]
            .iter()
            .map(|(t, p)| (t.to_string(), *p))
            .collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn cursor_is_set_where_the_limit_cut_the_list() {
        let image = image();
        let first = page(&image, names(&["a", "b"]), None, 2).expect("page");
        assert_eq!(first.next, start("a", 2));
        let second = page(&image, names(&["a", "b"]), first.next, 1).expect("page");
        assert_eq!(listed(&second), vec![("a".to_string(), 2)]);
        assert_eq!(
            second.next,
            start("b", 0),
            "a topic ending exactly at the limit moves the cursor to the next topic"
        );
        let last = page(&image, names(&["a", "b"]), second.next, 10).expect("page");
        assert_eq!(listed(&last), vec![("b".to_string(), 0), ("b".to_string(), 1)]);
        assert_eq!(last.next, None);
    }

    #[test]
    fn unknown_topics_take_no_room_and_partitions_are_described() {
        let image = image();
        let page = page(&image, names(&["c", "bz"]), None, 1).expect("page");
        assert_eq!(page.next, None, "c's single partition fits exactly and nothing follows");
        let bz =
            page.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "bz")).expect("bz answered");
        assert_eq!(bz.error_code, ResponseError::UnknownTopicOrPartition.code());
        let c = page.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "c")).expect("c answered");
        let p = &c.partitions[0];
        assert_eq!((p.leader_id, p.leader_epoch), (BrokerId(1), 4));
        assert_eq!(p.replica_nodes, vec![BrokerId(1), BrokerId(3)]);
        assert_eq!(p.isr_nodes, vec![BrokerId(1)]);
        assert_eq!(p.offline_replicas, vec![BrokerId(3)]);
        assert_eq!(p.eligible_leader_replicas, Some(Vec::new()));
    }

    #[test]
    fn bad_cursors_are_refused() {
        let image = image();
        assert!(page(&image, names(&["a"]), start("b", 0), 10).is_err());
        assert!(page(&image, names(&["a"]), start("a", -1), 10).is_err());
    }
}
