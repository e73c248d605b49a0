//! DescribeGroups (key 15), versions 0-5: each group's state, protocol type, protocol and
//! members (with `group_instance_id` from v4), every group asked of its own coordinator at once.
//!
//! As Kafka before v6, a group that does not exist is answered as a Dead group with no error
//! (v6, which answers GROUP_ID_NOT_FOUND with a message, is not served). Member metadata and
//! assignments, and the protocol, are empty unless the group is Stable (the core's answer, as
//! Kafka). `authorized_operations` (v3+) is "omitted" (`i32::MIN`) unless the request asks for it;
//! then, as Kafka with no authorizer, it is every operation a group supports (Sluice has no ACLs).

use std::sync::Arc;

use futures::future::join_all;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{ApiKey, DescribeGroupsRequest, DescribeGroupsResponse, GroupId};
use kafka_protocol::protocol::StrBytes;

use super::group_errors::group_error;
use super::{Handler, RequestContext};
use crate::broker::Broker;
use crate::coordinator::group::{DescribedMember, GroupDescription, GroupError, GroupState};

pub struct DescribeGroupsHandler;

/// First version whose members carry `group_instance_id`.
const INSTANCE_ID_VERSION: i16 = 4;
use super::authorized_operations::{self, GROUP as GROUP_OPERATIONS, OMITTED as AUTHORIZED_OPERATIONS_OMITTED};

fn member(version: i16, m: DescribedMember) -> DescribedGroupMember {
    let instance_id =
        if version >= INSTANCE_ID_VERSION { m.group_instance_id.map(StrBytes::from_string) } else { None };
    DescribedGroupMember::default()
        .with_member_id(StrBytes::from_string(m.member_id))
        .with_group_instance_id(instance_id)
        .with_client_id(StrBytes::from_string(m.client_id))
        .with_client_host(StrBytes::from_string(m.client_host))
        .with_member_metadata(m.metadata)
        .with_member_assignment(m.assignment)
}

/// The answer for one group; `operations` is its `authorized_operations` unless it has an error.
fn described(
    version: i16,
    group_id: GroupId,
    result: Result<GroupDescription, GroupError>,
    operations: i32,
) -> DescribedGroup {
    let group = DescribedGroup::default().with_group_id(group_id).with_authorized_operations(operations);
    match result {
        Ok(d) => group
            .with_group_state(StrBytes::from_static_str(d.state.as_str()))
            .with_protocol_type(StrBytes::from_string(d.protocol_type))
            .with_protocol_data(StrBytes::from_string(d.protocol))
            .with_members(d.members.into_iter().map(|m| member(version, m)).collect()),
        Err(GroupError::GroupIdNotFound) => {
            group.with_group_state(StrBytes::from_static_str(GroupState::Dead.as_str()))
        }
        Err(e) => {
            group.with_error_code(group_error(&e).code()).with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
        }
    }
}

impl Handler for DescribeGroupsHandler {
    type Request = DescribeGroupsRequest;
    type Response = DescribeGroupsResponse;
    const KEY: ApiKey = ApiKey::DescribeGroups;
    const VERSIONS: (i16, i16) = (0, 5);

    async fn handle(
        broker: Arc<Broker>,
        ctx: RequestContext,
        request: DescribeGroupsRequest,
    ) -> Option<DescribeGroupsResponse> {
        let (broker, version) = (&broker, ctx.api_version);
        // Older versions decode `include_authorized_operations` as false.
        let operations = authorized_operations::answer(request.include_authorized_operations, GROUP_OPERATIONS);
        let describes = request.groups.into_iter().map(|group_id| async move {
            let result = broker.groups.describe(broker, group_id.0.as_str().to_string()).await;
            described(version, group_id, result, operations)
        });
        Some(DescribeGroupsResponse::default().with_groups(join_all(describes).await))
    }
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::error::ResponseError;
    use kafka_protocol::protocol::Encodable;

    use super::*;

    fn id() -> GroupId {
        GroupId(StrBytes::from_static_str("g"))
    }

    fn stable() -> GroupDescription {
        GroupDescription {
            group_id: "g".into(),
            state: GroupState::Stable,
            protocol_type: "consumer".into(),
            protocol: "range".into(),
            generation_id: 3,
            members: vec![DescribedMember {
                member_id: "m-1".into(),
                group_instance_id: Some("i-1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                metadata: Bytes::from_static(b"md"),
                assignment: Bytes::from_static(b"as"),
            }],
        }
    }

    #[test]
    fn unknown_group_is_dead_without_error() {
        let g = described(5, id(), Err(GroupError::GroupIdNotFound), GROUP_OPERATIONS);
        assert_eq!((g.error_code, g.group_state.as_str(), g.members.len()), (0, "Dead", 0));
        let g = described(5, id(), Err(GroupError::NotCoordinator), GROUP_OPERATIONS);
        assert_eq!((g.error_code, g.group_state.as_str()), (ResponseError::NotCoordinator.code(), ""));
        assert_eq!(g.authorized_operations, AUTHORIZED_OPERATIONS_OMITTED);
    }

    #[test]
    fn instance_id_only_from_v4() {
        assert_eq!(described(3, id(), Ok(stable()), AUTHORIZED_OPERATIONS_OMITTED).members[0].group_instance_id, None);
        let v4 = described(4, id(), Ok(stable()), AUTHORIZED_OPERATIONS_OMITTED);
        assert_eq!(v4.members[0].group_instance_id.as_ref().map(|s| s.as_str()), Some("i-1"));
        assert_eq!((v4.group_state.as_str(), v4.protocol_data.as_str()), ("Stable", "range"));
    }

    #[test]
    fn every_advertised_version_encodes() {
        for version in DescribeGroupsHandler::VERSIONS.0..=DescribeGroupsHandler::VERSIONS.1 {
            // Only v3+ requests can ask for the operations.
            let operations = if version >= 3 { GROUP_OPERATIONS } else { AUTHORIZED_OPERATIONS_OMITTED };
            let groups = vec![
                described(version, id(), Ok(stable()), operations),
                described(version, id(), Err(GroupError::GroupIdNotFound), AUTHORIZED_OPERATIONS_OMITTED),
                described(version, id(), Err(GroupError::CoordinatorNotAvailable), AUTHORIZED_OPERATIONS_OMITTED),
            ];
            let resp = DescribeGroupsResponse::default().with_groups(groups);
            resp.encode(&mut BytesMut::new(), version).unwrap_or_else(|e| panic!("v{version}: {e}"));
        }
    }
}
