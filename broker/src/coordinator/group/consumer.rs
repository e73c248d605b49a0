//! KIP-848 consumer groups (`group.protocol=consumer`): members heartbeat with an epoch, the
//! coordinator computes the group's target assignment with a server-side assignor, and reconciles
//! each member toward its target, never handing out a partition before its previous owner has
//! acknowledged revoking it (Kafka's `CurrentAssignmentBuilder` rule).
//!
//! What is persisted is [`Persisted`]: the group and target epochs, the partition counts the
//! target was computed from, each member (subscription and current assignment) and each member's
//! target. Every step works on it in place and then emits, as records, exactly the keys that
//! changed ([`diff`]); replay rebuilds the same value from those records. Sessions and revocation
//! deadlines are soft state, restarted on load.
//!
//! This module must never do I/O, read a clock, or see a protocol type; topic metadata comes in
//! as a function argument.

use std::collections::{BTreeMap, BTreeSet};

use super::offsets::GroupOffsets;
use super::records::{ConsumerGroupValue, ConsumerMemberValue, Record, RecordKey, RecordValue, TopicAssignment};
use super::{GroupConfig, GroupError, ListedGroup, CONSUMER_PROTOCOL_TYPE, GROUP_TYPE_CONSUMER};
use crate::coordinator::assignors::{self, MemberSubscription, TopicInfo};

/// The member epoch of a heartbeat that leaves the group.
pub(super) const LEAVE_EPOCH: i32 = -1;
/// The member epoch of a static member's temporary leave (KIP-848): it keeps its assignment.
pub(super) const STATIC_LEAVE_EPOCH: i32 = -2;

/// Kafka's `MemberState`, as stored in [`ConsumerMemberValue::state`].
const STABLE: u8 = 0;
const UNREVOKED_PARTITIONS: u8 = 1;
const UNRELEASED_PARTITIONS: u8 = 2;

/// A ConsumerGroupHeartbeat request, as plain data (topic ids already resolved to names).
#[derive(Clone, Debug, Default)]
pub struct ConsumerHeartbeatRequest {
    pub group_id: String,
    /// "" for a v0 member joining: the coordinator then gives it an id.
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1: unchanged.
    pub rebalance_timeout_ms: i32,
    /// None: unchanged.
    pub subscribed_topic_names: Option<Vec<String>>,
    pub subscribed_topic_regex: Option<String>,
    /// None: unchanged.
    pub server_assignor: Option<String>,
    /// The partitions the member owns; None when it did not say.
    pub owned: Option<TopicAssignment>,
    pub client_id: String,
    pub client_host: String,
    /// ConsumerGroupHeartbeat v1+ (KIP-1082): the client always chooses its member id.
    pub member_id_required: bool,
}

/// A successful ConsumerGroupHeartbeat answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerHeartbeatResponse {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// The member's whole assignment, when it must (re)learn it.
    pub assignment: Option<TopicAssignment>,
}

/// A member as ConsumerGroupDescribe reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerDescribedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub assignment: TopicAssignment,
    pub target_assignment: TopicAssignment,
}

/// A group as ConsumerGroupDescribe reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerGroupDescription {
    pub group_id: String,
    pub state: &'static str,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor_name: String,
    pub members: Vec<ConsumerDescribedMember>,
}

/// What the records of a consumer group rebuild.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Persisted {
    pub(super) group: ConsumerGroupValue,
    pub(super) members: BTreeMap<String, ConsumerMemberValue>,
    pub(super) targets: BTreeMap<String, TopicAssignment>,
}

/// One KIP-848 consumer group.
#[derive(Debug)]
pub(super) struct ConsumerGroup {
    pub(super) group_id: String,
    pub(super) persisted: Persisted,
    /// Member → when its session expires.
    sessions: BTreeMap<String, i64>,
    /// Member → when it must have revoked its pending partitions (its rebalance timeout).
    revocation_deadlines: BTreeMap<String, i64>,
    pub(super) offsets: GroupOffsets,
    /// Tombstones for the group are being written (DeleteGroups).
    pub(super) deleting: bool,
}

/// Checks what Kafka checks of a heartbeat before looking at any group.
///
/// # Errors
/// INVALID_REQUEST (with Kafka's message) or UNSUPPORTED_ASSIGNOR.
pub(super) fn validate_heartbeat(req: &ConsumerHeartbeatRequest) -> Result<(), GroupError> {
    let invalid = |m| Err(GroupError::InvalidRequest(m));
    if req.group_id.is_empty() {
        return invalid("GroupId can't be empty.");
    }
    if req.instance_id.as_deref() == Some("") {
        return invalid("InstanceId can't be empty.");
    }
    if req.rack_id.as_deref() == Some("") {
        return invalid("RackId can't be empty.");
    }
    if req.member_id.is_empty() && (req.member_id_required || req.member_epoch != 0) {
        return invalid("MemberId can't be empty.");
    }
    match req.member_epoch {
        0 => {
            if req.rebalance_timeout_ms == -1 {
                return invalid("RebalanceTimeoutMs must be provided in first request.");
            }
            if req.owned.as_ref().is_some_and(|o| !o.is_empty()) {
                return invalid("TopicPartitions must be empty when (re-)joining.");
            }
            if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
                return invalid("SubscribedTopicNames or SubscribedTopicRegex must be set in first request.");
            }
        }
        STATIC_LEAVE_EPOCH if req.instance_id.is_none() => return invalid("InstanceId can't be null."),
        e if e < STATIC_LEAVE_EPOCH => return invalid("MemberEpoch is invalid."),
        _ => {}
    }
    // librdkafka sends an empty regex alongside topic names: that is no regex.
    if req.subscribed_topic_regex.as_deref().is_some_and(|r| !r.is_empty()) {
        // Sluice does not resolve regex subscriptions (KIP-848's SubscribedTopicRegex).
        return invalid("SubscribedTopicRegex is not supported by this broker.");
    }
    match req.server_assignor.as_deref() {
        Some(name) if assignors::by_name(name).is_none() => Err(GroupError::UnsupportedAssignor),
        _ => Ok(()),
    }
}

