//! Server-side partition assignors for KIP-848 consumer groups (`group.protocol=consumer`).
//!
//! This module owns the pure function at the heart of a KIP-848 rebalance: given the members of a
//! group (their subscriptions and current assignments) and the topics that exist, compute the
//! group's target assignment. Two assignors are provided, named as Kafka names them and in
//! Kafka's default `group.consumer.assignors` order: `uniform` (balanced and sticky, the default)
//! and `range` (contiguous per-topic ranges, co-partitioned when subscriptions allow).
//!
//! Every assignor guarantees, for any input: each partition of each topic that at least one member
//! subscribes to is owned by exactly one member, and that member subscribes to its topic; every
//! member appears in the result (members with nothing to own get an empty map); the result depends
//! only on the input's content, never on the order of `members` or on hashing. Subscriptions to
//! topics that do not exist are ignored, as are entries of a member's current assignment that no
//! longer make sense (a topic it left or that is gone, a partition out of range, a partition that
//! an earlier member by id already claimed).
//!
//! It must never do I/O, read a clock, draw random numbers, or panic on any input: work and memory
//! are bounded by the partitions of subscribed topics plus the size of the input itself. It knows
//! nothing of the rest of the broker; the group coordinator calls it and owns what to do with the
//! answer.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

mod range;
mod uniform;

pub use range::RangeAssignor;
pub use uniform::UniformAssignor;

/// A group's assignment: member id → topic name → partitions. Every member of the input is a key;
/// a member's map holds only topics in which it owns at least one partition.
pub type GroupAssignment = BTreeMap<String, BTreeMap<String, BTreeSet<i32>>>;

/// What an assignor knows of one group member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberSubscription {
    /// The member id the coordinator gave the member (KIP-848: chosen by the client).
    pub member_id: String,
    /// `group.instance.id` of a static member (KIP-345). The range assignor orders static members
    /// first, by instance id, so that a static member that rejoins under a new member id gets the
    /// same ranges back. The uniform assignor does not use it.
    pub instance_id: Option<String>,
    /// `client.rack`. Carried for rack-aware assignment, which neither assignor does yet.
    pub rack: Option<String>,
    /// Names of the topics the member subscribes to (a regex subscription already resolved).
    pub subscribed_topics: BTreeSet<String>,
    /// The member's current (target) assignment, which the uniform assignor keeps as far as
    /// balance allows.
    pub current: BTreeMap<String, BTreeSet<i32>>,
}

/// What an assignor knows of one topic that exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic's name; must equal its key in the map passed to [`Assignor::assign`].
    pub name: String,
    /// The topic's partition count; partitions are `0..partitions`.
    pub partitions: i32,
}

/// Why an assignment could not be computed. All but [`AssignorError::InvariantViolated`] are the
/// caller's mistakes; that one is ours, reported instead of panicking so that the coordinator can
/// keep the group's previous target assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignorError {
    /// Two members share one member id.
    DuplicateMember { member_id: String },
    /// A topic's key in the topic map differs from its [`TopicInfo::name`].
    TopicNameMismatch { key: String, name: String },
    /// A topic has a negative partition count.
    NegativePartitionCount { topic: String, partitions: i32 },
    /// The computed assignment broke exactly-one-owner or subscribed-owner: a bug here.
    InvariantViolated { assignor: &'static str, detail: String },
}

impl fmt::Display for AssignorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DuplicateMember { member_id } => write!(f, "duplicate member id {member_id:?}"),
            Self::TopicNameMismatch { key, name } => {
                write!(f, "topic keyed {key:?} is named {name:?}")
            }
            Self::NegativePartitionCount { topic, partitions } => {
                write!(f, "topic {topic:?} has {partitions} partitions")
            }
            Self::InvariantViolated { assignor, detail } => {
                write!(f, "{assignor} assignor produced an invalid assignment: {detail}")
            }
        }
    }
}

impl std::error::Error for AssignorError {}

/// A server-side assignor, chosen per group by name (ConsumerGroupHeartbeat's `ServerAssignor`).
pub trait Assignor: Send + Sync {
    /// The name clients ask for, as in Kafka (`"uniform"`, `"range"`).
    fn name(&self) -> &'static str;

