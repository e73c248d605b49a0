//! The broker: what every handler can reach, and the start-up and shutdown sequence.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sluice_controller::ops::cluster::BrokerRegistration;
use sluice_controller::ops::topics::TopicDefaults;
use sluice_controller::{Controller, ControllerConfig, QuorumTiming};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{BrokerConfig, Endpoint};
use crate::metadata::MetadataView;
use crate::replica::ReplicaManager;

/// Shared state of a running broker.
pub struct Broker {
    pub config: BrokerConfig,
    pub cluster_id: String,
    pub advertised: Endpoint,
    pub controller: Arc<Controller>,
    pub metadata: MetadataView,
    pub lifecycle: Arc<crate::lifecycle::Lifecycle>,
    pub replicas: ReplicaManager,
    /// Copies the partitions this broker follows from their leaders.
    pub fetchers: crate::replica::fetcher::FetcherManager,
    pub producer_ids: ProducerIdManager,
    pub fetch_sessions: std::sync::Mutex<crate::handlers::fetch::session::SessionCache>,
    pub groups: crate::groups::GroupHost,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
}

impl Broker {
    /// This broker's node id.
    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }
}

/// Hands out producer ids from blocks the controller allocated (persisted, never reused).
pub struct ProducerIdManager {
    block: Mutex<(i64, i64)>,
}

impl ProducerIdManager {
    fn new() -> Self {
        Self { block: Mutex::new((0, 0)) }
    }

    /// The next unused producer id.
    ///
    /// # Errors
    /// When a new block cannot be allocated.
    pub async fn next(&self, controller: &Controller, node_id: i32) -> Result<i64, sluice_controller::ControllerError> {
        let mut block = self.block.lock().await;
        if block.0 >= block.1 {
            let fresh = controller.allocate_producer_ids(node_id).await?;
            *block = (fresh.first, fresh.first + fresh.size);
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }
}

/// Reads the cluster id from `meta.properties` in the data directory, creating it on first start.
///
/// # Errors
/// When the file cannot be read or written.
pub fn load_or_create_cluster_id(data_dir: &Path, node_id: i32) -> std::io::Result<String> {
    let path = data_dir.join("meta.properties");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Some(id) = text.lines().find_map(|l| l.strip_prefix("cluster.id=")) {
            return Ok(id.trim().to_string());
        }
    }
    std::fs::create_dir_all(data_dir)?;
    let id = uuid::Uuid::new_v4().simple().to_string()[..22].to_string();
    let tmp = data_dir.join("meta.properties.tmp");
    std::fs::write(&tmp, format!("version=1\ncluster.id={id}\nnode.id={node_id}\n"))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}

fn group_host_config(config: &BrokerConfig) -> crate::groups::GroupHostConfig {
    let g = &config.groups;
    crate::groups::GroupHostConfig {
        partitions: g.offsets_topic_num_partitions,
        replication_factor: g.offsets_topic_replication_factor,
        group: crate::coordinator::group::GroupConfig {
            initial_rebalance_delay_ms: g.initial_rebalance_delay_ms,
            min_session_timeout_ms: g.min_session_timeout_ms,
            max_session_timeout_ms: g.max_session_timeout_ms,
            max_size: usize::try_from(g.max_size).unwrap_or(usize::MAX),
            offsets_retention_ms: g.offsets_retention_minutes.saturating_mul(60_000),
            offsets_retention_check_interval_ms: g.offsets_retention_check_interval_ms,
            offset_metadata_max_bytes: usize::try_from(g.offset_metadata_max_bytes).unwrap_or(4096),
            consumer_session_timeout_ms: g.consumer_session_timeout_ms,
            consumer_heartbeat_interval_ms: g.consumer_heartbeat_interval_ms,
            consumer_max_size: usize::try_from(g.consumer_max_size).unwrap_or(usize::MAX),
            ..Default::default()
        },
    }
}

/// The controller settings of this node.
pub fn controller_config(config: &BrokerConfig, proposed_cluster_id: String) -> ControllerConfig {
    ControllerConfig {
        node_id: config.node_id,
        metadata_dir: config.data_dir.join("__cluster_metadata-0"),
        defaults: TopicDefaults {
            num_partitions: config.num_partitions,
            replication_factor: config.default_replication_factor,
        },
        is_voter: config.roles.controller,
        voters: config.quorum_voters.clone(),
        timing: QuorumTiming {
            election_timeout: Duration::from_millis(config.quorum_election_timeout_ms.max(50)),
            broker_session_timeout: Duration::from_millis(config.broker_session_timeout_ms.max(100)),
            ..QuorumTiming::default()
        },
        proposed_cluster_id,
    }
}

/// Refuses a data directory whose metadata an older Sluice kept in a single-node journal: its
/// topics are not in the quorum's log, and starting would treat their partitions as orphans.
///
/// # Errors
/// When such a journal exists and the quorum's store does not.
pub fn check_metadata_layout(data_dir: &Path) -> anyhow::Result<()> {
    let dir = data_dir.join("__cluster_metadata-0");
    anyhow::ensure!(
        !dir.join("metadata.journal").exists() || dir.join("raft").exists(),
        "{} holds metadata written by an older Sluice (metadata.journal); start from an empty data directory",
        data_dir.display()
    );
    Ok(())
}

