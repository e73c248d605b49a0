//! Followers: one fetcher task per leader broker copies the batches of every partition this
//! broker follows from it (Kafka's ReplicaFetcherThread), over the leader's client listener with
//! Kafka's own Fetch request (v15, ReplicaState naming this broker).
//!
//! Each fetch sends, per partition, this replica's log end offset and the epoch of its last
//! batch. The leader answers with batches (appended here unchanged, then fsynced when the topic's
//! durability asks for it, before the next fetch reports them as held), its high watermark, or a
//! diverging epoch: then this replica truncates its tail to where the two logs agree and fetches
//! again. A partition answered with a leadership error waits for the next metadata image.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use sluice_controller::image::MetadataImage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::partition::{Partition, Role};
use crate::config::ReplicationSettings;
use crate::storage::StorageError;

/// The Fetch version followers send (ReplicaState, topic ids, diverging epochs).
const FETCH_VERSION: i16 = 15;
/// Beyond the leader's long-poll wait, how long a fetch may take before the connection is dropped.
const FETCH_TIMEOUT_SLACK: Duration = Duration::from_secs(30);

type Key = (Uuid, i32);

/// A followed partition, as its fetcher sees it.
struct Followed {
    partition: Arc<Partition>,
    leader_epoch: i32,
    /// Not fetched before this (after an error, until metadata moves on).
    paused_until: Option<Instant>,
}

/// One leader's fetcher: the partitions it copies and how to reach the leader.
struct Fetcher {
    address: Arc<Mutex<String>>,
    partitions: Arc<Mutex<HashMap<Key, Followed>>>,
    wake: Arc<Notify>,
    stop: CancellationToken,
}

/// Every fetcher of this broker, kept in line with the hosted partitions' roles.
pub struct FetcherManager {
    node_id: i32,
    settings: ReplicationSettings,
    fetchers: Mutex<HashMap<i32, Fetcher>>,
    shutdown: CancellationToken,
}

impl FetcherManager {
    pub fn new(node_id: i32, settings: ReplicationSettings, shutdown: CancellationToken) -> Self {
        Self { node_id, settings, fetchers: Mutex::new(HashMap::new()), shutdown }
    }

    /// Makes each followed partition fetch from its current leader, in its current epoch; stops
    /// fetchers left with nothing to do.
    pub fn update(&self, image: &MetadataImage, partitions: &[Arc<Partition>]) {
        let mut wanted: HashMap<i32, Vec<(Arc<Partition>, i32)>> = HashMap::new();
        for partition in partitions {
            if let (Role::Follower { leader }, epoch) = partition.role() {
                wanted.entry(leader).or_default().push((Arc::clone(partition), epoch));
            }
        }
        let mut fetchers = self.fetchers.lock().unwrap_or_else(PoisonError::into_inner);
        fetchers.retain(|leader, fetcher| {
            let keep = wanted.contains_key(leader);
            if !keep {
                fetcher.stop.cancel();
            }
            keep
        });
        for (leader, followed) in wanted {
            let address = image.brokers.get(&leader).map(|b| format!("{}:{}", b.host, b.port)).unwrap_or_default();
            let fetcher = fetchers.entry(leader).or_insert_with(|| self.spawn(leader, address.clone()));
            *fetcher.address.lock().unwrap_or_else(PoisonError::into_inner) = address;
            let mut map = fetcher.partitions.lock().unwrap_or_else(PoisonError::into_inner);
            let keys: std::collections::HashSet<Key> = followed.iter().map(|(p, _)| (p.topic_id, p.index)).collect();
            map.retain(|k, _| keys.contains(k));
            for (partition, epoch) in followed {
                let key = (partition.topic_id, partition.index);
                match map.get_mut(&key) {
                    Some(f) if f.leader_epoch == epoch => {}
                    Some(f) => {
                        f.leader_epoch = epoch;
                        f.paused_until = None;
                    }
                    None => {
                        map.insert(key, Followed { partition, leader_epoch: epoch, paused_until: None });
                    }
                }
            }
            drop(map);
            fetcher.wake.notify_one();
        }
    }

    fn spawn(&self, leader: i32, address: String) -> Fetcher {
        let fetcher = Fetcher {
            address: Arc::new(Mutex::new(address)),
            partitions: Arc::new(Mutex::new(HashMap::new())),
            wake: Arc::new(Notify::new()),
            stop: self.shutdown.child_token(),
        };
        let task = FetchLoop {
            node_id: self.node_id,
            leader,
            settings: self.settings,
            address: Arc::clone(&fetcher.address),
            partitions: Arc::clone(&fetcher.partitions),
            wake: Arc::clone(&fetcher.wake),
            stop: fetcher.stop.clone(),
        };
        tokio::spawn(task.run());
        fetcher
    }
}

