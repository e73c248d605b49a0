//! The metadata image: everything the records say, as of one log offset.
//!
//! `apply` is deterministic and infallible: it is the only way the image changes. Brokers hold an
//! `Arc<MetadataImage>` and swap it whole when a new one is published, so readers never lock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::records::{ConfigResource, MetadataRecord};

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerImage {
    pub node_id: i32,
    pub incarnation_id: Uuid,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// The broker epoch: the image's `applied_count` when this registration was applied. A broker
    /// is unfenced only once its own metadata has reached it.
    pub epoch: u64,
    /// A fenced broker leads nothing and is left out of Metadata responses.
    pub fenced: bool,
}

/// One partition's placement and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionImage {
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

/// A topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: BTreeMap<i32, PartitionImage>,
}

/// The whole cluster metadata at `applied_count` records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataImage {
    /// How many records have been applied (the metadata offset + 1).
    pub applied_count: u64,
    pub brokers: BTreeMap<i32, BrokerImage>,
    pub topics: BTreeMap<Uuid, TopicImage>,
    pub topic_ids_by_name: BTreeMap<String, Uuid>,
    pub configs: BTreeMap<(ConfigResource, String), BTreeMap<String, String>>,
    /// The first producer id not yet handed out.
    pub next_producer_id: i64,
    /// The cluster id, once the first active controller has written it.
    pub cluster_id: Option<String>,
}

/// The serialized form of an image (a Raft snapshot's payload).
#[derive(Serialize, Deserialize)]
struct ImageSnapshot {
    v: u8,
    applied_count: u64,
    brokers: Vec<BrokerImage>,
    topics: Vec<TopicImage>,
    configs: Vec<(ConfigResource, String, BTreeMap<String, String>)>,
    next_producer_id: i64,
    cluster_id: Option<String>,
}

impl MetadataImage {
    /// Applies one record. Never fails: validation happened before the record was written.
    pub fn apply(&mut self, record: &MetadataRecord) {
        self.applied_count += 1;
        match record {
            MetadataRecord::RegisterBroker { node_id, incarnation_id, host, port, rack } => {
                let broker = BrokerImage {
                    node_id: *node_id,
                    incarnation_id: *incarnation_id,
                    host: host.clone(),
                    port: *port,
                    rack: rack.clone(),
                    epoch: self.applied_count,
                    fenced: true,
                };
                self.brokers.insert(*node_id, broker);
            }
            MetadataRecord::FenceBroker { node_id } => {
                if let Some(b) = self.brokers.get_mut(node_id) {
                    b.fenced = true;
                }
            }
            MetadataRecord::UnfenceBroker { node_id } => {
                if let Some(b) = self.brokers.get_mut(node_id) {
                    b.fenced = false;
                }
            }
            MetadataRecord::ClusterId { cluster_id } => {
                if self.cluster_id.is_none() {
                    self.cluster_id = Some(cluster_id.clone());
                }
            }
            MetadataRecord::Topic { name, topic_id } => {
                self.topic_ids_by_name.insert(name.clone(), *topic_id);
                let topic = TopicImage { name: name.clone(), topic_id: *topic_id, partitions: BTreeMap::new() };
                self.topics.insert(*topic_id, topic);
            }
            MetadataRecord::Partition { topic_id, partition, replicas, isr, leader, leader_epoch, partition_epoch } => {
                if let Some(topic) = self.topics.get_mut(topic_id) {
                    let image = PartitionImage {
                        partition: *partition,
                        replicas: replicas.clone(),
                        isr: isr.clone(),
                        leader: *leader,
                        leader_epoch: *leader_epoch,
                        partition_epoch: *partition_epoch,
                    };
                    topic.partitions.insert(*partition, image);
                }
            }
            MetadataRecord::Config { resource, resource_name, name, value } => {
                self.apply_config(*resource, resource_name, name, value.as_deref());
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                if let Some(topic) = self.topics.remove(topic_id) {
                    self.topic_ids_by_name.remove(&topic.name);
                    self.configs.remove(&(ConfigResource::Topic, topic.name));
                }
            }
            MetadataRecord::ProducerIds { next_producer_id, .. } => {
                self.next_producer_id = self.next_producer_id.max(*next_producer_id);
            }
        }
    }

    fn apply_config(&mut self, resource: ConfigResource, resource_name: &str, name: &str, value: Option<&str>) {
        let key = (resource, resource_name.to_string());
        match value {
            Some(value) => {
                self.configs.entry(key).or_default().insert(name.to_string(), value.to_string());
            }
            None => {
                if let Some(entries) = self.configs.get_mut(&key) {
                    entries.remove(name);
                    if entries.is_empty() {
                        self.configs.remove(&key);
                    }
                }
            }
        }
    }

