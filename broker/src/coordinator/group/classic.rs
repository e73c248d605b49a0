//! One classic-protocol group: Kafka's state machine (Empty, PreparingRebalance,
//! CompletingRebalance, Stable, Dead) over its members, generations and parked requests.
//!
//! Every transition follows Kafka's `GroupMetadataManager`/`ClassicGroup` semantics: a join phase
//! ends when every known member has rejoined (or at the rebalance timeout, dropping dynamic
//! members that did not, or after `group.initial.rebalance.delay.ms` for a new group); then each
//! parked JoinGroup is answered, the leader with the member list, and the group waits for the
//! leader's SyncGroup, whose assignment must be durable before anyone gets theirs. Timers are
//! deadlines in this struct, checked by [`ClassicGroup::tick`].

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::ctx::{Ctx, SavedMember, WriteKind};
use super::offsets::GroupOffsets;
use super::records::{GroupValue, MemberValue, Record, RecordKey, RecordValue};
use super::{
    DescribedMember, GroupDescription, GroupError, GroupState, HeartbeatRequest, JoinRequest, JoinResponse,
    JoinedMember, LeaveMember, LeaveResult, ListedGroup, Protocol, SyncRequest, SyncResponse, Ticket, TopicPartition,
    CONSUMER_PROTOCOL_TYPE, GROUP_TYPE_CLASSIC,
};
use GroupState::{CompletingRebalance, Dead, Empty, PreparingRebalance, Stable};

#[derive(Debug)]
pub(super) struct Member {
    member_id: String,
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    rebalance_timeout_ms: i32,
    session_timeout_ms: i32,
    protocol_type: String,
    protocols: Vec<Protocol>,
    assignment: Bytes,
    awaiting_join: Option<Ticket>,
    awaiting_sync: Option<Ticket>,
    /// Joined but not yet through a join phase: bounded by the new-member join timeout instead
    /// of the session timeout (Kafka's `isNew`).
    is_new: bool,
    heartbeat_deadline_ms: i64,
}

impl Member {
    fn new(member_id: String, req: JoinRequest, ticket: Ticket, deadline_ms: i64) -> Self {
        Self {
            member_id,
            group_instance_id: req.group_instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            session_timeout_ms: req.session_timeout_ms,
            protocol_type: req.protocol_type,
            protocols: req.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(ticket),
            awaiting_sync: None,
            is_new: true,
            heartbeat_deadline_ms: deadline_ms,
        }
    }

    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|p| p.name == protocol).map(|p| p.metadata.clone()).unwrap_or_default()
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|p| p.name == protocol)
    }

    /// Kafka's `matches`: the same protocols, metadata and order as last time.
    fn matches(&self, protocols: &[Protocol]) -> bool {
        self.protocols == protocols
    }

    fn reschedule(&mut self, now_ms: i64) {
        self.heartbeat_deadline_ms = now_ms.saturating_add(i64::from(self.session_timeout_ms));
    }

    /// Kafka's `hasSatisfiedHeartbeat`: a parked member counts as alive, unless it is new.
    fn has_satisfied_heartbeat(&self) -> bool {
        !self.is_new && (self.awaiting_join.is_some() || self.awaiting_sync.is_some())
    }
}

/// The initial-rebalance delay still to run: Kafka's `InitialDelayedJoin(delay, remaining)`.
#[derive(Debug, Clone, Copy)]
struct InitialDelay {
    delay_ms: i64,
    remaining_ms: i64,
}

#[derive(Debug)]
pub(super) struct ClassicGroup {
    pub(super) group_id: String,
    pub(super) state: GroupState,
    previous_state: GroupState,
    state_timestamp_ms: Option<i64>,
    generation_id: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader_id: Option<String>,
    members: BTreeMap<String, Member>,
    /// group.instance.id -> member id (KIP-345).
    static_members: BTreeMap<String, String>,
    /// KIP-394 member ids handed out but not yet joined with, and when each lapses.
    pending_members: BTreeMap<String, i64>,
    /// Members that got this generation's JoinGroup answer but have not sent SyncGroup.
    pending_sync: BTreeSet<String>,
    join_deadline_ms: Option<i64>,
    initial_delay: Option<InitialDelay>,
    new_member_added: bool,
    sync_deadline_ms: Option<i64>,
    pub(super) offsets: GroupOffsets,
}

impl ClassicGroup {
    pub(super) fn new(group_id: String, now_ms: i64) -> Self {
        Self {
            group_id,
            state: Empty,
            previous_state: Empty,
            state_timestamp_ms: Some(now_ms),
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            pending_sync: BTreeSet::new(),
            join_deadline_ms: None,
            initial_delay: None,
            new_member_added: false,
            sync_deadline_ms: None,
            offsets: GroupOffsets::default(),
        }
    }

