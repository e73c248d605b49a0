//! ConsumerGroupDescribe (key 69), versions 0-1: KIP-848 consumer groups with their epochs,
//! assignor, and each member's subscription, assignment and target assignment (by topic id and
//! name). A classic or unknown group is GROUP_ID_NOT_FOUND, as Kafka; the AdminClient then falls
//! back to DescribeGroups.

use std::sync::Arc;

use futures::future::join_all;
use kafka_protocol::messages::consumer_group_describe_response::{Assignment, DescribedGroup, Member, TopicPartitions};
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, GroupId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_controller::image::MetadataImage;

use super::authorized_operations;
use super::group_errors::group_error;
use super::{Handler, RequestContext};
use crate::broker::Broker;
use crate::coordinator::group::{ConsumerDescribedMember, ConsumerGroupDescription, GroupError, TopicAssignment};

pub struct ConsumerGroupDescribeHandler;

/// First version with `member_type` (KIP-1099); 1 is "consumer".
const MEMBER_TYPE_VERSION: i16 = 1;
const MEMBER_TYPE_CONSUMER: i8 = 1;

impl Handler for ConsumerGroupDescribeHandler {
    type Request = ConsumerGroupDescribeRequest;
    type Response = ConsumerGroupDescribeResponse;
    const KEY: ApiKey = ApiKey::ConsumerGroupDescribe;
    const VERSIONS: (i16, i16) = (0, 1);

    async fn handle(
        broker: Arc<Broker>,
        ctx: RequestContext,
        request: ConsumerGroupDescribeRequest,
    ) -> Option<ConsumerGroupDescribeResponse> {
        let (broker, version) = (&broker, ctx.api_version);
        let operations =
            authorized_operations::answer(request.include_authorized_operations, authorized_operations::GROUP);
        let describes = request.group_ids.into_iter().map(|group_id| async move {
            let id = group_id.0.to_string();
            let result = if id.is_empty() {
                Err(GroupError::InvalidGroupId)
            } else {
                broker.groups.consumer_describe(broker, id).await
            };
            described(&broker.metadata.image(), version, group_id, result, operations)
        });
        Some(ConsumerGroupDescribeResponse::default().with_groups(join_all(describes).await))
    }
}

fn described(
    image: &MetadataImage,
    version: i16,
    group_id: GroupId,
    result: Result<ConsumerGroupDescription, GroupError>,
    operations: i32,
) -> DescribedGroup {
    let group = DescribedGroup::default().with_group_id(group_id.clone());
    match result {
        Ok(d) => group
            .with_group_state(StrBytes::from_static_str(d.state))
            .with_group_epoch(d.group_epoch)
            .with_assignment_epoch(d.assignment_epoch)
            .with_assignor_name(StrBytes::from_string(d.assignor_name))
            .with_members(d.members.into_iter().map(|m| member(image, version, m)).collect())
            .with_authorized_operations(operations),
        Err(e) => {
            let message = match &e {
                GroupError::GroupIdNotFound => format!("Group {} not found.", group_id.0.as_str()),
                other => other.to_string(),
            };
            group.with_error_code(group_error(&e).code()).with_error_message(Some(StrBytes::from_string(message)))
        }
    }
}

fn member(image: &MetadataImage, version: i16, m: ConsumerDescribedMember) -> Member {
    let member_type = if version >= MEMBER_TYPE_VERSION { MEMBER_TYPE_CONSUMER } else { -1 };
    Member::default()
        .with_member_id(StrBytes::from_string(m.member_id))
        .with_instance_id(m.instance_id.map(StrBytes::from_string))
        .with_rack_id(m.rack_id.map(StrBytes::from_string))
        .with_member_epoch(m.member_epoch)
        .with_client_id(StrBytes::from_string(m.client_id))
        .with_client_host(StrBytes::from_string(m.client_host))
        .with_subscribed_topic_names(
            m.subscribed_topic_names.into_iter().map(|t| TopicName(StrBytes::from_string(t))).collect(),
        )
        .with_assignment(assignment(image, m.assignment))
        .with_target_assignment(assignment(image, m.target_assignment))
        .with_member_type(member_type)
}

/// An assignment by topic id and name; a topic deleted since is left out.
fn assignment(image: &MetadataImage, a: TopicAssignment) -> Assignment {
    let topic_partitions = a
        .into_iter()
        .filter_map(|(name, partitions)| {
            let id = *image.topic_ids_by_name.get(&name)?;
            Some(
                TopicPartitions::default()
                    .with_topic_id(id)
                    .with_topic_name(TopicName(StrBytes::from_string(name)))
                    .with_partitions(partitions.into_iter().collect()),
            )
        })
        .collect();
    Assignment::default().with_topic_partitions(topic_partitions)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use bytes::BytesMut;
    use kafka_protocol::protocol::Encodable;
    use sluice_controller::records::MetadataRecord;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn every_advertised_version_encodes() {
        let mut image = MetadataImage::default();
        image.apply(&MetadataRecord::Topic { name: "t".into(), topic_id: Uuid::from_u128(7) });
        let a: TopicAssignment = [("t".to_string(), BTreeSet::from([0, 1]))].into();
        let d = ConsumerGroupDescription {
            group_id: "g".into(),
            state: "Stable",
            group_epoch: 2,
            assignment_epoch: 2,
            assignor_name: "uniform".into(),
            members: vec![ConsumerDescribedMember {
                member_id: "m".into(),
                instance_id: None,
                rack_id: None,
                member_epoch: 2,
                client_id: "c".into(),
                client_host: "/h".into(),
                subscribed_topic_names: vec!["t".into()],
                assignment: a.clone(),
                target_assignment: a,
            }],
        };
        let id = GroupId(StrBytes::from_static_str("g"));
        for version in ConsumerGroupDescribeHandler::VERSIONS.0..=ConsumerGroupDescribeHandler::VERSIONS.1 {
            let groups = vec![
                described(&image, version, id.clone(), Ok(d.clone()), authorized_operations::GROUP),
                described(
                    &image,
                    version,
                    id.clone(),
                    Err(GroupError::GroupIdNotFound),
                    authorized_operations::OMITTED,
                ),
            ];
            assert_eq!(groups[1].error_code, 69);
            let resp = ConsumerGroupDescribeResponse::default().with_groups(groups);
            resp.encode(&mut BytesMut::new(), version).unwrap_or_else(|e| panic!("v{version}: {e}"));
        }
    }
}