    /// Computes the group's target assignment.
    ///
    /// # Errors
    ///
    /// [`AssignorError`] when the input is malformed (duplicate member ids, a topic map whose key
    /// and name differ, a negative partition count) or, for a bug of ours, when the result fails
    /// the exactly-one-owner check every assignment passes before it is returned.
    fn assign(
        &self,
        members: &[MemberSubscription],
        topics: &BTreeMap<String, TopicInfo>,
    ) -> Result<GroupAssignment, AssignorError>;
}

static UNIFORM: UniformAssignor = UniformAssignor;
static RANGE: RangeAssignor = RangeAssignor;

/// The assignors this broker offers, in Kafka's default `group.consumer.assignors` order; the
/// first is the default for groups whose members name none.
pub static ASSIGNORS: [&dyn Assignor; 2] = [&UNIFORM, &RANGE];

/// The assignor a group uses when no member names one (Kafka's default, `uniform`).
pub fn default_assignor() -> &'static dyn Assignor {
    ASSIGNORS[0]
}

/// Looks an assignor up by the name a client sent; `None` is Kafka's UNSUPPORTED_ASSIGNOR.
pub fn by_name(name: &str) -> Option<&'static dyn Assignor> {
    ASSIGNORS.iter().copied().find(|assignor| assignor.name() == name)
}

/// Marks a partition with no owner in an owner table.
const NO_OWNER: usize = usize::MAX;

/// A topic that exists and that at least one member subscribes to.
struct Topic<'a> {
    name: &'a str,
    partitions: usize,
}

/// A working assignment: per member (by index), topic index → partitions.
type Dense = Vec<BTreeMap<usize, BTreeSet<i32>>>;

/// The input, validated and numbered: members by index in member-id order, topics by index in
/// name order (only subscribed topics that exist).
struct Group<'a> {
    members: Vec<&'a MemberSubscription>,
    topics: Vec<Topic<'a>>,
    topic_index: BTreeMap<&'a str, usize>,
    /// Per member: the indices of the topics it subscribes to that exist, ascending.
    subscriptions: Vec<Vec<usize>>,
    /// Per topic: the indices of its subscribers, ascending.
    subscribers: Vec<Vec<usize>>,
}

impl<'a> Group<'a> {
    fn new(members: &'a [MemberSubscription], topics: &'a BTreeMap<String, TopicInfo>) -> Result<Self, AssignorError> {
        validate_topics(topics)?;
        let mut sorted: Vec<&MemberSubscription> = members.iter().collect();
        sorted.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        if let Some(pair) = sorted.windows(2).find(|w| w[0].member_id == w[1].member_id) {
            return Err(AssignorError::DuplicateMember { member_id: pair[0].member_id.clone() });
        }
        // Only topics that exist and have a subscriber are numbered, so every table below is
        // sized by real partitions, never by what a member claims.
        let subscribed: BTreeSet<&str> = sorted
            .iter()
            .flat_map(|m| m.subscribed_topics.iter())
            .filter(|name| topics.contains_key(name.as_str()))
            .map(String::as_str)
            .collect();
        let mut group = Group {
            members: sorted,
            topics: Vec::with_capacity(subscribed.len()),
            topic_index: BTreeMap::new(),
            subscriptions: Vec::new(),
            subscribers: vec![Vec::new(); subscribed.len()],
        };
        for (index, name) in subscribed.into_iter().enumerate() {
            let partitions = topics.get(name).map_or(0, |t| usize::try_from(t.partitions).unwrap_or(0));
            group.topics.push(Topic { name, partitions });
            group.topic_index.insert(name, index);
        }
        for (member, subscription) in group.members.iter().enumerate() {
            let indices: Vec<usize> = subscription
                .subscribed_topics
                .iter()
                .filter_map(|name| group.topic_index.get(name.as_str()).copied())
                .collect();
            for &topic in &indices {
                group.subscribers[topic].push(member);
            }
            group.subscriptions.push(indices);
        }
        Ok(group)
    }

    fn subscribes(&self, member: usize, topic: usize) -> bool {
        self.subscriptions[member].binary_search(&topic).is_ok()
    }

    /// An owner table: per topic, per partition, the owning member index or [`NO_OWNER`].
    fn owner_table(&self) -> Vec<Vec<usize>> {
        self.topics.iter().map(|t| vec![NO_OWNER; t.partitions]).collect()
    }

