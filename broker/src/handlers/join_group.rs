//! JoinGroup (key 11), versions 0-9: a member joins (or rejoins) a classic group and waits until
//! the rebalance's join phase ends; the leader gets every member's metadata to assign from.
//!
//! This file maps the wire request to [`JoinRequest`] and the coordinator's answer back; the
//! protocol itself lives in [`crate::coordinator::group`]. Version differences handled here: v0
//! has no rebalance timeout (the session timeout serves as both, as in Kafka), v4+ new members
//! first get MEMBER_ID_REQUIRED carrying their id (KIP-394), v5+ static members, v7+
//! `protocol_type` in the response, v9+ `skip_assignment`.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{ApiKey, JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::group_errors::group_error;
use super::{Handler, RequestContext};
use crate::broker::Broker;
use crate::coordinator::group::{GroupError, JoinRequest, JoinResponse, Protocol};

pub struct JoinGroupHandler;

/// First version with a rebalance timeout of its own.
const REBALANCE_TIMEOUT_VERSION: i16 = 1;
/// First version whose new members must rejoin with the id MEMBER_ID_REQUIRED gives them.
const REQUIRE_KNOWN_MEMBER_ID_VERSION: i16 = 4;
/// First version with static members (`group_instance_id`).
const STATIC_MEMBER_VERSION: i16 = 5;
/// First version with `protocol_type` in the response and a nullable `protocol_name`.
const PROTOCOL_TYPE_VERSION: i16 = 7;
/// First version that understands `skip_assignment`.
const SKIP_ASSIGNMENT_VERSION: i16 = 9;
/// Kafka's `UNKNOWN_GENERATION_ID`, sent with every error.
const NO_GENERATION: i32 = -1;

impl Handler for JoinGroupHandler {
    type Request = JoinGroupRequest;
    type Response = JoinGroupResponse;
    const KEY: ApiKey = ApiKey::JoinGroup;
    const VERSIONS: (i16, i16) = (0, 9);

    async fn handle(broker: Arc<Broker>, ctx: RequestContext, request: JoinGroupRequest) -> Option<JoinGroupResponse> {
        let version = ctx.api_version;
        let request_member_id = request.member_id.to_string();
        let join = join_request(&ctx, request);
        let result = if join.group_id.is_empty() {
            // As Kafka's GroupCoordinatorService: refused before any coordinator is asked.
            Err(GroupError::InvalidGroupId)
        } else {
            broker.groups.join(&broker, join).await
        };
        Some(match result {
            Ok(joined) => joined_response(version, joined),
            Err(e) => error_response(version, &e, request_member_id),
        })
    }
}

/// The wire request as the coordinator takes it.
fn join_request(ctx: &RequestContext, request: JoinGroupRequest) -> JoinRequest {
    let version = ctx.api_version;
    let rebalance_timeout_ms =
        if version >= REBALANCE_TIMEOUT_VERSION { request.rebalance_timeout_ms } else { request.session_timeout_ms };
    JoinRequest {
        group_id: request.group_id.0.to_string(),
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.map(|s| s.to_string()),
        client_id: ctx.client_id.clone().unwrap_or_default(),
        client_host: ctx.client_host.clone(),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms,
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| Protocol { name: p.name.to_string(), metadata: p.metadata })
            .collect(),
        require_known_member_id: version >= REQUIRE_KNOWN_MEMBER_ID_VERSION,
        supports_skip_assignment: version >= SKIP_ASSIGNMENT_VERSION,
    }
}

/// Before v7 `protocol_name` is not nullable: Kafka sends "" for none.
fn protocol_name(version: i16, name: Option<String>) -> Option<StrBytes> {
    match name {
        Some(name) => Some(StrBytes::from_string(name)),
        None if version < PROTOCOL_TYPE_VERSION => Some(StrBytes::default()),
        None => None,
    }
}

fn joined_response(version: i16, joined: JoinResponse) -> JoinGroupResponse {
    let members = joined
        .members
        .into_iter()
        .map(|m| {
            let instance =
                if version >= STATIC_MEMBER_VERSION { m.group_instance_id.map(StrBytes::from_string) } else { None };
            JoinGroupResponseMember::default()
                .with_member_id(StrBytes::from_string(m.member_id))
                .with_group_instance_id(instance)
                .with_metadata(m.metadata)
        })
        .collect();
    let protocol_type =
        if version >= PROTOCOL_TYPE_VERSION { joined.protocol_type.map(StrBytes::from_string) } else { None };
    JoinGroupResponse::default()
        .with_error_code(0)
        .with_generation_id(joined.generation_id)
        .with_protocol_type(protocol_type)
        .with_protocol_name(protocol_name(version, joined.protocol_name))
        .with_leader(StrBytes::from_string(joined.leader_id))
        .with_skip_assignment(version >= SKIP_ASSIGNMENT_VERSION && joined.skip_assignment)
        .with_member_id(StrBytes::from_string(joined.member_id))
        .with_members(members)
}

