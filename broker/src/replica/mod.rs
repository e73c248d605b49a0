//! Which partitions this broker hosts, and their state around the log.
//!
//! The replica manager opens a partition's log when the metadata image says this broker holds it,
//! closes and deletes it when the topic goes away, and wakes delayed fetches when a partition's
//! log end moves (its purgatory is a watch channel per partition, not a polling loop).

pub mod manager;
pub mod partition;

pub use manager::ReplicaManager;
pub use partition::Partition;
