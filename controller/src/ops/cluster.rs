//! Cluster membership: broker registration, heartbeats, fencing and partition leader election.
//!
//! Kafka's KRaft rules: a broker registers fenced, is unfenced once its own metadata has reached
//! its registration (it has caught up) and it heartbeats; a broker that stops heartbeating for the
//! session timeout, shuts down, or re-registers as a new incarnation is fenced. Fencing removes it
//! from every ISR (except where it is the last member, so that nothing stale can be elected) and
//! moves its leaderships to the first live in-sync replica; a partition with none goes leaderless
//! (leader -1) until a member of its ISR comes back, unless the topic sets
//! `unclean.leader.election.enable=true`: then a live replica outside the ISR may lead (it may lack
//! acknowledged records; the ISR restarts as that replica alone).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::OpResult;
use crate::image::{MetadataImage, PartitionImage};
use crate::records::MetadataRecord;

/// A broker's registration request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub node_id: i32,
    pub incarnation_id: Uuid,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// A broker's periodic heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerHeartbeat {
    pub node_id: i32,
    pub incarnation_id: Uuid,
    /// How far the broker's own metadata image has got (`applied_count`).
    pub applied_count: u64,
    /// Set while the broker is still loading its logs (Kafka's WantFence): keep my session alive
    /// but do not unfence me yet (fence me if I am not).
    #[serde(default)]
    pub want_fence: bool,
    /// Set during controlled shutdown: move my leaderships away and fence me.
    pub want_shutdown: bool,
}

/// The controller's answer to a heartbeat (after its records, if any, committed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// False when the controller does not know this incarnation: the broker must register again.
    pub registered: bool,
    pub fenced: bool,
}

/// Registers (or re-registers) a broker. The same incarnation with the same endpoint writes
/// nothing; a new incarnation of a live broker first fences the old one.
pub fn register_broker(image: &MetadataImage, reg: &BrokerRegistration) -> OpResult<()> {
    let current = image.brokers.get(&reg.node_id);
    let same = current.is_some_and(|b| {
        b.incarnation_id == reg.incarnation_id && b.host == reg.host && b.port == reg.port && b.rack == reg.rack
    });
    if same {
        return OpResult { records: Vec::new(), response: () };
    }
    let mut records = Vec::new();
    if current.is_some_and(|b| !b.fenced) {
        records.extend(fence_broker(image, reg.node_id));
    }
    records.push(MetadataRecord::RegisterBroker {
        node_id: reg.node_id,
        incarnation_id: reg.incarnation_id,
        host: reg.host.clone(),
        port: reg.port,
        rack: reg.rack.clone(),
    });
    OpResult { records, response: () }
}

/// Handles a heartbeat: unfences a caught-up broker, fences one that is shutting down.
pub fn heartbeat(image: &MetadataImage, hb: &BrokerHeartbeat) -> OpResult<HeartbeatReply> {
    let Some(broker) = image.brokers.get(&hb.node_id).filter(|b| b.incarnation_id == hb.incarnation_id) else {
        return OpResult { records: Vec::new(), response: HeartbeatReply { registered: false, fenced: true } };
    };
    if hb.want_shutdown || hb.want_fence {
        let records = if broker.fenced { Vec::new() } else { fence_broker(image, hb.node_id) };
        return OpResult { records, response: HeartbeatReply { registered: true, fenced: true } };
    }
    if broker.fenced && hb.applied_count >= broker.epoch {
        return OpResult {
            records: unfence_broker(image, hb.node_id),
            response: HeartbeatReply { registered: true, fenced: false },
        };
    }
    OpResult { records: Vec::new(), response: HeartbeatReply { registered: true, fenced: broker.fenced } }
}

/// The records that fence `node_id`: leaderships move to live in-sync replicas, and it leaves every
/// ISR it is not the last member of. Empty when it is not a live registered broker.
pub fn fence_broker(image: &MetadataImage, node_id: i32) -> Vec<MetadataRecord> {
    if !image.is_broker_alive(node_id) {
        return Vec::new();
    }
    let mut records = vec![MetadataRecord::FenceBroker { node_id }];
    let alive = |b: i32| b != node_id && image.is_broker_alive(b);
    for topic in image.topics.values() {
        for p in topic.partitions.values() {
            if !p.isr.contains(&node_id) && p.leader != node_id {
                continue;
            }
            let isr: Vec<i32> =
                if p.isr.len() > 1 { p.isr.iter().copied().filter(|b| *b != node_id).collect() } else { p.isr.clone() };
            let mut isr = isr;
            let leader = if p.leader == node_id || p.leader == -1 {
                match p.replicas.iter().copied().find(|b| isr.contains(b) && alive(*b)) {
                    Some(leader) => leader,
                    None => {
                        match p.replicas.iter().copied().find(|b| alive(*b)).filter(|_| unclean(image, &topic.name)) {
                            Some(leader) => {
                                isr = vec![leader];
                                leader
                            }
                            None => -1,
                        }
                    }
                }
            } else {
                p.leader
            };
            records.push(partition_change(topic.topic_id, p, isr, leader));
        }
    }
    records
}

