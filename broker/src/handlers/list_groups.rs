//! ListGroups (key 16), versions 0-5: the groups of every coordinator partition this broker
//! leads, optionally filtered by state (v4+) and type (v5+), with each group's state (v4+) and
//! type (v5+).
//!
//! A coordinator partition is loaded on first use, so after a restart some would be missing from
//! the list; the handler first loads every partition of the offsets topic led here (it does not
//! create the topic: with no offsets topic there are no groups).

use std::sync::Arc;

use kafka_protocol::messages::list_groups_response::ListedGroup as WireGroup;
use kafka_protocol::messages::{ApiKey, GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{Handler, RequestContext};
use crate::broker::Broker;
use crate::coordinator::group::ListedGroup;

pub struct ListGroupsHandler;

/// First version whose groups carry their state (and whose request filters by state).
const STATE_VERSION: i16 = 4;
/// First version whose groups carry their type (and whose request filters by type).
const TYPE_VERSION: i16 = 5;

fn listed(version: i16, g: ListedGroup) -> WireGroup {
    let mut wire = WireGroup::default()
        .with_group_id(GroupId(StrBytes::from_string(g.group_id)))
        .with_protocol_type(StrBytes::from_string(g.protocol_type));
    if version >= STATE_VERSION {
        wire = wire.with_group_state(StrBytes::from_static_str(g.state));
    }
    if version >= TYPE_VERSION {
        wire = wire.with_group_type(StrBytes::from_static_str(g.group_type));
    }
    wire
}

fn strings(list: Vec<StrBytes>) -> Vec<String> {
    list.into_iter().map(|s| s.as_str().to_string()).collect()
}

impl Handler for ListGroupsHandler {
    type Request = ListGroupsRequest;
    type Response = ListGroupsResponse;
    const KEY: ApiKey = ApiKey::ListGroups;
    const VERSIONS: (i16, i16) = (0, 5);

    async fn handle(
        broker: Arc<Broker>,
        ctx: RequestContext,
        request: ListGroupsRequest,
    ) -> Option<ListGroupsResponse> {
        broker.groups.load_all(&broker).await;
        // Older versions decode the filters as empty lists, which filter nothing.
        let mut groups = broker.groups.list(strings(request.states_filter), strings(request.types_filter)).await;
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        let groups = groups.into_iter().map(|g| listed(ctx.api_version, g)).collect();
        Some(ListGroupsResponse::default().with_groups(groups))
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::protocol::Encodable;

    use super::*;
    use crate::coordinator::group::GROUP_TYPE_CLASSIC;

    fn group() -> ListedGroup {
        ListedGroup {
            group_id: "g".into(),
            protocol_type: "consumer".into(),
            state: "Stable",
            group_type: GROUP_TYPE_CLASSIC,
        }
    }

    #[test]
    fn state_and_type_only_where_the_version_has_them() {
        let v3 = listed(3, group());
        assert_eq!((v3.group_state.as_str(), v3.group_type.as_str()), ("", ""));
        let v4 = listed(4, group());
        assert_eq!((v4.group_state.as_str(), v4.group_type.as_str()), ("Stable", ""));
        let v5 = listed(5, group());
        assert_eq!((v5.group_state.as_str(), v5.group_type.as_str()), ("Stable", "classic"));
    }

    #[test]
    fn every_advertised_version_encodes() {
        for version in ListGroupsHandler::VERSIONS.0..=ListGroupsHandler::VERSIONS.1 {
            let resp = ListGroupsResponse::default().with_groups(vec![listed(version, group())]);
            resp.encode(&mut BytesMut::new(), version).unwrap_or_else(|e| panic!("v{version}: {e}"));
        }
    }
}
