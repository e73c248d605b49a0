//! Topic operations: create, delete, add partitions.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::OpResult;
use crate::configs::validate_topic_config;
use crate::error::ControllerError;
use crate::image::MetadataImage;
use crate::records::{ConfigResource, MetadataRecord};

/// Kafka's longest legal topic name.
pub const TOPIC_NAME_MAX_CHARS: usize = 249;
/// Upper bound on a topic's partition count (bounds what one request can make the broker create).
pub const PARTITIONS_MAX: i32 = 10_000;

/// A topic to create, as the broker decoded it from CreateTopics (or auto-creation).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateTopicSpec {
    pub name: String,
    /// -1: the broker default (`num.partitions`).
    pub num_partitions: i32,
    /// -1: the broker default (`default.replication.factor`).
    pub replication_factor: i16,
    /// Explicit placement: partition index -> replicas (leader first). Empty: the controller places.
    pub assignments: BTreeMap<i32, Vec<i32>>,
    pub configs: BTreeMap<String, String>,
}

/// What a created topic looks like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedTopic {
    pub topic_id: Uuid,
    pub num_partitions: i32,
    pub replication_factor: i16,
}

/// Defaults the controller fills in.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct TopicDefaults {
    pub num_partitions: i32,
    pub replication_factor: i16,
}

