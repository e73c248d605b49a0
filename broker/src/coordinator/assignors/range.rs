//! The `range` assignor: each topic's partitions split into contiguous ranges among its
//! subscribers, as Kafka's server-side `RangeAssignor` does since its rewrite (KAFKA-16944).
//!
//! Subscribers are ordered static members first (by `group.instance.id`), then dynamic members
//! (by member id). For a topic with P partitions and S subscribers, the first P mod S subscribers
//! in that order get floor(P / S) + 1 partitions and the rest floor(P / S), in ascending
//! contiguous ranges; so every subscriber gets at least one partition unless S > P. When every
//! member subscribes to the same topics and those topics have equal partition counts, each member
//! gets the same partition numbers from every topic (co-partitioning, which joins rely on).
//!
//! Like Kafka's, it is not sticky: the current assignment is ignored, and the result depends only
//! on the member order and the partition counts, so it is stable exactly while those are. A static
//! member that rejoins under a new member id keeps its ranges. Rack-aware range assignment
//! (KIP-881) is not implemented. It must never consult anything but subscriptions, instance ids
//! and partition counts.

use std::collections::BTreeMap;

use super::{Assignor, AssignorError, Dense, Group, GroupAssignment, MemberSubscription, TopicInfo};

/// Kafka's server-side `range` assignor; see the module documentation for what it guarantees.
#[derive(Debug, Clone, Copy, Default)]
pub struct RangeAssignor;

impl Assignor for RangeAssignor {
    fn name(&self) -> &'static str {
        "range"
    }

    fn assign(
        &self,
        members: &[MemberSubscription],
        topics: &BTreeMap<String, TopicInfo>,
    ) -> Result<GroupAssignment, AssignorError> {
        let group = Group::new(members, topics)?;
        let rank = range_rank(&group);
        let mut dense: Dense = vec![BTreeMap::new(); group.members.len()];
        for (topic, info) in group.topics.iter().enumerate() {
            let mut subscribers = group.subscribers[topic].clone();
            subscribers.sort_by_key(|&member| rank[member]);
            for (member, range) in subscribers.iter().zip(split_ranges(info.partitions, subscribers.len())) {
                if !range.is_empty() {
                    dense[*member].insert(topic, range.collect());
                }
            }
        }
        group.finish(self.name(), dense)
    }
}

/// Each member's position in range order: static members by instance id, then dynamic members by
/// member id (`group.members` is already in member-id order, which breaks any tie).
fn range_rank(group: &Group<'_>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..group.members.len()).collect();
    order.sort_by(|&a, &b| {
        let (ia, ib) = (&group.members[a].instance_id, &group.members[b].instance_id);
        match (ia, ib) {
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        }
        .then(a.cmp(&b))
    });
    let mut rank = vec![0; order.len()];
    for (position, member) in order.into_iter().enumerate() {
        rank[member] = position;
    }
    rank
}

/// Splits partitions `0..partitions` into `subscribers` contiguous ranges, the first
/// `partitions % subscribers` one longer than the rest; empty ranges once partitions run out.
fn split_ranges(partitions: usize, subscribers: usize) -> impl Iterator<Item = std::ops::Range<i32>> {
    let min_quota = partitions.checked_div(subscribers).unwrap_or(0);
    let extra = partitions.checked_rem(subscribers).unwrap_or(0);
    let mut start = 0usize;
    (0..subscribers).map(move |i| {
        let end = start + min_quota + usize::from(i < extra);
        let range = to_i32(start)..to_i32(end);
        start = end;
        range
    })
}

