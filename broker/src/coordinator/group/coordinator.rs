//! [`GroupCoordinator`]: every group of one `__consumer_offsets` partition, the tickets of parked
//! requests, and the writes handed to the caller that have not completed yet.

use std::collections::{BTreeMap, BTreeSet};

use super::classic::ClassicGroup;
use super::consumer::{self, ConsumerGroup, LEAVE_EPOCH};
use super::ctx::{Ctx, Out, WriteKind};
use super::offsets::unknown_offset;
use super::records::{Record, RecordKey, RecordValue};
use super::{
    CommitRequest, ConsumerGroupDescription, ConsumerHeartbeatRequest, ConsumerHeartbeatResponse, Effects,
    FetchedOffset, GroupConfig, GroupDescription, GroupError, GroupState, HeartbeatRequest, JoinRequest, JoinResponse,
    LeaveMember, LeaveResult, ListedGroup, Outcome, PartitionResult, Reply, Step, SyncRequest, SyncResponse, Ticket,
    TopicPartition, Write, WriteId, GROUP_TYPE_CLASSIC, GROUP_TYPE_CONSUMER,
};

/// The group coordinator for one partition of `__consumer_offsets`.
///
/// The caller (the handler layer) owns one per partition this broker leads, behind a lock, and
/// must: park each [`Outcome::Parked`] request under its ticket and answer it from the
/// [`super::Completion`] that names it; append every [`Write`] to the partition in the order
/// returned and call [`Self::write_completed`] in that same order; call [`Self::tick`]
/// periodically; and on losing the partition call [`Self::abandon`].
#[derive(Debug)]
pub struct GroupCoordinator {
    config: GroupConfig,
    groups: BTreeMap<String, ClassicGroup>,
    /// KIP-848 groups. A group id is in at most one of `groups` and `consumer_groups`: the
    /// coordinator checks the other map before creating a group in either.
    consumer_groups: BTreeMap<String, ConsumerGroup>,
    writes: BTreeMap<WriteId, (WriteKind, Vec<Record>)>,
    next_write_id: WriteId,
    next_ticket: Ticket,
    member_ids: MemberIds,
    next_retention_check_ms: i64,
}

impl GroupCoordinator {
    /// An empty coordinator. `member_id_seed` must differ between coordinators and restarts
    /// (draw it at random when loading the partition): member ids are derived from it.
    pub fn new(config: GroupConfig, member_id_seed: u64) -> Self {
        Self {
            config,
            groups: BTreeMap::new(),
            consumer_groups: BTreeMap::new(),
            writes: BTreeMap::new(),
            next_write_id: 1,
            next_ticket: 1,
            member_ids: MemberIds { seed: member_id_seed, counter: 0 },
            next_retention_check_ms: i64::MIN,
        }
    }

    /// Rebuilds a coordinator from the records of its partition, in log order: each group's
    /// latest snapshot (Stable or Empty, sessions restarted at `now_ms`) and committed offsets.
    pub fn replay(
        config: GroupConfig,
        member_id_seed: u64,
        records: impl IntoIterator<Item = Record>,
        now_ms: i64,
    ) -> Self {
        let mut coordinator = Self::new(config, member_id_seed);
        for record in records {
            coordinator.apply(record, now_ms, true);
        }
        coordinator
    }

    /// How many groups this coordinator holds (bounded by `groups_max` for new groups).
    pub fn group_count(&self) -> usize {
        self.groups.len() + self.consumer_groups.len()
    }

    /// ConsumerGroupHeartbeat (KIP-848): join (epoch 0), heartbeat, leave (-1) or a static
    /// member's temporary leave (-2). `partitions` gives the current partition count of a topic
    /// (None if it does not exist). Parks until the records it changed are durable.
    pub fn consumer_heartbeat(
        &mut self,
        req: ConsumerHeartbeatRequest,
        partitions: &dyn Fn(&str) -> Option<i32>,
        now_ms: i64,
    ) -> Step<Result<ConsumerHeartbeatResponse, GroupError>> {
        let ticket = self.ticket();
        let mut out = Out::default();
        match self.run_consumer_heartbeat(&req, partitions, now_ms) {
            Err(e) => out.reply(ticket, Reply::ConsumerHeartbeat(Err(e))),
            Ok((response, records)) if records.is_empty() => out.reply(ticket, Reply::ConsumerHeartbeat(Ok(response))),
            Ok((response, records)) => out.writes.push((WriteKind::ConsumerHeartbeat { ticket, response }, records)),
        }
        self.finish(ticket, out, |r| match r {
            Reply::ConsumerHeartbeat(x) => Ok(x),
            other => Err(Box::new(other)),
        })
    }

