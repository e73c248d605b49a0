//! The controller's service to brokers and to other controllers' clients: admin operations
//! (validated and committed by the active controller; other nodes forward them there), broker
//! registration and heartbeats, metadata following for broker-only nodes, and the quorum status.
//!
//! Requests and answers travel as JSON in the application frames of [`crate::raft::network`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ControllerError;
use crate::image::MetadataImage;
use crate::ops::cluster::{
    fence_broker, heartbeat, register_broker, BrokerHeartbeat, BrokerRegistration, HeartbeatReply,
};
use crate::ops::configs::{alter_topic_configs, incremental_alter_topic_configs, AlterOp};
use crate::ops::partitions::{alter_partition, AlterPartitionRequest, PartitionState};
use crate::ops::producer_ids::{allocate_producer_ids, ProducerIdBlock};
use crate::ops::topics::{create_partitions, create_topic, delete_topic, CreateTopicSpec, CreatedTopic, TopicDefaults};
use crate::ops::OpResult;
use crate::records::MetadataRecord;

/// One partition-count change for CreatePartitions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionGrowth {
    pub topic: String,
    pub count: i32,
    pub assignments: Option<Vec<Vec<i32>>>,
}

/// A metadata-changing operation; only the active controller runs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AdminOp {
    CreateTopics {
        specs: Vec<CreateTopicSpec>,
        validate_only: bool,
    },
    DeleteTopics {
        names: Vec<String>,
    },
    CreatePartitions {
        growths: Vec<PartitionGrowth>,
        validate_only: bool,
    },
    AlterConfigs {
        changes: Vec<(String, BTreeMap<String, String>)>,
        validate_only: bool,
    },
    IncrementalAlterConfigs {
        changes: Vec<(String, Vec<(String, AlterOp)>)>,
        validate_only: bool,
    },
    AllocateProducerIds {
        broker_id: i32,
    },
    RegisterBroker(BrokerRegistration),
    Heartbeat(BrokerHeartbeat),
    /// A partition leader's ISR change.
    AlterPartition(AlterPartitionRequest),
    /// Internal: the active controller fences brokers whose sessions expired.
    FenceBrokers {
        node_ids: Vec<i32>,
    },
    /// Internal: the first active controller names the cluster.
    SetClusterId {
        cluster_id: String,
    },
}

/// What an [`AdminOp`] answers, per item where the request had several.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AdminReply {
    CreateTopics(Vec<Result<CreatedTopic, ControllerError>>),
    DeleteTopics(Vec<Result<Uuid, ControllerError>>),
    PerItem(Vec<Result<(), ControllerError>>),
    ProducerIds(Result<ProducerIdBlock, ControllerError>),
    Heartbeat(HeartbeatReply),
    Partition(Result<PartitionState, ControllerError>),
    Done,
}

/// A request on the controller listener's application channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerRequest {
    Admin(AdminOp),
    /// Long poll for metadata: the whole image once it is past `after_count`, or nothing after
    /// `wait_ms`.
    FetchImage {
        after_count: u64,
        wait_ms: u64,
    },
    DescribeQuorum,
}

/// The answers to [`ControllerRequest`]s.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerResponse {
    Admin(Result<AdminReply, ControllerError>),
    /// An encoded image ([`MetadataImage::encode_snapshot`]), or `None` when nothing changed.
    Image(Option<Vec<u8>>),
    Quorum(QuorumStatus),
    Error(String),
}

/// The quorum as one controller sees it (Kafka's DescribeQuorum).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumStatus {
    pub node_id: i32,
    pub leader_id: Option<i32>,
    pub term: u64,
    /// This node's last log index and committed index (`None` when empty).
    pub last_log_index: Option<u64>,
    pub committed_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub voters: Vec<VoterStatus>,
    /// How many metadata records the image holds.
    pub metadata_records: u64,
}

/// One voter's replication state, as known to the leader (only the leader knows the others').
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoterStatus {
    pub node_id: i32,
    pub address: String,
    /// The highest log index known to be on this voter (leader's view).
    pub matched_index: Option<u64>,
}

