//! DescribeQuorum (key 55), versions 0-2: the metadata quorum's leader, term and every voter's
//! progress, as Kafka's `kafka-metadata-quorum describe --status` shows it. A broker forwards the
//! question to the active controller, which alone knows how far each voter has replicated. Log
//! offsets are Raft log indexes plus one (the log end offset of a voter that holds entry `i` is
//! `i + 1`); fetch timestamps are not tracked (-1).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_quorum_response::{Listener, Node, PartitionData, ReplicaState, TopicData};
use kafka_protocol::messages::{ApiKey, BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_controller::rpc::QuorumStatus;

use super::{Handler, RequestContext};
use crate::broker::Broker;

/// The metadata log's name in Kafka.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

pub struct DescribeQuorumHandler;

fn offset(index: Option<u64>) -> i64 {
    index.and_then(|i| i64::try_from(i + 1).ok()).unwrap_or(-1)
}

fn partition_data(status: &QuorumStatus) -> PartitionData {
    let voters = status
        .voters
        .iter()
        .map(|v| {
            ReplicaState::default()
                .with_replica_id(BrokerId(v.node_id))
                .with_log_end_offset(offset(v.matched_index))
                .with_last_fetch_timestamp(-1)
                .with_last_caught_up_timestamp(-1)
        })
        .collect();
    PartitionData::default()
        .with_partition_index(0)
        .with_leader_id(BrokerId(status.leader_id.unwrap_or(-1)))
        .with_leader_epoch(i32::try_from(status.term).unwrap_or(i32::MAX))
        .with_high_watermark(offset(status.applied_index))
        .with_current_voters(voters)
}

fn nodes(status: &QuorumStatus) -> Vec<Node> {
    status
        .voters
        .iter()
        .filter_map(|v| {
            let (host, port) = v.address.rsplit_once(':')?;
            let listener = Listener::default()
                .with_name(StrBytes::from_static_str("CONTROLLER"))
                .with_host(StrBytes::from_string(host.to_string()))
                .with_port(port.parse().ok()?);
            Some(Node::default().with_node_id(BrokerId(v.node_id)).with_listeners(vec![listener]))
        })
        .collect()
}

impl Handler for DescribeQuorumHandler {
    type Request = DescribeQuorumRequest;
    type Response = DescribeQuorumResponse;
    const KEY: ApiKey = ApiKey::DescribeQuorum;
    const VERSIONS: (i16, i16) = (0, 2);

    async fn handle(
        broker: Arc<Broker>,
        ctx: RequestContext,
        request: DescribeQuorumRequest,
    ) -> Option<DescribeQuorumResponse> {
        let status = broker.controller.describe_quorum().await;
        let topics = request
            .topics
            .iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        if t.topic_name.as_str() == METADATA_TOPIC && p.partition_index == 0 {
                            partition_data(&status)
                        } else {
                            PartitionData::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        }
                    })
                    .collect();
                TopicData::default().with_topic_name(t.topic_name.clone()).with_partitions(partitions)
            })
            .collect();
        // The voters' endpoints exist from version 2 on.
        let nodes = if ctx.api_version >= 2 { nodes(&status) } else { Vec::new() };
        Some(DescribeQuorumResponse::default().with_topics(topics).with_nodes(nodes))
    }
}

/// The request `sluice describe-quorum` sends.
pub fn status_request() -> DescribeQuorumRequest {
    let partition = kafka_protocol::messages::describe_quorum_request::PartitionData::default().with_partition_index(0);
    let topic = kafka_protocol::messages::describe_quorum_request::TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
        .with_partitions(vec![partition]);
    DescribeQuorumRequest::default().with_topics(vec![topic])
}