    fn run_consumer_heartbeat(
        &mut self,
        req: &ConsumerHeartbeatRequest,
        partitions: &dyn Fn(&str) -> Option<i32>,
        now_ms: i64,
    ) -> Result<(ConsumerHeartbeatResponse, Vec<Record>), GroupError> {
        consumer::validate_heartbeat(req)?;
        if self.groups.contains_key(&req.group_id) {
            // Kafka: "Group {} is not a consumer group." (no online upgrade here).
            return Err(GroupError::GroupIdNotFound);
        }
        if req.member_epoch <= LEAVE_EPOCH {
            return match self.consumer_groups.get_mut(&req.group_id) {
                Some(g) if !g.deleting => g.leave(req),
                _ => Err(GroupError::GroupIdNotFound),
            };
        }
        let created = !self.consumer_groups.contains_key(&req.group_id);
        if created {
            if req.member_epoch != 0 {
                return Err(GroupError::GroupIdNotFound);
            }
            if self.group_count() >= self.config.groups_max {
                return Err(GroupError::GroupsMaxReached);
            }
            self.consumer_groups.insert(req.group_id.clone(), ConsumerGroup::new(req.group_id.clone()));
        }
        let new_member_id = if req.member_id.is_empty() { self.member_ids.next_uuid() } else { String::new() };
        let Some(group) = self.consumer_groups.get_mut(&req.group_id) else {
            return Err(GroupError::GroupIdNotFound);
        };
        if group.deleting {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        let result = group.heartbeat(req, new_member_id, partitions, &self.config, now_ms);
        if result.is_err() && created {
            self.consumer_groups.remove(&req.group_id);
        }
        result
    }

    /// ConsumerGroupDescribe for one group.
    ///
    /// # Errors
    /// GROUP_ID_NOT_FOUND for an unknown group or a classic one (as Kafka).
    pub fn consumer_describe(&self, group_id: &str) -> Result<ConsumerGroupDescription, GroupError> {
        match self.consumer_groups.get(group_id) {
            Some(g) if !g.deleting => Ok(g.describe()),
            _ => Err(GroupError::GroupIdNotFound),
        }
    }

    /// JoinGroup. Parks until the join phase ends, unless answered at once (errors,
    /// MEMBER_ID_REQUIRED, or a known member's rejoin that needs no rebalance).
    pub fn join(&mut self, req: JoinRequest, now_ms: i64) -> Step<Result<JoinResponse, GroupError>> {
        let ticket = self.ticket();
        let mut out = Out::default();
        match self.admit_join(&req, now_ms, &mut out) {
            Err(e) => out.reply(ticket, Reply::Join(Err(e))),
            Ok(()) => {
                let prefix = req.group_instance_id.as_deref().unwrap_or(&req.client_id);
                let new_member_id = self.member_ids.next(prefix);
                let mut cx = Ctx { cfg: &self.config, now_ms, out: &mut out };
                match self.groups.get_mut(&req.group_id) {
                    Some(group) => group.join(req, ticket, new_member_id, &mut cx),
                    None => cx.reply_join(ticket, Err(GroupError::UnknownMemberId)),
                }
            }
        }
        self.finish(ticket, out, |r| match r {
            Reply::Join(x) => Ok(x),
            other => Err(Box::new(other)),
        })
    }

    /// Checks what Kafka checks before looking at the group, creating the group for a new member.
    fn admit_join(&mut self, req: &JoinRequest, now_ms: i64, out: &mut Out) -> Result<(), GroupError> {
        if req.group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        if let Some(g) = self.consumer_groups.get(&req.group_id) {
            // Kafka, without classic members in consumer groups (no online migration here).
            return Err(if g.is_empty() { GroupError::GroupIdNotFound } else { GroupError::InconsistentGroupProtocol });
        }
        let timeout = req.session_timeout_ms;
        if timeout < self.config.min_session_timeout_ms || timeout > self.config.max_session_timeout_ms {
            return Err(GroupError::InvalidSessionTimeout);
        }
        if self.groups.contains_key(&req.group_id) {
            return Ok(());
        }
        if !req.member_id.is_empty() {
            return Err(GroupError::UnknownMemberId);
        }
        let group = self.create_group(&req.group_id, now_ms)?;
        // As Kafka: a new group is recorded at once, so a successor coordinator lists it too.
        let record = group.metadata_record(None);
        out.writes.push((WriteKind::Metadata, vec![record]));
        Ok(())
    }

    fn create_group(&mut self, group_id: &str, now_ms: i64) -> Result<&mut ClassicGroup, GroupError> {
        if self.group_count() >= self.config.groups_max {
            return Err(GroupError::GroupsMaxReached);
        }
        Ok(self.groups.entry(group_id.to_owned()).or_insert_with(|| ClassicGroup::new(group_id.to_owned(), now_ms)))
    }

    /// SyncGroup. Parks until the leader's assignment is durable, unless answered at once.
    pub fn sync(&mut self, req: SyncRequest, now_ms: i64) -> Step<Result<SyncResponse, GroupError>> {
        let ticket = self.ticket();
        let mut out = Out::default();
        let mut cx = Ctx { cfg: &self.config, now_ms, out: &mut out };
        match self.groups.get_mut(&req.group_id) {
            Some(group) => group.sync(req, ticket, &mut cx),
            None => cx.reply_sync(ticket, Err(GroupError::UnknownMemberId)),
        }
        self.finish(ticket, out, |r| match r {
            Reply::Sync(x) => Ok(x),
            other => Err(Box::new(other)),
        })
    }

    /// Heartbeat: restarts the member's session timer; REBALANCE_IN_PROGRESS tells it to rejoin.
    ///
    /// # Errors
    /// UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID, ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS,
    /// COORDINATOR_NOT_AVAILABLE, as Kafka.
    pub fn heartbeat(&mut self, req: &HeartbeatRequest, now_ms: i64) -> Result<(), GroupError> {
        match self.groups.get_mut(&req.group_id) {
            Some(group) => group.heartbeat(req, now_ms),
            None => Err(GroupError::UnknownMemberId),
        }
    }

    /// LeaveGroup (batched, v3+): a result per member; any departure starts a rebalance.
    ///
    /// # Errors
    /// COORDINATOR_NOT_AVAILABLE (the whole request) for a group being deleted.
    pub fn leave(
        &mut self,
        group_id: &str,
        members: Vec<LeaveMember>,
        now_ms: i64,
    ) -> (Result<Vec<LeaveResult>, GroupError>, Effects) {
        let mut out = Out::default();
        let result = match self.groups.get_mut(group_id) {
            Some(group) => group.leave(members, &mut Ctx { cfg: &self.config, now_ms, out: &mut out }),
            None => Ok(members
                .into_iter()
                .map(|m| LeaveResult {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    result: Err(GroupError::UnknownMemberId),
                })
                .collect()),
        };
        (result, self.register(out))
    }

    /// OffsetCommit. Parks until the offsets are durable; they become visible to OffsetFetch
    /// only then. Partitions failing validation are answered with their error.
    pub fn commit_offsets(&mut self, req: CommitRequest, now_ms: i64) -> Step<Vec<PartitionResult>> {
        let ticket = self.ticket();
        let mut out = Out::default();
        match self.validate_commit(&req, now_ms) {
            Err(e) => out.reply(ticket, Reply::Commit(results_all(&req, &e))),
            Ok(()) => self.prepare_commit(req, ticket, now_ms, &mut out),
        }
        self.finish(ticket, out, |r| match r {
            Reply::Commit(x) => Ok(x),
            other => Err(Box::new(other)),
        })
    }

    fn validate_commit(&mut self, req: &CommitRequest, now_ms: i64) -> Result<(), GroupError> {
        if req.group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        if let Some(g) = self.consumer_groups.get(&req.group_id) {
            return g.validate_offset_commit(&req.member_id, req.generation_id);
        }
        match self.groups.get(&req.group_id) {
            Some(g) => g.validate_offset_commit(&req.member_id, req.group_instance_id.as_deref(), req.generation_id),
            // A simple commit creates a group that only stores offsets.
            None if req.generation_id < 0 => self.create_group(&req.group_id, now_ms).map(|_| ()),
            // Kafka answers GROUP_ID_NOT_FOUND here from OffsetCommit v9; the handler may map.
            None => Err(GroupError::IllegalGeneration),
        }
    }

    fn prepare_commit(&mut self, req: CommitRequest, ticket: Ticket, now_ms: i64, out: &mut Out) {
        let max = self.config.offset_metadata_max_bytes;
        let mut results = Vec::with_capacity(req.offsets.len());
        let mut records = Vec::new();
        let mut keys = Vec::new();
        for o in req.offsets {
            let metadata = o.metadata.unwrap_or_default();
            let result = if metadata.len() > max {
                Err(GroupError::OffsetMetadataTooLarge)
            } else {
                let tp = TopicPartition { topic: o.topic.clone(), partition: o.partition };
                let value = super::records::OffsetValue {
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata,
                    commit_timestamp_ms: now_ms,
                };
                records.push(Record::offset(&tp, &req.group_id, value));
                keys.push(tp);
                Ok(())
            };
            results.push(PartitionResult { topic: o.topic, partition: o.partition, result });
        }
        match self.offsets_mut(&req.group_id) {
            Some(offsets) if !records.is_empty() => {
                offsets.begin_writes(&keys);
                out.writes.push((WriteKind::Commit { ticket, group_id: req.group_id, results, keys }, records));
            }
            _ => out.reply(ticket, Reply::Commit(results)),
        }
    }

    /// OffsetFetch for `partitions`, or for every committed partition when None. Unknown
    /// groups and partitions give offset -1, leader epoch -1, metadata "".
    ///
    /// # Errors
    /// GROUP_ID_NOT_FOUND while the group is being deleted.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<Vec<FetchedOffset>, GroupError> {
        if let Some(g) = self.consumer_groups.get(group_id) {
            if g.deleting {
                return Err(GroupError::GroupIdNotFound);
            }
            return Ok(match partitions {
                Some(ps) => ps.iter().map(|tp| g.offsets.fetch(tp)).collect(),
                None => g.offsets.fetch_all(),
            });
        }
        match self.groups.get(group_id) {
            None => Ok(partitions.map(|ps| ps.iter().map(unknown_offset).collect()).unwrap_or_default()),
            Some(g) if g.state == GroupState::Dead => Err(GroupError::GroupIdNotFound),
            Some(g) => Ok(match partitions {
                Some(ps) => ps.iter().map(|tp| g.offsets.fetch(tp)).collect(),
                None => g.offsets.fetch_all(),
            }),
        }
    }

