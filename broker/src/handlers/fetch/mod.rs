//! Fetch (key 1), versions 4-18 (consumer fetches): stored batches returned as they are, up to
//! the high watermark, within `max_bytes` and each partition's limit (but at least one whole
//! batch, KIP-74); long polling until `min_bytes` are there or `max_wait_ms` passes, woken by
//! appends rather than polling; topic ids from v13; incremental fetch sessions ([`session`]).

pub mod session;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_controller::image::MetadataImage;
use uuid::Uuid;

use self::session::{SessionError, SessionPartition, FINAL_EPOCH, INITIAL_EPOCH};
use super::errors::{partition_error, storage_error};
use super::new_leaders::NewLeaders;
use super::{Handler, RequestContext};
use crate::broker::Broker;
use crate::replica::Partition;

pub struct FetchHandler;

/// First version that names topics by id.
const TOPIC_ID_VERSION: i16 = 13;
/// Longest long poll honoured, whatever the client asks (bounds delayed fetches).
const MAX_WAIT_CAP_MS: i32 = 60_000;

/// What one partition's read produced.
struct PartitionRead {
    error: Option<ResponseError>,
    high_watermark: i64,
    log_start_offset: i64,
    records: Bytes,
    /// For a follower whose log diverged from the leader's: the largest epoch both have and
    /// where it ends on the leader (Fetch v12+'s DivergingEpoch).
    diverging: Option<(i32, i64)>,
}

impl PartitionRead {
    fn failed(error: ResponseError) -> Self {
        Self { error: Some(error), high_watermark: -1, log_start_offset: -1, records: Bytes::new(), diverging: None }
    }
}

/// Finds the hosted partitions behind `targets` (errors per partition where not hosted here).
async fn resolve(
    broker: &Broker,
    image: &MetadataImage,
    targets: &[SessionPartition],
    by_id: bool,
) -> Vec<Result<Arc<Partition>, ResponseError>> {
    let mut out = Vec::with_capacity(targets.len());
    for t in targets {
        let known = image.topics.get(&t.topic_id).is_some_and(|topic| by_id || topic.name == t.topic);
        if !known {
            out.push(Err(if by_id { ResponseError::UnknownTopicId } else { ResponseError::UnknownTopicOrPartition }));
            continue;
        }
        let epoch = image
            .topics
            .get(&t.topic_id)
            .and_then(|topic| topic.partitions.get(&t.partition))
            .map_or(-1, |p| p.leader_epoch);
        if t.current_leader_epoch >= 0 && epoch >= 0 && t.current_leader_epoch != epoch {
            out.push(Err(if t.current_leader_epoch > epoch {
                ResponseError::UnknownLeaderEpoch
            } else {
                ResponseError::FencedLeaderEpoch
            }));
            continue;
        }
        out.push(
            broker.replicas.leader_partition(image, t.topic_id, t.partition).await.map_err(|e| partition_error(&e)),
        );
    }
    out
}

/// Reads every target once, sharing `max_bytes` across them in order (blocking file I/O).
/// Reads every partition's records. A consumer reads up to the high watermark; a follower
/// (`replica`) reads up to the log end, unless its log diverged from this leader's.
fn read_all(
    targets: &[SessionPartition],
    partitions: &[Result<Arc<Partition>, ResponseError>],
    max_bytes: usize,
    replica: bool,
) -> Vec<PartitionRead> {
    let mut used = 0usize;
    targets
        .iter()
        .zip(partitions)
        .map(|(t, p)| {
            let partition = match p {
                Ok(p) => p,
                Err(e) => return PartitionRead::failed(*e),
            };
            let log = &partition.log;
            let high_watermark = log.high_watermark();
            if replica && t.last_fetched_epoch >= 0 {
                // KIP-595-style truncation detection: the follower's last epoch must end, here,
                // at or after its fetch offset, or it holds records this leader does not.
                let (epoch, end) = log.end_offset_for_epoch(t.last_fetched_epoch);
                if epoch < t.last_fetched_epoch || end < t.fetch_offset {
                    return PartitionRead {
                        error: None,
                        high_watermark,
                        log_start_offset: log.log_start_offset(),
                        records: Bytes::new(),
                        diverging: Some((epoch, end)),
                    };
                }
            }
            let upto = if replica { log.log_end_offset() } else { high_watermark };
            let limit = usize::try_from(t.partition_max_bytes.max(0)).unwrap_or(0).min(max_bytes.saturating_sub(used));
            let read = if limit == 0 && used > 0 {
                Ok(Bytes::new())
            } else {
                log.read(t.fetch_offset, limit, upto, used == 0)
            };
            match read {
                Ok(records) => {
                    used += records.len();
                    PartitionRead {
                        error: None,
                        high_watermark,
                        log_start_offset: log.log_start_offset(),
                        records,
                        diverging: None,
                    }
                }
                Err(e) => PartitionRead {
                    error: Some(storage_error(&e)),
                    high_watermark,
                    log_start_offset: log.log_start_offset(),
                    records: Bytes::new(),
                    diverging: None,
                },
            }
        })
        .collect()
}