    fn transition(&mut self, to: GroupState, now_ms: i64) {
        self.previous_state = self.state;
        self.state = to;
        self.state_timestamp_ms = Some(now_ms);
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    fn has_all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    fn num_awaiting_join(&self) -> usize {
        self.members.values().filter(|m| m.awaiting_join.is_some()).count()
    }

    fn can_rebalance(&self) -> bool {
        matches!(self.state, Stable | CompletingRebalance | Empty)
    }

    /// The group's rebalance timeout: the largest of its members'.
    fn rebalance_timeout_ms(&self) -> i64 {
        self.members.values().map(|m| i64::from(m.rebalance_timeout_ms)).max().unwrap_or(0)
    }

    /// Kafka's `validateMember`: a static member's id must be the one mapped to its instance.
    fn validate_member(&self, member_id: &str, instance: Option<&str>) -> Result<(), GroupError> {
        if let Some(instance) = instance {
            match self.static_members.get(instance) {
                None => return Err(GroupError::UnknownMemberId),
                Some(mapped) if mapped != member_id => return Err(GroupError::FencedInstanceId),
                Some(_) => {}
            }
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(GroupError::UnknownMemberId)
        }
    }

    /// Whether a joining member's protocols fit: any non-empty set for an Empty group, else the
    /// group's protocol type and at least one protocol every member supports.
    fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.state == Empty {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|p| self.members.values().all(|m| m.supports(&p.name)))
    }