    /// OffsetDelete. Parks until the tombstones are durable.
    pub fn delete_offsets(
        &mut self,
        group_id: &str,
        partitions: Vec<TopicPartition>,
        _now_ms: i64,
    ) -> Step<Result<Vec<PartitionResult>, GroupError>> {
        let ticket = self.ticket();
        let mut out = Out::default();
        if let Some(g) = self.consumer_groups.get_mut(group_id) {
            let subscribed: BTreeSet<String> =
                partitions.iter().filter(|tp| g.is_subscribed_to(&tp.topic)).map(|tp| tp.topic.clone()).collect();
            prepare_offset_delete(group_id, &mut g.offsets, |t| subscribed.contains(t), partitions, ticket, &mut out);
            return self.finish(ticket, out, |r| match r {
                Reply::DeleteOffsets(x) => Ok(x),
                other => Err(Box::new(other)),
            });
        }
        match self.groups.get_mut(group_id) {
            None => out.reply(ticket, Reply::DeleteOffsets(Err(GroupError::GroupIdNotFound))),
            Some(g) => match g.validate_offset_delete() {
                Err(e) => out.reply(ticket, Reply::DeleteOffsets(Err(e))),
                Ok(()) => {
                    let has_members = g.state != GroupState::Empty;
                    let subscribed: BTreeSet<String> = partitions
                        .iter()
                        .filter(|tp| has_members && g.is_subscribed_to(&tp.topic))
                        .map(|tp| tp.topic.clone())
                        .collect();
                    let group_id = g.group_id.clone();
                    prepare_offset_delete(
                        &group_id,
                        &mut g.offsets,
                        |t| subscribed.contains(t),
                        partitions,
                        ticket,
                        &mut out,
                    )
                }
            },
        }
        self.finish(ticket, out, |r| match r {
            Reply::DeleteOffsets(x) => Ok(x),
            other => Err(Box::new(other)),
        })
    }

