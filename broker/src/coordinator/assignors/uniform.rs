//! The `uniform` assignor (Kafka's default server-side assignor): balance first, then stickiness.
//!
//! Homogeneous groups (every member subscribes to the same existing topics) get an exact balance:
//! member partition counts differ by at most one, counted over all topics together, and a member
//! keeps the most of its current partitions that such a balance allows (the members that hold
//! more than the minimum quota are the ones given the spare partitions). So a member joining a
//! stable group of N over P partitions takes at most ceil(P / (N + 1)) partitions, and a member
//! leaving moves only its own.
//!
//! Heterogeneous groups get Kafka's best effort: every member keeps its current partitions, the
//! unowned ones go to the least-loaded subscriber of each topic (topics with the most partitions
//! per subscriber first), then each topic's partitions move from its most-loaded to its
//! least-loaded subscribers until, for every topic, its subscribers that own any of it are within
//! one partition of its least-loaded subscriber, or [`MAX_BALANCE_ROUNDS`] passes have run.
//! Overlapping subscriptions can leave members further apart than one, as in Kafka.
//!
//! It must never move a partition that balance does not require in the homogeneous case, and
//! never depend on anything but the input's content.

use std::collections::{BTreeMap, BTreeSet};

use super::{Assignor, AssignorError, Dense, Group, GroupAssignment, MemberSubscription, TopicInfo, NO_OWNER};

/// How many passes over the topics heterogeneous balancing makes at most. Each pass roughly
/// halves the imbalance left by overlapping subscriptions, so this bounds the work at
/// `MAX_BALANCE_ROUNDS × partitions × log members` (Kafka uses the same limit).
const MAX_BALANCE_ROUNDS: usize = 16;

/// Kafka's `uniform` assignor; see the module documentation for what it guarantees.
#[derive(Debug, Clone, Copy, Default)]
pub struct UniformAssignor;

impl Assignor for UniformAssignor {
    fn name(&self) -> &'static str {
        "uniform"
    }

    fn assign(
        &self,
        members: &[MemberSubscription],
        topics: &BTreeMap<String, TopicInfo>,
    ) -> Result<GroupAssignment, AssignorError> {
        let group = Group::new(members, topics)?;
        let homogeneous = group.subscriptions.windows(2).all(|w| w[0] == w[1]);
        let dense = if homogeneous { assign_homogeneous(&group) } else { assign_heterogeneous(&group) };
        group.finish(self.name(), dense)
    }
}

/// Every member subscribes to every topic in `group.topics`: quotas over the total partition count.
fn assign_homogeneous(group: &Group<'_>) -> Dense {
    let member_count = group.members.len();
    let mut dense: Dense = vec![BTreeMap::new(); member_count];
    if member_count == 0 || group.topics.is_empty() {
        return dense;
    }
    let total: usize = group.topics.iter().map(|t| t.partitions).sum();
    let min_quota = total / member_count;
    let mut extra = total % member_count;

    let mut owners = group.owner_table();
    let claimed: Vec<Vec<(usize, i32)>> =
        (0..member_count).map(|member| group.claim_current(member, &mut owners)).collect();

    // The spare partitions go first to members already holding more than the minimum: each one
    // given there saves a move, which is what makes the result as sticky as balance allows.
    let mut quota = vec![min_quota; member_count];
    for (member, held) in claimed.iter().enumerate() {
        if extra > 0 && held.len() > min_quota {
            quota[member] += 1;
            extra -= 1;
        }
    }
    for member_quota in &mut quota {
        if extra > 0 && *member_quota == min_quota {
            *member_quota += 1;
            extra -= 1;
        }
    }

    // Keep each member's first `quota` partitions; release the rest.
    for (member, held) in claimed.iter().enumerate() {
        for (kept, &(topic, partition)) in held.iter().enumerate() {
            if kept < quota[member] {
                dense[member].entry(topic).or_default().insert(partition);
            } else if let Ok(slot) = usize::try_from(partition) {
                owners[topic][slot] = NO_OWNER;
            }
        }
    }

    // Hand the unowned partitions out in (topic, partition) order, filling members in id order,
    // so a fresh group gets contiguous blocks.
    let mut unowned = unowned_partitions(&owners);
    for (member, held) in claimed.iter().enumerate() {
        let missing = quota[member].saturating_sub(held.len().min(quota[member]));
        for (topic, partition) in unowned.by_ref().take(missing) {
            dense[member].entry(topic).or_default().insert(partition);
        }
    }
    dense
}

/// The partitions with no owner in `owners`, in (topic index, partition) order.
fn unowned_partitions(owners: &[Vec<usize>]) -> impl Iterator<Item = (usize, i32)> + '_ {
    owners.iter().enumerate().flat_map(|(topic, table)| {
        table
            .iter()
            .enumerate()
            .filter(|(_, &owner)| owner == NO_OWNER)
            .filter_map(move |(slot, _)| i32::try_from(slot).ok().map(|p| (topic, p)))
    })
}