    /// Encodes the image as a snapshot payload.
    ///
    /// # Errors
    /// Never in practice (every field serializes); an error is reported rather than hidden.
    pub fn encode_snapshot(&self) -> Result<Vec<u8>, serde_json::Error> {
        let snapshot = ImageSnapshot {
            v: 1,
            applied_count: self.applied_count,
            brokers: self.brokers.values().cloned().collect(),
            topics: self.topics.values().cloned().collect(),
            configs: self.configs.iter().map(|((r, n), c)| (*r, n.clone(), c.clone())).collect(),
            next_producer_id: self.next_producer_id,
            cluster_id: self.cluster_id.clone(),
        };
        serde_json::to_vec(&snapshot)
    }

    /// Decodes a payload written by [`Self::encode_snapshot`].
    ///
    /// # Errors
    /// When the bytes are not a snapshot.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let s: ImageSnapshot = serde_json::from_slice(bytes)?;
        let topic_ids_by_name = s.topics.iter().map(|t| (t.name.clone(), t.topic_id)).collect();
        Ok(Self {
            applied_count: s.applied_count,
            brokers: s.brokers.into_iter().map(|b| (b.node_id, b)).collect(),
            topics: s.topics.into_iter().map(|t| (t.topic_id, t)).collect(),
            topic_ids_by_name,
            configs: s.configs.into_iter().map(|(r, n, c)| ((r, n), c)).collect(),
            next_producer_id: s.next_producer_id,
            cluster_id: s.cluster_id,
        })
    }

    /// Whether `node_id` is registered and not fenced.
    pub fn is_broker_alive(&self, node_id: i32) -> bool {
        self.brokers.get(&node_id).is_some_and(|b| !b.fenced)
    }

    /// The topic named `name`, if it exists.
    pub fn topic_by_name(&self, name: &str) -> Option<&TopicImage> {
        self.topic_ids_by_name.get(name).and_then(|id| self.topics.get(id))
    }

    /// The config overrides set on a topic (empty when none).
    pub fn topic_configs(&self, name: &str) -> BTreeMap<String, String> {
        self.configs.get(&(ConfigResource::Topic, name.to_string())).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_is_deterministic_and_remove_topic_drops_configs() {
        let id = Uuid::from_u128(7);
        let records = vec![
            MetadataRecord::Topic { name: "t".into(), topic_id: id },
            MetadataRecord::Partition {
                topic_id: id,
                partition: 0,
                replicas: vec![1],
                isr: vec![1],
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 0,
            },
            MetadataRecord::Config {
                resource: ConfigResource::Topic,
                resource_name: "t".into(),
                name: "retention.ms".into(),
                value: Some("5".into()),
            },
        ];
        let mut a = MetadataImage::default();
        let mut b = MetadataImage::default();
        for r in &records {
            a.apply(r);
            b.apply(r);
        }
        assert_eq!(a, b);
        assert_eq!(a.topic_configs("t").get("retention.ms").map(String::as_str), Some("5"));
        assert_eq!(a.topic_by_name("t").map(|t| t.partitions.len()), Some(1));
        a.apply(&MetadataRecord::RemoveTopic { topic_id: id });
        assert!(a.topic_by_name("t").is_none());
        assert!(a.topic_configs("t").is_empty());
        assert_eq!(a.applied_count, 4);
    }

    #[test]
    fn snapshot_round_trips_the_whole_image() {
        let id = Uuid::from_u128(9);
        let mut image = MetadataImage::default();
        let records = [
            MetadataRecord::ClusterId { cluster_id: "c1".into() },
            MetadataRecord::RegisterBroker {
                node_id: 2,
                incarnation_id: Uuid::from_u128(1),
                host: "h".into(),
                port: 9,
                rack: Some("r".into()),
            },
            MetadataRecord::UnfenceBroker { node_id: 2 },
            MetadataRecord::Topic { name: "t".into(), topic_id: id },
            MetadataRecord::Partition {
                topic_id: id,
                partition: 0,
                replicas: vec![2],
                isr: vec![2],
                leader: 2,
                leader_epoch: 3,
                partition_epoch: 4,
            },
            MetadataRecord::Config {
                resource: ConfigResource::Topic,
                resource_name: "t".into(),
                name: "retention.ms".into(),
                value: Some("5".into()),
            },
            MetadataRecord::ProducerIds { broker_id: 2, next_producer_id: 1000 },
        ];
        for r in &records {
            image.apply(r);
        }
        assert!(image.is_broker_alive(2));
        let bytes = image.encode_snapshot().expect("encode");
        assert_eq!(MetadataImage::decode_snapshot(&bytes).expect("decode"), image);
    }
}