/// The records that unfence `node_id` and give it the leaderless partitions whose ISR it is in.
pub fn unfence_broker(image: &MetadataImage, node_id: i32) -> Vec<MetadataRecord> {
    let mut records = vec![MetadataRecord::UnfenceBroker { node_id }];
    for topic in image.topics.values() {
        for p in topic.partitions.values() {
            if p.leader != -1 || !p.replicas.contains(&node_id) {
                continue;
            }
            if p.isr.contains(&node_id) {
                records.push(partition_change(topic.topic_id, p, p.isr.clone(), node_id));
            } else if unclean(image, &topic.name) {
                records.push(partition_change(topic.topic_id, p, vec![node_id], node_id));
            }
        }
    }
    records
}

/// Whether `topic` allows electing a replica outside its ISR (`unclean.leader.election.enable`).
fn unclean(image: &MetadataImage, topic: &str) -> bool {
    image.topic_configs(topic).get("unclean.leader.election.enable").is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// A partition's new ISR and leader as a record: the partition epoch always moves on, the leader
/// epoch when the leader changes.
fn partition_change(topic_id: Uuid, p: &PartitionImage, isr: Vec<i32>, leader: i32) -> MetadataRecord {
    MetadataRecord::Partition {
        topic_id,
        partition: p.partition,
        replicas: p.replicas.clone(),
        isr,
        leader,
        leader_epoch: if leader == p.leader { p.leader_epoch } else { p.leader_epoch + 1 },
        partition_epoch: p.partition_epoch + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(node_id: i32, incarnation: u128) -> BrokerRegistration {
        BrokerRegistration {
            node_id,
            incarnation_id: Uuid::from_u128(incarnation),
            host: "127.0.0.1".into(),
            port: 9000 + node_id,
            rack: None,
        }
    }

    fn apply(image: &mut MetadataImage, records: &[MetadataRecord]) {
        for r in records {
            image.apply(r);
        }
    }

    /// Applies what `op` plans against the current image.
    fn step(image: &mut MetadataImage, op: impl FnOnce(&MetadataImage) -> Vec<MetadataRecord>) {
        let records = op(image);
        apply(image, &records);
    }

    fn hb(node_id: i32, incarnation: u128, image: &MetadataImage) -> BrokerHeartbeat {
        BrokerHeartbeat {
            node_id,
            incarnation_id: Uuid::from_u128(incarnation),
            applied_count: image.applied_count,
            want_fence: false,
            want_shutdown: false,
        }
    }

    /// Three live brokers and one topic with partitions led by 1, 2, 3, RF 3.
    fn cluster() -> MetadataImage {
        let mut image = MetadataImage::default();
        for id in 1..=3 {
            step(&mut image, |i| register_broker(i, &reg(id, id as u128)).records);
            let r = heartbeat(&image, &hb(id, id as u128, &image));
            assert_eq!(r.response, HeartbeatReply { registered: true, fenced: false });
            apply(&mut image, &r.records);
        }
        let topic_id = Uuid::from_u128(99);
        image.apply(&MetadataRecord::Topic { name: "t".into(), topic_id });
        for (p, replicas) in [[1, 2, 3], [2, 3, 1], [3, 1, 2]].into_iter().enumerate() {
            image.apply(&MetadataRecord::Partition {
                topic_id,
                partition: p as i32,
                replicas: replicas.to_vec(),
                isr: replicas.to_vec(),
                leader: replicas[0],
                leader_epoch: 0,
                partition_epoch: 0,
            });
        }
        image
    }

    fn partitions(image: &MetadataImage) -> Vec<(i32, Vec<i32>, i32)> {
        let topic = image.topic_by_name("t").expect("topic");
        topic.partitions.values().map(|p| (p.leader, p.isr.clone(), p.leader_epoch)).collect()
    }

    #[test]
    fn a_broker_is_unfenced_only_once_caught_up_with_its_registration() {
        let mut image = MetadataImage::default();
        step(&mut image, |i| register_broker(i, &reg(1, 1)).records);
        let mut stale = hb(1, 1, &image);
        stale.applied_count = image.applied_count - 1;
        let r = heartbeat(&image, &stale);
        assert!(r.records.is_empty() && r.response.fenced);
        let r = heartbeat(&image, &hb(1, 2, &image));
        assert_eq!(r.response, HeartbeatReply { registered: false, fenced: true }, "unknown incarnation");
        let mut loading = hb(1, 1, &image);
        loading.want_fence = true;
        let r = heartbeat(&image, &loading);
        assert!(r.records.is_empty() && r.response.fenced, "a broker still loading its logs stays fenced");
        let r = heartbeat(&image, &hb(1, 1, &image));
        apply(&mut image, &r.records);
        assert!(image.is_broker_alive(1));
        assert!(register_broker(&image, &reg(1, 1)).records.is_empty(), "same registration writes nothing");
    }

    #[test]
    fn fencing_moves_leadership_to_live_isr_and_back_when_the_last_member_returns() {
        let mut image = cluster();
        step(&mut image, |i| fence_broker(i, 1));
        assert!(!image.is_broker_alive(1));
        assert_eq!(partitions(&image), vec![(2, vec![2, 3], 1), (2, vec![2, 3], 0), (3, vec![3, 2], 0)]);
        step(&mut image, |i| fence_broker(i, 2));
        step(&mut image, |i| fence_broker(i, 3));
        // The last ISR member stays in the ISR, leaderless: no stale replica can be elected.
        assert_eq!(partitions(&image).iter().map(|p| p.0).collect::<Vec<_>>(), vec![-1, -1, -1]);
        assert_eq!(partitions(&image)[0].1, vec![3]);
        // Broker 1 comes back: it is in no ISR, so it leads nothing.
        step(&mut image, |i| register_broker(i, &reg(1, 11)).records);
        step(&mut image, |i| heartbeat(i, &hb(1, 11, i)).records);
        assert_eq!(partitions(&image).iter().map(|p| p.0).collect::<Vec<_>>(), vec![-1, -1, -1]);
        // Broker 3, the last in-sync replica, comes back and leads again with a new epoch.
        step(&mut image, |i| register_broker(i, &reg(3, 33)).records);
        step(&mut image, |i| heartbeat(i, &hb(3, 33, i)).records);
        let after = partitions(&image);
        assert!(after.iter().all(|p| p.0 == 3), "{after:?}");
        assert!(after.iter().all(|p| p.2 >= 2), "leader epochs move on: {after:?}");
    }

    #[test]
    fn unclean_election_only_where_the_topic_allows_it() {
        use crate::records::ConfigResource;
        let mut image = cluster();
        // Partition 0 (replicas 1, 2, 3) shrinks to broker 1 alone, then 1 dies.
        let topic_id = image.topic_by_name("t").expect("topic").topic_id;
        let p = image.topics[&topic_id].partitions[&0].clone();
        image.apply(&partition_change(topic_id, &p, vec![1], 1));
        step(&mut image, |i| fence_broker(i, 1));
        assert_eq!(partitions(&image)[0], (-1, vec![1], 1), "clean: leaderless while its last ISR member is down");
        // Broker 2 returns (after a restart, as a new incarnation): still no unclean election.
        step(&mut image, |i| fence_broker(i, 2));
        step(&mut image, |i| register_broker(i, &reg(2, 22)).records);
        step(&mut image, |i| heartbeat(i, &hb(2, 22, i)).records);
        assert_eq!(partitions(&image)[0].0, -1);

        image.apply(&MetadataRecord::Config {
            resource: ConfigResource::Topic,
            resource_name: "t".into(),
            name: "unclean.leader.election.enable".into(),
            value: Some("true".into()),
        });
        // Now a returning out-of-sync replica may lead, and the ISR restarts with it alone.
        step(&mut image, |i| fence_broker(i, 3));
        step(&mut image, |i| register_broker(i, &reg(3, 33)).records);
        step(&mut image, |i| heartbeat(i, &hb(3, 33, i)).records);
        assert_eq!(partitions(&image)[0].0, 3);
        assert_eq!(partitions(&image)[0].1, vec![3]);
    }

    #[test]
    fn controlled_shutdown_and_re_registration_fence_the_old_incarnation() {
        let mut image = cluster();
        let mut shutdown = hb(2, 2, &image);
        shutdown.want_shutdown = true;
        let r = heartbeat(&image, &shutdown);
        assert_eq!(r.response, HeartbeatReply { registered: true, fenced: true });
        apply(&mut image, &r.records);
        assert!(partitions(&image).iter().all(|p| p.0 != 2 && !p.1.contains(&2)));
        // A restarted broker 3 (new incarnation) is fenced first, then registered fenced.
        let r = register_broker(&image, &reg(3, 333));
        assert!(matches!(r.records.first(), Some(MetadataRecord::FenceBroker { node_id: 3 })));
        apply(&mut image, &r.records);
        assert!(!image.is_broker_alive(3));
        assert_eq!(image.brokers.get(&3).map(|b| b.incarnation_id), Some(Uuid::from_u128(333)));
    }
}
