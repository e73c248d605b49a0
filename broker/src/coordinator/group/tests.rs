//! Scenario tests: a harness plays the handler layer (parks tickets, appends every write to an
//! in-memory log through the byte encoding, reports it durable) and the tests assert what
//! clients would see.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use super::records::{self, Record};
use super::*;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;
const DELAY_MS: i64 = 3_000;

/// A consumer-protocol subscription (version 0) to `topics`.
fn subscription(topics: &[&str]) -> Bytes {
    let mut b = Vec::new();
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        b.extend_from_slice(&(t.len() as i16).to_be_bytes());
        b.extend_from_slice(t.as_bytes());
    }
    b.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(b)
}

fn protocols(names: &[&str]) -> Vec<Protocol> {
    names.iter().map(|n| Protocol { name: (*n).to_owned(), metadata: subscription(&["t"]) }).collect()
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition { topic: topic.into(), partition }
}

struct Harness {
    c: GroupCoordinator,
    now: i64,
    answered: BTreeMap<Ticket, Reply>,
    queued: VecDeque<Write>,
    /// Every record made durable, in log order, as decoded from its bytes.
    log: Vec<Record>,
    /// When false, writes wait in `queued` until `flush`.
    auto_flush: bool,
    /// Tickets for answers that came back at once (counting down, far from real tickets).
    synthetic: Ticket,
}

impl Harness {
    fn new() -> Self {
        Self::with(GroupConfig { initial_rebalance_delay_ms: DELAY_MS, ..GroupConfig::default() })
    }

    fn with(config: GroupConfig) -> Self {
        Self {
            c: GroupCoordinator::new(config, 42),
            now: 1_000_000,
            answered: BTreeMap::new(),
            queued: VecDeque::new(),
            log: Vec::new(),
            auto_flush: true,
            synthetic: Ticket::MAX,
        }
    }

    fn absorb(&mut self, effects: Effects) {
        for c in effects.completions {
            assert!(self.answered.insert(c.ticket, c.reply).is_none(), "ticket {} answered twice", c.ticket);
        }
        self.queued.extend(effects.writes);
        if self.auto_flush {
            self.flush();
        }
    }

    /// Appends queued writes in order, through the byte encoding, and reports them durable.
    fn flush(&mut self) {
        while let Some(w) = self.queued.pop_front() {
            for r in &w.records {
                let (k, v) = records::encode(r).unwrap();
                self.log.push(records::decode(&k, v.as_deref()).unwrap());
            }
            let effects = self.c.write_completed(w.id, Ok(()), self.now);
            for c in effects.completions {
                assert!(self.answered.insert(c.ticket, c.reply).is_none());
            }
            self.queued.extend(effects.writes);
        }
    }

    fn advance(&mut self, ms: i64) {
        self.now += ms;
        let effects = self.c.tick(self.now);
        self.absorb(effects);
    }

    /// Absorbs a step; a request parked on a write that was flushed meanwhile resolves to its answer.
    fn step<T>(&mut self, step: Step<T>, pick: fn(Reply) -> Option<T>) -> Outcome<T> {
        self.absorb(step.effects);
        match step.outcome {
            Outcome::Parked(t) if self.answered.contains_key(&t) => {
                let reply = self.answered.remove(&t).unwrap();
                Outcome::Done(pick(reply).expect("answer of the wrong kind"))
            }
            other => other,
        }
    }

    /// Lets a new group's initial delay run out (it extends while members keep arriving).
    fn end_initial_delay(&mut self, group: &str) {
        for _ in 0..=(i64::from(REBALANCE_MS) / DELAY_MS) {
            if self.state(group) != GroupState::PreparingRebalance {
                return;
            }
            self.advance(DELAY_MS);
        }
        panic!("the initial delay never ended");
    }

    fn join_req(&self, group: &str, member: &str, instance: Option<&str>, protos: &[&str]) -> JoinRequest {
        JoinRequest {
            group_id: group.into(),
            member_id: member.into(),
            group_instance_id: instance.map(str::to_owned),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: SESSION_MS,
            rebalance_timeout_ms: REBALANCE_MS,
            protocol_type: "consumer".into(),
            protocols: protocols(protos),
            require_known_member_id: true,
            supports_skip_assignment: true,
        }
    }

    fn join(&mut self, req: JoinRequest) -> Outcome<Result<JoinResponse, GroupError>> {
        let s = self.c.join(req, self.now);
        self.step(s, |r| match r {
            Reply::Join(x) => Some(x),
            _ => None,
        })
    }

    /// KIP-394 step one: the member id to join with.
    fn member_id(&mut self, group: &str) -> String {
        match self.join(self.join_req(group, "", None, &["range"])) {
            Outcome::Done(Err(GroupError::MemberIdRequired(id))) => id,
            other => panic!("expected MEMBER_ID_REQUIRED, got {other:?}"),
        }
    }

