//! Which partitions this broker hosts, and their state around the log.
//!
//! The replica manager opens a partition's log when the metadata image says this broker holds it,
//! closes and deletes it when the topic goes away, and wakes delayed fetches when a partition's
//! log end moves (its purgatory is a watch channel per partition, not a polling loop). As leader a
//! partition tracks its followers and the high watermark; as follower the fetcher copies it.

pub mod fetcher;
pub mod manager;
pub mod partition;

use std::sync::Arc;

pub use manager::ReplicaManager;
pub use partition::Partition;
use sluice_controller::ops::partitions::AlterPartitionRequest;

use crate::broker::Broker;

/// Sends a leader's ISR change to the controller in the background; the partition takes in the
/// answer (a refused or lost change is proposed again by the next check).
pub fn propose_isr_change(broker: &Arc<Broker>, partition: Arc<Partition>, proposal: AlterPartitionRequest) {
    let controller = Arc::clone(&broker.controller);
    broker.tasks.spawn(async move {
        let result = controller.alter_partition(proposal.clone()).await;
        partition.isr_change_done(&proposal, &result);
    });
}
