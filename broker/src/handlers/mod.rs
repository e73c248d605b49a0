//! One file per Kafka API, all the same shape, and the registry that dispatches to them.
//!
//! Each handler implements [`Handler`]: its api key, the version range it really serves, and one
//! `handle`. [`REGISTRY`] is the only list of APIs: dispatch reads it and so does the ApiVersions
//! answer, so the two cannot disagree. Handlers turn storage and controller errors into Kafka
//! error codes ([`errors`]); a failure on one partition is that partition's error code.

pub mod alter_configs;
pub mod api_versions;
pub mod authorized_operations;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_quorum;
pub mod describe_topic_partitions;
pub mod errors;
pub mod fetch;
pub mod find_coordinator;
pub mod group_errors;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod new_leaders;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod slots;
pub mod sync_group;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::broker::Broker;
use crate::protocol::codec::{decode_body, encode_response};
use crate::protocol::ProtocolError;

/// What a handler knows about the request besides its body.
#[derive(Debug)]
pub struct RequestContext {
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    /// The peer's address as Kafka prints it (`/127.0.0.1`), for JoinGroup's `client_host`.
    pub client_host: String,
    /// Lets the connection's next request start; see [`OrderGate`].
    pub gate: OrderGate,
}

/// Requests of one connection are processed in order, as Kafka processes them: the next request
/// starts only once this gate opens. It opens when every holder has dropped it (the handler's
/// context, and the connection until the response fits its memory budget), or earlier when a
/// handler says the rest of its work may overlap the next request (Produce, once its appends are
/// done and only durability is awaited).
#[derive(Debug, Clone)]
pub struct OrderGate {
    inner: Arc<GateInner>,
}

#[derive(Debug)]
struct GateInner {
    open: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl OrderGate {
    /// A gate and the receiver the next request waits on.
    pub fn new() -> (Self, tokio::sync::oneshot::Receiver<()>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (Self { inner: Arc::new(GateInner { open: std::sync::Mutex::new(Some(tx)) }) }, rx)
    }

    /// Lets the next request start now.
    pub fn release(&self) {
        self.inner.release();
    }
}

impl GateInner {
    fn release(&self) {
        let sender = self.open.lock().map(|mut g| g.take()).unwrap_or_else(|p| p.into_inner().take());
        if let Some(tx) = sender {
            let _ = tx.send(());
        }
    }
}

impl Drop for GateInner {
    fn drop(&mut self) {
        self.release();
    }
}

/// A Kafka API served by Sluice.
pub trait Handler: 'static {
    type Request: Decodable + Send + 'static;
    type Response: Encodable + Send + 'static;
    const KEY: ApiKey;
    /// The versions this handler really serves (min, max).
    const VERSIONS: (i16, i16);

    /// Answers one request; `None` means no response is sent (Produce with acks=0).
    fn handle(
        broker: Arc<Broker>,
        ctx: RequestContext,
        request: Self::Request,
    ) -> impl Future<Output = Option<Self::Response>> + Send;
}

/// A response frame (or none), or why the connection must close.
pub type CallResult = Result<Option<Bytes>, ProtocolError>;
type CallFuture = Pin<Box<dyn Future<Output = CallResult> + Send>>;

/// One registry row.
pub struct ApiEntry {
    pub key: ApiKey,
    pub min_version: i16,
    pub max_version: i16,
    pub call: fn(Arc<Broker>, RequestContext, Bytes) -> CallFuture,
}

const fn entry<H: Handler>() -> ApiEntry {
    ApiEntry { key: H::KEY, min_version: H::VERSIONS.0, max_version: H::VERSIONS.1, call: call::<H> }
}

fn call<H: Handler>(broker: Arc<Broker>, ctx: RequestContext, body: Bytes) -> CallFuture {
    Box::pin(async move {
        let request = decode_body::<H::Request>(body, ctx.api_version)?;
        let version = ctx.api_version;
        let correlation_id = ctx.correlation_id;
        let Some(response) = H::handle(broker, ctx, request).await else { return Ok(None) };
        let header_version = H::KEY.response_header_version(version);
        encode_response(correlation_id, header_version, &response, version).map(Some)
    })
}

/// Every API Sluice serves. ApiVersions answers from this list.
pub const REGISTRY: &[ApiEntry] = &[
    entry::<api_versions::ApiVersionsHandler>(),
    entry::<metadata::MetadataHandler>(),
    entry::<produce::ProduceHandler>(),
    entry::<fetch::FetchHandler>(),
    entry::<list_offsets::ListOffsetsHandler>(),
    entry::<offset_for_leader_epoch::OffsetForLeaderEpochHandler>(),
    entry::<offset_commit::OffsetCommitHandler>(),
    entry::<offset_fetch::OffsetFetchHandler>(),
    entry::<find_coordinator::FindCoordinatorHandler>(),
    entry::<join_group::JoinGroupHandler>(),
    entry::<heartbeat::HeartbeatHandler>(),
    entry::<leave_group::LeaveGroupHandler>(),
    entry::<sync_group::SyncGroupHandler>(),
    entry::<create_topics::CreateTopicsHandler>(),
    entry::<delete_topics::DeleteTopicsHandler>(),
    entry::<init_producer_id::InitProducerIdHandler>(),
    entry::<describe_configs::DescribeConfigsHandler>(),
    entry::<alter_configs::AlterConfigsHandler>(),
    entry::<create_partitions::CreatePartitionsHandler>(),
    entry::<incremental_alter_configs::IncrementalAlterConfigsHandler>(),
    entry::<describe_cluster::DescribeClusterHandler>(),
    entry::<describe_groups::DescribeGroupsHandler>(),
    entry::<list_groups::ListGroupsHandler>(),
    entry::<delete_groups::DeleteGroupsHandler>(),
    entry::<offset_delete::OffsetDeleteHandler>(),
    entry::<describe_topic_partitions::DescribeTopicPartitionsHandler>(),
    entry::<consumer_group_heartbeat::ConsumerGroupHeartbeatHandler>(),
    entry::<consumer_group_describe::ConsumerGroupDescribeHandler>(),
    entry::<describe_quorum::DescribeQuorumHandler>(),
];

/// The registry row for `key`, if Sluice serves it.
pub fn lookup(key: ApiKey) -> Option<&'static ApiEntry> {
    REGISTRY.iter().find(|e| e.key == key)
}

/// Whether Sluice serves `key` at `version`.
pub fn is_supported(key: ApiKey, version: i16) -> bool {
    lookup(key).is_some_and(|e| (e.min_version..=e.max_version).contains(&version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_is_within_what_the_codec_can_encode() {
        for e in REGISTRY {
            let codec = e.key.valid_versions();
            assert!(e.min_version >= codec.min && e.max_version <= codec.max, "{:?}", e.key);
            assert!(e.min_version <= e.max_version);
        }
        let mut keys: Vec<i16> = REGISTRY.iter().map(|e| e.key as i16).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), REGISTRY.len(), "an api key is registered twice");
    }
}
