//! The controller: the quorum's client API for the broker, and the active controller's write path.
//!
//! Every mutating call follows Kafka's QuorumController shape: the active controller (the Raft
//! leader), holding its write lock, makes sure its image holds everything committed
//! (`ensure_linearizable`), validates the operation against that image, proposes the records as
//! one [`Command`] conditioned on the image's record count, and answers only once the command has
//! committed and applied. A node that is not the active controller forwards the operation to the
//! one that is over the controller RPC, so a Kafka client never sees NOT_CONTROLLER.
//!
//! Soft state stays out of the log: broker sessions (last heartbeat times) live in memory on the
//! active controller, which fences brokers whose sessions expire. A new active controller starts
//! every session afresh.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::BasicNode;
use tokio::sync::{watch, Mutex};
use tokio_util::sync::CancellationToken;

use crate::error::ControllerError;
use crate::image::MetadataImage;
use crate::ops::cluster::{BrokerHeartbeat, BrokerRegistration, HeartbeatReply};
use crate::ops::configs::AlterOp;
use crate::ops::partitions::{AlterPartitionRequest, PartitionState};
use crate::ops::producer_ids::ProducerIdBlock;
use crate::ops::topics::{CreateTopicSpec, CreatedTopic, TopicDefaults};
use crate::raft::election::SplitVotes;
use crate::raft::network::{serve, AppHandler, RpcClient};
use crate::raft::{Command, CommandResult, Raft, TypeConfig};
use crate::rpc::{plan, AdminOp, AdminReply, ControllerRequest, ControllerResponse, QuorumStatus, VoterStatus};

pub use crate::rpc::PartitionGrowth;

/// Timeouts of the quorum and of broker sessions (Kafka's names in the docs of each field).
#[derive(Debug, Clone, Copy)]
pub struct QuorumTiming {
    /// `controller.quorum.election.timeout.ms`: a follower that hears no leader for a random time
    /// between this and twice this starts an election. The leader heartbeats every fifth of it.
    pub election_timeout: Duration,
    /// `broker.session.timeout.ms`: a broker silent this long is fenced.
    pub broker_session_timeout: Duration,
    /// How long a forwarded operation may wait for an active controller.
    pub request_timeout: Duration,
}

