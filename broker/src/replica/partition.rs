//! One partition hosted by this broker: its log, leader epoch, and waiters.

use std::sync::Arc;

use tokio::sync::watch;
use uuid::Uuid;

use crate::storage::{AppendInfo, Log, StorageError};

/// A hosted partition.
pub struct Partition {
    pub topic: String,
    pub topic_id: Uuid,
    pub index: i32,
    pub log: Arc<Log>,
    /// The metadata image (its applied record count) this partition was opened under: a sync
    /// against an older image must not take it for a partition of a deleted topic.
    pub opened_at: u64,
    /// The high watermark, published after every append so delayed fetches wake.
    high_watermark: watch::Sender<i64>,
}

impl Partition {
    pub fn new(topic: String, topic_id: Uuid, index: i32, log: Log, opened_at: u64) -> Self {
        let hw = log.high_watermark();
        let (high_watermark, _) = watch::channel(hw);
        Self { topic, topic_id, index, log: Arc::new(log), opened_at, high_watermark }
    }

    /// Appends a record set (in a blocking task: the write may touch the disk) and wakes
    /// waiting fetches. The write is in the page cache only; see [`Self::make_durable`].
    ///
    /// # Errors
    /// The storage error for this partition.
    pub async fn append(&self, mut records: Vec<u8>, leader_epoch: i32) -> Result<AppendInfo, StorageError> {
        let log = Arc::clone(&self.log);
        let now_ms = crate::clock::now_ms();
        let info = tokio::task::spawn_blocking(move || log.append(&mut records, leader_epoch, now_ms))
            .await
            .map_err(|e| StorageError::Io(std::io::Error::other(e.to_string())))??;
        self.publish_high_watermark();
        Ok(info)
    }

    /// Waits until every offset below `upto` is fsynced, when the topic's durability setting
    /// asks for that before an acknowledgement (group commit: concurrent callers share fsyncs).
    ///
    /// # Errors
    /// The fsync failed: the write must not be acknowledged.
    pub async fn make_durable(&self, upto: i64) -> Result<(), StorageError> {
        if !self.log.config().durable_acks() {
            return Ok(());
        }
        let log = Arc::clone(&self.log);
        tokio::task::spawn_blocking(move || log.flush_to(upto))
            .await
            .map_err(|e| StorageError::Io(std::io::Error::other(e.to_string())))?
    }

    /// Tells delayed fetches where the high watermark is now.
    pub fn publish_high_watermark(&self) {
        let hw = self.log.high_watermark();
        self.high_watermark.send_if_modified(|v| {
            let changed = *v != hw;
            *v = hw;
            changed
        });
    }

    /// A receiver that changes whenever the high watermark does.
    pub fn watch_high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }
}
