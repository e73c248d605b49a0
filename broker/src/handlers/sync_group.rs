//! SyncGroup (key 14), versions 0-5: after a join phase the leader sends every member's
//! assignment, and each member waits for its own.
//!
//! This file maps the wire request to [`SyncRequest`] and the answer back; the protocol lives in
//! [`crate::coordinator::group`]. v3+ carry a static member's `group_instance_id`; v5 carries the
//! protocol type and name both ways, and, as Kafka, a v5 request missing either is refused with
//! INCONSISTENT_GROUP_PROTOCOL. The response's assignment is never null: empty when none.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::group_errors::group_error;
use super::{Handler, RequestContext};
use crate::broker::Broker;
use crate::coordinator::group::{GroupError, SyncRequest, SyncResponse};

pub struct SyncGroupHandler;

/// First version carrying `protocol_type` and `protocol_name`, both mandatory.
const PROTOCOL_VERSION: i16 = 5;

impl Handler for SyncGroupHandler {
    type Request = SyncGroupRequest;
    type Response = SyncGroupResponse;
    const KEY: ApiKey = ApiKey::SyncGroup;
    const VERSIONS: (i16, i16) = (0, 5);

    async fn handle(broker: Arc<Broker>, ctx: RequestContext, request: SyncGroupRequest) -> Option<SyncGroupResponse> {
        let version = ctx.api_version;
        let result = match sync_request(version, request) {
            Ok(sync) => broker.groups.sync(&broker, sync).await,
            Err(e) => Err(e),
        };
        Some(response(version, result))
    }
}

/// The wire request as the coordinator takes it.
///
/// # Errors
/// INVALID_GROUP_ID for an empty group id, INCONSISTENT_GROUP_PROTOCOL for a v5 request without
/// its protocol type or name (Kafka's `areMandatoryProtocolTypeAndNamePresent`).
fn sync_request(version: i16, request: SyncGroupRequest) -> Result<SyncRequest, GroupError> {
    if version >= PROTOCOL_VERSION && (request.protocol_type.is_none() || request.protocol_name.is_none()) {
        return Err(GroupError::InconsistentGroupProtocol);
    }
    if request.group_id.0.is_empty() {
        return Err(GroupError::InvalidGroupId);
    }
    Ok(SyncRequest {
        group_id: request.group_id.0.to_string(),
        member_id: request.member_id.to_string(),
        generation_id: request.generation_id,
        group_instance_id: request.group_instance_id.map(|s| s.to_string()),
        protocol_type: request.protocol_type.map(|s| s.to_string()),
        protocol_name: request.protocol_name.map(|s| s.to_string()),
        assignments: request.assignments.into_iter().map(|a| (a.member_id.to_string(), a.assignment)).collect(),
    })
}

fn response(version: i16, result: Result<SyncResponse, GroupError>) -> SyncGroupResponse {
    match result {
        Ok(synced) => {
            let (protocol_type, protocol_name) = if version >= PROTOCOL_VERSION {
                (synced.protocol_type.map(StrBytes::from_string), synced.protocol_name.map(StrBytes::from_string))
            } else {
                (None, None)
            };
            SyncGroupResponse::default()
                .with_error_code(0)
                .with_protocol_type(protocol_type)
                .with_protocol_name(protocol_name)
                .with_assignment(synced.assignment)
        }
        Err(e) => SyncGroupResponse::default().with_error_code(group_error(&e).code()).with_assignment(Bytes::new()),
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::messages::GroupId;
    use kafka_protocol::protocol::Encodable;

    use super::*;

    fn request() -> SyncGroupRequest {
        SyncGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_generation_id(2)
            .with_member_id(StrBytes::from_static_str("m-1"))
            .with_assignments(vec![
                SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_static_str("m-1"))
                    .with_assignment(Bytes::from_static(b"a1")),
                SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_static_str("m-2"))
                    .with_assignment(Bytes::from_static(b"a2")),
            ])
    }

    fn synced() -> SyncResponse {
        SyncResponse {
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignment: Bytes::from_static(b"a1"),
        }
    }

    #[test]
    fn assignments_map_to_member_id_and_bytes() {
        let s = sync_request(4, request()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((s.group_id.as_str(), s.member_id.as_str(), s.generation_id), ("g", "m-1", 2));
        assert_eq!(
            s.assignments,
            vec![("m-1".to_string(), Bytes::from_static(b"a1")), ("m-2".to_string(), Bytes::from_static(b"a2"))]
        );
    }

    #[test]
    fn v5_requires_protocol_type_and_name() {
        assert_eq!(sync_request(5, request()).err(), Some(GroupError::InconsistentGroupProtocol));
        let named = request()
            .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
            .with_protocol_name(Some(StrBytes::from_static_str("range")));
        let s = sync_request(5, named).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((s.protocol_type.as_deref(), s.protocol_name.as_deref()), (Some("consumer"), Some("range")));
    }

    #[test]
    fn an_empty_group_id_is_invalid() {
        let r = sync_request(3, request().with_group_id(GroupId(StrBytes::default())));
        assert_eq!(r.err(), Some(GroupError::InvalidGroupId));
    }

    #[test]
    fn protocol_fields_are_answered_only_in_v5() {
        let r = response(4, Ok(synced()));
        assert_eq!((r.protocol_type, r.protocol_name, r.assignment.as_ref()), (None, None, &b"a1"[..]));
        let r = response(5, Ok(synced()));
        assert_eq!((r.protocol_type.as_deref(), r.protocol_name.as_deref()), (Some("consumer"), Some("range")));
    }

    #[test]
    fn an_error_carries_an_empty_assignment() {
        let r = response(5, Err(GroupError::RebalanceInProgress));
        assert_eq!((r.error_code, r.assignment.len()), (27, 0));
    }

    #[test]
    fn every_advertised_version_encodes() {
        let (min, max) = SyncGroupHandler::VERSIONS;
        for version in min..=max {
            for r in [response(version, Ok(synced())), response(version, Err(GroupError::UnknownMemberId))] {
                let mut buf = bytes::BytesMut::new();
                r.encode(&mut buf, version).unwrap_or_else(|e| panic!("v{version}: {e}"));
            }
        }
    }
}