    /// The member's current partitions that it may keep, in (topic name, partition) order: of a
    /// topic it subscribes to that exists, in range, and not yet claimed in `owners` by another
    /// member. Each one yielded is claimed for `member` in `owners`.
    fn claim_current(&self, member: usize, owners: &mut [Vec<usize>]) -> Vec<(usize, i32)> {
        let mut claimed = Vec::new();
        for (name, partitions) in &self.members[member].current {
            let Some(&topic) = self.topic_index.get(name.as_str()) else {
                continue;
            };
            if !self.subscribes(member, topic) {
                continue;
            }
            for &partition in partitions {
                let Ok(slot) = usize::try_from(partition) else {
                    continue;
                };
                if let Some(owner) = owners[topic].get_mut(slot) {
                    if *owner == NO_OWNER {
                        *owner = member;
                        claimed.push((topic, partition));
                    }
                }
            }
        }
        claimed
    }

    /// Checks the guarantees every assignor makes, then names the members and topics.
    fn finish(&self, assignor: &'static str, dense: Dense) -> Result<GroupAssignment, AssignorError> {
        self.verify(&dense).map_err(|detail| AssignorError::InvariantViolated { assignor, detail })?;
        let mut assignment = GroupAssignment::new();
        for (member, topics) in self.members.iter().zip(dense) {
            let named = topics
                .into_iter()
                .filter(|(_, partitions)| !partitions.is_empty())
                .map(|(topic, partitions)| (self.topics[topic].name.to_owned(), partitions))
                .collect();
            assignment.insert(member.member_id.clone(), named);
        }
        Ok(assignment)
    }

    /// Exactly one owner for every partition of every subscribed topic, and that owner subscribes.
    fn verify(&self, dense: &Dense) -> Result<(), String> {
        if dense.len() != self.members.len() {
            return Err(format!("{} members, {} assignments", self.members.len(), dense.len()));
        }
        let mut owned: Vec<Vec<bool>> = self.topics.iter().map(|t| vec![false; t.partitions]).collect();
        for (member, topics) in dense.iter().enumerate() {
            let member_id = &self.members[member].member_id;
            for (&topic, partitions) in topics {
                let name = self.topics.get(topic).map_or("?", |t| t.name);
                if !self.subscribes(member, topic) {
                    return Err(format!("{member_id} owns {name} without subscribing to it"));
                }
                for &partition in partitions {
                    let slot = usize::try_from(partition).ok().and_then(|p| owned[topic].get_mut(p));
                    match slot {
                        Some(seen) if !*seen => *seen = true,
                        Some(_) => return Err(format!("{name}-{partition} has two owners")),
                        None => return Err(format!("{name}-{partition} does not exist")),
                    }
                }
            }
        }
        for (topic, seen) in owned.iter().enumerate() {
            if let Some(partition) = seen.iter().position(|s| !s) {
                return Err(format!("{}-{partition} has no owner", self.topics[topic].name));
            }
        }
        Ok(())
    }
}

fn validate_topics(topics: &BTreeMap<String, TopicInfo>) -> Result<(), AssignorError> {
    for (key, info) in topics {
        if *key != info.name {
            return Err(AssignorError::TopicNameMismatch { key: key.clone(), name: info.name.clone() });
        }
        if info.partitions < 0 {
            return Err(AssignorError::NegativePartitionCount { topic: key.clone(), partitions: info.partitions });
        }
    }
    Ok(())
}

/// Shared by the assignors' tests: input builders, a seeded generator, and the checks every
/// assignment must pass.
#[cfg(test)]
mod test_support {
    use super::*;

    /// xorshift64*: small, seeded, reproducible.
    pub struct Rng(u64);

    impl Rng {
        pub fn new(seed: u64) -> Self {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }

        pub fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        /// Uniform-ish in `0..n`; 0 when `n` is 0.
        pub fn below(&mut self, n: usize) -> usize {
            if n == 0 {
                0
            } else {
                (self.next_u64() % n as u64) as usize
            }
        }

        pub fn shuffle<T>(&mut self, items: &mut [T]) {
            for i in (1..items.len()).rev() {
                items.swap(i, self.below(i + 1));
            }
        }
    }

