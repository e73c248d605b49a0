//! FindCoordinator (key 10), versions 0-6: where a group's coordinator is (v0-3 one key, v4+ a
//! batch of keys, each answered on its own).
//!
//! As Kafka's `KafkaApis.getCoordinator`: a group key maps to a partition of
//! `__consumer_offsets` (creating the topic on first use) and the answer is that partition's
//! leader. When this broker leads it, the coordinator is loaded before the answer goes out, so
//! the client's first JoinGroup finds it ready. Transactions are a later issue: transaction keys
//! get the retriable COORDINATOR_NOT_AVAILABLE. An unknown key type is INVALID_REQUEST for every
//! key, as Kafka's `CoordinatorType.forId` failing makes the whole request fail. An empty group
//! id is looked up like any other key, as Kafka does (JoinGroup is what refuses it).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{ApiKey, BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::group_errors::group_error;
use super::{Handler, RequestContext};
use crate::broker::Broker;
use crate::coordinator::group::GroupError;
use crate::groups::OFFSETS_TOPIC;

pub struct FindCoordinatorHandler;

/// First version that takes several keys per request.
const BATCHED_VERSION: i16 = 4;
/// First version with a top-level `error_message`.
const ERROR_MESSAGE_VERSION: i16 = 1;

/// Kafka's `CoordinatorType`.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// A coordinator's address, or Kafka's `Node.noNode()` (-1, "", -1).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Node {
    id: i32,
    host: String,
    port: i32,
}

impl Node {
    fn none() -> Self {
        Self { id: -1, host: String::new(), port: -1 }
    }
}

/// Why a key has no coordinator to offer.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Refusal {
    error: ResponseError,
    message: &'static str,
}

type Located = Result<Node, Refusal>;

impl Handler for FindCoordinatorHandler {
    type Request = FindCoordinatorRequest;
    type Response = FindCoordinatorResponse;
    const KEY: ApiKey = ApiKey::FindCoordinator;
    const VERSIONS: (i16, i16) = (0, 6);

    async fn handle(
        broker: Arc<Broker>,
        ctx: RequestContext,
        request: FindCoordinatorRequest,
    ) -> Option<FindCoordinatorResponse> {
        let version = ctx.api_version;
        if version >= BATCHED_VERSION {
            let mut located = Vec::with_capacity(request.coordinator_keys.len());
            for key in request.coordinator_keys {
                let answer = locate(&broker, request.key_type, &key).await;
                located.push((key, answer));
            }
            return Some(batched_response(located));
        }
        let answer = locate(&broker, request.key_type, &request.key).await;
        Some(single_response(version, &answer))
    }
}

/// The coordinator of one key.
async fn locate(broker: &Arc<Broker>, key_type: i8, key: &str) -> Located {
    match key_type {
        KEY_TYPE_GROUP => locate_group(broker, key).await,
        KEY_TYPE_TRANSACTION => Err(Refusal {
            error: ResponseError::CoordinatorNotAvailable,
            message: "Sluice has no transaction coordinator yet",
        }),
        _ => Err(Refusal { error: ResponseError::InvalidRequest, message: "unknown coordinator key type" }),
    }
}

/// The leader of the group's `__consumer_offsets` partition; when that is this broker (or the
/// topic does not exist yet), the coordinator is loaded here first.
async fn locate_group(broker: &Arc<Broker>, group_id: &str) -> Located {
    let partition = broker.groups.partition_of(group_id);
    if let Some(node) = remote_leader(broker, partition) {
        return Ok(node);
    }
    match broker.groups.ensure_loaded(broker, group_id).await {
        Ok(()) => Ok(Node {
            id: broker.node_id(),
            host: broker.advertised.host.clone(),
            port: i32::from(broker.advertised.port),
        }),
        Err(e) => Err(load_refusal(&e)),
    }
}

/// The live broker other than this one that leads `partition` of the offsets topic, if any.
fn remote_leader(broker: &Broker, partition: i32) -> Option<Node> {
    let image = broker.metadata.image();
    let leader = image.topic_by_name(OFFSETS_TOPIC)?.partitions.get(&partition)?.leader;
    if leader == broker.node_id() {
        return None;
    }
    let b = image.brokers.get(&leader).filter(|b| !b.fenced)?;
    Some(Node { id: b.node_id, host: b.host.clone(), port: b.port })
}