/// Waits until any of the partitions' high watermarks moves, or `deadline`.
/// Waits until one partition's high watermark moves (a follower: its log end), or `deadline`.
async fn wait_for_append(partitions: &[Result<Arc<Partition>, ResponseError>], deadline: Instant, replica: bool) {
    let mut watches: Vec<_> = partitions
        .iter()
        .filter_map(|p| p.as_ref().ok())
        .map(|p| if replica { p.watch_log_end() } else { p.watch_high_watermark() })
        .collect();
    if watches.is_empty() {
        tokio::time::sleep_until(deadline.into()).await;
        return;
    }
    let changes = futures::future::select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
    let _ = tokio::time::timeout_at(deadline.into(), changes).await;
}

/// Targets of a sessionless (or session-opening) full fetch, in request order.
fn targets_from_request(image: &MetadataImage, request: &FetchRequest, by_id: bool) -> Vec<SessionPartition> {
    let mut targets = Vec::new();
    for topic in &request.topics {
        let (name, topic_id) = if by_id {
            (image.topics.get(&topic.topic_id).map(|t| t.name.clone()).unwrap_or_default(), topic.topic_id)
        } else {
            let name = topic.topic.0.as_str().to_string();
            let id = image.topic_by_name(&name).map_or(Uuid::nil(), |t| t.topic_id);
            (name, id)
        };
        for p in &topic.partitions {
            targets.push(SessionPartition {
                topic: name.clone(),
                topic_id,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes,
                current_leader_epoch: p.current_leader_epoch,
                last_fetched_epoch: p.last_fetched_epoch,
                last_sent: None,
            });
        }
    }
    targets
}

/// Which session (if any) serves this request, and the partitions to fetch.
enum Plan {
    /// No session: fetch these, answer with session id 0.
    Sessionless(Vec<SessionPartition>),
    /// Full fetch that opened session `id`.
    Full(i32, Vec<SessionPartition>),
    /// Incremental fetch in session `id`.
    Incremental(i32, Vec<SessionPartition>),
}

fn plan(broker: &Broker, image: &MetadataImage, request: &FetchRequest, by_id: bool) -> Result<Plan, ResponseError> {
    let mut cache = broker.fetch_sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    match (request.session_id, request.session_epoch) {
        (id, FINAL_EPOCH) => {
            cache.remove(id);
            Ok(Plan::Sessionless(targets_from_request(image, request, by_id)))
        }
        (id, INITIAL_EPOCH) => {
            cache.remove(id);
            let targets = targets_from_request(image, request, by_id);
            let new_id = cache.create(targets.clone());
            Ok(Plan::Full(new_id, targets))
        }
        (id, epoch) => {
            let session = cache.get_mut(id, epoch).map_err(|e| match e {
                SessionError::NotFound => ResponseError::FetchSessionIdNotFound,
                SessionError::InvalidEpoch => ResponseError::InvalidFetchSessionEpoch,
            })?;
            for p in targets_from_request(image, request, by_id) {
                session.upsert(p);
            }
            for forgotten in &request.forgotten_topics_data {
                let (name, topic_id) = if by_id {
                    (
                        image.topics.get(&forgotten.topic_id).map(|t| t.name.clone()).unwrap_or_default(),
                        forgotten.topic_id,
                    )
                } else {
                    let name = forgotten.topic.0.as_str().to_string();
                    let id = image.topic_by_name(&name).map_or(Uuid::nil(), |t| t.topic_id);
                    (name, id)
                };
                for p in &forgotten.partitions {
                    session.forget(&name, topic_id, *p);
                }
            }
            Ok(Plan::Incremental(id, session.partitions.clone()))
        }
    }
}