/// Runs `op` against each item, validating each against a scratch image that already holds the
/// records of the items before it (so a name given twice in one request fails the second time).
fn per_item<I, T>(
    image: &MetadataImage,
    items: &[I],
    op: impl Fn(&MetadataImage, &I) -> Result<OpResult<T>, ControllerError>,
) -> (Vec<MetadataRecord>, Vec<Result<T, ControllerError>>) {
    let mut scratch = image.clone();
    let mut records = Vec::new();
    let results = items
        .iter()
        .map(|item| {
            op(&scratch, item).map(|r| {
                for record in &r.records {
                    scratch.apply(record);
                }
                records.extend(r.records);
                r.response
            })
        })
        .collect();
    (records, results)
}

/// Validates `op` against `image`: the records to commit and the reply to give once they have.
/// Pure: the caller commits the records (or discards them for `validate_only`).
pub fn plan(op: &AdminOp, image: &MetadataImage, defaults: TopicDefaults) -> (Vec<MetadataRecord>, AdminReply) {
    let keep = |validate_only: bool, records: Vec<MetadataRecord>| if validate_only { Vec::new() } else { records };
    match op {
        AdminOp::CreateTopics { specs, validate_only } => {
            let (records, results) = per_item(image, specs, |image, spec| create_topic(image, spec, defaults));
            (keep(*validate_only, records), AdminReply::CreateTopics(results))
        }
        AdminOp::DeleteTopics { names } => {
            let (records, results) = per_item(image, names, |image, name| delete_topic(image, name));
            (records, AdminReply::DeleteTopics(results))
        }
        AdminOp::CreatePartitions { growths, validate_only } => {
            let (records, results) =
                per_item(image, growths, |image, g| create_partitions(image, &g.topic, g.count, g.assignments.clone()));
            (keep(*validate_only, records), AdminReply::PerItem(results))
        }
        AdminOp::AlterConfigs { changes, validate_only } => {
            let (records, results) =
                per_item(image, changes, |image, (topic, configs)| alter_topic_configs(image, topic, configs));
            (keep(*validate_only, records), AdminReply::PerItem(results))
        }
        AdminOp::IncrementalAlterConfigs { changes, validate_only } => {
            let (records, results) =
                per_item(image, changes, |image, (topic, ops)| incremental_alter_topic_configs(image, topic, ops));
            (keep(*validate_only, records), AdminReply::PerItem(results))
        }
        AdminOp::AllocateProducerIds { broker_id } => match allocate_producer_ids(image, *broker_id) {
            Ok(r) => (r.records, AdminReply::ProducerIds(Ok(r.response))),
            Err(e) => (Vec::new(), AdminReply::ProducerIds(Err(e))),
        },
        AdminOp::RegisterBroker(registration) => (register_broker(image, registration).records, AdminReply::Done),
        AdminOp::Heartbeat(hb) => {
            let r = heartbeat(image, hb);
            (r.records, AdminReply::Heartbeat(r.response))
        }
        AdminOp::AlterPartition(request) => match alter_partition(image, request) {
            Ok(r) => (r.records, AdminReply::Partition(Ok(r.response))),
            Err(e) => (Vec::new(), AdminReply::Partition(Err(e))),
        },
        AdminOp::FenceBrokers { node_ids } => {
            let mut scratch = image.clone();
            let mut records = Vec::new();
            for id in node_ids {
                let fenced = fence_broker(&scratch, *id);
                for r in &fenced {
                    scratch.apply(r);
                }
                records.extend(fenced);
            }
            (records, AdminReply::Done)
        }
        AdminOp::SetClusterId { cluster_id } => {
            let records = if image.cluster_id.is_none() {
                vec![MetadataRecord::ClusterId { cluster_id: cluster_id.clone() }]
            } else {
                Vec::new()
            };
            (records, AdminReply::Done)
        }
    }
}