    /// Prints the seed of a failing case: dropped while the test thread unwinds.
    struct SeedGuard(u64);

    impl Drop for SeedGuard {
        fn drop(&mut self) {
            if std::thread::panicking() {
                eprintln!("failing seed: {} (replay with ASSIGNOR_SEED={})", self.0, self.0);
            }
        }
    }

    /// Runs `case` for seeds `1..=count` (`$ASSIGNOR_SEEDS` overrides `count`), or only for
    /// `$ASSIGNOR_SEED` when it is set.
    pub fn for_seeds(count: u64, case: impl Fn(&mut Rng)) {
        let env = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
        let seeds: Vec<u64> = match env("ASSIGNOR_SEED") {
            Some(seed) => vec![seed],
            None => (1..=env("ASSIGNOR_SEEDS").unwrap_or(count)).collect(),
        };
        for seed in seeds {
            let _guard = SeedGuard(seed);
            case(&mut Rng::new(seed));
        }
    }

    pub fn member(id: &str, subscribed: &[&str]) -> MemberSubscription {
        MemberSubscription {
            member_id: id.to_owned(),
            subscribed_topics: subscribed.iter().map(|t| (*t).to_owned()).collect(),
            ..MemberSubscription::default()
        }
    }

    pub fn topics(list: &[(&str, i32)]) -> BTreeMap<String, TopicInfo> {
        list.iter().map(|(name, partitions)| ((*name).to_owned(), topic(name, *partitions))).collect()
    }

    pub fn topics_owned(list: &[(String, i32)]) -> BTreeMap<String, TopicInfo> {
        list.iter().map(|(name, partitions)| (name.clone(), topic(name, *partitions))).collect()
    }

    fn topic(name: &str, partitions: i32) -> TopicInfo {
        TopicInfo { name: name.to_owned(), partitions }
    }

    pub fn parts(list: &[(&str, &[i32])]) -> BTreeMap<String, BTreeSet<i32>> {
        list.iter().map(|(t, p)| ((*t).to_owned(), p.iter().copied().collect())).collect()
    }

    /// Makes `assignment` the members' current assignment, as the coordinator would.
    pub fn adopt(members: &mut [MemberSubscription], assignment: &GroupAssignment) {
        for m in members {
            m.current = assignment.get(&m.member_id).cloned().unwrap_or_default();
        }
    }

    pub fn total(assignment: &BTreeMap<String, BTreeSet<i32>>) -> usize {
        assignment.values().map(BTreeSet::len).sum()
    }

    pub fn is_subset(a: &BTreeMap<String, BTreeSet<i32>>, b: &BTreeMap<String, BTreeSet<i32>>) -> bool {
        a.iter().all(|(t, p)| b.get(t).is_some_and(|q| p.is_subset(q)))
    }

    fn owners(assignment: &GroupAssignment) -> BTreeMap<(&str, i32), &str> {
        let mut owners = BTreeMap::new();
        for (member, topics) in assignment {
            for (topic, partitions) in topics {
                for &p in partitions {
                    owners.insert((topic.as_str(), p), member.as_str());
                }
            }
        }
        owners
    }

    /// Partitions owned in `after` by a member that did not own them in `before`.
    pub fn moves(before: &GroupAssignment, after: &GroupAssignment) -> usize {
        let old = owners(before);
        owners(after).iter().filter(|(key, owner)| old.get(*key) != Some(*owner)).count()
    }

    /// Every member present; every partition of every subscribed topic owned exactly once, by a
    /// subscriber; nothing else owned; no empty partition sets.
    pub fn check_valid(members: &[MemberSubscription], topics: &BTreeMap<String, TopicInfo>, got: &GroupAssignment) {
        let ids: BTreeSet<&str> = members.iter().map(|m| m.member_id.as_str()).collect();
        assert_eq!(got.keys().map(String::as_str).collect::<BTreeSet<_>>(), ids);
        let subscribed: BTreeSet<&String> = members.iter().flat_map(|m| &m.subscribed_topics).collect();
        let expected: BTreeSet<(&str, i32)> = subscribed
            .into_iter()
            .filter_map(|t| topics.get(t))
            .flat_map(|t| (0..t.partitions).map(|p| (t.name.as_str(), p)))
            .collect();
        let mut seen = BTreeSet::new();
        for m in members {
            for (topic, partitions) in &got[&m.member_id] {
                assert!(!partitions.is_empty(), "{}: empty set for {topic}", m.member_id);
                assert!(m.subscribed_topics.contains(topic), "{} owns unsubscribed {topic}", m.member_id);
                for &p in partitions {
                    assert!(seen.insert((topic.as_str(), p)), "{topic}-{p} owned twice");
                }
            }
        }
        assert_eq!(seen, expected, "owned partitions differ from subscribed partitions");
    }