/// Members subscribe to different topics: keep, fill the least loaded, then rebalance per topic.
fn assign_heterogeneous(group: &Group<'_>) -> Dense {
    let member_count = group.members.len();
    let mut state = Heterogeneous { group, dense: vec![BTreeMap::new(); member_count], load: vec![0; member_count] };
    let mut owners = group.owner_table();
    for member in 0..member_count {
        for (topic, partition) in group.claim_current(member, &mut owners) {
            state.dense[member].entry(topic).or_default().insert(partition);
            state.load[member] += 1;
        }
    }
    let order = state.topic_order();
    for &topic in &order {
        state.fill_topic(topic, &owners[topic]);
    }
    // A topic with one subscriber has nowhere to move its partitions.
    let movable: Vec<usize> = order.into_iter().filter(|&t| group.subscribers[t].len() >= 2).collect();
    for _ in 0..MAX_BALANCE_ROUNDS {
        let mut moved = 0;
        for &topic in &movable {
            moved += state.balance_topic(topic);
        }
        if moved == 0 {
            break;
        }
    }
    state.dense
}

struct Heterogeneous<'g, 'a> {
    group: &'g Group<'a>,
    dense: Dense,
    /// Per member: partitions owned, over all topics.
    load: Vec<usize>,
}

impl Heterogeneous<'_, '_> {
    /// Topics by partitions per subscriber descending (the hardest to spread go first), then by
    /// subscriber count ascending, then by name.
    fn topic_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.group.topics.len()).collect();
        let key = |t: usize| (self.group.topics[t].partitions as u128, self.group.subscribers[t].len() as u128);
        order.sort_by(|&a, &b| {
            let ((pa, sa), (pb, sb)) = (key(a), key(b));
            // pa / sa > pb / sb, without floating point; every listed topic has a subscriber.
            (pb * sa).cmp(&(pa * sb)).then(sa.cmp(&sb)).then(a.cmp(&b))
        });
        order
    }

    /// Gives each unowned partition of `topic`, in order, to its least-loaded subscriber.
    fn fill_topic(&mut self, topic: usize, owners: &[usize]) {
        let mut least: BTreeSet<(usize, usize)> =
            self.group.subscribers[topic].iter().map(|&m| (self.load[m], m)).collect();
        for (slot, _) in owners.iter().enumerate().filter(|(_, &o)| o == NO_OWNER) {
            let (Some((load, member)), Ok(partition)) = (least.pop_first(), i32::try_from(slot)) else {
                return;
            };
            self.dense[member].entry(topic).or_default().insert(partition);
            self.load[member] = load + 1;
            least.insert((load + 1, member));
        }
    }

    /// Moves `topic`'s partitions from its most-loaded owners to its least-loaded subscribers
    /// until they are within one of each other. Returns how many partitions moved; at most the
    /// topic's partition count, since a receiver never becomes the most loaded in this pass.
    fn balance_topic(&mut self, topic: usize) -> usize {
        let subscribers = &self.group.subscribers[topic];
        let mut least: BTreeSet<(usize, usize)> = subscribers.iter().map(|&m| (self.load[m], m)).collect();
        let mut most: BTreeSet<(usize, usize)> =
            subscribers.iter().filter(|&&m| self.owns(m, topic)).map(|&m| (self.load[m], m)).collect();
        let mut moved = 0;
        while let (Some(&(low, to)), Some(&(high, from))) = (least.first(), most.last()) {
            if high <= low + 1 {
                break;
            }
            let Some(partition) = self.dense[from].get_mut(&topic).and_then(BTreeSet::pop_last) else {
                break; // `most` holds only owners of `topic`: cannot happen.
            };
            for set in [&mut least, &mut most] {
                set.remove(&(low, to));
                set.remove(&(high, from));
            }
            self.dense[to].entry(topic).or_default().insert(partition);
            self.load[to] = low + 1;
            self.load[from] = high - 1;
            least.insert((low + 1, to));
            least.insert((high - 1, from));
            most.insert((low + 1, to));
            if self.owns(from, topic) {
                most.insert((high - 1, from));
            }
            moved += 1;
        }
        moved
    }

    fn owns(&self, member: usize, topic: usize) -> bool {
        self.dense[member].get(&topic).is_some_and(|p| !p.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn fresh_homogeneous_group_gets_contiguous_balanced_blocks() {
        let topics = topics(&[("t0", 3), ("t1", 4)]);
        let members = [member("a", &["t0", "t1"]), member("b", &["t0", "t1"]), member("c", &["t0", "t1"])];
        let got = UniformAssignor.assign(&members, &topics).unwrap();
        // 7 partitions over 3 members: 3, 2, 2, handed out in (topic, partition) order.
        assert_eq!(got["a"], parts(&[("t0", &[0, 1, 2])]));
        assert_eq!(got["b"], parts(&[("t1", &[0, 1])]));
        assert_eq!(got["c"], parts(&[("t1", &[2, 3])]));
    }

    #[test]
    fn joining_member_takes_only_its_share() {
        let topics = topics(&[("t", 6)]);
        let mut members = vec![member("a", &["t"]), member("b", &["t"])];
        let first = UniformAssignor.assign(&members, &topics).unwrap();
        adopt(&mut members, &first);
        members.push(member("c", &["t"]));
        let second = UniformAssignor.assign(&members, &topics).unwrap();
        assert_eq!(moves(&first, &second), 2);
        assert_eq!(total(&second["c"]), 2);
        assert!(is_subset(&second["a"], &first["a"]) && is_subset(&second["b"], &first["b"]));
    }

    #[test]
    fn spare_partitions_go_to_members_that_already_hold_them() {
        // 5 partitions over 4 members → one member may keep 2. "d" holds 2; "a" holds 1.
        let topics = topics(&[("t", 5)]);
        let mut members: Vec<_> = ["a", "b", "c", "d"].iter().map(|id| member(id, &["t"])).collect();
        members[0].current = parts(&[("t", &[0])]);
        members[1].current = parts(&[("t", &[1])]);
        members[2].current = parts(&[("t", &[2])]);
        members[3].current = parts(&[("t", &[3, 4])]);
        let got = UniformAssignor.assign(&members, &topics).unwrap();
        for m in &members {
            assert_eq!(got[&m.member_id], m.current, "{} moved", m.member_id);
        }
    }

    #[test]
    fn heterogeneous_example_balances_shared_topic() {
        // a: t0 (3) only; b: t0 and t1 (3); c: t1 only. Total 6 over 3 → 2 each is reachable.
        let topics = topics(&[("t0", 3), ("t1", 3)]);
        let members = [member("a", &["t0"]), member("b", &["t0", "t1"]), member("c", &["t1"])];
        let got = UniformAssignor.assign(&members, &topics).unwrap();
        let loads: Vec<usize> = got.values().map(total).collect();
        assert_eq!(loads, vec![2, 2, 2], "{got:?}");
    }

    #[test]
    fn heterogeneous_keeps_a_stable_assignment() {
        let topics = topics(&[("t0", 7), ("t1", 5), ("t2", 2)]);
        let mut members = vec![
            member("a", &["t0", "t1"]),
            member("b", &["t1", "t2"]),
            member("c", &["t0", "t2"]),
            member("d", &["t2"]),
        ];
        let first = UniformAssignor.assign(&members, &topics).unwrap();
        adopt(&mut members, &first);
        let second = UniformAssignor.assign(&members, &topics).unwrap();
        assert_eq!(first, second);
    }

    #[test]
    fn randomized_homogeneous_balance_and_stickiness() {
        for_seeds(300, |rng| {
            let topic_list = random_topics(rng, 4, 24);
            let names: Vec<&str> = topic_list.iter().map(|(n, _)| n.as_str()).collect();
            let topics = topics_owned(&topic_list);
            let total_partitions: usize = topic_list.iter().map(|(_, p)| *p as usize).sum();
            let n = 1 + rng.below(8);
            let mut members: Vec<MemberSubscription> =
                (0..n).map(|i| member(&format!("m{:02}", rng.below(100) * 10 + i), &names)).collect();
            members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
            members.dedup_by(|a, b| a.member_id == b.member_id);
            let n = members.len();

            let stable = UniformAssignor.assign(&members, &topics).unwrap();
            check_valid(&members, &topics, &stable);
            check_homogeneous_balance(&stable);
            adopt(&mut members, &stable);
            assert_eq!(UniformAssignor.assign(&members, &topics).unwrap(), stable, "not a fixpoint");

            // One member joins: it alone gains, and it takes at most ceil(P / (N + 1)).
            let mut joined = members.clone();
            joined.push(member("new", &names));
            let after_join = UniformAssignor.assign(&joined, &topics).unwrap();
            check_valid(&joined, &topics, &after_join);
            check_homogeneous_balance(&after_join);
            let bound = total_partitions.div_ceil(n + 1);
            assert!(moves(&stable, &after_join) <= bound, "join moved {} > {bound}", moves(&stable, &after_join));

            // One member leaves: only its partitions move.
            let gone = rng.below(n);
            let mut left = members.clone();
            let removed = left.remove(gone);
            let after_leave = UniformAssignor.assign(&left, &topics).unwrap();
            check_valid(&left, &topics, &after_leave);
            check_homogeneous_balance(&after_leave);
            for m in &left {
                assert!(is_subset(&m.current, &after_leave[&m.member_id]), "{} lost partitions", m.member_id);
            }
            // Every partition of the leaver moves, unless nobody is left to take it.
            let expected = if left.is_empty() { 0 } else { total(&removed.current) };
            assert_eq!(moves(&stable, &after_leave), expected);
        });
    }

    #[test]
    fn randomized_heterogeneous_best_effort_balance() {
        for_seeds(300, |rng| {
            let (members, topics) = random_group(rng, true);
            let got = UniformAssignor.assign(&members, &topics).unwrap();
            check_valid(&members, &topics, &got);
            check_topic_local_balance(&members, &topics, &got);
            let mut adopted = members.clone();
            adopt(&mut adopted, &got);
            let again = UniformAssignor.assign(&adopted, &topics).unwrap();
            assert_eq!(moves(&got, &again), 0, "a balanced assignment was disturbed");
        });
    }
}