/// Remembers what was sent, and says which partitions an incremental response must carry.
fn record_sent(broker: &Broker, session_id: i32, targets: &[SessionPartition], reads: &[PartitionRead]) -> Vec<bool> {
    let mut cache = broker.fetch_sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let Ok(session) = cache.peek_mut(session_id) else { return vec![true; targets.len()] };
    targets
        .iter()
        .zip(reads)
        .map(|(t, r)| {
            let now = (r.high_watermark, r.log_start_offset);
            let stored = session
                .partitions
                .iter_mut()
                .find(|q| q.topic_id == t.topic_id && q.topic == t.topic && q.partition == t.partition);
            let changed = stored.as_ref().is_none_or(|q| q.last_sent != Some(now));
            if let Some(q) = stored {
                q.last_sent = Some(now);
            }
            changed || r.error.is_some() || !r.records.is_empty()
        })
        .collect()
}

fn response(
    targets: &[SessionPartition],
    reads: Vec<PartitionRead>,
    include: &[bool],
    by_id: bool,
    read_committed: bool,
) -> Vec<FetchableTopicResponse> {
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    for ((t, r), keep) in targets.iter().zip(reads).zip(include) {
        if !keep {
            continue;
        }
        let data = PartitionData::default()
            .with_partition_index(t.partition)
            .with_error_code(r.error.map_or(0, |e| e.code()))
            .with_high_watermark(r.high_watermark)
            .with_last_stable_offset(r.high_watermark)
            .with_log_start_offset(r.log_start_offset)
            .with_aborted_transactions(if read_committed { Some(Vec::new()) } else { None })
            .with_preferred_read_replica(BrokerId(-1))
            .with_records(Some(r.records));
        let data = match r.diverging {
            Some((epoch, end_offset)) => {
                data.with_diverging_epoch(EpochEndOffset::default().with_epoch(epoch).with_end_offset(end_offset))
            }
            None => data,
        };
        let same_topic = topics.last().is_some_and(|last| {
            if by_id {
                last.topic_id == t.topic_id
            } else {
                last.topic.0.as_str() == t.topic
            }
        });
        if !same_topic {
            topics.push(
                FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_string(t.topic.clone())))
                    .with_topic_id(t.topic_id),
            );
        }
        if let Some(last) = topics.last_mut() {
            last.partitions.push(data);
        }
    }
    topics
}

/// KIP-951: partitions answered NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH name the current
/// leader and epoch (v12+), and the response carries those leaders' endpoints (v16+).
fn name_new_leaders(image: &MetadataImage, topics: &mut [FetchableTopicResponse], version: i16) -> Vec<NodeEndpoint> {
    if version < 12 {
        return Vec::new();
    }
    let moved = [ResponseError::NotLeaderOrFollower.code(), ResponseError::FencedLeaderEpoch.code()];
    let mut leaders = NewLeaders::default();
    for topic in topics.iter_mut() {
        let topic_id = if version >= TOPIC_ID_VERSION {
            Some(topic.topic_id)
        } else {
            image.topic_by_name(topic.topic.0.as_str()).map(|t| t.topic_id)
        };
        for p in &mut topic.partitions {
            if !moved.contains(&p.error_code) {
                continue;
            }
            if let Some((leader, epoch)) = leaders.current(image, topic_id, p.partition_index) {
                p.current_leader =
                    LeaderIdAndEpoch::default().with_leader_id(BrokerId(leader)).with_leader_epoch(epoch);
            }
        }
    }
    if version < 16 {
        return Vec::new();
    }
    leaders.endpoints(image, |id, b| {
        NodeEndpoint::default()
            .with_node_id(BrokerId(id))
            .with_host(StrBytes::from_string(b.host.clone()))
            .with_port(b.port)
            .with_rack(b.rack.clone().map(StrBytes::from_string))
    })
}