    pub fn check_homogeneous_balance(got: &GroupAssignment) {
        let loads: Vec<usize> = got.values().map(total).collect();
        let (min, max) = (loads.iter().min().copied().unwrap_or(0), loads.iter().max().copied().unwrap_or(0));
        assert!(max - min <= 1, "unbalanced: {loads:?}");
    }

    /// Kafka's heterogeneous criterion: for each topic, every subscriber owning any of it has at
    /// most one partition more (over all topics) than the topic's least-loaded subscriber.
    pub fn check_topic_local_balance(
        members: &[MemberSubscription],
        topics: &BTreeMap<String, TopicInfo>,
        got: &GroupAssignment,
    ) {
        for name in topics.keys() {
            let subscribers: Vec<&MemberSubscription> =
                members.iter().filter(|m| m.subscribed_topics.contains(name)).collect();
            let Some(min) = subscribers.iter().map(|m| total(&got[&m.member_id])).min() else {
                continue;
            };
            for m in subscribers.iter().filter(|m| got[&m.member_id].contains_key(name)) {
                let load = total(&got[&m.member_id]);
                assert!(load <= min + 1, "{name}: {} has {load}, least loaded has {min}", m.member_id);
            }
        }
    }

    pub fn random_topics(rng: &mut Rng, max_topics: usize, max_partitions: usize) -> Vec<(String, i32)> {
        (0..=rng.below(max_topics)).map(|i| (format!("t{i}"), rng.below(max_partitions + 1) as i32)).collect()
    }