    /// DeleteGroups for the groups of this partition: only Empty groups go (NON_EMPTY_GROUP
    /// otherwise, GROUP_ID_NOT_FOUND for unknown ones). Parks until the tombstones are durable.
    pub fn delete_groups(
        &mut self,
        group_ids: Vec<String>,
        now_ms: i64,
    ) -> Step<Vec<(String, Result<(), GroupError>)>> {
        let ticket = self.ticket();
        let mut results = Vec::with_capacity(group_ids.len());
        let mut records = Vec::new();
        let mut deleted = Vec::new();
        for id in group_ids {
            if let Some(g) = self.consumer_groups.get_mut(&id) {
                let result = if g.deleting {
                    Err(GroupError::GroupIdNotFound)
                } else if !g.is_empty() {
                    Err(GroupError::NonEmptyGroup)
                } else {
                    let (tombstones, keys) = g.delete_records();
                    records.extend(tombstones);
                    deleted.push((id.clone(), keys));
                    Ok(())
                };
                results.push((id, result));
                continue;
            }
            let result = match self.groups.get_mut(&id) {
                None => Err(GroupError::GroupIdNotFound),
                Some(g) => g.validate_delete().map(|()| {
                    let (tombstones, keys) = g.delete_records(now_ms);
                    records.extend(tombstones);
                    deleted.push((id.clone(), keys));
                }),
            };
            results.push((id, result));
        }
        let mut out = Out::default();
        if deleted.is_empty() {
            out.reply(ticket, Reply::DeleteGroups(results));
        } else {
            out.writes.push((WriteKind::DeleteGroups { ticket, results, deleted }, records));
        }
        self.finish(ticket, out, |r| match r {
            Reply::DeleteGroups(x) => Ok(x),
            other => Err(Box::new(other)),
        })
    }