impl Default for QuorumTiming {
    fn default() -> Self {
        Self {
            election_timeout: Duration::from_millis(1000),
            broker_session_timeout: Duration::from_millis(9000),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// What the controller needs to know at start.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub node_id: i32,
    /// Directory holding the Raft log and snapshots (`<log.dirs>/__cluster_metadata-0`).
    pub metadata_dir: PathBuf,
    pub defaults: TopicDefaults,
    /// Whether this node is a voter of the quorum (`process.roles` includes `controller`).
    pub is_voter: bool,
    /// `controller.quorum.voters`: node id -> `host:port` of its controller listener. Empty: this
    /// node is the whole quorum.
    pub voters: BTreeMap<i32, String>,
    pub timing: QuorumTiming,
    /// The cluster id the first active controller writes when the metadata has none.
    pub proposed_cluster_id: String,
}

/// A node's handle on the metadata quorum: its Raft node when it is a voter, the published image,
/// and the way to the active controller.
pub struct Controller {
    node_id: i32,
    raft: Option<Raft>,
    images: watch::Receiver<Arc<MetadataImage>>,
    voters: BTreeMap<i32, String>,
    rpc: RpcClient,
    write_lock: Mutex<()>,
    defaults: TopicDefaults,
    timing: QuorumTiming,
    /// Broker sessions, kept by the active controller: node id -> last heartbeat.
    sessions: std::sync::Mutex<BTreeMap<i32, Instant>>,
    /// The voter a broker-only node last reached (it tries the others when that fails).
    preferred_voter: std::sync::atomic::AtomicUsize,
    shutdown: CancellationToken,
}

/// The Raft configuration every controller runs with, derived from its quorum timing. Public so
/// that the simulation test (`tests/simulation.rs`) runs the quorum exactly as production does.
///
/// # Errors
/// When the derived timeouts are inconsistent (openraft's own validation).
pub fn raft_config(timing: &QuorumTiming) -> Result<openraft::Config, ControllerError> {
    let election = u64::try_from(timing.election_timeout.as_millis()).unwrap_or(1000).max(50);
    openraft::Config {
        cluster_name: "sluice-metadata".into(),
        heartbeat_interval: (election / 5).max(10),
        election_timeout_min: election,
        election_timeout_max: election * 2,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(5000),
        max_in_snapshot_log_to_keep: 1000,
        // Snapshot chunks travel as JSON (a byte becomes up to four characters): keep them small.
        // While a chunk is in flight the leader sends that follower no heartbeat, so a lost chunk
        // must be retried before the follower's election timer (at least `election`) runs out;
        // otherwise the follower campaigns and deposes a healthy leader.
        snapshot_max_chunk_size: 512 * 1024,
        install_snapshot_timeout: (election * 3 / 4).max(10),
        ..Default::default()
    }
    .validate()
    .map_err(|e| ControllerError::InvalidRequest(format!("raft config: {e}")))
}

impl Controller {
    /// Starts this node's part of the quorum: the Raft node and the controller listener when it is
    /// a voter (initializing the quorum on first start), a metadata follower otherwise.
    ///
    /// # Errors
    /// When the metadata store cannot be opened or Raft cannot start.
    pub async fn start(
        config: ControllerConfig,
        listener: Option<tokio::net::TcpListener>,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, ControllerError> {
        let mut voters = config.voters.clone();
        if voters.is_empty() {
            let addr = match &listener {
                Some(l) => l.local_addr().map(|a| a.to_string()).unwrap_or_default(),
                None => String::new(),
            };
            voters.insert(config.node_id, addr);
        }
        let split_votes = SplitVotes::new();
        let rpc = RpcClient::new()
            .with_local_id(u64::try_from(config.node_id).unwrap_or_default())
            .with_split_votes(split_votes.clone());
        let mut follower_tx = None;
        let (raft, images) = if config.is_voter {
            let dir = config.metadata_dir.join("raft");
            let store = tokio::task::spawn_blocking(move || crate::raft::store::open(&dir))
                .await
                .map_err(|e| ControllerError::Storage(format!("open task: {e}")))??;
            let node_id = u64::try_from(config.node_id)
                .map_err(|_| ControllerError::InvalidRequest("node.id must not be negative".into()))?;
            let raft_config = Arc::new(raft_config(&config.timing)?);
            let raft = Raft::new(node_id, raft_config.clone(), rpc.clone(), store.log, store.state_machine)
                .await
                .map_err(|e| ControllerError::Storage(format!("raft start: {e}")))?;
            let delays = SplitVotes::delays_for(Duration::from_millis(raft_config.election_timeout_min));
            tokio::spawn(split_votes.break_ties(raft.clone(), delays, shutdown.clone()));
            let members: BTreeMap<u64, BasicNode> = voters
                .iter()
                .filter_map(|(id, addr)| Some((u64::try_from(*id).ok()?, BasicNode { addr: addr.clone() })))
                .collect();
            if !members.contains_key(&node_id) {
                return Err(ControllerError::InvalidRequest(format!(
                    "node.id {node_id} is a controller but not in controller.quorum.voters"
                )));
            }
            if !raft.is_initialized().await.map_err(|e| ControllerError::Storage(e.to_string()))? {
                // Every voter initializes with the same membership; Raft lets only one of them win.
                if let Err(e) = raft.initialize(members.clone()).await {
                    tracing::debug!(error = %e, "quorum already initialized");
                }
            } else if members.len() == 1 {
                // A lone voter need not wait out an election timeout after a restart.
                let _ = raft.trigger().elect().await;
            }
            (Some(raft), store.images)
        } else {
            let (tx, rx) = watch::channel(Arc::new(MetadataImage::default()));
            follower_tx = Some(tx);
            (None, rx)
        };
        let controller = Arc::new(Self {
            node_id: config.node_id,
            raft,
            images,
            voters,
            rpc,
            write_lock: Mutex::new(()),
            defaults: config.defaults,
            timing: config.timing,
            sessions: std::sync::Mutex::new(BTreeMap::new()),
            preferred_voter: std::sync::atomic::AtomicUsize::new(0),
            shutdown: shutdown.clone(),
        });
        if let (Some(raft), Some(listener)) = (&controller.raft, listener) {
            let service: Arc<dyn AppHandler> = Arc::new(Service { controller: Arc::downgrade(&controller) });
            tokio::spawn(serve(listener, raft.clone(), service, shutdown.clone()));
        }
        match follower_tx {
            None => {
                tokio::spawn(active_controller_duties(Arc::downgrade(&controller), config.proposed_cluster_id));
            }
            Some(tx) => {
                tokio::spawn(follow_metadata(Arc::downgrade(&controller), tx, shutdown));
            }
        }
        Ok(controller)
    }

    /// Stops the Raft node (if any) after the shutdown token was cancelled.
    pub async fn stop(&self) {
        self.shutdown.cancel();
        if let Some(raft) = &self.raft {
            let _ = raft.shutdown().await;
        }
    }

    /// The newest committed image this node has.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.images.borrow().clone()
    }

    /// A receiver that sees every newly published image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.images.clone()
    }

    /// This node's id.
    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// The active controller's id, as far as this node knows.
    pub fn active_controller(&self) -> Option<i32> {
        let raft = self.raft.as_ref()?;
        raft.metrics().borrow().current_leader.and_then(|id| i32::try_from(id).ok())
    }

    fn is_active(&self) -> bool {
        self.active_controller() == Some(self.node_id)
    }

    /// Runs `op` on the active controller, wherever it is, retrying across elections until the
    /// request timeout.
    async fn submit(&self, op: AdminOp) -> Result<AdminReply, ControllerError> {
        let deadline = Instant::now() + self.timing.request_timeout;
        let mut last_failure = String::from("no controller answered");
        loop {
            if self.is_active() {
                match self.execute(&op).await {
                    Err(ControllerError::NotController) => {}
                    other => return other,
                }
            } else {
                let remaining = deadline.saturating_duration_since(Instant::now()).min(Duration::from_secs(10));
                let request = ControllerRequest::Admin(op.clone());
                match self.call_controller(request, remaining).await {
                    Ok(ControllerResponse::Admin(Err(ControllerError::NotController))) => {}
                    Ok(ControllerResponse::Admin(result)) => return result,
                    Ok(other) => last_failure = format!("unexpected answer {other:?}"),
                    Err(e) => last_failure = e,
                }
            }
            if Instant::now() >= deadline || self.shutdown.is_cancelled() {
                return Err(ControllerError::Unavailable(last_failure));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends a request to the active controller (as this node knows it) or, not knowing one, to
    /// the next voter in turn.
    async fn call_controller(
        &self,
        request: ControllerRequest,
        timeout: Duration,
    ) -> Result<ControllerResponse, String> {
        let addrs: Vec<(&i32, &String)> = self.voters.iter().collect();
        let target = match self.active_controller() {
            Some(id) => self.voters.get(&id).cloned(),
            None if self.raft.is_some() => None,
            None => {
                let i = self.preferred_voter.load(std::sync::atomic::Ordering::Relaxed) % addrs.len().max(1);
                addrs.get(i).map(|(_, a)| (*a).clone())
            }
        };
        let Some(addr) = target else { return Err("no active controller elected".into()) };
        let value = serde_json::to_value(&request).map_err(|e| e.to_string())?;
        let answer = self.rpc.call_app(&addr, value, timeout).await;
        let answer = answer.and_then(|v| {
            serde_json::from_value::<ControllerResponse>(v)
                .map_err(|e| crate::raft::network::RpcFailure::Remote(e.to_string()))
        });
        match answer {
            Ok(ControllerResponse::Admin(Err(ControllerError::NotController))) if self.raft.is_none() => {
                self.preferred_voter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(ControllerResponse::Admin(Err(ControllerError::NotController)))
            }
            Ok(r) => Ok(r),
            Err(e) => {
                self.preferred_voter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(format!("controller at {addr}: {e}"))
            }
        }
    }

    /// Runs `op` here, as the active controller: validate against a linearizable image, commit,
    /// answer. `NotController` when this node is not (or stops being) the leader.
    async fn execute(&self, op: &AdminOp) -> Result<AdminReply, ControllerError> {
        let Some(raft) = &self.raft else { return Err(ControllerError::NotController) };
        if let AdminOp::Heartbeat(hb) = op {
            self.touch_session(hb.node_id);
        }
        if let AdminOp::RegisterBroker(reg) = op {
            self.touch_session(reg.node_id);
        }
        let _guard = self.write_lock.lock().await;
        for _ in 0..16 {
            raft.ensure_linearizable().await.map_err(|_| ControllerError::NotController)?;
            let image = self.image();
            let (records, reply) = plan(op, &image, self.defaults);
            if records.is_empty() {
                return Ok(reply);
            }
            let command = Command { expected_count: Some(image.applied_count), records };
            match raft.client_write(command).await {
                Ok(written) => match written.data {
                    CommandResult::Applied { .. } => return Ok(reply),
                    CommandResult::Conflict { applied_count } => {
                        tracing::debug!(
                            expected = image.applied_count,
                            applied_count,
                            "metadata write conflict; retrying"
                        );
                    }
                },
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                    return Err(ControllerError::NotController)
                }
                Err(e) => return Err(ControllerError::Storage(e.to_string())),
            }
        }
        Err(ControllerError::Unavailable("metadata kept changing under the operation".into()))
    }

    fn touch_session(&self, node_id: i32) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.insert(node_id, Instant::now());
        }
    }

    /// What this node knows of the quorum (the leader's view has every voter's progress).
    pub fn quorum_status(&self) -> QuorumStatus {
        let image = self.image();
        let Some(raft) = &self.raft else {
            return QuorumStatus { node_id: self.node_id, metadata_records: image.applied_count, ..Default::default() };
        };
        let m = raft.metrics().borrow().clone();
        let voters = self
            .voters
            .iter()
            .map(|(id, addr)| {
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&u64::try_from(*id).unwrap_or_default()).and_then(|l| l.map(|l| l.index)));
                let matched =
                    if *id == self.node_id && m.current_leader == Some(m.id) { m.last_log_index } else { matched };
                VoterStatus { node_id: *id, address: addr.clone(), matched_index: matched }
            })
            .collect();
        QuorumStatus {
            node_id: self.node_id,
            leader_id: m.current_leader.and_then(|l| i32::try_from(l).ok()),
            term: m.current_term,
            last_log_index: m.last_log_index,
            committed_index: None,
            applied_index: m.last_applied.map(|l| l.index),
            voters,
            metadata_records: image.applied_count,
        }
    }

    /// The quorum's status from the active controller (or this node's view when none answers).
    pub async fn describe_quorum(&self) -> QuorumStatus {
        if self.is_active() || self.raft.is_some() && self.active_controller().is_none() {
            return self.quorum_status();
        }
        match self.call_controller(ControllerRequest::DescribeQuorum, Duration::from_secs(5)).await {
            Ok(ControllerResponse::Quorum(status)) => status,
            _ => self.quorum_status(),
        }
    }

    /// Creates topics; each gets its own result, in request order.
    pub async fn create_topics(
        &self,
        specs: &[CreateTopicSpec],
        validate_only: bool,
    ) -> Vec<Result<CreatedTopic, ControllerError>> {
        let op = AdminOp::CreateTopics { specs: specs.to_vec(), validate_only };
        match self.submit(op).await {
            Ok(AdminReply::CreateTopics(results)) if results.len() == specs.len() => results,
            other => vec![Err(failure(other)); specs.len()],
        }
    }

    /// Deletes topics by name.
    pub async fn delete_topics(&self, names: &[String]) -> Vec<Result<uuid::Uuid, ControllerError>> {
        match self.submit(AdminOp::DeleteTopics { names: names.to_vec() }).await {
            Ok(AdminReply::DeleteTopics(results)) if results.len() == names.len() => results,
            other => vec![Err(failure(other)); names.len()],
        }
    }

    async fn per_item(&self, op: AdminOp, count: usize) -> Vec<Result<(), ControllerError>> {
        match self.submit(op).await {
            Ok(AdminReply::PerItem(results)) if results.len() == count => results,
            other => vec![Err(failure(other)); count],
        }
    }

    /// Grows topics' partition counts.
    pub async fn create_partitions(
        &self,
        growths: &[PartitionGrowth],
        validate_only: bool,
    ) -> Vec<Result<(), ControllerError>> {
        self.per_item(AdminOp::CreatePartitions { growths: growths.to_vec(), validate_only }, growths.len()).await
    }

    /// Replaces topics' config overrides (AlterConfigs).
    pub async fn alter_topic_configs(
        &self,
        changes: &[(String, BTreeMap<String, String>)],
        validate_only: bool,
    ) -> Vec<Result<(), ControllerError>> {
        self.per_item(AdminOp::AlterConfigs { changes: changes.to_vec(), validate_only }, changes.len()).await
    }

    /// Edits topics' config overrides (IncrementalAlterConfigs).
    pub async fn incremental_alter_topic_configs(
        &self,
        changes: &[(String, Vec<(String, AlterOp)>)],
        validate_only: bool,
    ) -> Vec<Result<(), ControllerError>> {
        self.per_item(AdminOp::IncrementalAlterConfigs { changes: changes.to_vec(), validate_only }, changes.len())
            .await
    }

    /// Hands `broker_id` a fresh block of producer ids.
    ///
    /// # Errors
    /// When the id space is exhausted or no active controller committed the block.
    pub async fn allocate_producer_ids(&self, broker_id: i32) -> Result<ProducerIdBlock, ControllerError> {
        match self.submit(AdminOp::AllocateProducerIds { broker_id }).await? {
            AdminReply::ProducerIds(result) => result,
            other => Err(failure(Ok(other))),
        }
    }

    /// Registers a broker incarnation (it starts fenced).
    ///
    /// # Errors
    /// When no active controller committed the registration.
    pub async fn register_broker(&self, registration: BrokerRegistration) -> Result<(), ControllerError> {
        self.submit(AdminOp::RegisterBroker(registration)).await.map(|_| ())
    }

    /// Asks the active controller for a new ISR of a partition this broker leads.
    ///
    /// # Errors
    /// The controller's refusal (see [`crate::ops::partitions::alter_partition`]), or no active
    /// controller answered.
    pub async fn alter_partition(&self, request: AlterPartitionRequest) -> Result<PartitionState, ControllerError> {
        match self.submit(AdminOp::AlterPartition(request)).await? {
            AdminReply::Partition(result) => result,
            other => Err(failure(Ok(other))),
        }
    }

    /// Sends a broker heartbeat to the active controller.
    ///
    /// # Errors
    /// When no active controller answered.
    pub async fn broker_heartbeat(&self, heartbeat: BrokerHeartbeat) -> Result<HeartbeatReply, ControllerError> {
        match self.submit(AdminOp::Heartbeat(heartbeat)).await? {
            AdminReply::Heartbeat(reply) => Ok(reply),
            other => Err(failure(Ok(other))),
        }
    }
}