/// An error answer: generation -1, no leader or protocol, and the request's member id, except
/// MEMBER_ID_REQUIRED, which hands the member the id to rejoin with.
fn error_response(version: i16, e: &GroupError, request_member_id: String) -> JoinGroupResponse {
    let member_id = match e {
        GroupError::MemberIdRequired(id) => id.clone(),
        _ => request_member_id,
    };
    let code: ResponseError = group_error(e);
    JoinGroupResponse::default()
        .with_error_code(code.code())
        .with_generation_id(NO_GENERATION)
        .with_protocol_type(None)
        .with_protocol_name(protocol_name(version, None))
        .with_leader(StrBytes::default())
        .with_member_id(StrBytes::from_string(member_id))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::GroupId;
    use kafka_protocol::protocol::Encodable;

    use super::*;
    use crate::coordinator::group::JoinedMember;
    use crate::handlers::OrderGate;

    fn ctx(version: i16) -> RequestContext {
        RequestContext {
            api_version: version,
            correlation_id: 7,
            client_id: Some("rdkafka".into()),
            client_host: "/10.0.0.1".into(),
            gate: OrderGate::new().0,
        }
    }

    fn request() -> JoinGroupRequest {
        JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(60_000)
            .with_member_id(StrBytes::from_static_str("m-1"))
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(Bytes::from_static(b"meta"))])
    }

    fn joined() -> JoinResponse {
        JoinResponse {
            generation_id: 3,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            leader_id: "m-1".into(),
            member_id: "m-1".into(),
            members: vec![JoinedMember {
                member_id: "m-1".into(),
                group_instance_id: Some("i-1".into()),
                metadata: Bytes::from_static(b"meta"),
            }],
            skip_assignment: true,
        }
    }

    #[test]
    fn v0_uses_the_session_timeout_as_rebalance_timeout() {
        let j = join_request(&ctx(0), request());
        assert_eq!((j.session_timeout_ms, j.rebalance_timeout_ms), (10_000, 10_000));
        let j = join_request(&ctx(1), request());
        assert_eq!(j.rebalance_timeout_ms, 60_000);
    }

    #[test]
    fn member_id_requirement_and_skip_assignment_follow_the_version() {
        for version in 0..=9 {
            let j = join_request(&ctx(version), request());
            assert_eq!(j.require_known_member_id, version >= 4, "v{version}");
            assert_eq!(j.supports_skip_assignment, version >= 9, "v{version}");
        }
    }

    #[test]
    fn the_request_maps_field_for_field() {
        let j = join_request(&ctx(5), request().with_group_instance_id(Some(StrBytes::from_static_str("i-1"))));
        assert_eq!((j.group_id.as_str(), j.member_id.as_str()), ("g", "m-1"));
        assert_eq!(j.group_instance_id.as_deref(), Some("i-1"));
        assert_eq!((j.client_id.as_str(), j.client_host.as_str()), ("rdkafka", "/10.0.0.1"));
        assert_eq!(j.protocol_type, "consumer");
        assert_eq!(j.protocols, vec![Protocol { name: "range".into(), metadata: Bytes::from_static(b"meta") }]);
    }

    #[test]
    fn member_id_required_hands_out_the_new_id() {
        let r = error_response(4, &GroupError::MemberIdRequired("m-new".into()), String::new());
        assert_eq!((r.error_code, r.member_id.as_str(), r.generation_id), (79, "m-new", -1));
        let r = error_response(4, &GroupError::UnknownMemberId, "m-old".into());
        assert_eq!((r.error_code, r.member_id.as_str(), r.leader.as_str()), (25, "m-old", ""));
        assert!(r.members.is_empty());
    }

    #[test]
    fn protocol_name_is_empty_before_v7_and_null_from_v7() {
        let e = GroupError::RebalanceInProgress;
        assert_eq!(error_response(6, &e, String::new()).protocol_name.as_deref(), Some(""));
        assert_eq!(error_response(7, &e, String::new()).protocol_name, None);
    }

    #[test]
    fn version_gated_fields_are_dropped_for_older_versions() {
        let r = joined_response(4, joined());
        assert_eq!((r.protocol_type.as_ref(), r.skip_assignment), (None, false));
        assert_eq!(r.members[0].group_instance_id, None);
        let r = joined_response(9, joined());
        assert_eq!(r.protocol_type.as_deref(), Some("consumer"));
        assert!(r.skip_assignment);
        assert_eq!(r.members[0].group_instance_id.as_deref(), Some("i-1"));
    }

    #[test]
    fn every_advertised_version_encodes() {
        let (min, max) = JoinGroupHandler::VERSIONS;
        for version in min..=max {
            let errors = [GroupError::MemberIdRequired("m".into()), GroupError::UnknownMemberId];
            let mut responses: Vec<_> = errors.iter().map(|e| error_response(version, e, "m".into())).collect();
            responses.push(joined_response(version, joined()));
            for r in responses {
                let mut buf = bytes::BytesMut::new();
                r.encode(&mut buf, version).unwrap_or_else(|e| panic!("v{version}: {e}"));
            }
        }
    }
}