/// Checks a topic name the way Kafka does.
///
/// # Errors
/// `InvalidTopic` with the reason.
pub fn validate_topic_name(name: &str) -> Result<(), ControllerError> {
    let invalid = |why: &str| Err(ControllerError::InvalidTopic(format!("Topic name '{name}' is illegal, {why}")));
    if name.is_empty() {
        return invalid("it can't be empty");
    }
    if name == "." || name == ".." {
        return invalid("it cannot be '.' or '..'");
    }
    if name.len() > TOPIC_NAME_MAX_CHARS {
        return invalid("it can't be longer than 249 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return invalid("it contains a character other than ASCII alphanumerics, '.', '_' and '-'");
    }
    Ok(())
}

/// Validates one topic creation and returns its records.
///
/// # Errors
/// Kafka's per-topic errors: TOPIC_ALREADY_EXISTS, INVALID_TOPIC_EXCEPTION, INVALID_PARTITIONS,
/// INVALID_REPLICATION_FACTOR, INVALID_REPLICA_ASSIGNMENT, INVALID_CONFIG, INVALID_REQUEST.
pub fn create_topic(
    image: &MetadataImage,
    spec: &CreateTopicSpec,
    defaults: TopicDefaults,
) -> Result<OpResult<CreatedTopic>, ControllerError> {
    validate_topic_name(&spec.name)?;
    if image.topic_by_name(&spec.name).is_some() {
        return Err(ControllerError::TopicAlreadyExists(spec.name.clone()));
    }
    for (name, value) in &spec.configs {
        validate_topic_config(name, value).map_err(ControllerError::InvalidConfig)?;
    }
    let placement = if spec.assignments.is_empty() {
        place_replicas(image, spec, defaults)?
    } else {
        check_assignments(image, spec)?
    };
    let topic_id = Uuid::new_v4();
    let mut records = vec![MetadataRecord::Topic { name: spec.name.clone(), topic_id }];
    records.extend(partition_records(image, topic_id, 0, &placement));
    for (name, value) in &spec.configs {
        records.push(MetadataRecord::Config {
            resource: ConfigResource::Topic,
            resource_name: spec.name.clone(),
            name: name.clone(),
            value: Some(value.clone()),
        });
    }
    let replication_factor = placement.first().map_or(0, |r| r.len()) as i16;
    let response = CreatedTopic { topic_id, num_partitions: placement.len() as i32, replication_factor };
    Ok(OpResult { records, response })
}

/// New partitions: the ISR is every live replica (all of them when none is live, so that the first
/// to come back leads), the leader the first live replica.
fn partition_records(image: &MetadataImage, topic_id: Uuid, first: i32, placement: &[Vec<i32>]) -> Vec<MetadataRecord> {
    placement
        .iter()
        .zip(first..)
        .map(|(replicas, partition)| {
            let live: Vec<i32> = replicas.iter().copied().filter(|b| image.is_broker_alive(*b)).collect();
            MetadataRecord::Partition {
                topic_id,
                partition,
                replicas: replicas.clone(),
                isr: if live.is_empty() { replicas.clone() } else { live.clone() },
                leader: live.first().copied().unwrap_or(-1),
                leader_epoch: 0,
                partition_epoch: 0,
            }
        })
        .collect()
}

fn place_replicas(
    image: &MetadataImage,
    spec: &CreateTopicSpec,
    defaults: TopicDefaults,
) -> Result<Vec<Vec<i32>>, ControllerError> {
    let num_partitions = if spec.num_partitions == -1 { defaults.num_partitions } else { spec.num_partitions };
    let replication_factor =
        if spec.replication_factor == -1 { defaults.replication_factor } else { spec.replication_factor };
    if num_partitions <= 0 || num_partitions > PARTITIONS_MAX {
        return Err(ControllerError::InvalidPartitions(format!(
            "Number of partitions must be between 1 and {PARTITIONS_MAX}, got {num_partitions}."
        )));
    }
    place(image, 0, num_partitions, replication_factor)
}

/// Places partitions `first..first+count` over the live (unfenced) brokers, Kafka-style: brokers
/// are ordered so that consecutive ones alternate racks, the first replica of each partition walks
/// that order from a random start (spreading leaders evenly), and the followers of partition `p`
/// are taken at a shift that varies with `p` so replica sets spread too.
fn place(
    image: &MetadataImage,
    first: i32,
    count: i32,
    replication_factor: i16,
) -> Result<Vec<Vec<i32>>, ControllerError> {
    if replication_factor <= 0 {
        return Err(ControllerError::InvalidReplicationFactor("Replication factor must be larger than 0.".into()));
    }
    let brokers = rack_alternating_brokers(image);
    if replication_factor as usize > brokers.len() {
        return Err(ControllerError::InvalidReplicationFactor(format!(
            "Replication factor: {replication_factor} larger than available brokers: {}.",
            brokers.len()
        )));
    }
    let n = brokers.len();
    let total_racks = brokers.iter().map(|(_, rack)| *rack).collect::<BTreeSet<_>>().len();
    let start = rand::random::<usize>() % n;
    let shift_base = rand::random::<usize>() % n;
    Ok((first..first + count)
        .map(|p| {
            let p = p as usize;
            let leader = (start + p) % n;
            // Followers are looked for from a shift in 1..n that changes every n partitions, as
            // Kafka's assigner does, preferring a rack not used yet by this partition.
            let shift = if n > 1 { 1 + (shift_base + p / n) % (n - 1) } else { 0 };
            let candidates: Vec<usize> = (0..n).map(|j| (leader + shift + j) % n).filter(|i| *i != leader).collect();
            let mut chosen = vec![leader];
            let mut racks_used = BTreeSet::from([brokers[leader].1]);
            while chosen.len() < replication_factor as usize {
                if racks_used.len() == total_racks {
                    racks_used.clear();
                }
                let free = |i: &&usize| !chosen.contains(*i);
                let pick = candidates
                    .iter()
                    .filter(free)
                    .find(|i| !racks_used.contains(&brokers[**i].1))
                    .or_else(|| candidates.iter().find(free));
                let Some(&i) = pick else { break };
                racks_used.insert(brokers[i].1);
                chosen.push(i);
            }
            chosen.into_iter().map(|i| brokers[i].0).collect()
        })
        .collect())
}

/// Live brokers in an order where consecutive brokers are on different racks where possible
/// (rack a's first, rack b's first, ..., rack a's second, ...); brokers without a rack form one.
fn rack_alternating_brokers(image: &MetadataImage) -> Vec<(i32, Option<&str>)> {
    let mut racks: BTreeMap<Option<&str>, Vec<i32>> = BTreeMap::new();
    for b in image.brokers.values().filter(|b| !b.fenced) {
        racks.entry(b.rack.as_deref()).or_default().push(b.node_id);
    }
    let mut ordered = Vec::new();
    let deepest = racks.values().map(Vec::len).max().unwrap_or(0);
    for i in 0..deepest {
        ordered.extend(racks.iter().filter_map(|(rack, ids)| ids.get(i).map(|id| (*id, *rack))));
    }
    ordered
}

fn check_assignments(image: &MetadataImage, spec: &CreateTopicSpec) -> Result<Vec<Vec<i32>>, ControllerError> {
    if spec.num_partitions != -1 || spec.replication_factor != -1 {
        return Err(ControllerError::InvalidRequest(
            "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into(),
        ));
    }
    let count = spec.assignments.len();
    if count as i64 > i64::from(PARTITIONS_MAX) {
        return Err(ControllerError::InvalidPartitions(format!("at most {PARTITIONS_MAX} partitions")));
    }
    let placement: Vec<Vec<i32>> = spec.assignments.values().cloned().collect();
    let indexes_ok = spec.assignments.keys().copied().eq(0..count as i32);
    if !indexes_ok {
        return Err(ControllerError::InvalidReplicaAssignment("partitions must be numbered 0..n-1".into()));
    }
    check_replica_lists(image, &placement)?;
    Ok(placement)
}

fn check_replica_lists(image: &MetadataImage, placement: &[Vec<i32>]) -> Result<(), ControllerError> {
    let width = placement.first().map_or(0, Vec::len);
    for replicas in placement {
        let distinct: BTreeSet<_> = replicas.iter().collect();
        if replicas.is_empty() || replicas.len() != width || distinct.len() != replicas.len() {
            return Err(ControllerError::InvalidReplicaAssignment(
                "every partition needs the same number of distinct replicas".into(),
            ));
        }
        if let Some(b) = replicas.iter().find(|b| !image.brokers.contains_key(b)) {
            return Err(ControllerError::InvalidReplicaAssignment(format!("broker {b} is not registered")));
        }
    }
    Ok(())
}

/// Deletes a topic by name.
///
/// # Errors
/// UNKNOWN_TOPIC_OR_PARTITION when no such topic exists.
pub fn delete_topic(image: &MetadataImage, name: &str) -> Result<OpResult<Uuid>, ControllerError> {
    let topic = image.topic_by_name(name).ok_or_else(|| ControllerError::UnknownTopicOrPartition(name.to_string()))?;
    Ok(OpResult { records: vec![MetadataRecord::RemoveTopic { topic_id: topic.topic_id }], response: topic.topic_id })
}

/// Grows a topic to `count` partitions, placed by the controller or by `assignments`.
///
/// # Errors
/// UNKNOWN_TOPIC_OR_PARTITION, INVALID_PARTITIONS (not an increase, or too many),
/// INVALID_REPLICA_ASSIGNMENT.
pub fn create_partitions(
    image: &MetadataImage,
    name: &str,
    count: i32,
    assignments: Option<Vec<Vec<i32>>>,
) -> Result<OpResult<()>, ControllerError> {
    let topic = image.topic_by_name(name).ok_or_else(|| ControllerError::UnknownTopicOrPartition(name.to_string()))?;
    let current = topic.partitions.len() as i32;
    if count <= current {
        return Err(ControllerError::InvalidPartitions(format!(
            "Topic currently has {current} partitions, which is higher than the requested {count}."
        )));
    }
    if count > PARTITIONS_MAX {
        return Err(ControllerError::InvalidPartitions(format!("at most {PARTITIONS_MAX} partitions")));
    }
    let replication_factor = topic.partitions.values().next().map_or(1, |p| p.replicas.len()) as i16;
    let placement = match assignments {
        Some(a) => {
            if a.len() as i32 != count - current {
                return Err(ControllerError::InvalidReplicaAssignment(format!(
                    "Increasing the number of partitions by {} but {} assignments provided.",
                    count - current,
                    a.len()
                )));
            }
            check_replica_lists(image, &a)?;
            a
        }
        None => place(image, current, count - current, replication_factor)?,
    };
    Ok(OpResult { records: partition_records(image, topic.topic_id, current, &placement), response: () })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_with_brokers(n: i32) -> MetadataImage {
        let mut image = MetadataImage::default();
        for node_id in 1..=n {
            image.apply(&MetadataRecord::RegisterBroker {
                node_id,
                incarnation_id: Uuid::from_u128(node_id as u128),
                host: "127.0.0.1".into(),
                port: 9092,
                rack: None,
            });
            image.apply(&MetadataRecord::UnfenceBroker { node_id });
        }
        image
    }

    const DEFAULTS: TopicDefaults = TopicDefaults { num_partitions: 1, replication_factor: 1 };

    #[test]
    fn create_then_duplicate_and_bad_specs() {
        let mut image = image_with_brokers(1);
        let spec =
            CreateTopicSpec { name: "orders".into(), num_partitions: 3, replication_factor: -1, ..Default::default() };
        let op = create_topic(&image, &spec, DEFAULTS).expect("create");
        assert_eq!(op.response.num_partitions, 3);
        for r in &op.records {
            image.apply(r);
        }
        assert_eq!(image.topic_by_name("orders").map(|t| t.partitions.len()), Some(3));
        let again = create_topic(&image, &spec, DEFAULTS);
        assert!(matches!(again, Err(ControllerError::TopicAlreadyExists(_))));
        let rf3 = CreateTopicSpec { name: "x".into(), num_partitions: 1, replication_factor: 3, ..Default::default() };
        assert!(matches!(create_topic(&image, &rf3, DEFAULTS), Err(ControllerError::InvalidReplicationFactor(_))));
        let zero = CreateTopicSpec { name: "x".into(), num_partitions: 0, replication_factor: 1, ..Default::default() };
        assert!(matches!(create_topic(&image, &zero, DEFAULTS), Err(ControllerError::InvalidPartitions(_))));
        let bad_name =
            CreateTopicSpec { name: "a/b".into(), num_partitions: 1, replication_factor: 1, ..Default::default() };
        assert!(matches!(create_topic(&image, &bad_name, DEFAULTS), Err(ControllerError::InvalidTopic(_))));
    }

    #[test]
    fn create_partitions_only_grows() {
        let mut image = image_with_brokers(1);
        let spec = CreateTopicSpec { name: "t".into(), num_partitions: 2, replication_factor: 1, ..Default::default() };
        for r in create_topic(&image, &spec, DEFAULTS).expect("create").records {
            image.apply(&r);
        }
        assert!(matches!(create_partitions(&image, "t", 2, None), Err(ControllerError::InvalidPartitions(_))));
        for r in create_partitions(&image, "t", 5, None).expect("grow").records {
            image.apply(&r);
        }
        let parts: Vec<i32> =
            image.topic_by_name("t").map(|t| t.partitions.keys().copied().collect()).unwrap_or_default();
        assert_eq!(parts, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn placement_spreads_leaders_and_replicas_over_live_brokers_across_racks() {
        let mut image = MetadataImage::default();
        for (node_id, rack) in [(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")] {
            image.apply(&MetadataRecord::RegisterBroker {
                node_id,
                incarnation_id: Uuid::from_u128(node_id as u128),
                host: "h".into(),
                port: 1,
                rack: Some(rack.into()),
            });
            image.apply(&MetadataRecord::UnfenceBroker { node_id });
        }
        let rack = |b: &i32| image.brokers.get(b).and_then(|x| x.rack.clone());
        let placement = place(&image, 0, 12, 3).expect("place");
        let mut leaders = std::collections::BTreeMap::new();
        for replicas in &placement {
            let distinct: BTreeSet<_> = replicas.iter().collect();
            assert_eq!(distinct.len(), 3);
            let racks: BTreeSet<_> = replicas.iter().map(rack).collect();
            assert_eq!(racks.len(), 3, "one replica per rack: {replicas:?}");
            *leaders.entry(replicas[0]).or_insert(0) += 1;
        }
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2; 6], "leaders spread evenly");
        // Fenced brokers get nothing; asking for more replicas than live brokers fails.
        image.apply(&MetadataRecord::FenceBroker { node_id: 6 });
        image.apply(&MetadataRecord::FenceBroker { node_id: 5 });
        let placement = place(&image, 0, 8, 2).expect("place");
        assert!(placement.iter().flatten().all(|b| *b <= 4));
        image.apply(&MetadataRecord::FenceBroker { node_id: 4 });
        image.apply(&MetadataRecord::FenceBroker { node_id: 3 });
        assert!(matches!(place(&image, 0, 1, 3), Err(ControllerError::InvalidReplicationFactor(_))));
    }
}