impl ConsumerGroup {
    pub(super) fn new(group_id: String) -> Self {
        Self {
            group_id,
            persisted: Persisted::default(),
            sessions: BTreeMap::new(),
            revocation_deadlines: BTreeMap::new(),
            offsets: GroupOffsets::default(),
            deleting: false,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.persisted.members.is_empty()
    }

    /// A join or a heartbeat (member epoch >= 0): the answer and the records to write first.
    ///
    /// # Errors
    /// UNKNOWN_MEMBER_ID, FENCED_MEMBER_EPOCH, FENCED_INSTANCE_ID, UNRELEASED_INSTANCE_ID,
    /// GROUP_MAX_SIZE_REACHED, as Kafka. Nothing changes when one is returned.
    pub(super) fn heartbeat(
        &mut self,
        req: &ConsumerHeartbeatRequest,
        new_member_id: String,
        partitions: &dyn Fn(&str) -> Option<i32>,
        cfg: &GroupConfig,
        now_ms: i64,
    ) -> Result<(ConsumerHeartbeatResponse, Vec<Record>), GroupError> {
        let before = self.persisted.clone();
        let (member_id, is_new) = self.admit(req, new_member_id, cfg)?;
        let mut bump = is_new;
        if let Some(m) = self.persisted.members.get_mut(&member_id) {
            bump |= update_member(m, req);
        }
        bump |= self.refresh_partition_counts(partitions);
        if bump {
            self.persisted.group.group_epoch = self.persisted.group.group_epoch.saturating_add(1);
            self.compute_target();
        }
        self.sessions.insert(member_id.clone(), now_ms.saturating_add(i64::from(cfg.consumer_session_timeout_ms)));
        self.reconcile(&member_id, req.owned.as_ref(), now_ms);
        let previous = before.members.get(&member_id).map(|m| &m.assigned);
        let Some(m) = self.persisted.members.get(&member_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        let full_request = req.member_epoch == 0
            || (req.rebalance_timeout_ms != -1 && req.subscribed_topic_names.is_some() && req.owned.is_some());
        let response = ConsumerHeartbeatResponse {
            member_id: member_id.clone(),
            member_epoch: m.member_epoch,
            heartbeat_interval_ms: cfg.consumer_heartbeat_interval_ms,
            assignment: (full_request || previous != Some(&m.assigned)).then(|| m.assigned.clone()),
        };
        Ok((response, diff(&self.group_id, &before, &self.persisted)))
    }

    /// Finds (or, for epoch 0, creates or takes over) the member the request speaks for.
    fn admit(
        &mut self,
        req: &ConsumerHeartbeatRequest,
        new_member_id: String,
        cfg: &GroupConfig,
    ) -> Result<(String, bool), GroupError> {
        let member_id = if req.member_id.is_empty() { new_member_id } else { req.member_id.clone() };
        let existing_static = req.instance_id.as_deref().and_then(|i| self.static_member(i));
        if req.member_epoch != 0 {
            if req.instance_id.is_some() {
                match &existing_static {
                    None => return Err(GroupError::UnknownMemberId),
                    Some(id) if *id != member_id => return Err(GroupError::FencedInstanceId),
                    Some(_) => {}
                }
            }
            let m = self.persisted.members.get(&member_id).ok_or(GroupError::UnknownMemberId)?;
            check_epoch(m, req.member_epoch, req.owned.as_ref())?;
            return Ok((member_id, false));
        }
        if let Some(old_id) = existing_static.filter(|id| *id != member_id) {
            self.replace_static(&old_id, &member_id)?;
            return Ok((member_id, false));
        }
        if self.persisted.members.contains_key(&member_id) {
            return Ok((member_id, false));
        }
        if self.persisted.members.len() >= cfg.consumer_max_size {
            return Err(GroupError::GroupMaxSizeReached);
        }
        let member = ConsumerMemberValue { previous_member_epoch: -1, ..Default::default() };
        self.persisted.members.insert(member_id.clone(), member);
        Ok((member_id, true))
    }

    fn static_member(&self, instance_id: &str) -> Option<String> {
        self.persisted
            .members
            .iter()
            .find(|(_, m)| m.instance_id.as_deref() == Some(instance_id))
            .map(|(id, _)| id.clone())
    }

    /// A static member rejoins under a new member id after a temporary leave: the new id takes
    /// over its assignment and target, with no rebalance (KIP-848, as KIP-345).
    fn replace_static(&mut self, old_id: &str, new_id: &str) -> Result<(), GroupError> {
        let Some(old) = self.persisted.members.get(old_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        if old.member_epoch != STATIC_LEAVE_EPOCH {
            return Err(GroupError::UnreleasedInstanceId);
        }
        let Some(mut member) = self.persisted.members.remove(old_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        member.member_epoch = member.previous_member_epoch.max(0);
        self.persisted.members.insert(new_id.to_owned(), member);
        if let Some(target) = self.persisted.targets.remove(old_id) {
            self.persisted.targets.insert(new_id.to_owned(), target);
        }
        self.sessions.remove(old_id);
        self.revocation_deadlines.remove(old_id);
        Ok(())
    }

    /// A leave (epoch -1) or a static member's temporary leave (epoch -2).
    ///
    /// # Errors
    /// UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID.
    pub(super) fn leave(
        &mut self,
        req: &ConsumerHeartbeatRequest,
    ) -> Result<(ConsumerHeartbeatResponse, Vec<Record>), GroupError> {
        let before = self.persisted.clone();
        if let Some(instance_id) = req.instance_id.as_deref() {
            match self.static_member(instance_id) {
                None => return Err(GroupError::UnknownMemberId),
                Some(id) if id != req.member_id => return Err(GroupError::FencedInstanceId),
                Some(_) => {}
            }
        }
        let Some(m) = self.persisted.members.get_mut(&req.member_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        if req.member_epoch == STATIC_LEAVE_EPOCH {
            if m.member_epoch != STATIC_LEAVE_EPOCH {
                m.previous_member_epoch = m.member_epoch;
                m.member_epoch = STATIC_LEAVE_EPOCH;
            }
        } else {
            self.remove_members(std::slice::from_ref(&req.member_id));
        }
        let response = ConsumerHeartbeatResponse {
            member_id: req.member_id.clone(),
            member_epoch: req.member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        };
        Ok((response, diff(&self.group_id, &before, &self.persisted)))
    }

    /// Removes members (their partitions become free at once) and rebalances.
    fn remove_members(&mut self, ids: &[String]) {
        for id in ids {
            self.persisted.members.remove(id);
            self.persisted.targets.remove(id);
            self.sessions.remove(id);
            self.revocation_deadlines.remove(id);
        }
        self.persisted.group.group_epoch = self.persisted.group.group_epoch.saturating_add(1);
        self.compute_target();
    }

    /// Fences members whose session expired or that did not revoke within their rebalance
    /// timeout; returns the records to write.
    pub(super) fn tick(&mut self, now_ms: i64) -> Vec<Record> {
        let expired: BTreeSet<String> = self
            .sessions
            .iter()
            .chain(self.revocation_deadlines.iter())
            .filter(|(_, deadline)| **deadline <= now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        if expired.is_empty() {
            return Vec::new();
        }
        for id in &expired {
            tracing::info!(group_id = %self.group_id, member_id = %id, "consumer group member fenced");
        }
        let before = self.persisted.clone();
        self.remove_members(&expired.into_iter().collect::<Vec<_>>());
        diff(&self.group_id, &before, &self.persisted)
    }

    /// The partition counts of every subscribed topic that exists; whether they changed.
    fn refresh_partition_counts(&mut self, partitions: &dyn Fn(&str) -> Option<i32>) -> bool {
        let counts: BTreeMap<String, i32> = self
            .persisted
            .members
            .values()
            .flat_map(|m| m.subscribed_topics.iter())
            .filter_map(|t| partitions(t).filter(|n| *n > 0).map(|n| (t.clone(), n)))
            .collect();
        let changed = counts != self.persisted.group.partition_counts;
        self.persisted.group.partition_counts = counts;
        changed
    }

    /// The assignor most members ask for (ties: Kafka's assignor order), or the default.
    fn assignor(&self) -> &'static dyn assignors::Assignor {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.persisted.members.values() {
            if let Some(name) = m.server_assignor.as_deref() {
                *votes.entry(name).or_insert(0) += 1;
            }
        }
        let mut best: Option<(&'static dyn assignors::Assignor, usize)> = None;
        for a in assignors::ASSIGNORS.iter().copied() {
            let n = votes.get(a.name()).copied().unwrap_or(0);
            if n > 0 && best.is_none_or(|(_, b)| n > b) {
                best = Some((a, n));
            }
        }
        best.map_or_else(assignors::default_assignor, |(a, _)| a)
    }

    /// Computes the target assignment for the current group epoch.
    fn compute_target(&mut self) {
        let members: Vec<MemberSubscription> = self
            .persisted
            .members
            .iter()
            .map(|(id, m)| MemberSubscription {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                rack: m.rack_id.clone(),
                subscribed_topics: m.subscribed_topics.clone(),
                current: self.persisted.targets.get(id).cloned().unwrap_or_default(),
            })
            .collect();
        let topics: BTreeMap<String, TopicInfo> = self
            .persisted
            .group
            .partition_counts
            .iter()
            .map(|(name, n)| (name.clone(), TopicInfo { name: name.clone(), partitions: *n }))
            .collect();
        match self.assignor().assign(&members, &topics) {
            Ok(target) => self.persisted.targets = target,
            Err(e) => {
                // Keep the previous target (for members still here): never a wrong one.
                tracing::error!(group_id = %self.group_id, error = %e, "assignor failed");
                let members = &self.persisted.members;
                self.persisted.targets.retain(|id, _| members.contains_key(id));
            }
        }
        self.persisted.group.assignment_epoch = self.persisted.group.group_epoch;
    }

    /// Moves the member toward its target (Kafka's `CurrentAssignmentBuilder`).
    fn reconcile(&mut self, member_id: &str, owned: Option<&TopicAssignment>, now_ms: i64) {
        let epoch = self.persisted.group.assignment_epoch;
        let Some(m) = self.persisted.members.get(member_id) else { return };
        match m.state {
            UNREVOKED_PARTITIONS if owned.is_none_or(|o| overlaps(o, &m.pending_revocation)) => return,
            STABLE if m.member_epoch == epoch => return,
            _ => {}
        }
        let target = self.persisted.targets.get(member_id).cloned().unwrap_or_default();
        let taken = self.owned_by_others(member_id);
        let Some(m) = self.persisted.members.get_mut(member_id) else { return };
        let (kept, revoking, assignable, unreleased) = plan(&m.assigned, &target, &taken);
        if !revoking.is_empty() {
            m.state = UNREVOKED_PARTITIONS;
            m.assigned = kept;
            m.pending_revocation = revoking;
            let timeout_ms = i64::from(m.rebalance_timeout_ms.max(0));
            self.revocation_deadlines.insert(member_id.to_owned(), now_ms.saturating_add(timeout_ms));
            return;
        }
        self.revocation_deadlines.remove(member_id);
        if m.member_epoch != epoch {
            m.previous_member_epoch = m.member_epoch;
            m.member_epoch = epoch;
        }
        m.assigned = union(kept, assignable);
        m.pending_revocation = TopicAssignment::new();
        m.state = if unreleased { UNRELEASED_PARTITIONS } else { STABLE };
    }

    /// Partitions other members still own (assigned, or pending their revocation).
    fn owned_by_others(&self, member_id: &str) -> BTreeSet<(String, i32)> {
        self.persisted
            .members
            .iter()
            .filter(|(id, _)| id.as_str() != member_id)
            .flat_map(|(_, m)| m.assigned.iter().chain(m.pending_revocation.iter()))
            .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
            .collect()
    }

    /// Kafka's consumer group state name.
    pub(super) fn state_name(&self) -> &'static str {
        let p = &self.persisted;
        if self.deleting {
            "Dead"
        } else if p.members.is_empty() {
            "Empty"
        } else if p.group.group_epoch > p.group.assignment_epoch {
            "Assigning"
        } else if p.members.values().any(|m| m.member_epoch != p.group.assignment_epoch || m.state != STABLE) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    pub(super) fn listed(&self) -> ListedGroup {
        ListedGroup {
            group_id: self.group_id.clone(),
            protocol_type: CONSUMER_PROTOCOL_TYPE.to_owned(),
            state: self.state_name(),
            group_type: GROUP_TYPE_CONSUMER,
        }
    }

    pub(super) fn describe(&self) -> ConsumerGroupDescription {
        let p = &self.persisted;
        ConsumerGroupDescription {
            group_id: self.group_id.clone(),
            state: self.state_name(),
            group_epoch: p.group.group_epoch,
            assignment_epoch: p.group.assignment_epoch,
            assignor_name: self.assignor().name().to_owned(),
            members: p
                .members
                .iter()
                .map(|(id, m)| ConsumerDescribedMember {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    member_epoch: m.member_epoch,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscribed_topic_names: m.subscribed_topics.iter().cloned().collect(),
                    assignment: m.assigned.clone(),
                    target_assignment: p.targets.get(id).cloned().unwrap_or_default(),
                })
                .collect(),
        }
    }

    /// OffsetCommit validation for a consumer group (Kafka's `ConsumerGroup.validateOffsetCommit`):
    /// a commit without a member epoch only while the group has no members; otherwise the member
    /// must exist and send its current epoch.
    pub(super) fn validate_offset_commit(&self, member_id: &str, member_epoch: i32) -> Result<(), GroupError> {
        if self.deleting {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if member_epoch < 0 && self.persisted.members.is_empty() {
            return Ok(());
        }
        let m = self.persisted.members.get(member_id).ok_or(GroupError::UnknownMemberId)?;
        if member_epoch != m.member_epoch {
            return Err(GroupError::StaleMemberEpoch);
        }
        Ok(())
    }

    /// Offsets to expire under `offsets.retention.minutes`, as Kafka does for consumer groups:
    /// committed more than `retention_ms` ago, of a topic no member subscribes to now (an empty
    /// group subscribes to nothing). Marks them in flight; returns their tombstones and keys.
    pub(super) fn expire(
        &mut self,
        now_ms: i64,
        retention_ms: i64,
    ) -> Option<(Vec<Record>, Vec<super::TopicPartition>)> {
        if self.deleting {
            return None;
        }
        let subscribed: BTreeSet<String> =
            self.persisted.members.values().flat_map(|m| m.subscribed_topics.iter().cloned()).collect();
        let keys = self.offsets.expired(now_ms, retention_ms, |o| o.commit_timestamp_ms, |t| subscribed.contains(t));
        if keys.is_empty() {
            return None;
        }
        let records = keys.iter().map(|tp| Record::offset_tombstone(&self.group_id, tp)).collect();
        self.offsets.begin_writes(&keys);
        Some((records, keys))
    }

    pub(super) fn is_subscribed_to(&self, topic: &str) -> bool {
        self.persisted.members.values().any(|m| m.subscribed_topics.contains(topic))
    }

    /// The tombstones that delete the group: offsets first, then its own records.
    pub(super) fn delete_records(&mut self) -> (Vec<Record>, Vec<super::TopicPartition>) {
        let keys = self.offsets.all_keys();
        let mut records: Vec<Record> = keys.iter().map(|tp| Record::offset_tombstone(&self.group_id, tp)).collect();
        let empty = Persisted::default();
        let mut removed = diff(&self.group_id, &self.persisted, &empty);
        // `diff` writes a (default) group value; a deletion writes its tombstone instead.
        removed.retain(|r| !matches!(r.key, RecordKey::ConsumerGroup { .. }));
        records.extend(removed);
        records.push(Record { key: RecordKey::ConsumerGroup { group_id: self.group_id.clone() }, value: None });
        self.offsets.begin_writes(&keys);
        self.deleting = true;
        (records, keys)
    }

    /// Replays one durable consumer-group record (the group itself is already in the map).
    pub(super) fn load(&mut self, key: &RecordKey, value: Option<RecordValue>, cfg: &GroupConfig, now_ms: i64) {
        let session_end = now_ms.saturating_add(i64::from(cfg.consumer_session_timeout_ms));
        match (key, value) {
            (RecordKey::ConsumerGroup { .. }, Some(RecordValue::ConsumerGroup(v))) => self.persisted.group = v,
            (RecordKey::ConsumerMember { member_id, .. }, Some(RecordValue::ConsumerMember(v))) => {
                self.persisted.members.insert(member_id.clone(), v);
                self.sessions.insert(member_id.clone(), session_end);
            }
            (RecordKey::ConsumerMember { member_id, .. }, None) => {
                self.persisted.members.remove(member_id);
                self.sessions.remove(member_id);
            }
            (RecordKey::ConsumerTarget { member_id, .. }, Some(RecordValue::ConsumerTarget(v))) => {
                self.persisted.targets.insert(member_id.clone(), v);
            }
            (RecordKey::ConsumerTarget { member_id, .. }, None) => {
                self.persisted.targets.remove(member_id);
            }
            _ => {}
        }
    }
}

/// Applies the request's fields to the member; whether the group must rebalance.
fn update_member(m: &mut ConsumerMemberValue, req: &ConsumerHeartbeatRequest) -> bool {
    m.client_id.clone_from(&req.client_id);
    m.client_host.clone_from(&req.client_host);
    if req.rebalance_timeout_ms != -1 {
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
    }
    if req.rack_id.is_some() {
        m.rack_id.clone_from(&req.rack_id);
    }
    if req.instance_id.is_some() {
        m.instance_id.clone_from(&req.instance_id);
    }
    let mut changed = false;
    if let Some(names) = &req.subscribed_topic_names {
        let topics: BTreeSet<String> = names.iter().cloned().collect();
        changed |= topics != m.subscribed_topics;
        m.subscribed_topics = topics;
    }
    if req.server_assignor.is_some() && req.server_assignor != m.server_assignor {
        m.server_assignor.clone_from(&req.server_assignor);
        changed = true;
    }
    changed
}

/// Kafka's `throwIfMemberEpochIsInvalid`: an epoch ahead of the member's is fenced; an older one
/// only passes as the previous epoch of a member whose answer was lost (it owns a subset of what
/// it was given).
fn check_epoch(m: &ConsumerMemberValue, received: i32, owned: Option<&TopicAssignment>) -> Result<(), GroupError> {
    if received > m.member_epoch {
        return Err(GroupError::FencedMemberEpoch);
    }
    if received < m.member_epoch {
        let lost_answer = received == m.previous_member_epoch && owned.is_some_and(|o| is_subset(o, &m.assigned));
        if !lost_answer {
            return Err(GroupError::FencedMemberEpoch);
        }
    }
    Ok(())
}

/// Splits a move from `current` to `target`: (kept, to revoke, assignable now, any unreleased).
fn plan(
    current: &TopicAssignment,
    target: &TopicAssignment,
    taken: &BTreeSet<(String, i32)>,
) -> (TopicAssignment, TopicAssignment, TopicAssignment, bool) {
    let (mut kept, mut revoking, mut assignable) =
        (TopicAssignment::new(), TopicAssignment::new(), TopicAssignment::new());
    let mut unreleased = false;
    let empty = BTreeSet::new();
    let topics: BTreeSet<&String> = current.keys().chain(target.keys()).collect();
    for topic in topics {
        let cur = current.get(topic).unwrap_or(&empty);
        let tgt = target.get(topic).unwrap_or(&empty);
        insert_nonempty(&mut kept, topic, cur.intersection(tgt).copied().collect());
        insert_nonempty(&mut revoking, topic, cur.difference(tgt).copied().collect());
        let (free, held): (BTreeSet<i32>, BTreeSet<i32>) =
            tgt.difference(cur).copied().partition(|p| !taken.contains(&(topic.clone(), *p)));
        unreleased |= !held.is_empty();
        insert_nonempty(&mut assignable, topic, free);
    }
    (kept, revoking, assignable, unreleased)
}

fn insert_nonempty(a: &mut TopicAssignment, topic: &str, partitions: BTreeSet<i32>) {
    if !partitions.is_empty() {
        a.insert(topic.to_owned(), partitions);
    }
}

fn union(mut a: TopicAssignment, b: TopicAssignment) -> TopicAssignment {
    for (topic, partitions) in b {
        a.entry(topic).or_default().extend(partitions);
    }
    a
}

fn overlaps(a: &TopicAssignment, b: &TopicAssignment) -> bool {
    a.iter().any(|(t, ps)| b.get(t).is_some_and(|other| !ps.is_disjoint(other)))
}

fn is_subset(a: &TopicAssignment, b: &TopicAssignment) -> bool {
    a.iter().all(|(t, ps)| ps.is_empty() || b.get(t).is_some_and(|other| ps.is_subset(other)))
}

/// The records that turn `before` into `after`: the group's value if it changed, then each
/// member and target that changed, then tombstones for those that went.
pub(super) fn diff(group_id: &str, before: &Persisted, after: &Persisted) -> Vec<Record> {
    let mut records = Vec::new();
    let member_key =
        |member_id: &String| RecordKey::ConsumerMember { group_id: group_id.to_owned(), member_id: member_id.clone() };
    let target_key =
        |member_id: &String| RecordKey::ConsumerTarget { group_id: group_id.to_owned(), member_id: member_id.clone() };
    if before.group != after.group {
        records.push(Record {
            key: RecordKey::ConsumerGroup { group_id: group_id.to_owned() },
            value: Some(RecordValue::ConsumerGroup(after.group.clone())),
        });
    }
    for (id, m) in &after.members {
        if before.members.get(id) != Some(m) {
            records.push(Record { key: member_key(id), value: Some(RecordValue::ConsumerMember(m.clone())) });
        }
    }
    for (id, t) in &after.targets {
        if before.targets.get(id) != Some(t) {
            records.push(Record { key: target_key(id), value: Some(RecordValue::ConsumerTarget(t.clone())) });
        }
    }
    for id in before.targets.keys().filter(|id| !after.targets.contains_key(*id)) {
        records.push(Record { key: target_key(id), value: None });
    }
    for id in before.members.keys().filter(|id| !after.members.contains_key(*id)) {
        records.push(Record { key: member_key(id), value: None });
    }
    records
}

#[cfg(test)]
mod tests {
    use super::super::{records, GroupCoordinator, Outcome, Reply, TopicPartition};
    use super::*;

    /// Plays the host: every write is encoded, decoded, logged and reported durable at once.
    struct Harness {
        c: GroupCoordinator,
        now: i64,
        log: Vec<Record>,
        topics: BTreeMap<String, i32>,
    }

    fn all(a: &Option<TopicAssignment>) -> BTreeSet<i32> {
        a.as_ref().map(|a| a.values().flatten().copied().collect()).unwrap_or_default()
    }

    impl Harness {
        fn new() -> Self {
            Self {
                c: GroupCoordinator::new(GroupConfig::default(), 7),
                now: 1_000,
                log: Vec::new(),
                topics: [("t".to_owned(), 6)].into(),
            }
        }

        fn send(&mut self, req: ConsumerHeartbeatRequest) -> Result<ConsumerHeartbeatResponse, GroupError> {
            let topics = self.topics.clone();
            let lookup = move |t: &str| topics.get(t).copied();
            let step = self.c.consumer_heartbeat(req, &lookup, self.now);
            let mut answers = self.flush(step.effects);
            match step.outcome {
                Outcome::Done(r) => r,
                Outcome::Parked(ticket) => match answers.remove(&ticket) {
                    Some(Reply::ConsumerHeartbeat(r)) => r,
                    other => panic!("no answer for the heartbeat: {other:?}"),
                },
            }
        }

        fn flush(&mut self, effects: super::super::Effects) -> BTreeMap<u64, Reply> {
            let mut answers: BTreeMap<u64, Reply> =
                effects.completions.into_iter().map(|c| (c.ticket, c.reply)).collect();
            let mut writes: std::collections::VecDeque<_> = effects.writes.into();
            while let Some(w) = writes.pop_front() {
                for r in &w.records {
                    let (k, v) = records::encode(r).unwrap();
                    self.log.push(records::decode(&k, v.as_deref()).unwrap());
                }
                let more = self.c.write_completed(w.id, Ok(()), self.now);
                answers.extend(more.completions.into_iter().map(|c| (c.ticket, c.reply)));
                writes.extend(more.writes);
            }
            answers
        }

        fn join(&mut self, member: &str) -> ConsumerHeartbeatResponse {
            self.send(ConsumerHeartbeatRequest {
                group_id: "g".into(),
                member_id: member.into(),
                member_epoch: 0,
                rebalance_timeout_ms: 60_000,
                subscribed_topic_names: Some(vec!["t".into()]),
                owned: Some(TopicAssignment::new()),
                member_id_required: true,
                ..Default::default()
            })
            .unwrap()
        }

        fn beat(
            &mut self,
            member: &str,
            epoch: i32,
            owned: Option<TopicAssignment>,
        ) -> Result<ConsumerHeartbeatResponse, GroupError> {
            self.send(ConsumerHeartbeatRequest {
                group_id: "g".into(),
                member_id: member.into(),
                member_epoch: epoch,
                rebalance_timeout_ms: -1,
                owned,
                member_id_required: true,
                ..Default::default()
            })
        }

        fn tick(&mut self, ms: i64) {
            self.now += ms;
            let effects = self.c.tick(self.now);
            self.flush(effects);
        }

        fn describe(&self) -> ConsumerGroupDescription {
            self.c.consumer_describe("g").unwrap()
        }
    }

    #[test]
    fn a_lone_member_gets_every_partition_at_once() {
        let mut h = Harness::new();
        let r = h.join("a");
        assert_eq!((r.member_id.as_str(), r.member_epoch, r.heartbeat_interval_ms), ("a", 1, 5_000));
        assert_eq!(all(&r.assignment), (0..6).collect());
        assert_eq!(h.describe().state, "Stable");
        // A plain heartbeat with nothing new carries no assignment and writes nothing.
        let logged = h.log.len();
        let r = h.beat("a", 1, None).unwrap();
        assert_eq!((r.member_epoch, r.assignment), (1, None));
        assert_eq!(h.log.len(), logged);
    }

    #[test]
    fn a_v0_member_without_an_id_gets_one_and_v1_must_send_one() {
        let mut h = Harness::new();
        let mut req = ConsumerHeartbeatRequest {
            group_id: "g".into(),
            rebalance_timeout_ms: 1_000,
            subscribed_topic_names: Some(vec!["t".into()]),
            ..Default::default()
        };
        let r = h.send(req.clone()).unwrap();
        assert!(!r.member_id.is_empty());
        req.member_id_required = true;
        assert_eq!(h.send(req), Err(GroupError::InvalidRequest("MemberId can't be empty.")));
    }

    #[test]
    fn a_second_member_waits_for_the_first_to_revoke() {
        let mut h = Harness::new();
        let a = h.join("a");
        let owned_a = a.assignment.clone().unwrap();
        let b = h.join("b");
        // b's target is half the partitions, but a still owns them: b gets none yet.
        assert_eq!(b.member_epoch, 2);
        assert!(all(&b.assignment).is_empty());
        assert_eq!(h.describe().state, "Reconciling");
        // a learns it must give three up; its epoch stays until it has.
        let a2 = h.beat("a", 1, Some(owned_a)).unwrap();
        assert_eq!((a2.member_epoch, all(&a2.assignment).len()), (1, 3));
        let kept = a2.assignment.clone().unwrap();
        let a3 = h.beat("a", 1, Some(kept.clone())).unwrap();
        assert_eq!(a3.member_epoch, 2);
        // Now b gets the released three, disjoint from a's.
        let b2 = h.beat("b", 2, Some(TopicAssignment::new())).unwrap();
        let (pa, pb) = (all(&Some(kept)), all(&b2.assignment));
        assert_eq!(pb.len(), 3);
        assert!(pa.is_disjoint(&pb));
        assert_eq!(h.describe().state, "Stable");
    }

    #[test]
    fn leaving_frees_partitions_for_the_others() {
        let mut h = Harness::new();
        h.join("a");
        h.join("b");
        let r = h.beat("b", 2, None).unwrap();
        assert_eq!(r.member_epoch, 2);
        let left = h.beat("a", LEAVE_EPOCH, None).unwrap();
        assert_eq!(left.member_epoch, LEAVE_EPOCH);
        let r = h.beat("b", 2, Some(TopicAssignment::new())).unwrap();
        assert_eq!((r.member_epoch, all(&r.assignment).len()), (3, 6));
        assert_eq!(h.beat("a", 1, None), Err(GroupError::UnknownMemberId));
    }

    #[test]
    fn a_silent_member_is_fenced_after_its_session() {
        let mut h = Harness::new();
        h.join("a");
        h.join("b");
        h.tick(30_000);
        h.beat("b", 2, None).unwrap();
        h.tick(30_000); // a: 60 s silent; b: 30 s.
        assert_eq!(h.describe().members.len(), 1);
        let r = h.beat("b", 2, Some(TopicAssignment::new())).unwrap();
        assert_eq!((r.member_epoch, all(&r.assignment).len()), (3, 6));
    }

    #[test]
    fn epochs_from_the_future_or_the_past_are_fenced() {
        let mut h = Harness::new();
        let a = h.join("a");
        assert_eq!(h.beat("a", 5, None), Err(GroupError::FencedMemberEpoch));
        h.join("b");
        let a2 = h.beat("a", 1, a.assignment.clone()).unwrap();
        h.beat("a", 1, a2.assignment.clone()).unwrap();
        // a is at epoch 2 now; epoch 1 passes only as a lost answer (owning a subset).
        assert!(h.beat("a", 1, a2.assignment.clone()).is_ok());
        assert_eq!(h.beat("a", 1, a.assignment), Err(GroupError::FencedMemberEpoch));
        assert_eq!(h.beat("a", 0, None).map(|r| r.member_epoch).ok(), None, "epoch 0 needs a subscription");
    }

    #[test]
    fn assignors_are_chosen_by_name() {
        let mut h = Harness::new();
        let mut req = ConsumerHeartbeatRequest {
            group_id: "g".into(),
            member_id: "a".into(),
            rebalance_timeout_ms: 1_000,
            subscribed_topic_names: Some(vec!["t".into()]),
            server_assignor: Some("sticky".into()),
            member_id_required: true,
            ..Default::default()
        };
        assert_eq!(h.send(req.clone()), Err(GroupError::UnsupportedAssignor));
        assert!(h.c.consumer_describe("g").is_err(), "a refused join creates no group");
        req.server_assignor = Some("range".into());
        h.send(req).unwrap();
        assert_eq!(h.describe().assignor_name, "range");
        h.join("b");
        assert_eq!(h.describe().assignor_name, "range");
        let mut h = Harness::new();
        h.join("a");
        assert_eq!(h.describe().assignor_name, "uniform");
    }

    #[test]
    fn classic_and_consumer_groups_do_not_mix() {
        let mut h = Harness::new();
        h.join("a");
        let commit = |member: &str, epoch: i32| super::super::CommitRequest {
            group_id: "g".into(),
            member_id: member.into(),
            generation_id: epoch,
            group_instance_id: None,
            offsets: vec![super::super::CommitOffset {
                topic: "t".into(),
                partition: 0,
                offset: 5,
                leader_epoch: -1,
                metadata: None,
            }],
        };
        let step = h.c.commit_offsets(commit("a", 0), h.now);
        assert!(matches!(step.outcome, Outcome::Done(ref r) if r[0].result == Err(GroupError::StaleMemberEpoch)));
        let step = h.c.commit_offsets(commit("x", 1), h.now);
        assert!(matches!(step.outcome, Outcome::Done(ref r) if r[0].result == Err(GroupError::UnknownMemberId)));
        let step = h.c.commit_offsets(commit("a", 1), h.now);
        let answers = h.flush(step.effects);
        assert_eq!(answers.len(), 1);
        assert_eq!(
            h.c.fetch_offsets("g", Some(&[TopicPartition { topic: "t".into(), partition: 0 }])).unwrap()[0].offset,
            5
        );
        let listed = h.c.list_groups(&[], &["consumer".into()]);
        assert_eq!((listed.len(), listed[0].state, listed[0].group_type), (1, "Stable", "consumer"));
        assert!(h.c.list_groups(&[], &["classic".into()]).is_empty());
        assert_eq!(h.c.describe_group("g"), Err(GroupError::GroupIdNotFound));
    }

    #[test]
    fn offsets_of_topics_no_member_subscribes_to_expire() {
        let mut h = Harness::new();
        let config = GroupConfig {
            offsets_retention_ms: 20_000,
            offsets_retention_check_interval_ms: 1_000,
            ..Default::default()
        };
        h.c = GroupCoordinator::new(config, 7);
        h.join("a");
        let commit = |topic: &str| super::super::CommitRequest {
            group_id: "g".into(),
            member_id: "a".into(),
            generation_id: 1,
            group_instance_id: None,
            offsets: vec![super::super::CommitOffset {
                topic: topic.into(),
                partition: 0,
                offset: 5,
                leader_epoch: -1,
                metadata: None,
            }],
        };
        for topic in ["t", "old"] {
            let step = h.c.commit_offsets(commit(topic), h.now);
            h.flush(step.effects);
        }
        let offset_of = |h: &Harness, topic: &str| {
            h.c.fetch_offsets("g", Some(&[TopicPartition { topic: topic.into(), partition: 0 }])).unwrap()[0].offset
        };
        assert_eq!((offset_of(&h, "t"), offset_of(&h, "old")), (5, 5));
        // Past the retention time, within the member's session timeout (45 s).
        h.tick(25_000);
        assert_eq!(offset_of(&h, "t"), 5, "the member still subscribes to t");
        assert_eq!(offset_of(&h, "old"), -1, "nobody subscribes to old: its offset expired");
        assert!(h
            .log
            .iter()
            .any(|r| r.value.is_none() && matches!(&r.key, RecordKey::Offset { topic, .. } if topic == "old")));
    }

    #[test]
    fn replay_rebuilds_the_same_group() {
        let mut h = Harness::new();
        let a = h.join("a");
        h.join("b");
        h.beat("a", 1, a.assignment).unwrap();
        h.send(ConsumerHeartbeatRequest {
            group_id: "g".into(),
            member_id: "s".into(),
            member_epoch: 0,
            instance_id: Some("i".into()),
            rebalance_timeout_ms: 1_000,
            subscribed_topic_names: Some(vec!["t".into()]),
            member_id_required: true,
            ..Default::default()
        })
        .unwrap();
        h.beat("b", LEAVE_EPOCH, None).unwrap();
        let replayed = GroupCoordinator::replay(GroupConfig::default(), 9, h.log.clone(), h.now);
        assert_eq!(replayed.consumer_describe("g"), h.c.consumer_describe("g"));
        let live = h.c.consumer_describe("g").unwrap();
        assert_eq!(live.members.len(), 2);
    }

    #[test]
    fn a_static_member_returns_to_its_partitions_without_a_rebalance() {
        let mut h = Harness::new();
        let join = |h: &mut Harness, member: &str| {
            h.send(ConsumerHeartbeatRequest {
                group_id: "g".into(),
                member_id: member.into(),
                member_epoch: 0,
                instance_id: Some("i".into()),
                rebalance_timeout_ms: 1_000,
                subscribed_topic_names: Some(vec!["t".into()]),
                member_id_required: true,
                ..Default::default()
            })
        };
        let first = join(&mut h, "m1").unwrap();
        assert_eq!(join(&mut h, "m2"), Err(GroupError::UnreleasedInstanceId));
        let left = h
            .send(ConsumerHeartbeatRequest {
                group_id: "g".into(),
                member_id: "m1".into(),
                member_epoch: STATIC_LEAVE_EPOCH,
                instance_id: Some("i".into()),
                member_id_required: true,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(left.member_epoch, STATIC_LEAVE_EPOCH);
        let epoch = h.describe().group_epoch;
        let back = join(&mut h, "m2").unwrap();
        assert_eq!((back.member_epoch, back.assignment), (first.member_epoch, first.assignment));
        assert_eq!(h.describe().group_epoch, epoch, "no rebalance");
    }
}
