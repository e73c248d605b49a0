//! One partition hosted by this broker: its log, its role (leader or follower) and, as leader,
//! what it knows of its followers (Kafka's `Partition`).
//!
//! As leader it tracks each follower's log end offset (the offset of its last fetch), moves the
//! high watermark to the lowest log end in the ISR, and proposes ISR changes to the controller:
//! a follower that has not caught up for `replica.lag.time.max.ms` leaves, one that reached the
//! high watermark joins. While a change is in flight the HW counts the larger of the two sets
//! (Kafka's "maximal ISR"), so a write is never counted as committed by a set that did not exist.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use sluice_controller::image::PartitionImage;
use sluice_controller::ops::partitions::{AlterPartitionRequest, PartitionState};
use sluice_controller::ControllerError;
use tokio::sync::watch;
use uuid::Uuid;

use super::manager::PartitionError;
use crate::storage::{AppendInfo, Log, StorageError};

/// What this broker is for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Not yet told (just opened), or no longer a replica.
    None,
    Leader,
    Follower {
        leader: i32,
    },
}

/// What changed when the partition took in a new metadata image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    Unchanged,
    BecameLeader,
    /// Now follows `leader` in `leader_epoch` (a new leader, or a new epoch of the same one).
    BecameFollower {
        leader: i32,
        leader_epoch: i32,
    },
}

/// A follower as its leader sees it.
#[derive(Debug, Clone, Copy)]
struct Progress {
    /// Its log end offset: the offset of its last fetch (`-1` until it fetched in this epoch).
    log_end: i64,
    /// When it last fetched, and the leader's log end then.
    last_fetch_ms: i64,
    leader_end_at_last_fetch: i64,
    /// The last time it had everything the leader had.
    last_caught_up_ms: i64,
}

#[derive(Debug)]
struct State {
    role: Role,
    leader_epoch: i32,
    partition_epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    /// The ISR proposed to the controller and not answered yet.
    pending_isr: Option<Vec<i32>>,
    followers: HashMap<i32, Progress>,
    min_insync: usize,
}

impl State {
    /// The ISR plus any member a pending change would add.
    fn maximal_isr(&self) -> Vec<i32> {
        let mut isr = self.isr.clone();
        for b in self.pending_isr.iter().flatten() {
            if !isr.contains(b) {
                isr.push(*b);
            }
        }
        isr
    }
}

/// A hosted partition.
pub struct Partition {
    pub topic: String,
    pub topic_id: Uuid,
    pub index: i32,
    pub log: Arc<Log>,
    /// The metadata image (its applied record count) this partition was opened under: a sync
    /// against an older image must not take it for a partition of a deleted topic.
    pub opened_at: u64,
    node_id: i32,
    /// The high watermark, published after every move so delayed fetches and acks=all waiters
    /// wake (also nudged on role changes, so that waiters re-check their leadership).
    high_watermark: watch::Sender<i64>,
    /// The log end offset, published after every append: followers' long polls wait on it.
    log_end: watch::Sender<i64>,
    state: Mutex<State>,
}

