//! LeaveGroup (key 13), versions 0-5: members leave a group, which starts a rebalance for the
//! rest. v0-2 name one member and answer one code; v3+ name a batch (static members by
//! `group_instance_id`) and answer a code per member, with a top-level code only for what fails
//! the whole request. The protocol lives in [`crate::coordinator::group`].

use std::sync::Arc;

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{ApiKey, LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::group_errors::group_error;
use super::{Handler, RequestContext};
use crate::broker::Broker;
use crate::coordinator::group::{GroupError, LeaveMember, LeaveResult};

pub struct LeaveGroupHandler;

/// First version naming a batch of members.
const BATCHED_VERSION: i16 = 3;

impl Handler for LeaveGroupHandler {
    type Request = LeaveGroupRequest;
    type Response = LeaveGroupResponse;
    const KEY: ApiKey = ApiKey::LeaveGroup;
    const VERSIONS: (i16, i16) = (0, 5);

    async fn handle(
        broker: Arc<Broker>,
        ctx: RequestContext,
        request: LeaveGroupRequest,
    ) -> Option<LeaveGroupResponse> {
        let version = ctx.api_version;
        let group_id = request.group_id.0.to_string();
        let result = if group_id.is_empty() {
            // As Kafka's GroupCoordinatorService: refused before any coordinator is asked.
            Err(GroupError::InvalidGroupId)
        } else {
            broker.groups.leave(&broker, group_id, leaving_members(version, request)).await
        };
        Some(response(version, result))
    }
}

/// The members a request names: v0-2 its one `member_id`, v3+ its batch (Kafka's
/// `LeaveGroupRequest.normalizedData`).
fn leaving_members(version: i16, request: LeaveGroupRequest) -> Vec<LeaveMember> {
    if version < BATCHED_VERSION {
        return vec![LeaveMember { member_id: request.member_id.to_string(), group_instance_id: None }];
    }
    request
        .members
        .into_iter()
        .map(|m| LeaveMember {
            member_id: m.member_id.to_string(),
            group_instance_id: m.group_instance_id.map(|s| s.to_string()),
        })
        .collect()
}

fn code(result: &Result<(), GroupError>) -> i16 {
    match result {
        Ok(()) => 0,
        Err(e) => group_error(e).code(),
    }
}

fn response(version: i16, result: Result<Vec<LeaveResult>, GroupError>) -> LeaveGroupResponse {
    let members = match result {
        Ok(members) => members,
        Err(e) => return LeaveGroupResponse::default().with_error_code(group_error(&e).code()),
    };
    if version < BATCHED_VERSION {
        // Kafka's `LeaveGroupResponse.getError`: the single member's error becomes the answer.
        let error_code = members.iter().map(|m| code(&m.result)).find(|&c| c != 0).unwrap_or(0);
        return LeaveGroupResponse::default().with_error_code(error_code);
    }
    let members = members
        .into_iter()
        .map(|m| {
            MemberResponse::default()
                .with_error_code(code(&m.result))
                .with_member_id(StrBytes::from_string(m.member_id))
                .with_group_instance_id(m.group_instance_id.map(StrBytes::from_string))
        })
        .collect();
    LeaveGroupResponse::default().with_error_code(0).with_members(members)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::leave_group_request::MemberIdentity;
    use kafka_protocol::messages::GroupId;
    use kafka_protocol::protocol::Encodable;

    use super::*;

    fn request() -> LeaveGroupRequest {
        LeaveGroupRequest::default().with_group_id(GroupId(StrBytes::from_static_str("g")))
    }

    fn left(member_id: &str, instance: Option<&str>, result: Result<(), GroupError>) -> LeaveResult {
        LeaveResult { member_id: member_id.into(), group_instance_id: instance.map(Into::into), result }
    }

    #[test]
    fn v0_to_v2_name_one_member() {
        for version in 0..BATCHED_VERSION {
            let members = leaving_members(version, request().with_member_id(StrBytes::from_static_str("m-1")));
            assert_eq!(members, vec![LeaveMember { member_id: "m-1".into(), group_instance_id: None }]);
        }
    }

    #[test]
    fn v3_names_a_batch() {
        let batch = vec![
            MemberIdentity::default().with_member_id(StrBytes::from_static_str("m-1")),
            MemberIdentity::default().with_group_instance_id(Some(StrBytes::from_static_str("i-2"))),
        ];
        let members = leaving_members(3, request().with_members(batch));
        assert_eq!(
            members,
            vec![
                LeaveMember { member_id: "m-1".into(), group_instance_id: None },
                LeaveMember { member_id: String::new(), group_instance_id: Some("i-2".into()) },
            ]
        );
    }

    #[test]
    fn v3_answers_a_code_per_member() {
        let r =
            response(3, Ok(vec![left("m-1", None, Ok(())), left("", Some("i-2"), Err(GroupError::UnknownMemberId))]));
        assert_eq!(r.error_code, 0);
        let codes: Vec<(&str, Option<&str>, i16)> =
            r.members.iter().map(|m| (m.member_id.as_str(), m.group_instance_id.as_deref(), m.error_code)).collect();
        assert_eq!(codes, vec![("m-1", None, 0), ("", Some("i-2"), 25)]);
    }

    #[test]
    fn v0_answers_the_member_error_at_the_top() {
        let r = response(0, Ok(vec![left("m-1", None, Err(GroupError::UnknownMemberId))]));
        assert_eq!((r.error_code, r.members.len()), (25, 0));
        assert_eq!(response(2, Ok(vec![left("m-1", None, Ok(()))])).error_code, 0);
    }

    #[test]
    fn a_request_level_failure_is_the_top_level_code() {
        let r = response(5, Err(GroupError::CoordinatorNotAvailable));
        assert_eq!((r.error_code, r.members.len()), (15, 0));
    }

    #[test]
    fn every_advertised_version_encodes() {
        let (min, max) = LeaveGroupHandler::VERSIONS;
        for version in min..=max {
            let ok = response(
                version,
                Ok(vec![left("m-1", Some("i-1"), Ok(())), left("m-2", None, Err(GroupError::UnknownMemberId))]),
            );
            for r in [ok, response(version, Err(GroupError::NotCoordinator))] {
                let mut buf = bytes::BytesMut::new();
                r.encode(&mut buf, version).unwrap_or_else(|e| panic!("v{version}: {e}"));
            }
        }
    }
}