fn failure(outcome: Result<AdminReply, ControllerError>) -> ControllerError {
    match outcome {
        Err(e) => e,
        Ok(reply) => ControllerError::InvalidRequest(format!("unexpected controller reply {reply:?}")),
    }
}

/// The controller listener's application requests.
struct Service {
    controller: Weak<Controller>,
}

impl AppHandler for Service {
    fn handle(
        &self,
        request: serde_json::Value,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = serde_json::Value> + Send + 'static>> {
        let controller = self.controller.clone();
        Box::pin(async move {
            let response = match (controller.upgrade(), serde_json::from_value::<ControllerRequest>(request)) {
                (None, _) => ControllerResponse::Error("controller stopped".into()),
                (_, Err(e)) => ControllerResponse::Error(format!("bad controller request: {e}")),
                (Some(c), Ok(ControllerRequest::Admin(op))) => {
                    let result = if c.is_active() { c.execute(&op).await } else { Err(ControllerError::NotController) };
                    ControllerResponse::Admin(result)
                }
                (Some(c), Ok(ControllerRequest::FetchImage { after_count, wait_ms })) => {
                    ControllerResponse::Image(c.image_after(after_count, wait_ms.min(10_000)).await)
                }
                (Some(c), Ok(ControllerRequest::DescribeQuorum)) => ControllerResponse::Quorum(c.quorum_status()),
            };
            serde_json::to_value(&response).unwrap_or(serde_json::Value::Null)
        })
    }
}

