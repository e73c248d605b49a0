//! The replica manager: the set of partitions this broker hosts, kept in line with the image.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use sluice_controller::image::MetadataImage;
use uuid::Uuid;

use super::partition::{Partition, RoleChange};
use crate::config::BrokerConfig;
use crate::storage::{Log, StorageError};

/// File in each partition directory naming the topic id it belongs to (as Kafka's
/// `partition.metadata`), so a topic deleted and re-created under the same name while the broker
/// was down is not confused with the old one.
const PARTITION_METADATA: &str = "partition.metadata";

/// Why a partition cannot be served here.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    #[error("this broker is not the leader")]
    NotLeader,
    #[error("fewer in-sync replicas than min.insync.replicas")]
    NotEnoughReplicas,
    #[error("written, but the ISR fell below min.insync.replicas before it was replicated")]
    NotEnoughReplicasAfterAppend,
    #[error("not replicated to the ISR in time")]
    Timeout,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

type Key = (Uuid, i32);

/// See the module documentation.
pub struct ReplicaManager {
    config: BrokerConfig,
    partitions: RwLock<HashMap<Key, Arc<Partition>>>,
    open_lock: tokio::sync::Mutex<()>,
}

fn partition_dir(data_dir: &Path, topic: &str, index: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{index}"))
}