    /// Kafka's protocol vote: among the protocols every member supports, each member votes for
    /// its most preferred; most votes wins (ties go to the smallest name, for determinism).
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: BTreeSet<&str> = first
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| self.members.values().all(|m| m.supports(name)))
            .collect();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(p) = m.protocols.iter().find(|p| candidates.contains(p.name.as_str())) {
                *votes.entry(p.name.as_str()).or_insert(0) += 1;
            }
        }
        let best = votes.values().copied().max()?;
        votes.into_iter().find(|(_, n)| *n == best).map(|(name, _)| name.to_owned())
    }

    fn current_members(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        self.members
            .values()
            .map(|m| JoinedMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata(protocol),
            })
            .collect()
    }

    fn join_response(&self, member_id: &str, with_members: bool, skip_assignment: bool) -> JoinResponse {
        JoinResponse {
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader_id: self.leader_id.clone().unwrap_or_default(),
            member_id: member_id.to_owned(),
            members: if with_members { self.current_members() } else { Vec::new() },
            skip_assignment,
        }
    }

    /// Kafka's `acceptJoiningMember` (group.max.size).
    fn accept_joining_member(&self, member_id: &str, max_size: usize) -> bool {
        match self.state {
            Empty | Dead => true,
            PreparingRebalance => {
                self.members.get(member_id).is_some_and(|m| m.awaiting_join.is_some())
                    || self.num_awaiting_join() < max_size
            }
            CompletingRebalance | Stable => self.members.contains_key(member_id) || self.members.len() < max_size,
        }
    }

    /// Answers the member's parked JoinGroup, if it has one.
    fn complete_join_future(&mut self, member_id: &str, result: Result<JoinResponse, GroupError>, cx: &mut Ctx<'_>) {
        if let Some(ticket) = self.members.get_mut(member_id).and_then(|m| m.awaiting_join.take()) {
            cx.reply_join(ticket, result);
        }
    }

    /// Removes a member; any request it has parked is answered UNKNOWN_MEMBER_ID.
    fn remove_member(&mut self, member_id: &str, cx: &mut Ctx<'_>) {
        let Some(mut m) = self.members.remove(member_id) else {
            return;
        };
        if let Some(ticket) = m.awaiting_join.take() {
            cx.reply_join(ticket, Err(GroupError::UnknownMemberId));
        }
        if let Some(ticket) = m.awaiting_sync.take() {
            cx.reply_sync(ticket, Err(GroupError::UnknownMemberId));
        }
        if let Some(instance) = &m.group_instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        self.pending_sync.remove(member_id);
        if self.is_leader(member_id) {
            self.leader_id = self.members.keys().next().cloned();
        }
    }

    // ----- JoinGroup -----

    /// Handles a JoinGroup; the answer goes to `ticket`, now or when the join phase ends.
    /// `new_member_id` is the id to hand out if the member has none.
    pub(super) fn join(&mut self, req: JoinRequest, ticket: Ticket, new_member_id: String, cx: &mut Ctx<'_>) {
        if !self.accept_joining_member(&req.member_id, cx.cfg.max_size) {
            self.remove_member(&req.member_id, cx);
            self.pending_members.remove(&req.member_id);
            return cx.reply_join(ticket, Err(GroupError::GroupMaxSizeReached));
        }
        if self.state == Dead {
            return cx.reply_join(ticket, Err(GroupError::CoordinatorNotAvailable));
        }
        if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            return cx.reply_join(ticket, Err(GroupError::InconsistentGroupProtocol));
        }
        if req.member_id.is_empty() {
            self.join_new_member(req, ticket, new_member_id, cx);
        } else {
            self.join_existing_member(req, ticket, cx);
        }
    }

    fn join_new_member(&mut self, req: JoinRequest, ticket: Ticket, new_member_id: String, cx: &mut Ctx<'_>) {
        if let Some(instance) = &req.group_instance_id {
            match self.static_members.get(instance).cloned() {
                Some(old) => self.replace_static_member(old, new_member_id, req, ticket, cx),
                None => self.add_member_and_rebalance(new_member_id, req, ticket, cx),
            }
        } else if req.require_known_member_id {
            if self.pending_members.len() >= cx.cfg.max_size {
                return cx.reply_join(ticket, Err(GroupError::GroupMaxSizeReached));
            }
            let deadline = cx.now_ms.saturating_add(i64::from(req.session_timeout_ms));
            self.pending_members.insert(new_member_id.clone(), deadline);
            cx.reply_join(ticket, Err(GroupError::MemberIdRequired(new_member_id)));
        } else {
            self.add_member_and_rebalance(new_member_id, req, ticket, cx);
        }
    }

    fn join_existing_member(&mut self, req: JoinRequest, ticket: Ticket, cx: &mut Ctx<'_>) {
        let member_id = req.member_id.clone();
        if self.pending_members.contains_key(&member_id) {
            if req.group_instance_id.is_some() {
                return cx.reply_join(ticket, Err(GroupError::UnknownMemberId));
            }
            return self.add_member_and_rebalance(member_id, req, ticket, cx);
        }
        if let Err(e) = self.validate_member(&member_id, req.group_instance_id.as_deref()) {
            return cx.reply_join(ticket, Err(e));
        }
        let unchanged = self.members.get(&member_id).is_some_and(|m| m.matches(&req.protocols));
        let leader = self.is_leader(&member_id);
        match self.state {
            // The answer was lost: give the same generation again (the leader with the members).
            CompletingRebalance if unchanged => {
                cx.reply_join(ticket, Ok(self.join_response(&member_id, leader, false)));
            }
            // A follower with nothing new needs no rebalance; a leader's rejoin forces one.
            Stable if unchanged && !leader => {
                cx.reply_join(ticket, Ok(self.join_response(&member_id, false, false)));
            }
            PreparingRebalance | CompletingRebalance | Stable => self.update_member_and_rebalance(req, ticket, cx),
            Empty | Dead => cx.reply_join(ticket, Err(GroupError::UnknownMemberId)),
        }
    }

    fn add_member_and_rebalance(&mut self, member_id: String, req: JoinRequest, ticket: Ticket, cx: &mut Ctx<'_>) {
        let deadline = cx.now_ms.saturating_add(cx.cfg.new_member_join_timeout_ms);
        let member = Member::new(member_id.clone(), req, ticket, deadline);
        if self.state == PreparingRebalance && self.previous_state == Empty {
            self.new_member_added = true;
        }
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member_id.clone());
        }
        if let Some(instance) = &member.group_instance_id {
            self.static_members.insert(instance.clone(), member_id.clone());
        }
        self.pending_members.remove(&member_id);
        self.members.insert(member_id, member);
        self.maybe_prepare_rebalance_or_complete_join(cx);
    }

    fn update_member_and_rebalance(&mut self, req: JoinRequest, ticket: Ticket, cx: &mut Ctx<'_>) {
        let Some(m) = self.members.get_mut(&req.member_id) else {
            return cx.reply_join(ticket, Err(GroupError::UnknownMemberId));
        };
        m.protocols = req.protocols;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.session_timeout_ms = req.session_timeout_ms;
        // A retried JoinGroup supersedes the one parked before it; that one is told to retry.
        if let Some(old) = m.awaiting_join.replace(ticket) {
            cx.reply_join(old, Err(GroupError::RebalanceInProgress));
        }
        self.maybe_prepare_rebalance_or_complete_join(cx);
    }

    /// KIP-345: a static member rejoining with no member id takes over its instance's place
    /// under a new id; the old id is fenced. In a Stable group whose protocol would not change it
    /// keeps its assignment and nobody rebalances, once the new mapping is durable.
    fn replace_static_member(
        &mut self,
        old_id: String,
        new_id: String,
        req: JoinRequest,
        ticket: Ticket,
        cx: &mut Ctx<'_>,
    ) {
        let old_leader_id = self.leader_id.clone();
        let Some(saved) = self.rekey_member(&old_id, &new_id, cx) else {
            return cx.reply_join(ticket, Err(GroupError::UnknownMemberId));
        };
        if let Some(m) = self.members.get_mut(&new_id) {
            m.protocols = req.protocols;
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            m.session_timeout_ms = req.session_timeout_ms;
            m.awaiting_join = Some(ticket);
        }
        match self.state {
            Stable if self.select_protocol() == self.protocol_name => {
                let record = self.metadata_record(None);
                let kind = WriteKind::StaticReplace {
                    group_id: self.group_id.clone(),
                    ticket,
                    old_member_id: old_id,
                    new_member_id: new_id,
                    old_leader_id,
                    saved,
                    supports_skip_assignment: req.supports_skip_assignment,
                };
                cx.write(kind, vec![record]);
            }
            Stable => self.maybe_prepare_rebalance_or_complete_join(cx),
            // The leader may already be assigning to the old id: rebalance so the new one gets a share.
            CompletingRebalance => self.prepare_rebalance(cx),
            PreparingRebalance => self.maybe_complete_join_phase(cx),
            Empty | Dead => self.complete_join_future(&new_id, Err(GroupError::UnknownMemberId), cx),
        }
    }

    /// Moves a member to a new id, fencing requests parked under the old one; returns its
    /// settings before the move.
    fn rekey_member(&mut self, from: &str, to: &str, cx: &mut Ctx<'_>) -> Option<SavedMember> {
        let mut m = self.members.remove(from)?;
        if let Some(t) = m.awaiting_join.take() {
            cx.reply_join(t, Err(GroupError::FencedInstanceId));
        }
        if let Some(t) = m.awaiting_sync.take() {
            cx.reply_sync(t, Err(GroupError::FencedInstanceId));
        }
        let saved = SavedMember {
            protocols: m.protocols.clone(),
            rebalance_timeout_ms: m.rebalance_timeout_ms,
            session_timeout_ms: m.session_timeout_ms,
        };
        m.member_id = to.to_owned();
        m.reschedule(cx.now_ms);
        if let Some(instance) = &m.group_instance_id {
            self.static_members.insert(instance.clone(), to.to_owned());
        }
        if self.is_leader(from) {
            self.leader_id = Some(to.to_owned());
        }
        if self.pending_sync.remove(from) {
            self.pending_sync.insert(to.to_owned());
        }
        self.members.insert(to.to_owned(), m);
        Some(saved)
    }

    /// Completes a static replacement once its record is durable, or reverts it if the write
    /// failed and nothing has happened to the member since.
    pub(super) fn on_static_replace_written(
        &mut self,
        kind: WriteKind,
        result: Result<(), GroupError>,
        cx: &mut Ctx<'_>,
    ) {
        let WriteKind::StaticReplace {
            ticket,
            old_member_id,
            new_member_id,
            old_leader_id,
            saved,
            supports_skip_assignment,
            ..
        } = kind
        else {
            return;
        };
        let still_parked = self.members.get(&new_member_id).is_some_and(|m| m.awaiting_join == Some(ticket));
        if !still_parked {
            return;
        }
        match result {
            Ok(()) => {
                let leader = self.is_leader(&new_member_id);
                let response = if supports_skip_assignment {
                    self.join_response(&new_member_id, leader, leader)
                } else {
                    // Before v9 the old leader id keeps a restarted leader from re-assigning.
                    JoinResponse {
                        leader_id: old_leader_id.unwrap_or_default(),
                        ..self.join_response(&new_member_id, false, false)
                    }
                };
                self.complete_join_future(&new_member_id, Ok(response), cx);
            }
            Err(e) => {
                self.complete_join_future(&new_member_id, Err(e), cx);
                if self.rekey_member(&new_member_id, &old_member_id, cx).is_some() {
                    if let Some(m) = self.members.get_mut(&old_member_id) {
                        m.protocols = saved.protocols;
                        m.rebalance_timeout_ms = saved.rebalance_timeout_ms;
                        m.session_timeout_ms = saved.session_timeout_ms;
                    }
                }
            }
        }
    }

    // ----- rebalance phases -----

    fn maybe_prepare_rebalance_or_complete_join(&mut self, cx: &mut Ctx<'_>) {
        if self.can_rebalance() {
            self.prepare_rebalance(cx);
        } else {
            self.maybe_complete_join_phase(cx);
        }
    }

    fn prepare_rebalance(&mut self, cx: &mut Ctx<'_>) {
        if self.state == CompletingRebalance {
            self.reset_and_propagate_assignment_error(GroupError::RebalanceInProgress, cx);
        }
        self.pending_sync.clear();
        self.sync_deadline_ms = None;
        let initial = self.state == Empty;
        self.transition(PreparingRebalance, cx.now_ms);
        if initial {
            let delay_ms = cx.cfg.initial_rebalance_delay_ms;
            let remaining_ms = (self.rebalance_timeout_ms() - delay_ms).max(0);
            self.initial_delay = Some(InitialDelay { delay_ms, remaining_ms });
            self.join_deadline_ms = Some(cx.now_ms.saturating_add(delay_ms));
        } else if self.has_all_members_joined() {
            self.complete_join(cx);
        } else {
            self.join_deadline_ms = Some(cx.now_ms.saturating_add(self.rebalance_timeout_ms()));
        }
    }

    /// Ends the join phase early when everyone is in, except during a new group's initial delay.
    fn maybe_complete_join_phase(&mut self, cx: &mut Ctx<'_>) {
        if self.state == PreparingRebalance && self.has_all_members_joined() && self.previous_state != Empty {
            self.complete_join(cx);
        }
    }

    /// The join deadline passed: extend a new group's delay while members keep arriving (up to
    /// the rebalance timeout), else end the join phase.
    fn on_join_deadline(&mut self, cx: &mut Ctx<'_>) {
        match self.initial_delay {
            Some(d) if self.new_member_added && d.remaining_ms != 0 => {
                self.new_member_added = false;
                let delay_ms = cx.cfg.initial_rebalance_delay_ms.min(d.remaining_ms);
                let remaining_ms = (d.remaining_ms - d.delay_ms).max(0);
                self.initial_delay = Some(InitialDelay { delay_ms, remaining_ms });
                self.join_deadline_ms = Some(cx.now_ms.saturating_add(delay_ms));
            }
            _ => self.complete_join(cx),
        }
    }

    /// Ends the join phase: dynamic members that did not rejoin are dropped, the generation
    /// advances, and every parked JoinGroup is answered (the leader with the member list).
    fn complete_join(&mut self, cx: &mut Ctx<'_>) {
        self.join_deadline_ms = None;
        self.initial_delay = None;
        self.new_member_added = false;
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id, cx);
        }
        if self.state == Dead {
            return;
        }
        if !self.maybe_elect_new_joined_leader() && !self.members.is_empty() {
            // Only static members that have not rejoined remain: wait for them or their session timeout.
            self.join_deadline_ms = Some(cx.now_ms.saturating_add(self.rebalance_timeout_ms()));
            return;
        }
        self.init_next_generation(cx.now_ms);
        if self.state == Empty {
            let record = self.metadata_record(Some(&BTreeMap::new()));
            return cx.write(WriteKind::Metadata, vec![record]);
        }
        self.answer_joins(cx);
    }

    fn answer_joins(&mut self, cx: &mut Ctx<'_>) {
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let leader = self.is_leader(&id);
            let response = self.join_response(&id, leader, false);
            self.complete_join_future(&id, Ok(response), cx);
            if let Some(m) = self.members.get_mut(&id) {
                m.reschedule(cx.now_ms);
                m.is_new = false;
            }
            self.pending_sync.insert(id);
        }
        self.sync_deadline_ms = Some(cx.now_ms.saturating_add(self.rebalance_timeout_ms()));
    }

    /// Keeps the leader if it rejoined, else picks a member that did; false if none did.
    fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader_id.as_deref() else {
            return false;
        };
        if self.members.get(leader).is_some_and(|m| m.awaiting_join.is_some()) {
            return true;
        }
        match self.members.values().find(|m| m.awaiting_join.is_some()) {
            Some(m) => {
                self.leader_id = Some(m.member_id.clone());
                true
            }
            None => false,
        }
    }

    fn init_next_generation(&mut self, now_ms: i64) {
        self.generation_id = self.generation_id.wrapping_add(1);
        if self.members.is_empty() {
            self.protocol_name = None;
            self.transition(Empty, now_ms);
        } else {
            self.protocol_name = self.select_protocol();
            self.transition(CompletingRebalance, now_ms);
        }
        self.pending_sync.clear();
    }

    fn reset_and_propagate_assignment_error(&mut self, error: GroupError, cx: &mut Ctx<'_>) {
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
            if let Some(ticket) = m.awaiting_sync.take() {
                cx.reply_sync(ticket, Err(error.clone()));
                m.reschedule(cx.now_ms);
            }
        }
    }

    fn set_and_propagate_assignment(&mut self, assignment: &BTreeMap<String, Bytes>, cx: &mut Ctx<'_>) {
        for m in self.members.values_mut() {
            m.assignment = assignment.get(&m.member_id).cloned().unwrap_or_default();
            if let Some(ticket) = m.awaiting_sync.take() {
                let response = SyncResponse {
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    assignment: m.assignment.clone(),
                };
                cx.reply_sync(ticket, Ok(response));
                m.reschedule(cx.now_ms);
            }
        }
    }

    // ----- SyncGroup -----

    /// Handles a SyncGroup; the answer goes to `ticket`, at once or when the leader's assignment
    /// is durable.
    pub(super) fn sync(&mut self, req: SyncRequest, ticket: Ticket, cx: &mut Ctx<'_>) {
        if let Err(e) = self.validate_sync(&req) {
            return cx.reply_sync(ticket, Err(e));
        }
        match self.state {
            Empty => cx.reply_sync(ticket, Err(GroupError::UnknownMemberId)),
            PreparingRebalance => cx.reply_sync(ticket, Err(GroupError::RebalanceInProgress)),
            CompletingRebalance => self.sync_completing(req, ticket, cx),
            Stable => {
                self.remove_pending_sync(&req.member_id);
                let assignment = self.members.get(&req.member_id).map(|m| m.assignment.clone()).unwrap_or_default();
                let response = SyncResponse {
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    assignment,
                };
                cx.reply_sync(ticket, Ok(response));
            }
            Dead => cx.reply_sync(ticket, Err(GroupError::CoordinatorNotAvailable)),
        }
    }

    fn validate_sync(&self, req: &SyncRequest) -> Result<(), GroupError> {
        if self.state == Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        self.validate_member(&req.member_id, req.group_instance_id.as_deref())?;
        if req.generation_id != self.generation_id {
            return Err(GroupError::IllegalGeneration);
        }
        let inconsistent =
            |asked: &Option<String>, ours: &Option<String>| matches!((asked, ours), (Some(a), Some(o)) if a != o);
        if inconsistent(&req.protocol_type, &self.protocol_type)
            || inconsistent(&req.protocol_name, &self.protocol_name)
        {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        Ok(())
    }

    fn remove_pending_sync(&mut self, member_id: &str) {
        self.pending_sync.remove(member_id);
        if self.pending_sync.is_empty() {
            self.sync_deadline_ms = None;
        }
    }

    fn sync_completing(&mut self, req: SyncRequest, ticket: Ticket, cx: &mut Ctx<'_>) {
        let Some(m) = self.members.get_mut(&req.member_id) else {
            return cx.reply_sync(ticket, Err(GroupError::UnknownMemberId));
        };
        if let Some(old) = m.awaiting_sync.replace(ticket) {
            cx.reply_sync(old, Err(GroupError::RebalanceInProgress));
        }
        self.remove_pending_sync(&req.member_id);
        if !self.is_leader(&req.member_id) {
            return;
        }
        let given: BTreeMap<String, Bytes> = req.assignments.into_iter().collect();
        // Every member gets an entry: an empty assignment if the leader gave it none.
        let assignment: BTreeMap<String, Bytes> =
            self.members.keys().map(|id| (id.clone(), given.get(id).cloned().unwrap_or_default())).collect();
        let record = self.metadata_record(Some(&assignment));
        let kind = WriteKind::Sync { group_id: self.group_id.clone(), generation_id: self.generation_id, assignment };
        cx.write(kind, vec![record]);
    }

    /// The leader's assignment is durable (or failed): unless the group moved on meanwhile,
    /// answer every parked SyncGroup and become Stable (or rebalance).
    pub(super) fn on_sync_written(
        &mut self,
        generation_id: i32,
        assignment: &BTreeMap<String, Bytes>,
        result: Result<(), GroupError>,
        cx: &mut Ctx<'_>,
    ) {
        if self.state != CompletingRebalance || self.generation_id != generation_id {
            return;
        }
        match result {
            Ok(()) => {
                self.set_and_propagate_assignment(assignment, cx);
                self.transition(Stable, cx.now_ms);
            }
            Err(e) => {
                self.reset_and_propagate_assignment_error(e, cx);
                self.maybe_prepare_rebalance_or_complete_join(cx);
            }
        }
    }

    // ----- Heartbeat and LeaveGroup -----

    /// Handles a Heartbeat, restarting the member's session timer when it is valid.
    pub(super) fn heartbeat(&mut self, req: &HeartbeatRequest, now_ms: i64) -> Result<(), GroupError> {
        if self.state == Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        self.validate_member(&req.member_id, req.group_instance_id.as_deref())?;
        if req.generation_id != self.generation_id {
            return Err(GroupError::IllegalGeneration);
        }
        if self.state == Empty {
            return Err(GroupError::UnknownMemberId);
        }
        if let Some(m) = self.members.get_mut(&req.member_id) {
            m.reschedule(now_ms);
        }
        if self.state == PreparingRebalance {
            Err(GroupError::RebalanceInProgress)
        } else {
            Ok(())
        }
    }

    /// Handles a (batched) LeaveGroup; any member leaving starts a rebalance.
    ///
    /// # Errors
    /// COORDINATOR_NOT_AVAILABLE for a Dead group.
    pub(super) fn leave(
        &mut self,
        members: Vec<LeaveMember>,
        cx: &mut Ctx<'_>,
    ) -> Result<Vec<LeaveResult>, GroupError> {
        if self.state == Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        let results: Vec<LeaveResult> = members
            .into_iter()
            .map(|m| {
                let result = self.leave_one(&m, cx);
                LeaveResult { member_id: m.member_id, group_instance_id: m.group_instance_id, result }
            })
            .collect();
        if results.iter().any(|r| r.result.is_ok()) {
            match self.state {
                Stable | CompletingRebalance => self.maybe_prepare_rebalance_or_complete_join(cx),
                PreparingRebalance => self.maybe_complete_join_phase(cx),
                Empty | Dead => {}
            }
        }
        Ok(results)
    }

    fn leave_one(&mut self, m: &LeaveMember, cx: &mut Ctx<'_>) -> Result<(), GroupError> {
        if m.member_id.is_empty() {
            // An administrator removing a static member by instance id alone.
            let id = m
                .group_instance_id
                .as_ref()
                .and_then(|i| self.static_members.get(i))
                .cloned()
                .ok_or(GroupError::UnknownMemberId)?;
            self.remove_member(&id, cx);
            return Ok(());
        }
        if self.pending_members.remove(&m.member_id).is_some() {
            return Ok(());
        }
        self.validate_member(&m.member_id, m.group_instance_id.as_deref())?;
        self.remove_member(&m.member_id, cx);
        Ok(())
    }

    // ----- timers -----

    /// Fires whatever deadlines have passed: pending member ids, sessions, the join phase, the
    /// sync phase.
    pub(super) fn tick(&mut self, cx: &mut Ctx<'_>) {
        if self.state == Dead {
            return;
        }
        self.expire_pending_members(cx);
        self.expire_sessions(cx);
        if self.state == PreparingRebalance && self.join_deadline_ms.is_some_and(|d| cx.now_ms >= d) {
            self.on_join_deadline(cx);
        }
        if self.sync_deadline_ms.is_some_and(|d| cx.now_ms >= d) {
            self.expire_pending_sync(cx);
        }
    }

    fn expire_pending_members(&mut self, cx: &mut Ctx<'_>) {
        let before = self.pending_members.len();
        self.pending_members.retain(|_, deadline| *deadline > cx.now_ms);
        if self.pending_members.len() != before && self.state == PreparingRebalance && self.has_all_members_joined() {
            self.complete_join(cx);
        }
    }

    fn session_expired(&self, member_id: &str, now_ms: i64) -> bool {
        self.members.get(member_id).is_some_and(|m| m.heartbeat_deadline_ms <= now_ms && !m.has_satisfied_heartbeat())
    }

    fn expire_sessions(&mut self, cx: &mut Ctx<'_>) {
        let candidates: Vec<String> = self
            .members
            .values()
            .filter(|m| m.heartbeat_deadline_ms <= cx.now_ms)
            .map(|m| m.member_id.clone())
            .collect();
        for id in candidates {
            // Checked again: removing one member may have completed a join and reset the others.
            if !self.session_expired(&id, cx.now_ms) {
                continue;
            }
            tracing::info!(group_id = %self.group_id, member_id = %id, "member session expired");
            self.remove_member(&id, cx);
            match self.state {
                Stable | CompletingRebalance => self.maybe_prepare_rebalance_or_complete_join(cx),
                PreparingRebalance if self.has_all_members_joined() => self.complete_join(cx),
                _ => {}
            }
        }
    }

    /// Members that never sent SyncGroup within the rebalance timeout are dropped.
    fn expire_pending_sync(&mut self, cx: &mut Ctx<'_>) {
        self.sync_deadline_ms = None;
        if !matches!(self.state, CompletingRebalance | Stable) || self.pending_sync.is_empty() {
            return;
        }
        for id in std::mem::take(&mut self.pending_sync) {
            self.remove_member(&id, cx);
        }
        self.prepare_rebalance(cx);
    }

    // ----- offsets -----

    /// Kafka's `validateOffsetCommit` for a classic group.
    pub(super) fn validate_offset_commit(
        &self,
        member_id: &str,
        instance: Option<&str>,
        generation_id: i32,
    ) -> Result<(), GroupError> {
        if self.state == Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if generation_id < 0 && self.state == Empty {
            return Ok(()); // a simple commit: the group only stores offsets
        }
        if generation_id >= 0 || !member_id.is_empty() || instance.is_some() {
            self.validate_member(member_id, instance)?;
            if generation_id != self.generation_id {
                return Err(GroupError::IllegalGeneration);
            }
        } else if self.state != Empty {
            return Err(GroupError::UnknownMemberId);
        }
        if self.state == CompletingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Kafka's `validateOffsetDelete`: a group with members may only lose offsets of topics it
    /// does not consume, and only if it uses the consumer protocol.
    pub(super) fn validate_offset_delete(&self) -> Result<(), GroupError> {
        match self.state {
            Dead => Err(GroupError::GroupIdNotFound),
            Empty => Ok(()),
            _ if self.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE) => Ok(()),
            _ => Err(GroupError::NonEmptyGroup),
        }
    }

    /// Kafka's `isSubscribedToTopic`: unknown subscriptions count as subscribed for consumers.
    pub(super) fn is_subscribed_to(&self, topic: &str) -> bool {
        match self.subscribed_topics() {
            Some(topics) => topics.contains(topic),
            None => self.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE),
        }
    }

    /// The topics a consumer group's members subscribe to, read from their subscription
    /// metadata; None unless the protocol type is "consumer" and every subscription parses.
    fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
            return None;
        }
        if self.members.is_empty() {
            return Some(BTreeSet::new());
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            topics.extend(consumer_subscription_topics(&m.metadata(protocol))?);
        }
        Some(topics)
    }

    /// Offsets due to expire under Kafka's rules: an Empty group's once retention has passed
    /// since it became Empty; a simple group's since each commit; a Stable consumer group's for
    /// topics it no longer subscribes to.
    fn expired_offsets(&self, now_ms: i64, retention_ms: i64) -> Vec<TopicPartition> {
        let became_empty = self.state_timestamp_ms;
        match (self.protocol_type.as_deref(), self.state) {
            (Some(_), Empty) => {
                self.offsets.expired(now_ms, retention_ms, |o| became_empty.unwrap_or(o.commit_timestamp_ms), |_| false)
            }
            (Some(CONSUMER_PROTOCOL_TYPE), Stable) => match self.subscribed_topics() {
                Some(topics) => {
                    self.offsets.expired(now_ms, retention_ms, |o| o.commit_timestamp_ms, |t| topics.contains(t))
                }
                None => Vec::new(),
            },
            (None, _) => self.offsets.expired(now_ms, retention_ms, |o| o.commit_timestamp_ms, |_| false),
            _ => Vec::new(),
        }
    }

    /// Retention: tombstones for expired offsets, and for the group itself when it is Empty and
    /// would have no offsets left (the group is Dead until the write completes).
    pub(super) fn expire(&mut self, now_ms: i64, retention_ms: i64) -> Option<(WriteKind, Vec<Record>)> {
        if self.state == Dead {
            return None;
        }
        let keys = self.expired_offsets(now_ms, retention_ms);
        let group_deleted = self.state == Empty
            && self.pending_members.is_empty()
            && self.offsets.nothing_in_flight()
            && keys.len() == self.offsets.len();
        if keys.is_empty() && !group_deleted {
            return None;
        }
        let mut records: Vec<Record> = keys.iter().map(|tp| Record::offset_tombstone(&self.group_id, tp)).collect();
        self.offsets.begin_writes(&keys);
        if group_deleted {
            self.transition(Dead, now_ms);
            records.push(Record::group_tombstone(&self.group_id));
        }
        Some((WriteKind::Expire { group_id: self.group_id.clone(), keys, group_deleted }, records))
    }

    /// Kafka's `validateDeleteGroup`.
    pub(super) fn validate_delete(&self) -> Result<(), GroupError> {
        match self.state {
            Dead => Err(GroupError::GroupIdNotFound),
            Empty => Ok(()),
            _ => Err(GroupError::NonEmptyGroup),
        }
    }

    /// Marks the group Dead and returns the tombstones that delete it and every offset it has
    /// (or is writing), with the partitions now in flight.
    pub(super) fn delete_records(&mut self, now_ms: i64) -> (Vec<Record>, Vec<TopicPartition>) {
        let keys = self.offsets.all_keys();
        let mut records: Vec<Record> = keys.iter().map(|tp| Record::offset_tombstone(&self.group_id, tp)).collect();
        records.push(Record::group_tombstone(&self.group_id));
        self.offsets.begin_writes(&keys);
        self.pending_members.clear();
        self.transition(Dead, now_ms);
        (records, keys)
    }

    /// A deletion's write failed: the group is back as it was (Empty).
    pub(super) fn revive(&mut self, now_ms: i64) {
        if self.state == Dead {
            self.transition(Empty, now_ms);
        }
    }

    // ----- persistence and views -----

    /// A snapshot of the group for `__consumer_offsets`, with `assignment` (or each member's
    /// current one).
    pub(super) fn metadata_record(&self, assignment: Option<&BTreeMap<String, Bytes>>) -> Record {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        let members = self
            .members
            .values()
            .map(|m| MemberValue {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms: m.session_timeout_ms,
                subscription: m.metadata(protocol),
                assignment: match assignment {
                    Some(a) => a.get(&m.member_id).cloned().unwrap_or_default(),
                    None => m.assignment.clone(),
                },
            })
            .collect();
        let value = GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation_id: self.generation_id,
            protocol_name: self.protocol_name.clone(),
            leader_id: self.leader_id.clone(),
            state_timestamp_ms: self.state_timestamp_ms.unwrap_or(-1),
            members,
        };
        Record { key: RecordKey::Group { group_id: self.group_id.clone() }, value: Some(RecordValue::Group(value)) }
    }

    /// Rebuilds a group from its latest snapshot: Stable with its members, or Empty. Sessions
    /// start over from `now_ms`, as Kafka does on load. Offsets are kept.
    pub(super) fn load(&mut self, value: GroupValue, now_ms: i64) {
        let protocol = value.protocol_name.clone().unwrap_or_default();
        self.members = value
            .members
            .into_iter()
            .map(|m| (m.member_id.clone(), loaded_member(m, &value.protocol_type, &protocol, now_ms)))
            .collect();
        self.static_members =
            self.members.values().filter_map(|m| Some((m.group_instance_id.clone()?, m.member_id.clone()))).collect();
        self.state = if self.members.is_empty() { Empty } else { Stable };
        self.previous_state = self.state;
        self.state_timestamp_ms = (value.state_timestamp_ms >= 0).then_some(value.state_timestamp_ms);
        self.generation_id = value.generation_id;
        self.protocol_type = (!value.protocol_type.is_empty()).then_some(value.protocol_type);
        self.protocol_name = value.protocol_name;
        self.leader_id = value.leader_id;
        self.pending_members.clear();
        self.pending_sync.clear();
        self.join_deadline_ms = None;
        self.initial_delay = None;
        self.sync_deadline_ms = None;
    }

    pub(super) fn listed(&self) -> ListedGroup {
        ListedGroup {
            group_id: self.group_id.clone(),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            state: self.state.as_str(),
            group_type: GROUP_TYPE_CLASSIC,
        }
    }

    /// DescribeGroups' view: metadata, assignments and protocol only once Stable, as Kafka.
    pub(super) fn describe(&self) -> GroupDescription {
        let stable = self.state == Stable;
        let protocol = if stable { self.protocol_name.clone().unwrap_or_default() } else { String::new() };
        let members = self
            .members
            .values()
            .map(|m| DescribedMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: if stable { m.metadata(&protocol) } else { Bytes::new() },
                assignment: if stable { m.assignment.clone() } else { Bytes::new() },
            })
            .collect();
        GroupDescription {
            group_id: self.group_id.clone(),
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol,
            generation_id: self.generation_id,
            members,
        }
    }

    /// Every ticket parked in this group (for giving up on them all at unload).
    pub(super) fn take_tickets(&mut self) -> (Vec<Ticket>, Vec<Ticket>) {
        let mut joins = Vec::new();
        let mut syncs = Vec::new();
        for m in self.members.values_mut() {
            joins.extend(m.awaiting_join.take());
            syncs.extend(m.awaiting_sync.take());
        }
        (joins, syncs)
    }
}

