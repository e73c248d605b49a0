//! Hosts the group coordinators of the `__consumer_offsets` partitions this broker leads.
//!
//! The coordinator core ([`crate::coordinator::group`]) is a pure state machine; this module gives
//! it a home: one actor task per loaded partition owns a [`GroupCoordinator`], runs the requests
//! sent to it one at a time, parks the ones that must wait (JoinGroup, SyncGroup, commits until
//! durable) under their tickets, appends the records it asks for to the partition's log (durable
//! before anything waiting on them is answered), and ticks it for timeouts. A partition is loaded
//! on first use: the internal topic is created if missing, and the coordinator is rebuilt by
//! replaying the partition from its log start. It is unloaded when this broker stops leading the
//! partition. Handlers call the async methods of [`GroupHost`].

mod load;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Mutex};

use crate::broker::Broker;
use crate::coordinator::group::{
    CommitRequest, ConsumerGroupDescription, ConsumerHeartbeatRequest, ConsumerHeartbeatResponse, Effects,
    FetchedOffset, GroupConfig, GroupCoordinator, GroupDescription, GroupError, HeartbeatRequest, JoinRequest,
    JoinResponse, LeaveMember, LeaveResult, ListedGroup, Outcome, PartitionResult, Reply, Step, SyncRequest,
    SyncResponse, Ticket, TopicPartition,
};
use crate::coordinator::partition::partition_for;
use crate::replica::Partition;

/// The internal topic holding group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// How often coordinators are ticked (session and rebalance timeouts fire at this resolution).
const TICK_MS: u64 = 100;
/// Pause after a failed write to the offsets log before the next one.
const WRITE_FAILURE_PAUSE_MS: u64 = 100;
/// Requests queued per coordinator partition before callers wait.
const QUEUE_DEPTH: usize = 1024;

/// Answers a parked request when its reply arrives.
type Parked = Box<dyn FnOnce(Reply) + Send>;
/// One request, run against the coordinator inside its actor.
type Job = Box<dyn FnOnce(&mut GroupCoordinator, i64) -> (Effects, Option<(Ticket, Parked)>) + Send>;

/// Settings of the group coordinators, from the broker config (Kafka's names).
#[derive(Debug, Clone)]
pub struct GroupHostConfig {
    /// `offsets.topic.num.partitions`
    pub partitions: i32,
    /// `offsets.topic.replication.factor` (capped at the number of brokers)
    pub replication_factor: i16,
    pub group: GroupConfig,
}

/// The loaded coordinator partitions of this broker.
pub struct GroupHost {
    config: GroupHostConfig,
    shards: Mutex<HashMap<i32, mpsc::Sender<Job>>>,
}

impl GroupHost {
    pub fn new(config: GroupHostConfig) -> Self {
        Self { config, shards: Mutex::new(HashMap::new()) }
    }

    /// The `__consumer_offsets` partition coordinating `group_id`.
    pub fn partition_of(&self, group_id: &str) -> i32 {
        partition_for(group_id, self.config.partitions)
    }

    /// The queue of the coordinator for `group_id`, loading its partition first if needed.
    async fn shard(&self, broker: &Arc<Broker>, group_id: &str) -> Result<mpsc::Sender<Job>, GroupError> {
        self.shard_at(broker, self.partition_of(group_id)).await
    }

    /// The queue of the coordinator of `partition`, loading it first if needed.
    async fn shard_at(&self, broker: &Arc<Broker>, partition: i32) -> Result<mpsc::Sender<Job>, GroupError> {
        let mut shards = self.shards.lock().await;
        if let Some(tx) = shards.get(&partition).filter(|tx| !tx.is_closed()) {
            return Ok(tx.clone());
        }
        let log_partition = load::offsets_partition(broker, &self.config, partition).await?;
        let coordinator = load::replay(&log_partition, &self.config.group).await?;
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        broker.tasks.spawn(run_shard(Arc::clone(broker), log_partition, coordinator, rx));
        shards.insert(partition, tx.clone());
        tracing::info!(partition, "loaded group coordinator");
        Ok(tx)
    }