impl Partition {
    pub fn new(topic: String, topic_id: Uuid, index: i32, log: Log, opened_at: u64, node_id: i32) -> Self {
        let (high_watermark, _) = watch::channel(log.high_watermark());
        let (log_end, _) = watch::channel(log.log_end_offset());
        let state = State {
            role: Role::None,
            leader_epoch: -1,
            partition_epoch: -1,
            replicas: Vec::new(),
            isr: Vec::new(),
            pending_isr: None,
            followers: HashMap::new(),
            min_insync: 1,
        };
        Self {
            topic,
            topic_id,
            index,
            log: Arc::new(log),
            opened_at,
            node_id,
            high_watermark,
            log_end,
            state: Mutex::new(state),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent; a panic elsewhere must not stop replication.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// This broker's role, and the leader epoch it acts in.
    pub fn role(&self) -> (Role, i32) {
        let state = self.state();
        (state.role, state.leader_epoch)
    }

    /// Takes in the partition's state from a metadata image.
    pub fn apply_image(&self, p: &PartitionImage, min_insync: usize, now_ms: i64) -> RoleChange {
        let mut state = self.state();
        state.min_insync = min_insync.max(1);
        state.replicas.clone_from(&p.replicas);
        let new_epoch = p.leader_epoch != state.leader_epoch;
        let change = if p.leader == self.node_id {
            if state.role != Role::Leader || new_epoch {
                state.role = Role::Leader;
                state.followers.clear();
                // Followers in the ISR get a full lag period to show up before they are dropped.
                for &b in p.isr.iter().filter(|b| **b != self.node_id) {
                    let progress = Progress {
                        log_end: -1,
                        last_fetch_ms: now_ms,
                        leader_end_at_last_fetch: -1,
                        last_caught_up_ms: now_ms,
                    };
                    state.followers.insert(b, progress);
                }
                RoleChange::BecameLeader
            } else {
                RoleChange::Unchanged
            }
        } else if p.replicas.contains(&self.node_id) && p.leader >= 0 {
            let now = Role::Follower { leader: p.leader };
            if state.role != now || new_epoch {
                state.role = now;
                state.followers.clear();
                RoleChange::BecameFollower { leader: p.leader, leader_epoch: p.leader_epoch }
            } else {
                RoleChange::Unchanged
            }
        } else {
            let changed = state.role != Role::None;
            state.role = Role::None;
            if changed {
                RoleChange::BecameFollower { leader: -1, leader_epoch: p.leader_epoch }
            } else {
                RoleChange::Unchanged
            }
        };
        state.leader_epoch = p.leader_epoch;
        if new_epoch || p.partition_epoch >= state.partition_epoch {
            state.partition_epoch = p.partition_epoch;
            state.isr.clone_from(&p.isr);
            state.pending_isr = None;
        }
        drop(state);
        if change != RoleChange::Unchanged {
            // Waiters re-check whether they still wait on a leader.
            self.high_watermark.send_replace(self.log.high_watermark());
        }
        self.maybe_advance_high_watermark();
        change
    }

    /// Appends a producer's record set as leader (in a blocking task: the write may touch the
    /// disk), stamping the current leader epoch. With `acks=all`, refuses when the ISR is smaller
    /// than `min.insync.replicas`. The write is in the page cache only: see
    /// [`Self::make_durable`] and [`Self::wait_replicated`].
    ///
    /// # Errors
    /// `NotLeader`, `NotEnoughReplicas`, or the storage error for this partition.
    pub async fn append_as_leader(
        &self,
        mut records: Vec<u8>,
        acks_all: bool,
    ) -> Result<(AppendInfo, i32), PartitionError> {
        let leader_epoch = {
            let state = self.state();
            if state.role != Role::Leader {
                return Err(PartitionError::NotLeader);
            }
            if acks_all && state.isr.len() < state.min_insync {
                return Err(PartitionError::NotEnoughReplicas);
            }
            state.leader_epoch
        };
        let log = Arc::clone(&self.log);
        let now_ms = crate::clock::now_ms();
        let info = tokio::task::spawn_blocking(move || log.append(&mut records, leader_epoch, now_ms))
            .await
            .map_err(|e| StorageError::Io(std::io::Error::other(e.to_string())))??;
        self.publish_log_end();
        self.maybe_advance_high_watermark();
        Ok((info, leader_epoch))
    }

    /// Waits until the ISR holds every offset below `upto` (the high watermark passed it), as
    /// leader in `leader_epoch`, until `deadline`.
    ///
    /// # Errors
    /// `NotLeader` when leadership moved meanwhile, `NotEnoughReplicasAfterAppend` when the ISR
    /// fell below `min.insync.replicas`, `Timeout` at the deadline.
    pub async fn wait_replicated(&self, upto: i64, leader_epoch: i32, deadline: Instant) -> Result<(), PartitionError> {
        let mut hw = self.high_watermark.subscribe();
        loop {
            {
                let state = self.state();
                if state.role != Role::Leader || state.leader_epoch != leader_epoch {
                    return Err(PartitionError::NotLeader);
                }
                if self.log.high_watermark() >= upto {
                    if state.isr.len() < state.min_insync {
                        return Err(PartitionError::NotEnoughReplicasAfterAppend);
                    }
                    return Ok(());
                }
            }
            match tokio::time::timeout_at(deadline.into(), hw.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(PartitionError::NotLeader),
                Err(_) => return Err(PartitionError::Timeout),
            }
        }
    }

    /// Records a follower's fetch at `fetch_offset` (its log end offset) and moves the high
    /// watermark. Returns an ISR expansion to propose when the follower has caught up.
    ///
    /// # Errors
    /// `NotLeader` when this broker does not lead the partition (in `leader_epoch` when given).
    pub fn follower_fetched(
        &self,
        replica: i32,
        fetch_offset: i64,
        now_ms: i64,
    ) -> Result<Option<AlterPartitionRequest>, PartitionError> {
        let leader_end = self.log.log_end_offset();
        let proposal = {
            let mut state = self.state();
            if state.role != Role::Leader {
                return Err(PartitionError::NotLeader);
            }
            if !state.replicas.contains(&replica) || replica == self.node_id {
                return Err(PartitionError::NotLeader);
            }
            let leader_epoch = state.leader_epoch;
            let entry = state.followers.entry(replica).or_insert(Progress {
                log_end: -1,
                last_fetch_ms: now_ms,
                leader_end_at_last_fetch: -1,
                last_caught_up_ms: -1,
            });
            if fetch_offset >= leader_end {
                entry.last_caught_up_ms = now_ms;
            } else if entry.leader_end_at_last_fetch >= 0 && fetch_offset >= entry.leader_end_at_last_fetch {
                entry.last_caught_up_ms = entry.last_caught_up_ms.max(entry.last_fetch_ms);
            }
            entry.log_end = fetch_offset.min(leader_end);
            entry.last_fetch_ms = now_ms;
            entry.leader_end_at_last_fetch = leader_end;
            // Caught up: it holds the high watermark and everything of the epochs before this
            // leader's (the start of the current epoch), so no stale tail can count for the ISR.
            let epoch_start = self.log.end_offset_for_epoch(leader_epoch - 1).1;
            let caught_up = entry.log_end >= self.log.high_watermark() && entry.log_end >= epoch_start;
            if caught_up && !state.maximal_isr().contains(&replica) && state.pending_isr.is_none() {
                let mut isr = state.isr.clone();
                isr.push(replica);
                Some(self.propose(&mut state, isr))
            } else {
                None
            }
        };
        self.maybe_advance_high_watermark();
        Ok(proposal)
    }

    /// An ISR shrink to propose: the followers in the ISR that have not caught up within
    /// `lag_max_ms`. `None` when all keep up, a change is in flight, or this is not the leader.
    pub fn shrink_proposal(&self, now_ms: i64, lag_max_ms: i64) -> Option<AlterPartitionRequest> {
        let mut state = self.state();
        if state.role != Role::Leader || state.pending_isr.is_some() {
            return None;
        }
        let lagging: Vec<i32> = state
            .isr
            .iter()
            .copied()
            .filter(|b| *b != self.node_id)
            .filter(|b| state.followers.get(b).is_none_or(|p| now_ms - p.last_caught_up_ms > lag_max_ms))
            .collect();
        if lagging.is_empty() {
            return None;
        }
        let isr: Vec<i32> = state.isr.iter().copied().filter(|b| !lagging.contains(b)).collect();
        tracing::info!(topic = %self.topic, partition = self.index, ?lagging, ?isr, "shrinking the ISR");
        Some(self.propose(&mut state, isr))
    }

    fn propose(&self, state: &mut State, isr: Vec<i32>) -> AlterPartitionRequest {
        state.pending_isr = Some(isr.clone());
        AlterPartitionRequest {
            broker_id: self.node_id,
            topic_id: self.topic_id,
            partition: self.index,
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            new_isr: isr,
        }
    }

    /// Takes in the controller's answer to a proposal.
    pub fn isr_change_done(&self, request: &AlterPartitionRequest, result: &Result<PartitionState, ControllerError>) {
        {
            let mut state = self.state();
            if state.pending_isr.as_ref() != Some(&request.new_isr) {
                return;
            }
            state.pending_isr = None;
            match result {
                Ok(new) if new.leader_epoch == state.leader_epoch && new.partition_epoch >= state.partition_epoch => {
                    state.isr.clone_from(&new.isr);
                    state.partition_epoch = new.partition_epoch;
                    tracing::info!(topic = %self.topic, partition = self.index, isr = ?new.isr, "ISR changed");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::info!(topic = %self.topic, partition = self.index, error = %e, "ISR change refused");
                }
            }
        }
        self.maybe_advance_high_watermark();
    }

    /// As leader: the high watermark moves up to the lowest log end offset in the (maximal) ISR.
    fn maybe_advance_high_watermark(&self) {
        let candidate = {
            let state = self.state();
            if state.role != Role::Leader {
                return;
            }
            let mut hw = self.log.log_end_offset();
            for b in state.maximal_isr().iter().filter(|b| **b != self.node_id) {
                match state.followers.get(b) {
                    Some(p) if p.log_end >= 0 => hw = hw.min(p.log_end),
                    // A member that has not fetched in this epoch holds the HW where it is.
                    _ => return,
                }
            }
            hw
        };
        if candidate > self.log.high_watermark() {
            self.log.set_high_watermark(candidate);
            self.publish_high_watermark();
        }
    }

    /// As follower: the leader's high watermark, bounded by what this replica holds.
    pub fn follower_high_watermark(&self, leader_high_watermark: i64) {
        let hw = leader_high_watermark.min(self.log.log_end_offset());
        if hw != self.log.high_watermark() {
            self.log.set_high_watermark(hw);
            self.publish_high_watermark();
        }
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

    /// Tells delayed fetches and acks=all waiters where the high watermark is now.
    pub fn publish_high_watermark(&self) {
        let hw = self.log.high_watermark();
        self.high_watermark.send_if_modified(|v| {
            let changed = *v != hw;
            *v = hw;
            changed
        });
    }

    /// Tells followers' long polls where the log ends now.
    pub fn publish_log_end(&self) {
        let end = self.log.log_end_offset();
        self.log_end.send_if_modified(|v| {
            let changed = *v != end;
            *v = end;
            changed
        });
    }

    /// A receiver that changes whenever the high watermark does.
    pub fn watch_high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    /// A receiver that changes whenever the log end offset does.
    pub fn watch_log_end(&self) -> watch::Receiver<i64> {
        self.log_end.subscribe()
    }
}
