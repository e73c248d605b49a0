//! ConsumerGroupHeartbeat (key 68), versions 0-1: the KIP-848 consumer group protocol. A member
//! joins (epoch 0), heartbeats with its epoch and owned partitions, and leaves (-1, or -2 for a
//! static member's temporary leave); the answer carries its epoch and, when it changed, its whole
//! assignment.
//!
//! This file maps topic ids to names (from the metadata image) and back; the protocol lives in
//! [`crate::coordinator::group`]. v0 members may join with an empty member id (the coordinator
//! gives one); v1 members (KIP-1082) always choose their own. Regex subscriptions
//! (`subscribed_topic_regex`, v1) are answered INVALID_REQUEST: Sluice does not resolve them.

use std::sync::Arc;

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ApiKey, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::protocol::StrBytes;
use sluice_controller::image::MetadataImage;

use super::group_errors::group_error;
use super::{Handler, RequestContext};
use crate::broker::Broker;
use crate::coordinator::group::{ConsumerHeartbeatRequest, ConsumerHeartbeatResponse, GroupError, TopicAssignment};

pub struct ConsumerGroupHeartbeatHandler;

/// First version in which the client always generates its member id (KIP-1082).
const CLIENT_MEMBER_ID_VERSION: i16 = 1;

impl Handler for ConsumerGroupHeartbeatHandler {
    type Request = ConsumerGroupHeartbeatRequest;
    type Response = ConsumerGroupHeartbeatResponse;
    const KEY: ApiKey = ApiKey::ConsumerGroupHeartbeat;
    const VERSIONS: (i16, i16) = (0, 1);

    async fn handle(
        broker: Arc<Broker>,
        ctx: RequestContext,
        request: ConsumerGroupHeartbeatRequest,
    ) -> Option<ConsumerGroupHeartbeatResponse> {
        let image = broker.metadata.image();
        let req = heartbeat_request(&ctx, &image, request);
        let (member_epoch, regex) = (req.member_epoch, req.subscribed_topic_regex.clone());
        Some(match broker.groups.consumer_heartbeat(&broker, req).await {
            Ok(answer) => response(&broker.metadata.image(), answer),
            Err(e) => {
                if let GroupError::InvalidRequest(why) = &e {
                    tracing::info!(
                        why,
                        member_epoch,
                        ?regex,
                        api_version = ctx.api_version,
                        "ConsumerGroupHeartbeat refused"
                    );
                }
                error_response(&e)
            }
        })
    }
}

/// The wire request as the coordinator takes it; owned partitions of unknown topic ids are
/// dropped (the topic is gone).
fn heartbeat_request(
    ctx: &RequestContext,
    image: &MetadataImage,
    r: ConsumerGroupHeartbeatRequest,
) -> ConsumerHeartbeatRequest {
    let owned = r.topic_partitions.map(|topics| {
        let mut owned = TopicAssignment::new();
        for t in topics {
            if let Some(topic) = image.topics.get(&t.topic_id) {
                owned.entry(topic.name.clone()).or_default().extend(t.partitions);
            }
        }
        owned
    });
    ConsumerHeartbeatRequest {
        group_id: r.group_id.0.to_string(),
        member_id: r.member_id.to_string(),
        member_epoch: r.member_epoch,
        instance_id: r.instance_id.map(|s| s.to_string()),
        rack_id: r.rack_id.map(|s| s.to_string()),
        rebalance_timeout_ms: r.rebalance_timeout_ms,
        subscribed_topic_names: r
            .subscribed_topic_names
            .map(|names| names.into_iter().map(|n| n.0.to_string()).collect()),
        subscribed_topic_regex: r.subscribed_topic_regex.map(|s| s.to_string()),
        server_assignor: r.server_assignor.map(|s| s.to_string()),
        owned,
        client_id: ctx.client_id.clone().unwrap_or_default(),
        client_host: ctx.client_host.clone(),
        member_id_required: ctx.api_version >= CLIENT_MEMBER_ID_VERSION,
    }
}

