//! FindCoordinator (key 10), versions 0-6, single and batched keys (v4+).
//!
//! Consumer groups and transactions are later issues, so no coordinator exists yet and every key
//! is answered with COORDINATOR_NOT_AVAILABLE, the retriable code Kafka itself gives while a
//! coordinator cannot be had. The API is listed anyway because clients decide features from the
//! ApiVersions list: librdkafka enables lz4 compression only when FindCoordinator is present.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{ApiKey, BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::{Handler, RequestContext};
use crate::broker::Broker;

pub struct FindCoordinatorHandler;

/// First version that takes several keys per request.
const BATCHED_VERSION: i16 = 4;

fn unavailable_message() -> Option<StrBytes> {
    Some(StrBytes::from_static_str("Sluice has no group or transaction coordinator yet"))
}

impl Handler for FindCoordinatorHandler {
    type Request = FindCoordinatorRequest;
    type Response = FindCoordinatorResponse;
    const KEY: ApiKey = ApiKey::FindCoordinator;
    const VERSIONS: (i16, i16) = (0, 6);

    async fn handle(_broker: Arc<Broker>, ctx: RequestContext, request: FindCoordinatorRequest) -> Option<FindCoordinatorResponse> {
        let error = ResponseError::CoordinatorNotAvailable.code();
        if ctx.api_version >= BATCHED_VERSION {
            let coordinators = request
                .coordinator_keys
                .into_iter()
                .map(|key| {
                    Coordinator::default()
                        .with_key(key)
                        .with_node_id(BrokerId(-1))
                        .with_host(StrBytes::from_static_str(""))
                        .with_port(-1)
                        .with_error_code(error)
                        .with_error_message(unavailable_message())
                })
                .collect();
            return Some(FindCoordinatorResponse::default().with_coordinators(coordinators));
        }
        let message = if ctx.api_version >= 1 { unavailable_message() } else { None };
        Some(
            FindCoordinatorResponse::default()
                .with_error_code(error)
                .with_error_message(message)
                .with_node_id(BrokerId(-1))
                .with_host(StrBytes::from_static_str(""))
                .with_port(-1),
        )
    }
}