impl Controller {
    /// The encoded image once it is past `after_count`, waiting up to `wait_ms`.
    async fn image_after(&self, after_count: u64, wait_ms: u64) -> Option<Vec<u8>> {
        let mut rx = self.images.clone();
        let wait = rx.wait_for(|image| image.applied_count > after_count);
        let image = tokio::time::timeout(Duration::from_millis(wait_ms), wait).await.ok()?.ok()?.clone();
        image.encode_snapshot().ok()
    }
}

/// The active controller's periodic duties: name the cluster once, and fence brokers whose
/// sessions expired. A controller that just became active gives every broker a fresh session.
async fn active_controller_duties(controller: Weak<Controller>, proposed_cluster_id: String) {
    let mut active_term = None;
    loop {
        let Some(c) = controller.upgrade() else { return };
        let tick = (c.timing.broker_session_timeout / 8).clamp(Duration::from_millis(50), Duration::from_millis(500));
        if c.shutdown.is_cancelled() {
            return;
        }
        let term = c.raft.as_ref().map(|r| r.metrics().borrow().current_term);
        if c.is_active() {
            if active_term != term {
                active_term = term;
                if let Ok(mut sessions) = c.sessions.lock() {
                    sessions.clear();
                }
            }
            if c.image().cluster_id.is_none() {
                let op = AdminOp::SetClusterId { cluster_id: proposed_cluster_id.clone() };
                if let Err(e) = c.execute(&op).await {
                    tracing::debug!(error = %e, "could not name the cluster yet");
                }
            }
            let expired = c.expired_sessions();
            if !expired.is_empty() {
                tracing::info!(brokers = ?expired, "fencing brokers whose sessions expired");
                if let Err(e) = c.execute(&AdminOp::FenceBrokers { node_ids: expired }).await {
                    tracing::warn!(error = %e, "could not fence brokers");
                }
            }
        } else {
            active_term = None;
        }
        let shutdown = c.shutdown.clone();
        let was_active = c.is_active();
        let Some(mut metrics) = c.raft.as_ref().map(Raft::metrics) else { return };
        drop(c);
        // Wake at the next tick, or at once when this node gains or loses leadership (a new
        // active controller names the cluster without waiting a tick).
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(tick) => {}
            _ = metrics.wait_for(|m| (m.current_leader == Some(m.id)) != was_active) => {}
        }
    }
}

