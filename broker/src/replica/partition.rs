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
    /// The high watermark, published after every append so delayed fetches wake.
    high_watermark: watch::Sender<i64>,
}

impl Partition {
    pub fn new(topic: String, topic_id: Uuid, index: i32, log: Log) -> Self {
        let hw = log.high_watermark();
        let (high_watermark, _) = watch::channel(hw);
        Self { topic, topic_id, index, log: Arc::new(log), high_watermark }
    }

    /// Appends a record set (in a blocking task: the write may touch the disk), then, when
    /// `durable`, waits until it is fsynced (group commit), then wakes waiting fetches.
    ///
    /// # Errors
    /// The storage error for this partition.
    pub async fn append(&self, mut records: Vec<u8>, leader_epoch: i32, durable: bool) -> Result<AppendInfo, StorageError> {
        let log = Arc::clone(&self.log);
        let now_ms = crate::clock::now_ms();
        let info = tokio::task::spawn_blocking(move || log.append(&mut records, leader_epoch, now_ms))
            .await
            .map_err(|e| StorageError::Io(std::io::Error::other(e.to_string())))??;
        self.publish_high_watermark();
        // A duplicate is acknowledged like the original, so it waits for the same durability.
        let must_flush = durable && self.log.config().durable_acks();
        if must_flush {
            let log = Arc::clone(&self.log);
            let upto = info.last_offset + 1;
            tokio::task::spawn_blocking(move || log.flush_to(upto))
                .await
                .map_err(|e| StorageError::Io(std::io::Error::other(e.to_string())))??;
        }
        Ok(info)
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