    /// ListGroups: `states` (Kafka's names, any case) and `types` ("classic") filter when not
    /// empty.
    pub fn list_groups(&self, states: &[String], types: &[String]) -> Vec<ListedGroup> {
        let type_ok = |name: &str| types.is_empty() || types.iter().any(|t| t.eq_ignore_ascii_case(name));
        let state_ok = |g: &ListedGroup| states.is_empty() || states.iter().any(|s| s.eq_ignore_ascii_case(g.state));
        let classic = self.groups.values().map(ClassicGroup::listed);
        let consumer = self.consumer_groups.values().map(ConsumerGroup::listed);
        classic
            .filter(|_| type_ok(GROUP_TYPE_CLASSIC))
            .chain(consumer.filter(|_| type_ok(GROUP_TYPE_CONSUMER)))
            .filter(state_ok)
            .collect()
    }

    /// DescribeGroups for one group.
    ///
    /// # Errors
    /// GROUP_ID_NOT_FOUND for an unknown group (before DescribeGroups v6 the handler answers a
    /// Dead group with no error instead, as Kafka).
    pub fn describe_group(&self, group_id: &str) -> Result<GroupDescription, GroupError> {
        self.groups.get(group_id).map(ClassicGroup::describe).ok_or(GroupError::GroupIdNotFound)
    }