/// Tells each led partition where follower `replica` has got to (its fetch offset), and sends
/// the ISR expansions that follow to the controller.
fn record_follower_fetches(
    broker: &Arc<Broker>,
    replica: i32,
    targets: &[SessionPartition],
    partitions: &[Result<Arc<Partition>, ResponseError>],
) {
    let now_ms = crate::clock::now_ms();
    for (t, p) in targets.iter().zip(partitions) {
        let Ok(partition) = p else { continue };
        if t.last_fetched_epoch >= 0 {
            // A follower whose log diverged holds records this leader does not: its fetch offset
            // says nothing about what it has in common with the leader, so it does not count.
            let (epoch, end) = partition.log.end_offset_for_epoch(t.last_fetched_epoch);
            if epoch < t.last_fetched_epoch || end < t.fetch_offset {
                continue;
            }
        }
        if let Ok(Some(proposal)) = partition.follower_fetched(replica, t.fetch_offset, now_ms) {
            crate::replica::propose_isr_change(broker, Arc::clone(partition), proposal);
        }
    }
}

impl Handler for FetchHandler {
    type Request = FetchRequest;
    type Response = FetchResponse;
    const KEY: ApiKey = ApiKey::Fetch;
    const VERSIONS: (i16, i16) = (4, 18);

    async fn handle(broker: Arc<Broker>, ctx: RequestContext, request: FetchRequest) -> Option<FetchResponse> {
        let image = broker.metadata.image();
        let by_id = ctx.api_version >= TOPIC_ID_VERSION;
        // Sessions exist from v7; older requests are always sessionless.
        let plan = if ctx.api_version >= 7 {
            plan(&broker, &image, &request, by_id)
        } else {
            Ok(Plan::Sessionless(targets_from_request(&image, &request, by_id)))
        };
        let (session_id, targets, incremental) = match plan {
            Ok(Plan::Sessionless(t)) => (0, t, false),
            Ok(Plan::Full(id, t)) => (id, t, false),
            Ok(Plan::Incremental(id, t)) => (id, t, true),
            Err(e) => return Some(FetchResponse::default().with_error_code(e.code()).with_session_id(0)),
        };
        let max_bytes = usize::try_from(request.max_bytes.max(0)).unwrap_or(0).min(broker.config.fetch_max_bytes);
        let min_bytes = usize::try_from(request.min_bytes.max(0)).unwrap_or(0);
        let deadline = Instant::now()
            + Duration::from_millis(u64::try_from(request.max_wait_ms.clamp(0, MAX_WAIT_CAP_MS)).unwrap_or(0));
        let partitions = resolve(&broker, &image, &targets, by_id).await;
        // A follower's fetch (replica id in the request, or in ReplicaState from v15).
        let replica_id = if ctx.api_version >= 15 { request.replica_state.replica_id.0 } else { request.replica_id.0 };
        let replica = replica_id >= 0;
        if replica {
            record_follower_fetches(&broker, replica_id, &targets, &partitions);
        }
        let partitions = Arc::new(partitions);
        let targets = Arc::new(targets);
        let reads = loop {
            let (t, p) = (Arc::clone(&targets), Arc::clone(&partitions));
            let reads =
                tokio::task::spawn_blocking(move || read_all(&t, &p, max_bytes, replica)).await.unwrap_or_default();
            let bytes: usize = reads.iter().map(|r| r.records.len()).sum();
            let any_error = reads.iter().any(|r| r.error.is_some());
            if bytes >= min_bytes || any_error || Instant::now() >= deadline || broker.shutdown.is_cancelled() {
                break reads;
            }
            tokio::select! {
                () = wait_for_append(&partitions, deadline, replica) => {}
                () = broker.shutdown.cancelled() => {}
            }
        };
        // Every response in a session records what it sent; only incremental ones leave out
        // partitions without news.
        let changed = if session_id != 0 { record_sent(&broker, session_id, &targets, &reads) } else { Vec::new() };
        let include = if incremental { changed } else { vec![true; targets.len()] };
        let mut topics = response(&targets, reads, &include, by_id, request.isolation_level == 1);
        let node_endpoints = name_new_leaders(&image, &mut topics, ctx.api_version);
        Some(
            FetchResponse::default()
                .with_session_id(session_id)
                .with_responses(topics)
                .with_node_endpoints(node_endpoints),
        )
    }
}