struct FetchLoop {
    node_id: i32,
    leader: i32,
    settings: ReplicationSettings,
    address: Arc<Mutex<String>>,
    partitions: Arc<Mutex<HashMap<Key, Followed>>>,
    wake: Arc<Notify>,
    stop: CancellationToken,
}

impl FetchLoop {
    async fn run(self) {
        tracing::info!(leader = self.leader, "replica fetcher started");
        let mut conn: Option<Conn> = None;
        let backoff = Duration::from_millis(self.settings.fetch_backoff_ms.max(10));
        while !self.stop.is_cancelled() {
            let batch = self.fetchable();
            if batch.is_empty() {
                tokio::select! {
                    () = self.stop.cancelled() => break,
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(backoff) => {}
                }
                continue;
            }
            let address = self.address.lock().unwrap_or_else(PoisonError::into_inner).clone();
            let request = self.request(&batch);
            let timeout = Duration::from_millis(u64::try_from(self.settings.fetch_wait_max_ms.max(0)).unwrap_or(0))
                + FETCH_TIMEOUT_SLACK;
            let outcome = tokio::select! {
                () = self.stop.cancelled() => break,
                outcome = exchange(&mut conn, &address, &request, timeout, self.response_bound()) => outcome,
            };
            match outcome {
                Ok(response) => self.handle(&batch, response).await,
                Err(e) => {
                    conn = None;
                    tracing::debug!(leader = self.leader, %address, error = %e, "replica fetch failed");
                    tokio::select! {
                        () = self.stop.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                }
            }
        }
        tracing::info!(leader = self.leader, "replica fetcher stopped");
    }

    fn response_bound(&self) -> usize {
        usize::try_from(self.settings.fetch_response_max_bytes.max(0)).unwrap_or(0).saturating_add(16 << 20)
    }

    /// The partitions to fetch now (not paused).
    fn fetchable(&self) -> Vec<(Arc<Partition>, i32)> {
        let now = Instant::now();
        let map = self.partitions.lock().unwrap_or_else(PoisonError::into_inner);
        map.values()
            .filter(|f| f.paused_until.is_none_or(|t| t <= now))
            .map(|f| (Arc::clone(&f.partition), f.leader_epoch))
            .collect()
    }

    fn request(&self, batch: &[(Arc<Partition>, i32)]) -> FetchRequest {
        let mut topics: Vec<FetchTopic> = Vec::new();
        for (partition, epoch) in batch {
            let log = &partition.log;
            let fetch = FetchPartition::default()
                .with_partition(partition.index)
                .with_current_leader_epoch(*epoch)
                .with_fetch_offset(log.log_end_offset())
                .with_last_fetched_epoch(log.latest_epoch().unwrap_or(-1))
                .with_log_start_offset(log.log_start_offset())
                .with_partition_max_bytes(self.settings.fetch_max_bytes);
            match topics.iter_mut().find(|t| t.topic_id == partition.topic_id) {
                Some(t) => t.partitions.push(fetch),
                None => {
                    topics.push(FetchTopic::default().with_topic_id(partition.topic_id).with_partitions(vec![fetch]))
                }
            }
        }
        FetchRequest::default()
            .with_replica_state(ReplicaState::default().with_replica_id(BrokerId(self.node_id)).with_replica_epoch(-1))
            .with_max_wait_ms(self.settings.fetch_wait_max_ms)
            .with_min_bytes(1)
            .with_max_bytes(self.settings.fetch_response_max_bytes)
            .with_isolation_level(0)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(topics)
    }

    async fn handle(&self, batch: &[(Arc<Partition>, i32)], response: FetchResponse) {
        if response.error_code != 0 {
            tracing::debug!(leader = self.leader, code = response.error_code, "replica fetch refused");
            self.pause_all(batch);
            return;
        }
        for topic in response.responses {
            for data in topic.partitions {
                let Some((partition, epoch)) =
                    batch.iter().find(|(p, _)| p.topic_id == topic.topic_id && p.index == data.partition_index)
                else {
                    continue;
                };
                if let Err(e) = self.apply(partition, data).await {
                    tracing::info!(
                        topic = %partition.topic,
                        partition = partition.index,
                        leader = self.leader,
                        leader_epoch = epoch,
                        error = %e,
                        "replication paused"
                    );
                    self.pause(partition);
                }
            }
        }
    }

    /// Applies one partition's answer: append, truncate, or an error that pauses it.
    async fn apply(&self, partition: &Arc<Partition>, data: PartitionData) -> Result<(), String> {
        let error = ResponseError::try_from_code(data.error_code);
        let p = Arc::clone(partition);
        match error {
            None => {
                let diverging = (data.diverging_epoch.epoch, data.diverging_epoch.end_offset);
                let leader_hw = data.high_watermark;
                let records = data.records;
                tokio::task::spawn_blocking(move || -> Result<(), StorageError> {
                    let log = &p.log;
                    if diverging != (-1, -1) {
                        let target = truncation_offset(log, diverging);
                        tracing::info!(
                            topic = %p.topic,
                            partition = p.index,
                            log_end = log.log_end_offset(),
                            target,
                            leader_epoch_end = ?diverging,
                            "truncating a diverging tail"
                        );
                        log.truncate_to(target)?;
                    } else if let Some(records) = records.filter(|r| !r.is_empty()) {
                        let mut bytes = records.to_vec();
                        log.append_replicated(&mut bytes, crate::clock::now_ms())?;
                        if log.config().durable_acks() {
                            // Reported as held by the next fetch: on disk first.
                            log.flush_to(log.log_end_offset())?;
                        }
                    }
                    Ok(())
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
                partition.publish_log_end();
                partition.follower_high_watermark(leader_hw);
                Ok(())
            }
            Some(ResponseError::OffsetOutOfRange) => {
                let leader_start = data.log_start_offset;
                tokio::task::spawn_blocking(move || {
                    let log = &p.log;
                    if leader_start > log.log_end_offset() {
                        // The leader no longer has what we would fetch next: start over at its start.
                        log.truncate_fully_and_start_at(leader_start)
                    } else {
                        log.truncate_to(log.high_watermark())
                    }
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
                partition.publish_log_end();
                Ok(())
            }
            Some(e) => Err(format!("leader answered {e:?}")),
        }
    }

    fn pause(&self, partition: &Partition) {
        let until = Instant::now() + Duration::from_millis(self.settings.fetch_backoff_ms.max(10));
        let mut map = self.partitions.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = map.get_mut(&(partition.topic_id, partition.index)) {
            f.paused_until = Some(until);
        }
    }

    fn pause_all(&self, batch: &[(Arc<Partition>, i32)]) {
        for (partition, _) in batch {
            self.pause(partition);
        }
    }
}

/// Where a follower cuts its log when the leader says its last epoch diverged: the leader's
/// `(epoch, end offset)` for the follower's last epoch, against the follower's own end of that
/// epoch (Kafka's rule: the smaller of the two; with no common epoch, the high watermark).
fn truncation_offset(log: &crate::storage::Log, (leader_epoch, leader_end): (i32, i64)) -> i64 {
    if leader_end < 0 {
        return log.high_watermark();
    }
    let (epoch, end) = log.end_offset_for_epoch(leader_epoch);
    let own_end = if epoch < 0 { log.log_end_offset() } else { end };
    leader_end.min(own_end)
}

/// A connection to the leader's client listener.
struct Conn {
    stream: TcpStream,
    correlation_id: i32,
}

/// Sends `request` to `address` (connecting when needed) and reads the answer.
async fn exchange(
    conn: &mut Option<Conn>,
    address: &str,
    request: &FetchRequest,
    timeout: Duration,
    max_response: usize,
) -> anyhow::Result<FetchResponse> {
    if conn.is_none() {
        let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(address)).await??;
        stream.set_nodelay(true)?;
        *conn = Some(Conn { stream, correlation_id: 0 });
    }
    let c = conn.as_mut().ok_or_else(|| anyhow::anyhow!("no connection"))?;
    c.correlation_id = c.correlation_id.wrapping_add(1);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Fetch as i16)
        .with_request_api_version(FETCH_VERSION)
        .with_correlation_id(c.correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("sluice-replica-fetcher")));
    let mut body = BytesMut::new();
    body.extend_from_slice(&[0; 4]);
    header.encode(&mut body, ApiKey::Fetch.request_header_version(FETCH_VERSION))?;
    request.encode(&mut body, FETCH_VERSION)?;
    let len = u32::try_from(body.len() - 4)?;
    body[..4].copy_from_slice(&len.to_be_bytes());
    let exchange = async {
        c.stream.write_all(&body).await?;
        let len = c.stream.read_u32().await? as usize;
        anyhow::ensure!(len <= max_response, "a fetch response of {len} bytes is over the bound");
        let mut buf = vec![0u8; len];
        c.stream.read_exact(&mut buf).await?;
        Ok::<_, anyhow::Error>(buf)
    };
    let buf = tokio::time::timeout(timeout, exchange).await??;
    let mut buf = bytes::Bytes::from(buf);
    let header = ResponseHeader::decode(&mut buf, ApiKey::Fetch.response_header_version(FETCH_VERSION))?;
    anyhow::ensure!(header.correlation_id == c.correlation_id, "answer to another request");
    let response = FetchResponse::decode(&mut buf, FETCH_VERSION)?;
    anyhow::ensure!(!buf.has_remaining(), "trailing bytes in a fetch response");
    Ok(response)
}
