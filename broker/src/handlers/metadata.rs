//! Metadata (key 3), versions 0-13: brokers, controller, topics with ids, partitions with
//! leaders, leader epochs, replicas and ISR. Creates missing topics when both the request
//! (v4+) and `auto.create.topics.enable` allow it, as Kafka does.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{ApiKey, BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_controller::image::{MetadataImage, TopicImage};
use sluice_controller::ops::topics::{validate_topic_name, CreateTopicSpec};
use uuid::Uuid;

use super::{authorized_operations, Handler, RequestContext};
use crate::broker::Broker;

pub struct MetadataHandler;

/// The broker list every metadata-style response carries.
pub fn brokers(image: &MetadataImage) -> Vec<MetadataResponseBroker> {
    image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.node_id))
                .with_host(StrBytes::from_string(b.host.clone()))
                .with_port(b.port)
                .with_rack(b.rack.clone().map(StrBytes::from_string))
        })
        .collect()
}

/// The controller DescribeCluster reports: the active controller when it is a live broker (a
/// combined node), else this broker. As in KRaft, clients never talk to controllers directly;
/// admin requests sent to any broker are forwarded.
pub fn controller_id(broker: &Broker, image: &MetadataImage) -> i32 {
    match broker.controller.active_controller() {
        Some(id) if image.is_broker_alive(id) => id,
        _ => broker.node_id(),
    }
}

/// `operations`: the topic's authorized-operations field (v8+), asked for or the omitted marker.
fn topic_response(image: &MetadataImage, topic: &TopicImage, operations: i32) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .values()
        .map(|p| {
            let offline: Vec<BrokerId> =
                p.replicas.iter().filter(|r| !image.is_broker_alive(**r)).map(|r| BrokerId(*r)).collect();
            let leader_known = image.is_broker_alive(p.leader);
            MetadataResponsePartition::default()
                .with_error_code(if leader_known { 0 } else { ResponseError::LeaderNotAvailable.code() })
                .with_partition_index(p.partition)
                .with_leader_id(BrokerId(if leader_known { p.leader } else { -1 }))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(p.replicas.iter().map(|r| BrokerId(*r)).collect())
                .with_isr_nodes(p.isr.iter().map(|r| BrokerId(*r)).collect())
                .with_offline_replicas(offline)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.topic_id)
        .with_is_internal(topic.name.starts_with("__"))
        .with_partitions(partitions)
        .with_topic_authorized_operations(operations)
}

fn error_topic(name: Option<String>, topic_id: Uuid, error: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(error.code())
        .with_name(name.map(|n| TopicName(StrBytes::from_string(n))))
        .with_topic_id(topic_id)
        .with_topic_authorized_operations(authorized_operations::OMITTED)
}

/// Creates the named topics that do not exist yet, with the broker's defaults.
async fn auto_create(broker: &Broker, image: &MetadataImage, names: &[String]) -> Arc<MetadataImage> {
    let specs: Vec<CreateTopicSpec> = names
        .iter()
        .filter(|n| image.topic_by_name(n).is_none() && validate_topic_name(n).is_ok())
        .map(|n| CreateTopicSpec { name: n.clone(), num_partitions: -1, replication_factor: -1, ..Default::default() })
        .collect();
    if specs.is_empty() {
        return broker.metadata.image();
    }
    for (spec, result) in specs.iter().zip(broker.controller.create_topics(&specs, false).await) {
        match result {
            Ok(created) => {
                tracing::info!(topic = %spec.name, partitions = created.num_partitions, "auto-created topic")
            }
            Err(e) => tracing::debug!(topic = %spec.name, error = %e, "auto-create refused"),
        }
    }
    broker.metadata.image()
}

impl Handler for MetadataHandler {
    type Request = MetadataRequest;
    type Response = MetadataResponse;
    const KEY: ApiKey = ApiKey::Metadata;
    const VERSIONS: (i16, i16) = (0, 13);

    async fn handle(broker: Arc<Broker>, ctx: RequestContext, request: MetadataRequest) -> Option<MetadataResponse> {
        let mut image = broker.metadata.image();
        // v0 has no way to say "all topics" but an empty list; from v1 on, null means all.
        let all_topics =
            request.topics.is_none() || (ctx.api_version == 0 && request.topics.as_ref().is_some_and(Vec::is_empty));
        let wanted = request.topics.unwrap_or_default();
        let allow_auto_create =
            (ctx.api_version < 4 || request.allow_auto_topic_creation) && broker.config.auto_create_topics_enable;
        let names: Vec<String> =
            wanted.iter().filter_map(|t| t.name.as_ref().map(|n| n.0.as_str().to_string())).collect();
        if allow_auto_create && !all_topics {
            image = auto_create(&broker, &image, &names).await;
        }
        let topic_operations =
            authorized_operations::answer(request.include_topic_authorized_operations, authorized_operations::TOPIC);
        let topics = if all_topics {
            image.topics.values().map(|t| topic_response(&image, t, topic_operations)).collect()
        } else {
            wanted
                .iter()
                .map(|t| match &t.name {
                    Some(name) => match image.topic_by_name(name.0.as_str()) {
                        Some(topic) => topic_response(&image, topic, topic_operations),
                        None if validate_topic_name(name.0.as_str()).is_err() => error_topic(
                            Some(name.0.as_str().to_string()),
                            Uuid::nil(),
                            ResponseError::InvalidTopicException,
                        ),
                        None => error_topic(
                            Some(name.0.as_str().to_string()),
                            Uuid::nil(),
                            ResponseError::UnknownTopicOrPartition,
                        ),
                    },
                    None => match image.topics.get(&t.topic_id) {
                        Some(topic) => topic_response(&image, topic, topic_operations),
                        None => error_topic(None, t.topic_id, ResponseError::UnknownTopicId),
                    },
                })
                .collect()
        };
        Some(
            MetadataResponse::default()
                .with_brokers(brokers(&image))
                .with_cluster_id(Some(StrBytes::from_string(broker.cluster_id.clone())))
                // Clients send admin requests to the "controller" named here. The broker answering
                // is alive and reachable by this client, and forwards them to the active
                // controller, so naming itself never sends a client to a dead node after a
                // controller failover (Kafka names a random live broker for the same reason).
                .with_controller_id(BrokerId(broker.node_id()))
                .with_topics(topics)
                // v8-v10 only; later versions leave it to DescribeCluster.
                .with_cluster_authorized_operations(authorized_operations::answer(
                    request.include_cluster_authorized_operations,
                    authorized_operations::CLUSTER,
                )),
        )
    }
}