impl ReplicaManager {
    pub fn new(config: BrokerConfig) -> Self {
        Self { config, partitions: RwLock::new(HashMap::new()), open_lock: tokio::sync::Mutex::new(()) }
    }

    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Key, Arc<Partition>>> {
        // A poisoned lock means a panic while holding it; the map itself is always consistent
        // (single insert/remove calls), so keep serving.
        self.partitions.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_map(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Key, Arc<Partition>>> {
        self.partitions.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The open partition, if this broker hosts it.
    pub fn get(&self, topic_id: Uuid, index: i32) -> Option<Arc<Partition>> {
        self.read_map().get(&(topic_id, index)).cloned()
    }

    /// Every open partition.
    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.read_map().values().cloned().collect()
    }

    /// The partition `topic_id`/`index` led by this broker, opening its log if needed.
    ///
    /// # Errors
    /// Unknown in the image, led elsewhere, or its log failed to open.
    pub async fn leader_partition(
        &self,
        image: &MetadataImage,
        topic_id: Uuid,
        index: i32,
    ) -> Result<Arc<Partition>, PartitionError> {
        let topic = image.topics.get(&topic_id).ok_or(PartitionError::UnknownTopicOrPartition)?;
        let p = topic.partitions.get(&index).ok_or(PartitionError::UnknownTopicOrPartition)?;
        if p.leader != self.config.node_id {
            return Err(PartitionError::NotLeader);
        }
        if let Some(partition) = self.get(topic_id, index) {
            return Ok(partition);
        }
        self.open(image, topic_id, index).await
    }

    async fn open(&self, image: &MetadataImage, topic_id: Uuid, index: i32) -> Result<Arc<Partition>, PartitionError> {
        let _guard = self.open_lock.lock().await;
        if let Some(partition) = self.get(topic_id, index) {
            return Ok(partition);
        }
        let topic = image.topics.get(&topic_id).ok_or(PartitionError::UnknownTopicOrPartition)?;
        let name = topic.name.clone();
        let dir = partition_dir(&self.config.data_dir, &name, index);
        let log_config = self.config.log_config(&image.topic_configs(&name));
        let log = tokio::task::spawn_blocking(move || open_partition_log(&dir, topic_id, log_config))
            .await
            .map_err(|e| StorageError::Io(std::io::Error::other(e.to_string())))??;
        let partition = Arc::new(Partition::new(name, topic_id, index, log, image.applied_count, self.config.node_id));
        if let Some(p) = topic.partitions.get(&index) {
            partition.apply_image(p, self.min_insync(image, &topic.name), crate::clock::now_ms());
        }
        self.write_map().insert((topic_id, index), Arc::clone(&partition));
        Ok(partition)
    }

    /// The topic's effective `min.insync.replicas`.
    fn min_insync(&self, image: &MetadataImage, topic: &str) -> usize {
        self.config
            .topic_config_value("min.insync.replicas", &image.topic_configs(topic))
            .and_then(|(v, _)| v.trim().parse::<usize>().ok())
            .unwrap_or(1)
    }

    /// Brings the hosted set in line with `image`: opens every partition this broker is a replica
    /// of (leading it or not: leadership moves, the log stays), gives each its role, leader epoch
    /// and ISR, applies changed topic configs, and closes and deletes partitions whose topic is
    /// gone. Returns the partitions whose role changed.
    ///
    /// # Errors
    /// The first log that failed to open.
    pub async fn sync_with_image(
        &self,
        image: &MetadataImage,
    ) -> Result<Vec<(Arc<Partition>, RoleChange)>, PartitionError> {
        let mut changes = Vec::new();
        let now_ms = crate::clock::now_ms();
        for topic in image.topics.values() {
            let log_config = self.config.log_config(&image.topic_configs(&topic.name));
            let hosted = |p: &&sluice_controller::image::PartitionImage| {
                p.leader == self.config.node_id || p.replicas.contains(&self.config.node_id)
            };
            for p in topic.partitions.values().filter(hosted) {
                let partition = match self.get(topic.topic_id, p.partition) {
                    Some(partition) => partition,
                    None => self.open(image, topic.topic_id, p.partition).await?,
                };
                if partition.log.config() != log_config {
                    partition.log.update_config(log_config);
                }
                let change = partition.apply_image(p, self.min_insync(image, &topic.name), now_ms);
                if change != RoleChange::Unchanged {
                    changes.push((partition, change));
                }
            }
        }
        let gone: Vec<Arc<Partition>> = {
            let mut map = self.write_map();
            // Only partitions opened under this image or an older one: a handler may have opened
            // a partition of a just-created topic under a newer image than the one synced here.
            let keys: Vec<Key> = map
                .iter()
                .filter(|((id, index), p)| {
                    p.opened_at <= image.applied_count
                        && image.topics.get(id).and_then(|t| t.partitions.get(index)).is_none()
                })
                .map(|(k, _)| *k)
                .collect();
            keys.iter().filter_map(|k| map.remove(k)).collect()
        };
        for partition in gone {
            tracing::info!(topic = %partition.topic, partition = partition.index, "deleting partition of a deleted topic");
            let log = Arc::clone(&partition.log);
            let _ = tokio::task::spawn_blocking(move || log.delete()).await;
        }
        self.remove_orphan_dirs(image).await;
        Ok(changes)
    }

    /// Deletes partition directories on disk whose topic id the image no longer has (the topic
    /// was deleted while this broker was down, or re-created under a new id). A partition this
    /// broker does not lead right now is kept: leadership comes and goes, data stays. Nothing is
    /// removed on an empty image (a node that has not caught up yet knows no topics at all). Holds
    /// the open lock, so a partition being opened concurrently is either in the map or not on disk.
    async fn remove_orphan_dirs(&self, image: &MetadataImage) {
        if image.applied_count == 0 {
            return;
        }
        let _guard = self.open_lock.lock().await;
        let data_dir = self.config.data_dir.clone();
        let hosted: Vec<PathBuf> = self.all().iter().map(|p| partition_dir(&data_dir, &p.topic, p.index)).collect();
        let live: std::collections::HashSet<Uuid> = image.topics.keys().copied().collect();
        let _ = tokio::task::spawn_blocking(move || {
            let Ok(entries) = std::fs::read_dir(&data_dir) else { return };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(marker) = std::fs::read_to_string(path.join(PARTITION_METADATA)) else { continue };
                let topic_id = marker
                    .lines()
                    .find_map(|l| l.strip_prefix("topic_id: "))
                    .and_then(|id| id.trim().parse::<Uuid>().ok());
                let Some(topic_id) = topic_id else { continue };
                if !live.contains(&topic_id) && !hosted.contains(&path) {
                    tracing::info!(dir = %path.display(), "removing partition directory of a deleted topic");
                    let _ = std::fs::remove_dir_all(&path);
                }
            }
        })
        .await;
    }

    /// Flushes and closes every log (clean shutdown: the next start skips recovery).
    pub async fn close_all(&self) {
        for partition in self.all() {
            let log = Arc::clone(&partition.log);
            let result = tokio::task::spawn_blocking(move || log.close()).await;
            if !matches!(result, Ok(Ok(()))) {
                tracing::warn!(topic = %partition.topic, partition = partition.index, "log did not close cleanly");
            }
        }
    }
}

/// Opens the log in `dir`, first removing it if it belonged to another topic id.
fn open_partition_log(dir: &Path, topic_id: Uuid, config: crate::storage::LogConfig) -> Result<Log, StorageError> {
    let marker = dir.join(PARTITION_METADATA);
    let expected = format!("version: 0\ntopic_id: {topic_id}\n");
    match std::fs::read_to_string(&marker) {
        Ok(found) if found == expected => {}
        Ok(_) => {
            tracing::warn!(dir = %dir.display(), "partition directory belongs to an older topic; removing it");
            std::fs::remove_dir_all(dir)?;
        }
        Err(_) => {}
    }
    let log = Log::open(dir, config, crate::clock::now_ms())?;
    if !marker.is_file() {
        std::fs::write(&marker, expected)?;
    }
    Ok(log)
}
