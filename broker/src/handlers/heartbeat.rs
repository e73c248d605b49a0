//! Heartbeat (key 12), versions 0-4: a member says it is alive; the answer tells it whether to
//! rejoin (REBALANCE_IN_PROGRESS) or that it is no longer a member. v3+ carry a static member's
//! `group_instance_id`. The protocol lives in [`crate::coordinator::group`].

use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, HeartbeatRequest as WireRequest, HeartbeatResponse};

use super::group_errors::group_error;
use super::{Handler, RequestContext};
use crate::broker::Broker;
use crate::coordinator::group::{GroupError, HeartbeatRequest};

pub struct HeartbeatHandler;

impl Handler for HeartbeatHandler {
    type Request = WireRequest;
    type Response = HeartbeatResponse;
    const KEY: ApiKey = ApiKey::Heartbeat;
    const VERSIONS: (i16, i16) = (0, 4);

    async fn handle(broker: Arc<Broker>, _ctx: RequestContext, request: WireRequest) -> Option<HeartbeatResponse> {
        let result = match heartbeat_request(request) {
            Ok(heartbeat) => broker.groups.heartbeat(&broker, heartbeat).await,
            Err(e) => Err(e),
        };
        Some(response(result))
    }
}

/// The wire request as the coordinator takes it.
///
/// # Errors
/// INVALID_GROUP_ID for an empty group id (Kafka's GroupCoordinatorService checks it first).
fn heartbeat_request(request: WireRequest) -> Result<HeartbeatRequest, GroupError> {
    if request.group_id.0.is_empty() {
        return Err(GroupError::InvalidGroupId);
    }
    Ok(HeartbeatRequest {
        group_id: request.group_id.0.to_string(),
        member_id: request.member_id.to_string(),
        generation_id: request.generation_id,
        group_instance_id: request.group_instance_id.map(|s| s.to_string()),
    })
}

fn response(result: Result<(), GroupError>) -> HeartbeatResponse {
    let code = match result {
        Ok(()) => 0,
        Err(e) => group_error(&e).code(),
    };
    HeartbeatResponse::default().with_error_code(code)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::GroupId;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    use super::*;

    fn request() -> WireRequest {
        WireRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_generation_id(4)
            .with_member_id(StrBytes::from_static_str("m-1"))
            .with_group_instance_id(Some(StrBytes::from_static_str("i-1")))
    }

    #[test]
    fn the_request_maps_field_for_field() {
        let h = heartbeat_request(request()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((h.group_id.as_str(), h.member_id.as_str(), h.generation_id), ("g", "m-1", 4));
        assert_eq!(h.group_instance_id.as_deref(), Some("i-1"));
    }

    #[test]
    fn an_empty_group_id_is_invalid() {
        let r = heartbeat_request(request().with_group_id(GroupId(StrBytes::default())));
        assert_eq!(r.err(), Some(GroupError::InvalidGroupId));
    }

    #[test]
    fn rebalance_in_progress_is_the_signal_to_rejoin() {
        assert_eq!(response(Err(GroupError::RebalanceInProgress)).error_code, 27);
        assert_eq!(response(Ok(())).error_code, 0);
    }

    #[test]
    fn every_advertised_version_encodes() {
        let (min, max) = HeartbeatHandler::VERSIONS;
        for version in min..=max {
            for r in [response(Ok(())), response(Err(GroupError::IllegalGeneration))] {
                let mut buf = bytes::BytesMut::new();
                r.encode(&mut buf, version).unwrap_or_else(|e| panic!("v{version}: {e}"));
            }
        }
    }
}