    /// A random group: up to 8 members, up to 5 topics, subscriptions that may name a missing
    /// topic, and current assignments full of junk (duplicate claims, partitions out of range,
    /// topics left or missing).
    pub fn random_group(rng: &mut Rng, heterogeneous: bool) -> (Vec<MemberSubscription>, BTreeMap<String, TopicInfo>) {
        let list = random_topics(rng, 4, 20);
        let mut names: Vec<String> = list.iter().map(|(n, _)| n.clone()).collect();
        names.push("missing".to_owned());
        let pick =
            |rng: &mut Rng| -> BTreeSet<String> { names.iter().filter(|_| rng.below(3) != 0).cloned().collect() };
        let shared = pick(rng);
        let mut members = Vec::new();
        for i in 0..rng.below(9) {
            let mut m = member(&format!("m{}-{i}", rng.below(1000)), &[]);
            m.subscribed_topics = if heterogeneous { pick(rng) } else { shared.clone() };
            for _ in 0..rng.below(6) {
                let topic = names[rng.below(names.len())].clone();
                m.current.entry(topic).or_default().insert(rng.below(26) as i32 - 2);
            }
            if rng.below(4) == 0 {
                m.instance_id = Some(format!("i{}", rng.below(1000)));
            }
            members.push(m);
        }
        (members, topics_owned(&list))
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn assignors_by_name_in_kafka_default_order() {
        assert_eq!(default_assignor().name(), "uniform");
        assert_eq!(by_name("uniform").map(|a| a.name()), Some("uniform"));
        assert_eq!(by_name("range").map(|a| a.name()), Some("range"));
        assert!(by_name("cooperative-sticky").is_none());
        assert!(by_name("").is_none());
        let names: Vec<&str> = ASSIGNORS.iter().map(|a| a.name()).collect();
        assert_eq!(names, ["uniform", "range"]);
    }

    #[test]
    fn empty_inputs() {
        for assignor in ASSIGNORS {
            assert!(assignor.assign(&[], &BTreeMap::new()).unwrap().is_empty());
            assert!(assignor.assign(&[], &topics(&[("t", 3)])).unwrap().is_empty());

            // No subscriptions, a missing topic, a zero-partition topic: present, empty.
            let mut idle = member("idle", &[]);
            idle.current = parts(&[("t", &[0]), ("gone", &[1])]);
            let members = [idle, member("ghost", &["gone"]), member("zero", &["z"])];
            let got = assignor.assign(&members, &topics(&[("t", 3), ("z", 0)])).unwrap();
            assert_eq!(got.len(), 3, "{}", assignor.name());
            assert!(got.values().all(BTreeMap::is_empty), "{}: {got:?}", assignor.name());
        }
    }

    #[test]
    fn one_member_gets_everything_it_subscribes_to() {
        for assignor in ASSIGNORS {
            let members = [member("a", &["t0", "t1", "missing"])];
            let got = assignor.assign(&members, &topics(&[("t0", 2), ("t1", 3), ("t2", 4)])).unwrap();
            assert_eq!(got["a"], parts(&[("t0", &[0, 1]), ("t1", &[0, 1, 2])]), "{}", assignor.name());
        }
    }

    #[test]
    fn malformed_input_is_an_error() {
        for assignor in ASSIGNORS {
            let dup = [member("a", &["t"]), member("a", &["t"])];
            assert_eq!(
                assignor.assign(&dup, &topics(&[("t", 1)])),
                Err(AssignorError::DuplicateMember { member_id: "a".into() })
            );
            let mut mismatched = topics(&[("t", 1)]);
            mismatched.insert("u".into(), TopicInfo { name: "v".into(), partitions: 1 });
            assert!(matches!(
                assignor.assign(&[member("a", &["t"])], &mismatched),
                Err(AssignorError::TopicNameMismatch { .. })
            ));
            assert!(matches!(
                assignor.assign(&[member("a", &["t"])], &topics(&[("t", -1)])),
                Err(AssignorError::NegativePartitionCount { .. })
            ));
        }
    }

    #[test]
    fn duplicate_claims_go_to_the_first_member_by_id() {
        let mut members = [member("b", &["t"]), member("a", &["t"])];
        members[0].current = parts(&[("t", &[0])]);
        members[1].current = parts(&[("t", &[0])]);
        let got = UniformAssignor.assign(&members, &topics(&[("t", 2)])).unwrap();
        assert_eq!(got["a"], parts(&[("t", &[0])]));
        assert_eq!(got["b"], parts(&[("t", &[1])]));
    }

    /// 2,000 members over 20,000 partitions: finishes in well under a second of debug build if
    /// the work is near-linear, and would take minutes if it were quadratic.
    #[test]
    fn large_groups_stay_cheap() {
        let rng = &mut Rng::new(7);
        let list: Vec<(String, i32)> = (0..100).map(|i| (format!("t{i:03}"), 200)).collect();
        let topics = topics_owned(&list);
        let all: Vec<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
        for heterogeneous in [false, true] {
            let mut members: Vec<MemberSubscription> = (0..2000)
                .map(|i| {
                    let subscribed: Vec<&str> =
                        if heterogeneous { (0..10).map(|_| all[rng.below(all.len())]).collect() } else { all.clone() };
                    member(&format!("m{i:04}"), &subscribed)
                })
                .collect();
            for assignor in ASSIGNORS {
                let started = std::time::Instant::now();
                let got = assignor.assign(&members, &topics).unwrap();
                let first = started.elapsed();
                adopt(&mut members, &got);
                members.pop();
                let started = std::time::Instant::now();
                let again = assignor.assign(&members, &topics).unwrap();
                eprintln!("{} heterogeneous={heterogeneous}: {first:?}, {:?}", assignor.name(), started.elapsed());
                check_valid(&members, &topics, &again);
            }
        }
    }

    #[test]
    fn randomized_valid_and_deterministic() {
        for_seeds(500, |rng| {
            let heterogeneous = rng.below(2) == 0;
            let (members, topics) = random_group(rng, heterogeneous);
            for assignor in ASSIGNORS {
                let got = assignor.assign(&members, &topics).unwrap();
                check_valid(&members, &topics, &got);
                assert_eq!(assignor.assign(&members, &topics).unwrap(), got, "{}: rerun", assignor.name());
                let mut shuffled = members.clone();
                rng.shuffle(&mut shuffled);
                assert_eq!(assignor.assign(&shuffled, &topics).unwrap(), got, "{}: order", assignor.name());
            }
        });
    }
}