    /// Fires every deadline up to `now_ms`: KIP-394 pending ids, sessions, join and sync phases,
    /// and (every `offsets_retention_check_interval_ms`) offset retention.
    pub fn tick(&mut self, now_ms: i64) -> Effects {
        let mut out = Out::default();
        let mut cx = Ctx { cfg: &self.config, now_ms, out: &mut out };
        for group in self.groups.values_mut() {
            group.tick(&mut cx);
        }
        for group in self.consumer_groups.values_mut() {
            let records = group.tick(now_ms);
            if !records.is_empty() {
                out.writes.push((WriteKind::Metadata, records));
            }
        }
        if now_ms >= self.next_retention_check_ms {
            self.next_retention_check_ms = now_ms.saturating_add(self.config.offsets_retention_check_interval_ms);
            let retention_ms = self.config.offsets_retention_ms;
            out.writes.extend(self.groups.values_mut().filter_map(|g| g.expire(now_ms, retention_ms)));
            for group in self.consumer_groups.values_mut() {
                if let Some((records, keys)) = group.expire(now_ms, retention_ms) {
                    let kind = WriteKind::Expire { group_id: group.group_id.clone(), keys, group_deleted: false };
                    out.writes.push((kind, records));
                }
            }
        }
        self.register(out)
    }

    /// Reports the fate of a write: `Ok` once its records are durable, or the error to answer
    /// with (already mapped as Kafka maps append errors: COORDINATOR_NOT_AVAILABLE,
    /// NOT_COORDINATOR, UNKNOWN_SERVER_ERROR). Writes must be reported in the order they were
    /// appended, so that this coordinator's offsets are always those the log replays to.
    pub fn write_completed(&mut self, id: WriteId, result: Result<(), GroupError>, now_ms: i64) -> Effects {
        let Some((kind, records)) = self.writes.remove(&id) else {
            tracing::warn!(write_id = id, "completion for an unknown group coordinator write");
            return Effects::default();
        };
        if let Some(oldest) = self.writes.keys().next() {
            if *oldest < id {
                tracing::warn!(write_id = id, oldest = *oldest, "group coordinator writes completed out of order");
            }
        }
        if result.is_ok() {
            for record in records {
                self.apply(record, now_ms, false);
            }
        }
        let mut out = Out::default();
        self.complete_write(kind, result, now_ms, &mut out);
        self.register(out)
    }