    /// Makes sure the coordinator of `group_id` is loaded here (FindCoordinator).
    ///
    /// # Errors
    /// COORDINATOR_NOT_AVAILABLE while the internal topic cannot be created or read.
    pub async fn ensure_loaded(&self, broker: &Arc<Broker>, group_id: &str) -> Result<(), GroupError> {
        self.shard(broker, group_id).await.map(|_| ())
    }

    /// Loads every partition of an existing offsets topic that this broker leads, so that
    /// [`Self::list`] sees every group: after a restart a partition is otherwise loaded only on
    /// first use. Does not create the topic. A partition that cannot be loaded is skipped (the
    /// loader logs why); the next call tries it again.
    pub async fn load_all(&self, broker: &Arc<Broker>) {
        let image = broker.metadata.image();
        let Some(topic) = image.topic_by_name(OFFSETS_TOPIC) else { return };
        let led: Vec<i32> = topic
            .partitions
            .values()
            .filter(|p| p.leader == broker.node_id() && p.partition < self.config.partitions)
            .map(|p| p.partition)
            .collect();
        for partition in led {
            let _ = self.shard_at(broker, partition).await;
        }
    }

    async fn submit<T: Send + 'static>(
        &self,
        broker: &Arc<Broker>,
        group_id: &str,
        job: impl FnOnce(&mut GroupCoordinator, i64, oneshot::Sender<T>) -> (Effects, Option<(Ticket, Parked)>)
            + Send
            + 'static,
    ) -> Result<T, GroupError> {
        let tx = self.shard(broker, group_id).await?;
        let (reply_tx, reply_rx) = oneshot::channel();
        let job: Job = Box::new(move |c, now| job(c, now, reply_tx));
        tx.send(job).await.map_err(|_| GroupError::CoordinatorNotAvailable)?;
        reply_rx.await.map_err(|_| GroupError::CoordinatorNotAvailable)
    }

    pub async fn join(&self, broker: &Arc<Broker>, req: JoinRequest) -> Result<JoinResponse, GroupError> {
        let group_id = req.group_id.clone();
        self.submit(broker, &group_id, move |c, now, tx| {
            parkable(c.join(req, now), tx, |r| match r {
                Reply::Join(x) => Some(x),
                _ => None,
            })
        })
        .await?
    }

    pub async fn sync(&self, broker: &Arc<Broker>, req: SyncRequest) -> Result<SyncResponse, GroupError> {
        let group_id = req.group_id.clone();
        self.submit(broker, &group_id, move |c, now, tx| {
            parkable(c.sync(req, now), tx, |r| match r {
                Reply::Sync(x) => Some(x),
                _ => None,
            })
        })
        .await?
    }

    pub async fn heartbeat(&self, broker: &Arc<Broker>, req: HeartbeatRequest) -> Result<(), GroupError> {
        let group_id = req.group_id.clone();
        self.submit(broker, &group_id, move |c, now, tx| {
            let _ = tx.send(c.heartbeat(&req, now));
            (Effects::default(), None)
        })
        .await?
    }

    pub async fn leave(
        &self,
        broker: &Arc<Broker>,
        group_id: String,
        members: Vec<LeaveMember>,
    ) -> Result<Vec<LeaveResult>, GroupError> {
        let id = group_id.clone();
        self.submit(broker, &id, move |c, now, tx| {
            let (result, effects) = c.leave(&group_id, members, now);
            let _ = tx.send(result);
            (effects, None)
        })
        .await?
    }

    pub async fn commit(&self, broker: &Arc<Broker>, req: CommitRequest) -> Result<Vec<PartitionResult>, GroupError> {
        let group_id = req.group_id.clone();
        self.submit(broker, &group_id, move |c, now, tx| {
            parkable(c.commit_offsets(req, now), tx, |r| match r {
                Reply::Commit(x) => Some(x),
                _ => None,
            })
        })
        .await
    }

    pub async fn fetch_offsets(
        &self,
        broker: &Arc<Broker>,
        group_id: String,
        partitions: Option<Vec<TopicPartition>>,
    ) -> Result<Vec<FetchedOffset>, GroupError> {
        let id = group_id.clone();
        self.submit(broker, &id, move |c, _now, tx| {
            let _ = tx.send(c.fetch_offsets(&group_id, partitions.as_deref()));
            (Effects::default(), None)
        })
        .await?
    }

    pub async fn delete_offsets(
        &self,
        broker: &Arc<Broker>,
        group_id: String,
        partitions: Vec<TopicPartition>,
    ) -> Result<Vec<PartitionResult>, GroupError> {
        let id = group_id.clone();
        self.submit(broker, &id, move |c, now, tx| {
            parkable(c.delete_offsets(&group_id, partitions, now), tx, |r| match r {
                Reply::DeleteOffsets(x) => Some(x),
                _ => None,
            })
        })
        .await?
    }

    /// Deletes groups (each routed to its own coordinator partition).
    pub async fn delete_groups(
        &self,
        broker: &Arc<Broker>,
        group_ids: Vec<String>,
    ) -> Vec<(String, Result<(), GroupError>)> {
        let mut results = Vec::with_capacity(group_ids.len());
        for group_id in group_ids {
            let id = group_id.clone();
            let result = self
                .submit(broker, &id, move |c, now, tx| {
                    parkable(c.delete_groups(vec![group_id], now), tx, |r| match r {
                        Reply::DeleteGroups(x) => Some(x),
                        _ => None,
                    })
                })
                .await;
            match result {
                Ok(mut r) if r.len() == 1 => results.extend(r.pop()),
                Ok(_) => results.push((id, Err(GroupError::UnknownServerError))),
                Err(e) => results.push((id, Err(e))),
            }
        }
        results
    }

    /// ConsumerGroupHeartbeat (KIP-848). The coordinator sees subscribed topics' partition counts
    /// as of the metadata image taken here.
    pub async fn consumer_heartbeat(
        &self,
        broker: &Arc<Broker>,
        req: ConsumerHeartbeatRequest,
    ) -> Result<ConsumerHeartbeatResponse, GroupError> {
        let group_id = req.group_id.clone();
        let image = broker.metadata.image();
        self.submit(broker, &group_id, move |c, now, tx| {
            let partitions =
                |topic: &str| image.topic_by_name(topic).map(|t| i32::try_from(t.partitions.len()).unwrap_or(i32::MAX));
            parkable(c.consumer_heartbeat(req, &partitions, now), tx, |r| match r {
                Reply::ConsumerHeartbeat(x) => Some(x),
                _ => None,
            })
        })
        .await?
    }

    /// ConsumerGroupDescribe for one group.
    pub async fn consumer_describe(
        &self,
        broker: &Arc<Broker>,
        group_id: String,
    ) -> Result<ConsumerGroupDescription, GroupError> {
        let id = group_id.clone();
        self.submit(broker, &id, move |c, _now, tx| {
            let _ = tx.send(c.consumer_describe(&group_id));
            (Effects::default(), None)
        })
        .await?
    }

    pub async fn describe(&self, broker: &Arc<Broker>, group_id: String) -> Result<GroupDescription, GroupError> {
        let id = group_id.clone();
        self.submit(broker, &id, move |c, _now, tx| {
            let _ = tx.send(c.describe_group(&group_id));
            (Effects::default(), None)
        })
        .await?
    }

    /// Lists the groups of every coordinator partition loaded on this broker.
    pub async fn list(&self, states: Vec<String>, types: Vec<String>) -> Vec<ListedGroup> {
        let shards: Vec<mpsc::Sender<Job>> = self.shards.lock().await.values().cloned().collect();
        let mut groups = Vec::new();
        for tx in shards {
            let (reply_tx, reply_rx) = oneshot::channel();
            let (s, t) = (states.clone(), types.clone());
            let job: Job = Box::new(move |c, _now| {
                let _ = reply_tx.send(c.list_groups(&s, &t));
                (Effects::default(), None)
            });
            if tx.send(job).await.is_ok() {
                groups.extend(reply_rx.await.unwrap_or_default());
            }
        }
        groups
    }
}