    /// A join's ticket; one answered within the call is filed under a ticket of its own, so
    /// `join_answer` reads either kind.
    fn parked_join(&mut self, req: JoinRequest) -> Ticket {
        match self.join(req) {
            Outcome::Parked(t) => t,
            Outcome::Done(r) => {
                self.synthetic -= 1;
                self.answered.insert(self.synthetic, Reply::Join(r));
                self.synthetic
            }
        }
    }

    fn join_answer(&mut self, t: Ticket) -> Result<JoinResponse, GroupError> {
        match self.answered.remove(&t) {
            Some(Reply::Join(r)) => r,
            other => panic!("ticket {t}: expected a join answer, got {other:?}"),
        }
    }

    fn sync(
        &mut self,
        group: &str,
        member: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> Outcome<Result<SyncResponse, GroupError>> {
        let req = SyncRequest {
            group_id: group.into(),
            member_id: member.into(),
            generation_id: generation,
            group_instance_id: None,
            protocol_type: Some("consumer".into()),
            protocol_name: None,
            assignments,
        };
        let s = self.c.sync(req, self.now);
        self.step(s, pick_sync)
    }

    fn sync_answer(&mut self, t: Ticket) -> Result<SyncResponse, GroupError> {
        match self.answered.remove(&t) {
            Some(Reply::Sync(r)) => r,
            other => panic!("ticket {t}: expected a sync answer, got {other:?}"),
        }
    }

    fn heartbeat(&mut self, group: &str, member: &str, generation: i32) -> Result<(), GroupError> {
        let req = HeartbeatRequest {
            group_id: group.into(),
            member_id: member.into(),
            generation_id: generation,
            group_instance_id: None,
        };
        self.c.heartbeat(&req, self.now)
    }

    fn commit(
        &mut self,
        group: &str,
        member: &str,
        generation: i32,
        offsets: Vec<CommitOffset>,
    ) -> Outcome<Vec<PartitionResult>> {
        let req = CommitRequest {
            group_id: group.into(),
            member_id: member.into(),
            generation_id: generation,
            group_instance_id: None,
            offsets,
        };
        let s = self.c.commit_offsets(req, self.now);
        self.step(s, |r| match r {
            Reply::Commit(x) => Some(x),
            _ => None,
        })
    }

    fn state(&self, group: &str) -> GroupState {
        self.c.describe_group(group).unwrap().state
    }

    /// Builds a Stable group of dynamic members through the two-step join, the initial delay,
    /// and syncs in which the leader assigns `asg-<i>` to member i. Returns (generation, ids).
    fn stable_group(&mut self, group: &str, n: usize) -> (i32, Vec<String>) {
        let ids: Vec<String> = (0..n).map(|_| self.member_id(group)).collect();
        let tickets: Vec<Ticket> =
            ids.iter().map(|id| self.parked_join(self.join_req(group, id, None, &["range"]))).collect();
        self.end_initial_delay(group);
        let answers: Vec<JoinResponse> = tickets.iter().map(|t| self.join_answer(*t).unwrap()).collect();
        let generation = answers[0].generation_id;
        let leader = answers[0].leader_id.clone();
        self.sync_all(group, generation, &leader, &ids);
        (generation, ids)
    }

    /// Followers sync first (parked), then the leader; everyone gets `asg-<i>`.
    fn sync_all(&mut self, group: &str, generation: i32, leader: &str, ids: &[String]) {
        let mut tickets = Vec::new();
        for id in ids.iter().filter(|id| *id != leader) {
            match self.sync(group, id, generation, Vec::new()) {
                Outcome::Parked(t) => tickets.push((id.clone(), t)),
                other => panic!("follower sync should park, got {other:?}"),
            }
        }
        let assignments: Vec<(String, Bytes)> =
            ids.iter().enumerate().map(|(i, id)| (id.clone(), Bytes::from(format!("asg-{i}")))).collect();
        let leader_answer = match self.sync(group, leader, generation, assignments) {
            Outcome::Done(r) => r.unwrap(), // auto-flushed: durable within the call
            Outcome::Parked(t) => self.sync_answer(t).unwrap(),
        };
        let leader_index = ids.iter().position(|id| id == leader).unwrap();
        assert_eq!(leader_answer.assignment, Bytes::from(format!("asg-{leader_index}")));
        for (id, t) in tickets {
            let i = ids.iter().position(|x| *x == id).unwrap();
            assert_eq!(self.sync_answer(t).unwrap().assignment, Bytes::from(format!("asg-{i}")));
        }
        assert_eq!(self.state(group), GroupState::Stable);
    }
}

fn pick_sync(r: Reply) -> Option<Result<SyncResponse, GroupError>> {
    match r {
        Reply::Sync(x) => Some(x),
        _ => None,
    }
}

fn pick_delete_groups(r: Reply) -> Option<Vec<(String, Result<(), GroupError>)>> {
    match r {
        Reply::DeleteGroups(x) => Some(x),
        _ => None,
    }
}

fn pick_delete_offsets(r: Reply) -> Option<Result<Vec<PartitionResult>, GroupError>> {
    match r {
        Reply::DeleteOffsets(x) => Some(x),
        _ => None,
    }
}

fn offset(topic: &str, partition: i32, offset: i64, metadata: Option<&str>) -> CommitOffset {
    CommitOffset { topic: topic.into(), partition, offset, leader_epoch: 3, metadata: metadata.map(str::to_owned) }
}

#[test]
fn kip_394_two_step_join() {
    let mut h = Harness::new();
    let id = h.member_id("g");
    assert!(id.starts_with("client-"), "{id}");
    let t = h.parked_join(h.join_req("g", &id, None, &["range"]));
    assert_eq!(h.state("g"), GroupState::PreparingRebalance);
    h.advance(DELAY_MS - 1);
    assert!(!h.answered.contains_key(&t), "the initial delay holds the join");
    h.advance(1);
    let answer = h.join_answer(t).unwrap();
    assert_eq!(
        (answer.generation_id, answer.leader_id.as_str(), answer.member_id.as_str()),
        (1, id.as_str(), id.as_str())
    );
    assert_eq!(answer.members.len(), 1);
    assert_eq!(answer.protocol_name.as_deref(), Some("range"));
    // A second member id is different, and an unknown one is refused.
    assert_ne!(h.member_id("g"), id);
    let unknown = h.join(h.join_req("g", "nobody", None, &["range"]));
    assert_eq!(unknown, Outcome::Done(Err(GroupError::UnknownMemberId)));
}

#[test]
fn two_members_one_leader_both_assigned_and_protocol_voted() {
    let mut h = Harness::new();
    let a = h.member_id("g");
    let b = h.member_id("g");
    let ta = h.parked_join(h.join_req("g", &a, None, &["range", "sticky"]));
    let tb = h.parked_join(h.join_req("g", &b, None, &["sticky"]));
    h.advance(DELAY_MS);
    assert!(h.answered.is_empty(), "a member arrived during the delay: it is extended once");
    h.advance(DELAY_MS);
    let (ja, jb) = (h.join_answer(ta).unwrap(), h.join_answer(tb).unwrap());
    assert_eq!(ja.generation_id, 1);
    assert_eq!(jb.generation_id, 1);
    assert_eq!(ja.leader_id, jb.leader_id);
    // Only "sticky" is supported by both.
    assert_eq!(ja.protocol_name.as_deref(), Some("sticky"));
    let (leader, follower) = if ja.leader_id == a { (ja, jb) } else { (jb, ja) };
    assert_eq!(leader.members.len(), 2, "the leader gets the member list");
    assert!(follower.members.is_empty(), "followers do not");
    // The leader assigns only to itself: the follower still gets (empty) bytes.
    let tf = match h.sync("g", &follower.member_id, 1, Vec::new()) {
        Outcome::Parked(t) => t,
        other => panic!("{other:?}"),
    };
    h.auto_flush = false;
    let tl = match h.sync("g", &leader.member_id, 1, vec![(leader.member_id.clone(), Bytes::from_static(b"L"))]) {
        Outcome::Parked(t) => t,
        other => panic!("{other:?}"),
    };
    assert!(h.answered.is_empty(), "nobody is answered before the assignment is durable");
    assert_eq!(h.state("g"), GroupState::CompletingRebalance);
    h.flush();
    assert_eq!(h.sync_answer(tl).unwrap().assignment, Bytes::from_static(b"L"));
    assert_eq!(h.sync_answer(tf).unwrap().assignment, Bytes::new());
    assert_eq!(h.state("g"), GroupState::Stable);
    assert!(matches!(h.log.last().map(|r| &r.key), Some(records::RecordKey::Group { .. })));
}

#[test]
fn third_member_triggers_rebalance_and_generation_increments() {
    let mut h = Harness::new();
    let (generation, ids) = h.stable_group("g", 2);
    assert_eq!(generation, 1);
    let c = h.member_id("g");
    let tc = h.parked_join(h.join_req("g", &c, None, &["range"]));
    assert_eq!(h.state("g"), GroupState::PreparingRebalance);
    for id in &ids {
        assert_eq!(h.heartbeat("g", id, 1), Err(GroupError::RebalanceInProgress));
    }
    let t0 = h.parked_join(h.join_req("g", &ids[0], None, &["range"]));
    assert!(!h.answered.contains_key(&t0));
    let t1 = h.parked_join(h.join_req("g", &ids[1], None, &["range"]));
    // Everyone is in: the join phase ends at once (no initial delay for a non-empty group).
    let answers: Vec<JoinResponse> = [t0, t1, tc].iter().map(|t| h.join_answer(*t).unwrap()).collect();
    assert!(answers.iter().all(|a| a.generation_id == 2));
    assert_eq!(answers.iter().filter(|a| !a.members.is_empty()).count(), 1);
    let leader = answers[0].leader_id.clone();
    let all = vec![ids[0].clone(), ids[1].clone(), c];
    h.sync_all("g", 2, &leader, &all);
    assert_eq!(h.heartbeat("g", &ids[0], 1), Err(GroupError::IllegalGeneration));
    assert_eq!(h.heartbeat("g", &ids[0], 2), Ok(()));
}

#[test]
fn session_timeout_removes_member_and_rebalances() {
    let mut h = Harness::new();
    let (_, ids) = h.stable_group("g", 2);
    for _ in 0..3 {
        h.advance(i64::from(SESSION_MS) / 3);
        assert_eq!(h.heartbeat("g", &ids[0], 1), Ok(()));
    }
    assert_eq!(h.state("g"), GroupState::Stable);
    h.advance(i64::from(SESSION_MS) - 3 * (i64::from(SESSION_MS) / 3));
    // ids[1] has now been silent for its whole session timeout.
    assert_eq!(h.state("g"), GroupState::PreparingRebalance);
    assert_eq!(h.heartbeat("g", &ids[1], 1), Err(GroupError::UnknownMemberId));
    assert_eq!(h.heartbeat("g", &ids[0], 1), Err(GroupError::RebalanceInProgress));
    let t = h.parked_join(h.join_req("g", &ids[0], None, &["range"]));
    let answer = h.join_answer(t).unwrap();
    assert_eq!((answer.generation_id, answer.members.len()), (2, 1));
}

#[test]
fn rebalance_timeout_kicks_member_that_never_rejoins() {
    let mut h = Harness::new();
    let (_, ids) = h.stable_group("g", 2);
    let c = h.member_id("g");
    let tc = h.parked_join(h.join_req("g", &c, None, &["range"]));
    let t0 = h.parked_join(h.join_req("g", &ids[0], None, &["range"]));
    // ids[1] keeps heartbeating but never rejoins.
    let mut waited = 0;
    while waited + 3_000 < i64::from(REBALANCE_MS) {
        h.advance(3_000);
        waited += 3_000;
        assert_eq!(h.heartbeat("g", &ids[1], 1), Err(GroupError::RebalanceInProgress));
    }
    assert!(!h.answered.contains_key(&t0));
    h.advance(i64::from(REBALANCE_MS) - waited);
    let (a0, ac) = (h.join_answer(t0).unwrap(), h.join_answer(tc).unwrap());
    assert_eq!(a0.generation_id, 2);
    let leader = if a0.members.is_empty() { ac } else { a0 };
    let mut members: Vec<String> = leader.members.iter().map(|m| m.member_id.clone()).collect();
    members.sort();
    let mut expected = vec![ids[0].clone(), c];
    expected.sort();
    assert_eq!(members, expected);
    assert_eq!(h.heartbeat("g", &ids[1], 2), Err(GroupError::UnknownMemberId));
}

#[test]
fn static_member_restart_keeps_assignment_without_rebalance() {
    let mut h = Harness::new();
    let ta = h.parked_join(h.join_req("g", "", Some("i-a"), &["range"]));
    let tb = h.parked_join(h.join_req("g", "", Some("i-b"), &["range"]));
    h.end_initial_delay("g");
    let (ja, jb) = (h.join_answer(ta).unwrap(), h.join_answer(tb).unwrap());
    assert!(ja.member_id.starts_with("i-a-"), "static ids start with the instance id");
    let ids = vec![ja.member_id.clone(), jb.member_id.clone()];
    h.sync_all("g", 1, &ja.leader_id, &ids);
    let follower = if ja.leader_id == ja.member_id { &jb } else { &ja };
    let instance = if follower.member_id == ja.member_id { "i-a" } else { "i-b" };
    let index = ids.iter().position(|id| *id == follower.member_id).unwrap();
    // The follower restarts: no member id, same instance id, same protocols.
    h.auto_flush = false;
    let t = h.parked_join(h.join_req("g", "", Some(instance), &["range"]));
    assert!(!h.answered.contains_key(&t), "answered only once the new id is durable");
    h.flush();
    let rejoined = h.join_answer(t).unwrap();
    assert_ne!(rejoined.member_id, follower.member_id);
    assert_eq!(rejoined.generation_id, 1, "no rebalance");
    assert_eq!(h.state("g"), GroupState::Stable);
    h.auto_flush = true;
    match h.sync("g", &rejoined.member_id, 1, Vec::new()) {
        Outcome::Done(Ok(s)) => assert_eq!(s.assignment, Bytes::from(format!("asg-{index}"))),
        other => panic!("{other:?}"),
    }
    let leader = ja.leader_id.clone();
    assert_eq!(h.heartbeat("g", &leader, 1), Ok(()), "the others see no rebalance");
    let old = HeartbeatRequest {
        group_id: "g".into(),
        member_id: follower.member_id.clone(),
        generation_id: 1,
        group_instance_id: Some(instance.into()),
    };
    assert_eq!(h.c.heartbeat(&old, h.now), Err(GroupError::FencedInstanceId));
}

#[test]
fn static_leader_restart_before_v9_is_told_the_old_leader() {
    let mut h = Harness::new();
    let t = h.parked_join(h.join_req("g", "", Some("i-a"), &["range"]));
    h.advance(DELAY_MS);
    let first = h.join_answer(t).unwrap();
    h.sync_all("g", 1, &first.member_id, std::slice::from_ref(&first.member_id));
    let mut req = h.join_req("g", "", Some("i-a"), &["range"]);
    req.supports_skip_assignment = false;
    match h.join(req) {
        Outcome::Done(Ok(r)) => {
            assert_eq!(r.leader_id, first.member_id, "the old id, so the client does not reassign");
            assert!(r.members.is_empty());
        }
        other => panic!("{other:?}"),
    }
    // With v9, the leader gets the members and skip_assignment.
    match h.join(h.join_req("g", "", Some("i-a"), &["range"])) {
        Outcome::Done(Ok(r)) => {
            assert!(r.skip_assignment && r.leader_id == r.member_id && r.members.len() == 1)
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.state("g"), GroupState::Stable);
}

#[test]
fn batched_leave_rebalances() {
    let mut h = Harness::new();
    let (_, ids) = h.stable_group("g", 3);
    let (result, effects) = h.c.leave(
        "g",
        vec![
            LeaveMember { member_id: ids[1].clone(), group_instance_id: None },
            LeaveMember { member_id: ids[2].clone(), group_instance_id: None },
            LeaveMember { member_id: "ghost".into(), group_instance_id: None },
        ],
        h.now,
    );
    h.absorb(effects);
    let results: Vec<Result<(), GroupError>> = result.unwrap().into_iter().map(|r| r.result).collect();
    assert_eq!(results, vec![Ok(()), Ok(()), Err(GroupError::UnknownMemberId)]);
    assert_eq!(h.state("g"), GroupState::PreparingRebalance);
    assert_eq!(h.heartbeat("g", &ids[0], 1), Err(GroupError::RebalanceInProgress));
    let t = h.parked_join(h.join_req("g", &ids[0], None, &["range"]));
    let answer = h.join_answer(t).unwrap();
    assert_eq!((answer.generation_id, answer.members.len()), (2, 1));
    // The last member leaves: the group becomes Empty, and that is recorded.
    let (result, effects) =
        h.c.leave("g", vec![LeaveMember { member_id: ids[0].clone(), group_instance_id: None }], h.now);
    h.absorb(effects);
    assert!(result.unwrap()[0].result.is_ok());
    assert_eq!(h.state("g"), GroupState::Empty);
    assert_eq!(h.c.describe_group("g").unwrap().generation_id, 3);
}

#[test]
fn inconsistent_group_protocol() {
    let mut h = Harness::new();
    let (_, ids) = h.stable_group("g", 1);
    let mut other_type = h.join_req("g", "", None, &["range"]);
    other_type.protocol_type = "connect".into();
    assert_eq!(h.join(other_type), Outcome::Done(Err(GroupError::InconsistentGroupProtocol)));
    let no_common = h.join_req("g", "", None, &["roundrobin"]);
    assert_eq!(h.join(no_common), Outcome::Done(Err(GroupError::InconsistentGroupProtocol)));
    let none = h.join_req("new", "", None, &[]);
    assert_eq!(h.join(none), Outcome::Done(Err(GroupError::InconsistentGroupProtocol)));
    let req = SyncRequest {
        group_id: "g".into(),
        member_id: ids[0].clone(),
        generation_id: 1,
        group_instance_id: None,
        protocol_type: Some("consumer".into()),
        protocol_name: Some("roundrobin".into()),
        assignments: Vec::new(),
    };
    let s = h.c.sync(req, h.now);
    assert_eq!(h.step(s, pick_sync), Outcome::Done(Err(GroupError::InconsistentGroupProtocol)));
}

#[test]
fn join_limits_session_timeout_and_group_size() {
    let mut h =
        Harness::with(GroupConfig { max_size: 1, initial_rebalance_delay_ms: DELAY_MS, ..GroupConfig::default() });
    let mut req = h.join_req("g", "", None, &["range"]);
    req.session_timeout_ms = 5_999;
    assert_eq!(h.join(req), Outcome::Done(Err(GroupError::InvalidSessionTimeout)));
    let (_, _) = h.stable_group("g", 1);
    // A full group turns a new member away at its first JoinGroup already.
    let r = h.join(h.join_req("g", "", None, &["range"]));
    assert_eq!(r, Outcome::Done(Err(GroupError::GroupMaxSizeReached)));
}

#[test]
fn groups_per_coordinator_are_capped() {
    let mut h = Harness::with(GroupConfig { groups_max: 2, ..GroupConfig::default() });
    h.member_id("g1");
    h.member_id("g2");
    assert_eq!(h.join(h.join_req("g3", "", None, &["range"])), Outcome::Done(Err(GroupError::GroupsMaxReached)));
    let simple = h.commit("g4", "", -1, vec![offset("t", 0, 1, None)]);
    assert_eq!(
        simple,
        Outcome::Done(vec![PartitionResult {
            topic: "t".into(),
            partition: 0,
            result: Err(GroupError::GroupsMaxReached)
        }])
    );
}

#[test]
fn offset_commit_validation_and_metadata_round_trip() {
    let mut h = Harness::new();
    let (_, ids) = h.stable_group("g", 1);
    h.auto_flush = false;
    let too_long = "x".repeat(4097);
    let t = match h.commit(
        "g",
        &ids[0],
        1,
        vec![offset("t", 0, 10, Some("m-0")), offset("t", 1, 11, Some(&too_long)), offset("t", 2, 12, None)],
    ) {
        Outcome::Parked(t) => t,
        other => panic!("{other:?}"),
    };
    let before = h.c.fetch_offsets("g", Some(&[tp("t", 0)])).unwrap();
    assert_eq!(before[0].offset, -1, "invisible until durable");
    h.flush();
    let results: Vec<Result<(), GroupError>> = match h.answered.remove(&t) {
        Some(Reply::Commit(r)) => r.into_iter().map(|p| p.result).collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(results, vec![Ok(()), Err(GroupError::OffsetMetadataTooLarge), Ok(())]);
    h.auto_flush = true;
    let fetched = h.c.fetch_offsets("g", Some(&[tp("t", 0), tp("t", 1), tp("t", 2), tp("u", 0)])).unwrap();
    let seen: Vec<(i64, i32, &str)> = fetched.iter().map(|f| (f.offset, f.leader_epoch, f.metadata.as_str())).collect();
    assert_eq!(seen, vec![(10, 3, "m-0"), (-1, -1, ""), (12, 3, ""), (-1, -1, "")]);
    assert_eq!(h.c.fetch_offsets("g", None).unwrap().len(), 2);
    assert_eq!(h.c.fetch_offsets("nope", Some(&[tp("t", 0)])).unwrap()[0].offset, -1);
    // Wrong generation, unknown member, a simple commit to a group with members.
    let err = |o: Outcome<Vec<PartitionResult>>| match o {
        Outcome::Done(r) => r[0].result.clone(),
        Outcome::Parked(_) => panic!("parked"),
    };
    assert_eq!(err(h.commit("g", &ids[0], 0, vec![offset("t", 0, 1, None)])), Err(GroupError::IllegalGeneration));
    assert_eq!(err(h.commit("g", "ghost", 1, vec![offset("t", 0, 1, None)])), Err(GroupError::UnknownMemberId));
    assert_eq!(err(h.commit("g", "", -1, vec![offset("t", 0, 1, None)])), Err(GroupError::UnknownMemberId));
    // During PreparingRebalance the current generation may still commit (commit on revoke)...
    let other = h.member_id("g");
    let t_other = h.parked_join(h.join_req("g", &other, None, &["range"]));
    assert_eq!(err(h.commit("g", &ids[0], 1, vec![offset("t", 0, 20, None)])), Ok(()));
    // ...but not during CompletingRebalance.
    let t0 = h.parked_join(h.join_req("g", &ids[0], None, &["range"]));
    let generation = h.join_answer(t0).unwrap().generation_id;
    h.join_answer(t_other).unwrap();
    assert_eq!(h.state("g"), GroupState::CompletingRebalance);
    assert_eq!(
        err(h.commit("g", &ids[0], generation, vec![offset("t", 0, 30, None)])),
        Err(GroupError::RebalanceInProgress)
    );
}

#[test]
fn simple_commits_create_an_offsets_only_group() {
    let mut h = Harness::new();
    match h.commit("simple", "", -1, vec![offset("t", 0, 5, Some("s"))]) {
        Outcome::Done(r) => assert_eq!(r[0].result, Ok(())),
        other => panic!("{other:?}"),
    }
    let listed = h.c.list_groups(&[], &[]);
    assert_eq!(
        listed,
        vec![ListedGroup {
            group_id: "simple".into(),
            protocol_type: String::new(),
            state: "Empty",
            group_type: "classic"
        }]
    );
    assert_eq!(h.c.fetch_offsets("simple", None).unwrap()[0].metadata, "s");
    let r = h.commit("absent", "m", 3, vec![offset("t", 0, 5, None)]);
    assert_eq!(
        r,
        Outcome::Done(vec![PartitionResult {
            topic: "t".into(),
            partition: 0,
            result: Err(GroupError::IllegalGeneration)
        }])
    );
    assert!(h.c.describe_group("absent").is_err());
}

#[test]
fn delete_groups_only_when_empty() {
    let mut h = Harness::new();
    let (_, ids) = h.stable_group("busy", 1);
    h.commit("busy", &ids[0], 1, vec![offset("t", 0, 1, None)]);
    h.commit("idle", "", -1, vec![offset("t", 0, 7, None)]);
    let s = h.c.delete_groups(vec!["busy".into(), "idle".into(), "ghost".into()], h.now);
    let results = match h.step(s, pick_delete_groups) {
        Outcome::Done(r) => r,
        other => panic!("{other:?}"),
    };
    let results: Vec<Result<(), GroupError>> = results.into_iter().map(|(_, r)| r).collect();
    assert_eq!(results, vec![Err(GroupError::NonEmptyGroup), Ok(()), Err(GroupError::GroupIdNotFound)]);
    assert!(h.c.describe_group("idle").is_err());
    assert_eq!(h.c.fetch_offsets("idle", Some(&[tp("t", 0)])).unwrap()[0].offset, -1);
    assert_eq!(h.c.fetch_offsets("busy", Some(&[tp("t", 0)])).unwrap()[0].offset, 1);
}

#[test]
fn delete_offsets_respects_subscriptions() {
    let mut h = Harness::new();
    let (_, ids) = h.stable_group("g", 1); // subscribed to "t"
    h.commit("g", &ids[0], 1, vec![offset("t", 0, 1, None), offset("old", 0, 2, None)]);
    let s = h.c.delete_offsets("g", vec![tp("t", 0), tp("old", 0)], h.now);
    let results: Vec<Result<(), GroupError>> = match h.step(s, pick_delete_offsets) {
        Outcome::Done(Ok(r)) => r.into_iter().map(|p| p.result).collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(results, vec![Err(GroupError::GroupSubscribedToTopic), Ok(())]);
    let left: Vec<String> = h.c.fetch_offsets("g", None).unwrap().into_iter().map(|f| f.topic).collect();
    assert_eq!(left, vec!["t".to_owned()]);
}

#[test]
fn offsets_of_empty_groups_expire_after_retention() {
    let retention_ms = 60_000;
    let mut h = Harness::with(GroupConfig {
        initial_rebalance_delay_ms: DELAY_MS,
        offsets_retention_ms: retention_ms,
        offsets_retention_check_interval_ms: 1_000,
        ..GroupConfig::default()
    });
    let (_, ids) = h.stable_group("g", 1);
    h.commit("g", &ids[0], 1, vec![offset("t", 0, 9, Some("keep?"))]);
    h.commit("simple", "", -1, vec![offset("t", 0, 4, None)]);
    // A Stable group subscribed to "t" keeps its offsets however old they are.
    h.advance(retention_ms * 2);
    assert_eq!(h.heartbeat("g", &ids[0], 1), Err(GroupError::UnknownMemberId), "session long gone");
    // The simple group's offsets expired with their commit; the group went with them.
    assert!(h.c.describe_group("simple").is_err());
    // "g" became Empty when its member timed out; its clock starts then.
    assert_eq!(h.state("g"), GroupState::Empty);
    assert_eq!(h.c.fetch_offsets("g", Some(&[tp("t", 0)])).unwrap()[0].offset, 9);
    h.advance(retention_ms);
    assert_eq!(h.c.fetch_offsets("g", Some(&[tp("t", 0)])).unwrap()[0].offset, -1);
    assert!(h.c.describe_group("g").is_err(), "an Empty group without offsets is deleted");
    let tombstones = h.log.iter().filter(|r| r.value.is_none()).count();
    assert_eq!(tombstones, 4, "two offsets and two groups");
}

#[test]
fn pending_member_ids_lapse_after_session_timeout() {
    let mut h = Harness::new();
    let (_, ids) = h.stable_group("g", 1);
    let pending = h.member_id("g");
    h.advance(i64::from(SESSION_MS) / 2);
    assert_eq!(h.heartbeat("g", &ids[0], 1), Ok(()));
    h.advance(i64::from(SESSION_MS) / 2);
    let late = h.join(h.join_req("g", &pending, None, &["range"]));
    assert_eq!(late, Outcome::Done(Err(GroupError::UnknownMemberId)));
}

#[test]
fn sync_failure_is_reported_and_group_rebalances() {
    let mut h = Harness::new();
    let a = h.member_id("g");
    let t = h.parked_join(h.join_req("g", &a, None, &["range"]));
    h.advance(DELAY_MS);
    h.join_answer(t).unwrap();
    h.auto_flush = false;
    let ts = match h.sync("g", &a, 1, vec![(a.clone(), Bytes::from_static(b"x"))]) {
        Outcome::Parked(t) => t,
        other => panic!("{other:?}"),
    };
    let w = h.queued.pop_front().unwrap();
    let effects = h.c.write_completed(w.id, Err(GroupError::NotCoordinator), h.now);
    h.absorb(effects);
    assert_eq!(h.sync_answer(ts), Err(GroupError::NotCoordinator));
    assert_eq!(h.state("g"), GroupState::PreparingRebalance);
}

#[test]
fn abandon_answers_every_parked_request() {
    let mut h = Harness::new();
    let a = h.member_id("g");
    let t = h.parked_join(h.join_req("g", &a, None, &["range"]));
    h.auto_flush = false;
    let tc = match h.commit("s", "", -1, vec![offset("t", 0, 1, None)]) {
        Outcome::Parked(t) => t,
        other => panic!("{other:?}"),
    };
    let effects = h.c.abandon(GroupError::NotCoordinator);
    assert!(effects.writes.is_empty());
    h.absorb(effects);
    assert_eq!(h.join_answer(t), Err(GroupError::NotCoordinator));
    assert!(matches!(h.answered.remove(&tc), Some(Reply::Commit(r)) if r[0].result == Err(GroupError::NotCoordinator)));
}

/// What a client could observe of a coordinator: every group's description and offsets.
fn observe(c: &GroupCoordinator) -> Vec<(ListedGroup, GroupDescription, Vec<FetchedOffset>)> {
    c.list_groups(&[], &[])
        .into_iter()
        .map(|g| {
            let d = c.describe_group(&g.group_id).unwrap();
            let o = c.fetch_offsets(&g.group_id, None).unwrap();
            (g, d, o)
        })
        .collect()
}

#[test]
fn replaying_the_log_rebuilds_the_same_state() {
    let mut h = Harness::new();
    // A Stable consumer group with offsets, committed twice for one partition.
    let (_, ids) = h.stable_group("stable", 2);
    h.commit("stable", &ids[0], 1, vec![offset("t", 0, 10, Some("a")), offset("t", 1, 11, None)]);
    h.commit("stable", &ids[1], 1, vec![offset("t", 0, 15, Some("b"))]);
    // A static group whose member restarted (new member id, no rebalance).
    let t = h.parked_join(h.join_req("static", "", Some("i-1"), &["range"]));
    h.advance(DELAY_MS);
    let first = h.join_answer(t).unwrap();
    h.sync_all("static", 1, &first.member_id, std::slice::from_ref(&first.member_id));
    let t = h.parked_join(h.join_req("static", "", Some("i-1"), &["range"]));
    let restarted = h.join_answer(t).unwrap();
    assert_ne!(restarted.member_id, first.member_id);
    // A simple group with one offset deleted; a group emptied by its last member leaving; a
    // deleted group.
    h.commit("simple", "", -1, vec![offset("t", 0, 1, None), offset("t", 1, 2, Some("x"))]);
    let s = h.c.delete_offsets("simple", vec![tp("t", 0)], h.now);
    h.step(s, pick_delete_offsets);
    let (_, left) = h.stable_group("emptied", 1);
    h.commit("emptied", &left[0], 1, vec![offset("u", 3, 30, None)]);
    let (_, effects) =
        h.c.leave("emptied", vec![LeaveMember { member_id: left[0].clone(), group_instance_id: None }], h.now);
    h.absorb(effects);
    h.commit("gone", "", -1, vec![offset("t", 0, 1, None)]);
    let s = h.c.delete_groups(vec!["gone".into()], h.now);
    h.step(s, pick_delete_groups);

    let live = observe(&h.c);
    assert_eq!(live.len(), 4);
    assert!(h.answered.is_empty(), "every answer was taken");
    let replayed = GroupCoordinator::replay(GroupConfig::default(), 7, h.log.clone(), h.now);
    assert_eq!(observe(&replayed), live);
    // The replayed coordinator carries on: the restarted static member heartbeats as before.
    let mut replayed = replayed;
    let hb = HeartbeatRequest {
        group_id: "static".into(),
        member_id: restarted.member_id,
        generation_id: 1,
        group_instance_id: Some("i-1".into()),
    };
    assert_eq!(replayed.heartbeat(&hb, h.now), Ok(()));
}