    fn complete_write(&mut self, kind: WriteKind, result: Result<(), GroupError>, now_ms: i64, out: &mut Out) {
        match kind {
            WriteKind::Metadata => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "group metadata write failed");
                }
            }
            WriteKind::Sync { group_id, generation_id, assignment } => {
                if let Some(g) = self.groups.get_mut(&group_id) {
                    let mut cx = Ctx { cfg: &self.config, now_ms, out };
                    g.on_sync_written(generation_id, &assignment, result, &mut cx);
                }
            }
            kind @ WriteKind::StaticReplace { .. } => self.complete_static_replace(kind, result, now_ms, out),
            WriteKind::Commit { ticket, group_id, results, keys } => {
                self.end_writes(&group_id, &keys);
                out.reply(ticket, Reply::Commit(commit_outcome(results, &result)));
            }
            WriteKind::DeleteOffsets { ticket, group_id, results, keys } => {
                self.end_writes(&group_id, &keys);
                out.reply(ticket, Reply::DeleteOffsets(result.map(|()| results)));
            }
            WriteKind::DeleteGroups { ticket, results, deleted } => {
                self.complete_delete_groups(ticket, results, deleted, result, now_ms, out)
            }
            WriteKind::ConsumerHeartbeat { ticket, response } => {
                out.reply(ticket, Reply::ConsumerHeartbeat(result.map(|()| response)));
            }
            WriteKind::Expire { group_id, keys, group_deleted } => {
                self.end_writes(&group_id, &keys);
                if result.is_err() && group_deleted {
                    if let Some(g) = self.groups.get_mut(&group_id) {
                        g.revive(now_ms);
                    }
                }
            }
        }
    }

    fn complete_static_replace(&mut self, kind: WriteKind, result: Result<(), GroupError>, now_ms: i64, out: &mut Out) {
        let group_id = match &kind {
            WriteKind::StaticReplace { group_id, .. } => group_id.clone(),
            _ => return,
        };
        match self.groups.get_mut(&group_id) {
            Some(g) => g.on_static_replace_written(kind, result, &mut Ctx { cfg: &self.config, now_ms, out }),
            None => {
                if let (Some(ticket), Some(reply)) = (kind.ticket(), kind.failed_reply(&GroupError::UnknownMemberId)) {
                    out.reply(ticket, reply);
                }
            }
        }
    }

    fn complete_delete_groups(
        &mut self,
        ticket: Ticket,
        mut results: Vec<(String, Result<(), GroupError>)>,
        deleted: Vec<(String, Vec<TopicPartition>)>,
        result: Result<(), GroupError>,
        now_ms: i64,
        out: &mut Out,
    ) {
        for (group_id, keys) in &deleted {
            self.end_writes(group_id, keys);
            if let Err(e) = &result {
                if let Some(g) = self.groups.get_mut(group_id) {
                    g.revive(now_ms);
                }
                if let Some(g) = self.consumer_groups.get_mut(group_id) {
                    g.deleting = false;
                }
                for (_, r) in results.iter_mut().filter(|(id, _)| id == group_id) {
                    *r = Err(e.clone());
                }
            }
        }
        out.reply(ticket, Reply::DeleteGroups(results));
    }

    fn end_writes(&mut self, group_id: &str, keys: &[TopicPartition]) {
        if let Some(offsets) = self.offsets_mut(group_id) {
            offsets.end_writes(keys);
        }
    }

    /// The committed offsets of a group of either type.
    fn offsets_mut(&mut self, group_id: &str) -> Option<&mut super::offsets::GroupOffsets> {
        match self.consumer_groups.get_mut(group_id) {
            Some(g) => Some(&mut g.offsets),
            None => self.groups.get_mut(group_id).map(|g| &mut g.offsets),
        }
    }

    /// Gives up on everything parked (the partition moved away or is unloading): every ticket
    /// is answered with `error` (normally NOT_COORDINATOR) and pending writes are forgotten.
    pub fn abandon(&mut self, error: GroupError) -> Effects {
        let mut out = Out::default();
        for group in self.groups.values_mut() {
            let (joins, syncs) = group.take_tickets();
            for t in joins {
                out.reply(t, Reply::Join(Err(error.clone())));
            }
            for t in syncs {
                out.reply(t, Reply::Sync(Err(error.clone())));
            }
        }
        for (kind, _) in std::mem::take(&mut self.writes).into_values() {
            if let (Some(ticket), Some(reply)) = (kind.ticket(), kind.failed_reply(&error)) {
                out.reply(ticket, reply);
            }
        }
        Effects { completions: out.completions, writes: Vec::new() }
    }

    /// Applies one durable record: the single path by which offsets change and deleted groups
    /// go, shared by live completion and replay. Group snapshots change a live group not at all
    /// (it is already there); in replay they rebuild it.
    fn apply(&mut self, record: Record, now_ms: i64, replaying: bool) {
        match (record.key, record.value) {
            (RecordKey::Offset { group_id, topic, partition }, value) => {
                let value = match value {
                    Some(RecordValue::Offset(v)) => Some(v),
                    _ => None,
                };
                let tp = TopicPartition { topic, partition };
                if let Some(g) = self.consumer_groups.get_mut(&group_id) {
                    return g.offsets.apply(tp, value);
                }
                if value.is_none() && !self.groups.contains_key(&group_id) {
                    return;
                }
                let group = self.groups.entry(group_id.clone()).or_insert_with(|| ClassicGroup::new(group_id, now_ms));
                group.offsets.apply(tp, value);
            }
            (RecordKey::ConsumerGroup { group_id }, None) => {
                self.consumer_groups.remove(&group_id);
            }
            (
                key @ (RecordKey::ConsumerGroup { .. }
                | RecordKey::ConsumerMember { .. }
                | RecordKey::ConsumerTarget { .. }),
                value,
            ) => {
                if !replaying {
                    return;
                }
                let group_id = key.group_id().to_owned();
                let group =
                    self.consumer_groups.entry(group_id.clone()).or_insert_with(|| ConsumerGroup::new(group_id));
                group.load(&key, value, &self.config, now_ms);
            }
            (RecordKey::Group { group_id }, None) => {
                self.groups.remove(&group_id);
            }
            (RecordKey::Group { group_id }, Some(RecordValue::Group(v))) if replaying => {
                let group = self.groups.entry(group_id.clone()).or_insert_with(|| ClassicGroup::new(group_id, now_ms));
                group.load(v, now_ms);
            }
            (RecordKey::Group { .. }, Some(_)) => {}
        }
    }

    fn ticket(&mut self) -> Ticket {
        let t = self.next_ticket;
        self.next_ticket = self.next_ticket.wrapping_add(1);
        t
    }

    /// Numbers the step's writes and remembers what each is for.
    fn register(&mut self, out: Out) -> Effects {
        let mut writes = Vec::with_capacity(out.writes.len());
        for (kind, records) in out.writes {
            let id = self.next_write_id;
            self.next_write_id = self.next_write_id.wrapping_add(1);
            writes.push(Write { id, records: records.clone() });
            self.writes.insert(id, (kind, records));
        }
        Effects { completions: out.completions, writes }
    }

    /// Turns a step into its [`Step`]: `Done` if the request's own ticket was answered.
    fn finish<T>(&mut self, ticket: Ticket, out: Out, pick: fn(Reply) -> Result<T, Box<Reply>>) -> Step<T> {
        let mut effects = self.register(out);
        if let Some(pos) = effects.completions.iter().position(|c| c.ticket == ticket) {
            let completion = effects.completions.remove(pos);
            match pick(completion.reply) {
                Ok(answer) => return Step { outcome: Outcome::Done(answer), effects },
                // Cannot happen: a ticket is only ever answered with its own API's reply.
                Err(reply) => effects.completions.insert(pos, super::Completion { ticket, reply: *reply }),
            }
        }
        Step { outcome: Outcome::Parked(ticket), effects }
    }
}