fn loaded_member(m: MemberValue, protocol_type: &str, protocol: &str, now_ms: i64) -> Member {
    Member {
        member_id: m.member_id,
        group_instance_id: m.group_instance_id,
        client_id: m.client_id,
        client_host: m.client_host,
        rebalance_timeout_ms: m.rebalance_timeout_ms,
        session_timeout_ms: m.session_timeout_ms,
        protocol_type: protocol_type.to_owned(),
        protocols: vec![Protocol { name: protocol.to_owned(), metadata: m.subscription }],
        assignment: m.assignment,
        awaiting_join: None,
        awaiting_sync: None,
        is_new: false,
        heartbeat_deadline_ms: now_ms.saturating_add(i64::from(m.session_timeout_ms)),
    }
}

/// The topic list at the head of a consumer protocol subscription (every version starts with
/// version:i16, then topics as an i32 count of i16-length strings); None if it does not parse.
pub(super) fn consumer_subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut rest = metadata;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = (rest.get(..n)?, rest.get(n..)?);
        rest = tail;
        Some(head)
    };
    let version = i16::from_be_bytes(take(2)?.try_into().ok()?);
    if version < 0 {
        return None;
    }
    let count = i32::from_be_bytes(take(4)?.try_into().ok()?);
    let mut topics = Vec::new();
    for _ in 0..count.max(0) {
        let len = usize::try_from(i16::from_be_bytes(take(2)?.try_into().ok()?)).ok()?;
        topics.push(String::from_utf8(take(len)?.to_vec()).ok()?);
    }
    Some(topics)
}
