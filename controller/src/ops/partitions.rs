//! ISR changes requested by partition leaders (Kafka's AlterPartition).
//!
//! A leader never changes its ISR alone: it asks the controller, which checks that the request
//! comes from the current leader (leader epoch) and is based on the current partition state
//! (partition epoch), that every replica added is a live registered broker, and then writes the
//! new ISR with the partition epoch moved on. The leader applies the answer right away (it need
//! not wait for the record to reach its metadata image).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::OpResult;
use crate::error::ControllerError;
use crate::image::MetadataImage;
use crate::records::MetadataRecord;

/// A leader's request for a new ISR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterPartitionRequest {
    pub broker_id: i32,
    pub topic_id: Uuid,
    pub partition: i32,
    /// The leader epoch the leader is acting in.
    pub leader_epoch: i32,
    /// The partition epoch of the state the new ISR was computed from.
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

/// A partition's leadership state after an ISR change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    pub partition_epoch: i32,
}

/// Validates an ISR change; the record to write and the state it produces.
///
/// # Errors
/// `UnknownTopicOrPartition`; `NotLeaderOrFollower` when the requester does not lead it;
/// `FencedLeaderEpoch` for another leader epoch; `InvalidUpdateVersion` for another partition
/// epoch; `InvalidRequest` when the ISR is empty, repeats a broker, leaves out the leader or names
/// a non-replica; `IneligibleReplica` when it adds a fenced or unknown broker.
pub fn alter_partition(
    image: &MetadataImage,
    request: &AlterPartitionRequest,
) -> Result<OpResult<PartitionState>, ControllerError> {
    let describe = || format!("{}-{}", request.topic_id, request.partition);
    let p = image
        .topics
        .get(&request.topic_id)
        .and_then(|t| t.partitions.get(&request.partition))
        .ok_or_else(|| ControllerError::UnknownTopicOrPartition(describe()))?;
    if p.leader != request.broker_id {
        return Err(ControllerError::NotLeaderOrFollower(format!(
            "broker {} does not lead {} (leader {})",
            request.broker_id,
            describe(),
            p.leader
        )));
    }
    if request.leader_epoch != p.leader_epoch {
        return Err(ControllerError::FencedLeaderEpoch(format!(
            "{}: leader epoch {} is not the current {}",
            describe(),
            request.leader_epoch,
            p.leader_epoch
        )));
    }
    if request.partition_epoch != p.partition_epoch {
        return Err(ControllerError::InvalidUpdateVersion(format!(
            "{}: partition epoch {} is not the current {}",
            describe(),
            request.partition_epoch,
            p.partition_epoch
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    if request.new_isr.is_empty() || !request.new_isr.iter().all(|b| seen.insert(*b)) {
        return Err(ControllerError::InvalidRequest(format!(
            "{}: ISR {:?} is empty or repeats",
            describe(),
            request.new_isr
        )));
    }
    if !request.new_isr.contains(&p.leader) {
        return Err(ControllerError::InvalidRequest(format!(
            "{}: ISR {:?} leaves out the leader {}",
            describe(),
            request.new_isr,
            p.leader
        )));
    }
    if let Some(b) = request.new_isr.iter().find(|b| !p.replicas.contains(b)) {
        return Err(ControllerError::InvalidRequest(format!("{}: broker {b} is not a replica", describe())));
    }
    if let Some(b) = request.new_isr.iter().find(|b| !p.isr.contains(b) && !image.is_broker_alive(**b)) {
        return Err(ControllerError::IneligibleReplica(format!("{}: broker {b} is fenced or unknown", describe())));
    }
    let unchanged = {
        let (mut old, mut new) = (p.isr.clone(), request.new_isr.clone());
        old.sort_unstable();
        new.sort_unstable();
        old == new
    };
    if unchanged {
        let state = PartitionState {
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            isr: p.isr.clone(),
            partition_epoch: p.partition_epoch,
        };
        return Ok(OpResult { records: Vec::new(), response: state });
    }
    // Keep the replica order (the preferred order) in the ISR.
    let isr: Vec<i32> = p.replicas.iter().copied().filter(|b| request.new_isr.contains(b)).collect();
    let state = PartitionState {
        leader: p.leader,
        leader_epoch: p.leader_epoch,
        isr: isr.clone(),
        partition_epoch: p.partition_epoch + 1,
    };
    let record = MetadataRecord::Partition {
        topic_id: request.topic_id,
        partition: request.partition,
        replicas: p.replicas.clone(),
        isr,
        leader: p.leader,
        leader_epoch: p.leader_epoch,
        partition_epoch: state.partition_epoch,
    };
    Ok(OpResult { records: vec![record], response: state })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::cluster::{fence_broker, heartbeat, register_broker, BrokerHeartbeat, BrokerRegistration};

    fn cluster() -> (MetadataImage, Uuid) {
        let mut image = MetadataImage::default();
        for id in 1..=3 {
            let reg = BrokerRegistration {
                node_id: id,
                incarnation_id: Uuid::from_u128(id as u128),
                host: "h".into(),
                port: id,
                rack: None,
            };
            for r in register_broker(&image, &reg).records {
                image.apply(&r);
            }
            let hb = BrokerHeartbeat {
                node_id: id,
                incarnation_id: reg.incarnation_id,
                applied_count: image.applied_count,
                want_fence: false,
                want_shutdown: false,
            };
            for r in heartbeat(&image, &hb).records {
                image.apply(&r);
            }
        }
        let topic_id = Uuid::from_u128(7);
        image.apply(&MetadataRecord::Topic { name: "t".into(), topic_id });
        image.apply(&MetadataRecord::Partition {
            topic_id,
            partition: 0,
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
            leader: 1,
            leader_epoch: 4,
            partition_epoch: 9,
        });
        (image, topic_id)
    }

    fn request(
        topic_id: Uuid,
        broker_id: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: &[i32],
    ) -> AlterPartitionRequest {
        AlterPartitionRequest {
            broker_id,
            topic_id,
            partition: 0,
            leader_epoch,
            partition_epoch,
            new_isr: isr.to_vec(),
        }
    }

    fn apply(image: &mut MetadataImage, op: OpResult<PartitionState>) -> PartitionState {
        for r in &op.records {
            image.apply(r);
        }
        op.response
    }

    #[test]
    fn the_leader_shrinks_and_expands_its_isr_in_steps_of_the_partition_epoch() {
        let (mut image, t) = cluster();
        let op = alter_partition(&image, &request(t, 1, 4, 9, &[1, 3])).unwrap();
        let state = apply(&mut image, op);
        assert_eq!(state, PartitionState { leader: 1, leader_epoch: 4, isr: vec![1, 3], partition_epoch: 10 });
        assert_eq!(image.topics[&t].partitions[&0].isr, vec![1, 3]);

        // The same request again is based on an old partition epoch.
        let stale = alter_partition(&image, &request(t, 1, 4, 9, &[1])).unwrap_err();
        assert!(matches!(stale, ControllerError::InvalidUpdateVersion(_)), "{stale:?}");

        // Back in, listed in replica order whatever order the request used.
        let op = alter_partition(&image, &request(t, 1, 4, 10, &[3, 2, 1])).unwrap();
        let state = apply(&mut image, op);
        assert_eq!(state.isr, vec![1, 2, 3]);
        assert_eq!(state.partition_epoch, 11);

        // No change writes nothing.
        let same = alter_partition(&image, &request(t, 1, 4, 11, &[1, 2, 3])).unwrap();
        assert!(same.records.is_empty());
        assert_eq!(same.response.partition_epoch, 11);
    }

    #[test]
    fn only_the_current_leader_with_a_valid_isr_may_change_it() {
        let (mut image, t) = cluster();
        let e = alter_partition(&image, &request(t, 2, 4, 9, &[2, 3])).unwrap_err();
        assert!(matches!(e, ControllerError::NotLeaderOrFollower(_)), "{e:?}");
        let e = alter_partition(&image, &request(t, 1, 3, 9, &[1])).unwrap_err();
        assert!(matches!(e, ControllerError::FencedLeaderEpoch(_)), "{e:?}");
        for bad in [&[][..], &[2, 3], &[1, 1], &[1, 4]] {
            let e = alter_partition(&image, &request(t, 1, 4, 9, bad)).unwrap_err();
            assert!(matches!(e, ControllerError::InvalidRequest(_)), "{bad:?}: {e:?}");
        }
        let e = alter_partition(&image, &request(Uuid::nil(), 1, 4, 9, &[1])).unwrap_err();
        assert!(matches!(e, ControllerError::UnknownTopicOrPartition(_)), "{e:?}");

        // A fenced broker cannot be added back (it already left the ISR when it was fenced).
        for r in fence_broker(&image, 3) {
            image.apply(&r);
        }
        let p = &image.topics[&t].partitions[&0];
        assert_eq!(p.isr, vec![1, 2]);
        let e = alter_partition(&image, &request(t, 1, p.leader_epoch, p.partition_epoch, &[1, 2, 3])).unwrap_err();
        assert!(matches!(e, ControllerError::IneligibleReplica(_)), "{e:?}");
    }
}