fn prepare_offset_delete(
    group_id: &str,
    offsets: &mut super::offsets::GroupOffsets,
    subscribed: impl Fn(&str) -> bool,
    partitions: Vec<TopicPartition>,
    ticket: Ticket,
    out: &mut Out,
) {
    let mut results = Vec::with_capacity(partitions.len());
    let mut records = Vec::new();
    let mut keys = Vec::new();
    for tp in partitions {
        let result = if subscribed(&tp.topic) {
            Err(GroupError::GroupSubscribedToTopic)
        } else {
            if offsets.has(&tp) {
                records.push(Record::offset_tombstone(group_id, &tp));
                keys.push(tp.clone());
            }
            Ok(())
        };
        results.push(PartitionResult { topic: tp.topic, partition: tp.partition, result });
    }
    if records.is_empty() {
        return out.reply(ticket, Reply::DeleteOffsets(Ok(results)));
    }
    offsets.begin_writes(&keys);
    let kind = WriteKind::DeleteOffsets { ticket, group_id: group_id.to_owned(), results, keys };
    out.writes.push((kind, records));
}

fn results_all(req: &CommitRequest, error: &GroupError) -> Vec<PartitionResult> {
    req.offsets
        .iter()
        .map(|o| PartitionResult { topic: o.topic.clone(), partition: o.partition, result: Err(error.clone()) })
        .collect()
}

/// The written partitions take the write's result; the others keep their validation error.
fn commit_outcome(results: Vec<PartitionResult>, write: &Result<(), GroupError>) -> Vec<PartitionResult> {
    match write {
        Ok(()) => results,
        Err(e) => results
            .into_iter()
            .map(|r| match r.result {
                Ok(()) => PartitionResult { result: Err(e.clone()), ..r },
                Err(_) => r,
            })
            .collect(),
    }
}

/// Member ids as Kafka shapes them (`<client or instance id>-<uuid>`), derived from a seed and a
/// counter so that the core stays deterministic; distinct for every counter value.
#[derive(Debug)]
struct MemberIds {
    seed: u64,
    counter: u64,
}

impl MemberIds {
    /// A bare UUID-shaped id (KIP-848 member ids, when a v0 client sends none).
    fn next_uuid(&mut self) -> String {
        let id = self.next("");
        id.trim_start_matches('-').to_owned()
    }

    fn next(&mut self, prefix: &str) -> String {
        self.counter = self.counter.wrapping_add(1);
        let hi = splitmix64(self.seed ^ self.counter.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let lo = splitmix64(hi ^ self.seed.rotate_left(32));
        format!(
            "{prefix}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xffff,
            hi & 0xffff,
            lo >> 48,
            lo & 0xffff_ffff_ffff
        )
    }
}

/// The SplitMix64 finaliser: a bijection on u64, so distinct inputs give distinct ids.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