/// FindCoordinator only ever says COORDINATOR_NOT_AVAILABLE when it has no answer (Kafka's
/// `getCoordinator`): a partition that is not led here (yet) is retriable, not NOT_COORDINATOR.
fn load_refusal(e: &GroupError) -> Refusal {
    let error = match e {
        GroupError::NotCoordinator => ResponseError::CoordinatorNotAvailable,
        other => group_error(other),
    };
    if matches!(e, GroupError::GroupsMaxReached) {
        tracing::warn!("group coordinator holds groups.max groups; refusing a new one");
    }
    Refusal { error, message: "the group coordinator is not available" }
}

/// The v0-3 answer: the top-level fields. Kafka sets `error_message` to the error's message,
/// which for success is the name "NONE"; v0 has no such field.
fn single_response(version: i16, answer: &Located) -> FindCoordinatorResponse {
    let (node, code, message) = match answer {
        Ok(node) => (node.clone(), 0, "NONE"),
        Err(r) => (Node::none(), r.error.code(), r.message),
    };
    let message = (version >= ERROR_MESSAGE_VERSION).then(|| StrBytes::from_static_str(message));
    FindCoordinatorResponse::default()
        .with_error_code(code)
        .with_error_message(message)
        .with_node_id(BrokerId(node.id))
        .with_host(StrBytes::from_string(node.host))
        .with_port(node.port)
}

/// The v4+ answer: one entry per key, in request order.
fn batched_response(located: Vec<(StrBytes, Located)>) -> FindCoordinatorResponse {
    let coordinators = located
        .into_iter()
        .map(|(key, answer)| {
            let (node, code, message) = match answer {
                Ok(node) => (node, 0, None),
                Err(r) => (Node::none(), r.error.code(), Some(StrBytes::from_static_str(r.message))),
            };
            Coordinator::default()
                .with_key(key)
                .with_node_id(BrokerId(node.id))
                .with_host(StrBytes::from_string(node.host))
                .with_port(node.port)
                .with_error_code(code)
                .with_error_message(message)
        })
        .collect();
    FindCoordinatorResponse::default().with_coordinators(coordinators)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Encodable;

    fn here() -> Node {
        Node { id: 1, host: "localhost".into(), port: 9092 }
    }

    fn unavailable() -> Refusal {
        Refusal { error: ResponseError::CoordinatorNotAvailable, message: "not yet" }
    }

    #[test]
    fn a_single_key_answers_in_the_top_level_fields() {
        let r = single_response(3, &Ok(here()));
        assert_eq!((r.error_code, r.node_id, r.host.as_str(), r.port), (0, BrokerId(1), "localhost", 9092));
        assert_eq!(r.error_message.as_deref(), Some("NONE"));
        assert!(r.coordinators.is_empty());
        assert_eq!(single_response(0, &Ok(here())).error_message, None);
    }

    #[test]
    fn a_refused_single_key_answers_no_node() {
        let r = single_response(2, &Err(unavailable()));
        assert_eq!((r.error_code, r.node_id, r.host.as_str(), r.port), (15, BrokerId(-1), "", -1));
        assert_eq!(r.error_message.as_deref(), Some("not yet"));
    }

    #[test]
    fn batched_keys_are_answered_each_in_order() {
        let r = batched_response(vec![
            (StrBytes::from_static_str("a"), Ok(here())),
            (StrBytes::from_static_str("b"), Err(unavailable())),
        ]);
        assert_eq!(r.coordinators.len(), 2);
        let (a, b) = (&r.coordinators[0], &r.coordinators[1]);
        assert_eq!((a.key.as_str(), a.error_code, a.node_id, a.port), ("a", 0, BrokerId(1), 9092));
        assert_eq!(a.error_message, None);
        assert_eq!((b.key.as_str(), b.error_code, b.node_id, b.host.as_str()), ("b", 15, BrokerId(-1), ""));
    }

    #[test]
    fn a_partition_led_elsewhere_is_retriable_not_not_coordinator() {
        assert_eq!(load_refusal(&GroupError::NotCoordinator).error, ResponseError::CoordinatorNotAvailable);
        assert_eq!(load_refusal(&GroupError::GroupsMaxReached).error, ResponseError::CoordinatorNotAvailable);
    }

    #[test]
    fn every_advertised_version_encodes() {
        let (min, max) = FindCoordinatorHandler::VERSIONS;
        for version in min..=max {
            let responses = if version >= BATCHED_VERSION {
                vec![batched_response(vec![
                    (StrBytes::from_static_str("g"), Ok(here())),
                    (StrBytes::from_static_str("t"), Err(unavailable())),
                ])]
            } else {
                vec![single_response(version, &Ok(here())), single_response(version, &Err(unavailable()))]
            };
            for r in responses {
                let mut buf = bytes::BytesMut::new();
                r.encode(&mut buf, version).unwrap_or_else(|e| panic!("v{version}: {e}"));
            }
        }
    }
}