/// An assignment by topic id; a topic deleted since the assignment was computed is left out.
fn assignment(image: &MetadataImage, a: TopicAssignment) -> Assignment {
    let topic_partitions = a
        .into_iter()
        .filter_map(|(name, partitions)| {
            let id = image.topic_ids_by_name.get(&name)?;
            Some(TopicPartitions::default().with_topic_id(*id).with_partitions(partitions.into_iter().collect()))
        })
        .collect();
    Assignment::default().with_topic_partitions(topic_partitions)
}

fn response(image: &MetadataImage, r: ConsumerHeartbeatResponse) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse::default()
        .with_member_id(Some(StrBytes::from_string(r.member_id)))
        .with_member_epoch(r.member_epoch)
        .with_heartbeat_interval_ms(r.heartbeat_interval_ms)
        .with_assignment(r.assignment.map(|a| assignment(image, a)))
}

fn error_response(e: &GroupError) -> ConsumerGroupHeartbeatResponse {
    let message = match e {
        GroupError::InvalidRequest(m) => Some(StrBytes::from_static_str(m)),
        _ => None,
    };
    ConsumerGroupHeartbeatResponse::default().with_error_code(group_error(e).code()).with_error_message(message)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use bytes::BytesMut;
    use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as OwnedPartitions;
    use kafka_protocol::messages::{GroupId, TopicName};
    use kafka_protocol::protocol::Encodable;
    use sluice_controller::records::MetadataRecord;
    use uuid::Uuid;

    use super::*;
    use crate::handlers::OrderGate;

    fn image() -> MetadataImage {
        let mut image = MetadataImage::default();
        image.apply(&MetadataRecord::Topic { name: "t".into(), topic_id: Uuid::from_u128(7) });
        image
    }

    fn ctx(version: i16) -> RequestContext {
        RequestContext {
            api_version: version,
            correlation_id: 1,
            client_id: Some("c".into()),
            client_host: "/h".into(),
            gate: OrderGate::new().0,
        }
    }

    #[test]
    fn topic_ids_map_to_names_and_back() {
        let request = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_member_epoch(3)
            .with_subscribed_topic_names(Some(vec![TopicName(StrBytes::from_static_str("t"))]))
            .with_topic_partitions(Some(vec![
                OwnedPartitions::default().with_topic_id(Uuid::from_u128(7)).with_partitions(vec![0, 2]),
                OwnedPartitions::default().with_topic_id(Uuid::from_u128(99)).with_partitions(vec![1]),
            ]));
        let req = heartbeat_request(&ctx(1), &image(), request);
        assert_eq!(req.owned, Some([("t".to_string(), BTreeSet::from([0, 2]))].into()));
        assert!(req.member_id_required);
        let a = assignment(
            &image(),
            [("t".to_string(), BTreeSet::from([1])), ("gone".to_string(), BTreeSet::from([0]))].into(),
        );
        assert_eq!(a.topic_partitions.len(), 1);
        assert_eq!(
            (a.topic_partitions[0].topic_id, a.topic_partitions[0].partitions.clone()),
            (Uuid::from_u128(7), vec![1])
        );
    }

    #[test]
    fn every_advertised_version_encodes() {
        for version in ConsumerGroupHeartbeatHandler::VERSIONS.0..=ConsumerGroupHeartbeatHandler::VERSIONS.1 {
            let ok = response(
                &image(),
                ConsumerHeartbeatResponse {
                    member_id: "m".into(),
                    member_epoch: 2,
                    heartbeat_interval_ms: 5000,
                    assignment: Some([("t".to_string(), BTreeSet::from([0]))].into()),
                },
            );
            for r in
                [ok, error_response(&GroupError::InvalidRequest("bad")), error_response(&GroupError::FencedMemberEpoch)]
            {
                r.encode(&mut BytesMut::new(), version).unwrap_or_else(|e| panic!("v{version}: {e}"));
            }
        }
    }
}