/// Partition numbers come from `TopicInfo::partitions`, an `i32`, so they always fit.
fn to_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn kafka_doc_example_two_members_two_topics() {
        // Kafka's RangeAssignor documentation: C0, C1; t0 and t1 with 3 partitions each.
        let topics = topics(&[("t0", 3), ("t1", 3)]);
        let members = [member("C0", &["t0", "t1"]), member("C1", &["t0", "t1"])];
        let got = RangeAssignor.assign(&members, &topics).unwrap();
        assert_eq!(got["C0"], parts(&[("t0", &[0, 1]), ("t1", &[0, 1])]));
        assert_eq!(got["C1"], parts(&[("t0", &[2]), ("t1", &[2])]));
    }

    #[test]
    fn static_members_rank_first_and_keep_ranges_across_member_ids() {
        // Kafka's example: members M0/M1 with instance ids I0/I1 rejoin as M3/M2; the
        // assignment follows the instance ids, not the member ids.
        let topics = topics(&[("t0", 3), ("t1", 3)]);
        let mut before = [member("M0", &["t0", "t1"]), member("M1", &["t0", "t1"])];
        before[0].instance_id = Some("I0".into());
        before[1].instance_id = Some("I1".into());
        let mut after = [member("M3", &["t0", "t1"]), member("M2", &["t0", "t1"])];
        after[0].instance_id = Some("I0".into());
        after[1].instance_id = Some("I1".into());
        let first = RangeAssignor.assign(&before, &topics).unwrap();
        let second = RangeAssignor.assign(&after, &topics).unwrap();
        assert_eq!(first["M0"], second["M3"]);
        assert_eq!(first["M1"], second["M2"]);
        assert_eq!(second["M3"], parts(&[("t0", &[0, 1]), ("t1", &[0, 1])]));

        // A dynamic member sorts after every static one, whatever its id.
        let mut mixed = [member("a", &["t0"]), member("z", &["t0"])];
        mixed[1].instance_id = Some("static".into());
        let got = RangeAssignor.assign(&mixed, &topics).unwrap();
        assert_eq!(got["z"], parts(&[("t0", &[0, 1])]));
        assert_eq!(got["a"], parts(&[("t0", &[2])]));
    }

    #[test]
    fn heterogeneous_ranges_per_topic() {
        // t0 (4) has subscribers a, b, c; t1 (5) has b, c; t2 (1) has a, c.
        let topics = topics(&[("t0", 4), ("t1", 5), ("t2", 1)]);
        let members = [member("a", &["t0", "t2"]), member("b", &["t0", "t1"]), member("c", &["t0", "t1", "t2"])];
        let got = RangeAssignor.assign(&members, &topics).unwrap();
        assert_eq!(got["a"], parts(&[("t0", &[0, 1]), ("t2", &[0])]));
        assert_eq!(got["b"], parts(&[("t0", &[2]), ("t1", &[0, 1, 2])]));
        assert_eq!(got["c"], parts(&[("t0", &[3]), ("t1", &[3, 4])]));
    }

    #[test]
    fn more_members_than_partitions() {
        let topics = topics(&[("t", 2)]);
        let members = [member("a", &["t"]), member("b", &["t"]), member("c", &["t"])];
        let got = RangeAssignor.assign(&members, &topics).unwrap();
        assert_eq!(got["a"], parts(&[("t", &[0])]));
        assert_eq!(got["b"], parts(&[("t", &[1])]));
        assert!(got["c"].is_empty());
    }

    #[test]
    fn ignores_current_assignment() {
        let topics = topics(&[("t", 4)]);
        let mut members = [member("a", &["t"]), member("b", &["t"])];
        members[0].current = parts(&[("t", &[2, 3])]);
        members[1].current = parts(&[("t", &[0, 1])]);
        let got = RangeAssignor.assign(&members, &topics).unwrap();
        assert_eq!(got["a"], parts(&[("t", &[0, 1])]));
    }

    #[test]
    fn randomized_ranges_are_contiguous_and_balanced_per_topic() {
        for_seeds(300, |rng| {
            let heterogeneous = rng.below(2) == 0;
            let (members, topics) = random_group(rng, heterogeneous);
            let got = RangeAssignor.assign(&members, &topics).unwrap();
            check_valid(&members, &topics, &got);
            for (name, info) in &topics {
                let counts: Vec<usize> = members
                    .iter()
                    .filter(|m| m.subscribed_topics.contains(name))
                    .map(|m| got[&m.member_id].get(name).map_or(0, |p| p.len()))
                    .collect();
                if let (Some(min), Some(max)) = (counts.iter().min(), counts.iter().max()) {
                    assert!(max - min <= 1, "{name}: {counts:?}");
                    assert!(*min >= 1 || counts.len() > info.partitions as usize, "{name}: {counts:?}");
                }
                for assignment in got.values() {
                    if let Some(p) = assignment.get(name) {
                        let (first, last) = (p.first().copied().unwrap_or(0), p.last().copied().unwrap_or(0));
                        assert_eq!((last - first + 1) as usize, p.len(), "{name} not contiguous: {p:?}");
                    }
                }
            }
        });
    }
}