impl Controller {
    /// Live brokers whose last heartbeat is older than the session timeout. A broker with no
    /// session yet (this controller just became active) gets one starting now.
    fn expired_sessions(&self) -> Vec<i32> {
        let image = self.image();
        let now = Instant::now();
        let Ok(mut sessions) = self.sessions.lock() else { return Vec::new() };
        image
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .filter(|b| {
                let last = *sessions.entry(b.node_id).or_insert(now);
                now.duration_since(last) > self.timing.broker_session_timeout
            })
            .map(|b| b.node_id)
            .collect()
    }
}

/// A broker-only node follows metadata by long-polling a controller for newer images.
async fn follow_metadata(
    controller: Weak<Controller>,
    tx: watch::Sender<Arc<MetadataImage>>,
    shutdown: CancellationToken,
) {
    let mut after = 0u64;
    let mut backoff = Duration::from_millis(50);
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let Some(c) = controller.upgrade() else { return };
        let request = ControllerRequest::FetchImage { after_count: after, wait_ms: 1000 };
        match c.call_controller(request, Duration::from_secs(5)).await {
            Ok(ControllerResponse::Image(Some(bytes))) => match MetadataImage::decode_snapshot(&bytes) {
                Ok(image) if image.applied_count > after => {
                    after = image.applied_count;
                    tx.send_replace(Arc::new(image));
                    backoff = Duration::from_millis(50);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "undecodable metadata image"),
            },
            Ok(_) => backoff = Duration::from_millis(50),
            Err(e) => {
                tracing::debug!(error = %e, "metadata fetch failed");
                drop(c);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// The type config, re-exported for tests that build their own Raft nodes.
pub type RaftTypeConfig = TypeConfig;