/// Registers this broker with the quorum, waits until its metadata has caught up, opens (and
/// recovers) the logs of every partition it is a replica of, and waits until it is unfenced.
/// `None` when shutdown came first.
///
/// # Errors
/// When a partition log cannot be opened.
pub async fn start(
    config: BrokerConfig,
    advertised: Endpoint,
    controller: Arc<Controller>,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<Arc<Broker>>> {
    let registration = BrokerRegistration {
        node_id: config.node_id,
        incarnation_id: uuid::Uuid::new_v4(),
        host: advertised.host.clone(),
        port: i32::from(advertised.port),
        rack: config.explicit.get("broker.rack").cloned(),
    };
    let interval = Duration::from_millis(config.broker_heartbeat_interval_ms.max(10));
    let lifecycle = Arc::new(crate::lifecycle::Lifecycle::new(Arc::clone(&controller), registration, interval));
    if !lifecycle.start(&shutdown).await {
        return Ok(None);
    }
    // Heartbeats start now (asking to stay fenced), so loading many logs cannot expire the session.
    let tasks = TaskTracker::new();
    let heartbeats = Arc::clone(&lifecycle);
    let token = shutdown.clone();
    tasks.spawn(async move { heartbeats.run(token).await });
    if !lifecycle.catch_up(&shutdown).await {
        return Ok(None);
    }
    let mut images = controller.subscribe();
    let cluster_id = loop {
        if let Some(id) = controller.image().cluster_id.clone() {
            break id;
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            _ = images.changed() => {}
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    };
    let metadata = MetadataView::new(controller.subscribe());
    let broker = Arc::new(Broker {
        replicas: ReplicaManager::new(config.clone()),
        fetchers: crate::replica::fetcher::FetcherManager::new(config.node_id, config.replication, shutdown.clone()),
        groups: crate::groups::GroupHost::new(group_host_config(&config)),
        config,
        cluster_id,
        advertised,
        controller,
        metadata,
        lifecycle,
        producer_ids: ProducerIdManager::new(),
        fetch_sessions: std::sync::Mutex::new(Default::default()),
        shutdown,
        tasks,
    });
    // Load (and recover) every log this broker holds a replica of before asking to be unfenced.
    let image = broker.metadata.image();
    broker.replicas.sync_with_image(&image).await?;
    broker.fetchers.update(&image, &broker.replicas.all());
    if !broker.lifecycle.unfence(&broker.shutdown).await {
        return Ok(None);
    }
    Ok(Some(broker))
}

/// Starts the broker's background work, each task tracked and stopped by the shutdown token:
/// following metadata into the hosted partitions, retention, and time-based flushing.
pub fn spawn_background(broker: &Arc<Broker>) {
    let b = Arc::clone(broker);
    broker.tasks.spawn(async move {
        let mut rx = b.metadata.subscribe();
        loop {
            tokio::select! {
                () = b.shutdown.cancelled() => break,
                changed = rx.changed() => if changed.is_err() { break },
            }
            let image = rx.borrow_and_update().clone();
            match b.replicas.sync_with_image(&image).await {
                Ok(changes) => {
                    for (partition, change) in &changes {
                        tracing::debug!(topic = %partition.topic, partition = partition.index, ?change, "role changed");
                    }
                    b.fetchers.update(&image, &b.replicas.all());
                }
                Err(e) => tracing::error!(error = %e, "could not bring hosted partitions in line with metadata"),
            }
        }
    });
    let b = Arc::clone(broker);
    let every = std::time::Duration::from_millis(b.config.log_retention_check_interval_ms.max(100));
    broker.tasks.spawn(periodic(Arc::clone(&b), every, |partition, now_ms| {
        match partition.log.apply_retention(now_ms) {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(topic = %partition.topic, partition = partition.index, deleted, "retention deleted segments"),
            Err(e) => tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "retention failed"),
        }
        if let Err(e) = partition.log.roll_if_due(now_ms) {
            tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "segment roll failed");
        }
    }));
    // ISR shrinks: followers that have not caught up for replica.lag.time.max.ms.
    let b = Arc::clone(broker);
    let lag_max_ms = b.config.replication.lag_time_max_ms;
    broker.tasks.spawn(async move {
        let mut ticker =
            tokio::time::interval(std::time::Duration::from_millis(u64::try_from(lag_max_ms / 2).unwrap_or(1).max(10)));
        loop {
            tokio::select! {
                () = b.shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let now_ms = crate::clock::now_ms();
            for partition in b.replicas.all() {
                if let Some(proposal) = partition.shrink_proposal(now_ms, lag_max_ms) {
                    crate::replica::propose_isr_change(&b, partition, proposal);
                }
            }
        }
    });
    let every =
        std::time::Duration::from_millis(broker.config.replication.high_watermark_checkpoint_interval_ms.max(100));
    broker.tasks.spawn(periodic(Arc::clone(broker), every, |partition, _| {
        if let Err(e) = partition.log.checkpoint_high_watermark() {
            tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "high watermark checkpoint failed");
        }
    }));
    broker.tasks.spawn(periodic(Arc::clone(broker), std::time::Duration::from_millis(1000), |partition, now_ms| {
        if let Err(e) = partition.log.maybe_flush(now_ms) {
            tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "flush failed");
        }
    }));
}

/// Runs `work` on every hosted partition every `every`, off the async threads.
async fn periodic(broker: Arc<Broker>, every: std::time::Duration, work: fn(&crate::replica::Partition, i64)) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = broker.shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let partitions = broker.replicas.all();
        let _ = tokio::task::spawn_blocking(move || {
            let now_ms = crate::clock::now_ms();
            for partition in &partitions {
                work(partition, now_ms);
            }
        })
        .await;
        for partition in broker.replicas.all() {
            partition.publish_high_watermark();
        }
    }
}