/// Answers a step now, or parks it with a reply that extracts `T` from the eventual [`Reply`].
fn parkable<T: Send + 'static>(
    step: Step<T>,
    tx: oneshot::Sender<T>,
    extract: fn(Reply) -> Option<T>,
) -> (Effects, Option<(Ticket, Parked)>) {
    match step.outcome {
        Outcome::Done(answer) => {
            let _ = tx.send(answer);
            (step.effects, None)
        }
        Outcome::Parked(ticket) => {
            let parked: Parked = Box::new(move |reply| {
                if let Some(answer) = extract(reply) {
                    let _ = tx.send(answer);
                }
            });
            (step.effects, Some((ticket, parked)))
        }
    }
}

/// The actor of one coordinator partition.
async fn run_shard(
    broker: Arc<Broker>,
    partition: Arc<Partition>,
    mut coordinator: GroupCoordinator,
    mut rx: mpsc::Receiver<Job>,
) {
    let mut parked: HashMap<Ticket, Parked> = HashMap::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(TICK_MS));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The coordinator lives as long as this broker leads its partition in the epoch it was
    // loaded in; then it steps down (its groups answer NOT_COORDINATOR and clients find the new
    // coordinator, which replays the partition).
    let loaded_in = partition.role();
    loop {
        if partition.role() != loaded_in || loaded_in.0 != crate::replica::partition::Role::Leader {
            tracing::info!(topic = %partition.topic, partition = partition.index, "unloading group coordinator: leadership moved");
            break;
        }
        let effects = tokio::select! {
            () = broker.shutdown.cancelled() => break,
            job = rx.recv() => match job {
                Some(job) => {
                    let (effects, park) = job(&mut coordinator, crate::clock::now_ms());
                    if let Some((ticket, reply)) = park {
                        parked.insert(ticket, reply);
                    }
                    effects
                }
                None => break,
            },
            _ = ticker.tick() => coordinator.tick(crate::clock::now_ms()),
        };
        apply_effects(&partition, &mut coordinator, &mut parked, effects).await;
    }
    let effects = coordinator.abandon(GroupError::NotCoordinator);
    deliver(&mut parked, effects.completions);
}

/// Delivers answers and performs writes (in order, each durable before it is reported), until
/// no effects are left.
async fn apply_effects(
    partition: &Partition,
    coordinator: &mut GroupCoordinator,
    parked: &mut HashMap<Ticket, Parked>,
    effects: Effects,
) {
    let mut pending = std::collections::VecDeque::from([effects]);
    while let Some(effects) = pending.pop_front() {
        deliver(parked, effects.completions);
        for write in effects.writes {
            let result = load::append_records(partition, &write.records).await;
            let failed = result.is_err();
            pending.push_back(coordinator.write_completed(write.id, result, crate::clock::now_ms()));
            if failed {
                // A log that keeps failing must not turn the coordinator's reaction to each
                // failure (new writes) into a busy loop: at most one failed write per pause.
                tokio::time::sleep(Duration::from_millis(WRITE_FAILURE_PAUSE_MS)).await;
            }
        }
    }
}

fn deliver(parked: &mut HashMap<Ticket, Parked>, completions: Vec<crate::coordinator::group::Completion>) {
    for completion in completions {
        if let Some(reply) = parked.remove(&completion.ticket) {
            reply(completion.reply);
        }
    }
}
