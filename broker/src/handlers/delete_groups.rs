//! DeleteGroups (key 42), versions 0-2: deletes groups and their committed offsets, a result per
//! group. Only Empty groups go (NON_EMPTY_GROUP otherwise, GROUP_ID_NOT_FOUND for unknown ones);
//! each is answered once its tombstones are durable. A name given twice is answered once, as Kafka.

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{ApiKey, DeleteGroupsRequest, DeleteGroupsResponse, GroupId};
use kafka_protocol::protocol::StrBytes;

use super::group_errors::group_error;
use super::{Handler, RequestContext};
use crate::broker::Broker;

pub struct DeleteGroupsHandler;

/// The names of the request without repeats, first occurrence first.
fn distinct(names: Vec<GroupId>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    names.into_iter().map(|g| g.0.as_str().to_string()).filter(|g| seen.insert(g.clone())).collect()
}

impl Handler for DeleteGroupsHandler {
    type Request = DeleteGroupsRequest;
    type Response = DeleteGroupsResponse;
    const KEY: ApiKey = ApiKey::DeleteGroups;
    const VERSIONS: (i16, i16) = (0, 2);

    async fn handle(
        broker: Arc<Broker>,
        _ctx: RequestContext,
        request: DeleteGroupsRequest,
    ) -> Option<DeleteGroupsResponse> {
        let results = broker
            .groups
            .delete_groups(&broker, distinct(request.groups_names))
            .await
            .into_iter()
            .map(|(group_id, result)| {
                DeletableGroupResult::default()
                    .with_group_id(GroupId(StrBytes::from_string(group_id)))
                    .with_error_code(result.err().map_or(0, |e| group_error(&e).code()))
            })
            .collect();
        Some(DeleteGroupsResponse::default().with_results(results))
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::protocol::Encodable;

    use super::*;

    fn id(s: &'static str) -> GroupId {
        GroupId(StrBytes::from_static_str(s))
    }

    #[test]
    fn repeated_names_are_deleted_once() {
        assert_eq!(distinct(vec![id("b"), id("a"), id("b")]), vec!["b".to_string(), "a".to_string()]);
    }

    #[test]
    fn every_advertised_version_encodes() {
        let results = vec![DeletableGroupResult::default().with_group_id(id("g")).with_error_code(68)];
        for version in DeleteGroupsHandler::VERSIONS.0..=DeleteGroupsHandler::VERSIONS.1 {
            let resp = DeleteGroupsResponse::default().with_results(results.clone());
            resp.encode(&mut BytesMut::new(), version).unwrap_or_else(|e| panic!("v{version}: {e}"));
        }
    }
}
