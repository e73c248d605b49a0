//! KIP-951 for Produce and Fetch: a partition answered NOT_LEADER_OR_FOLLOWER (or, for Fetch,
//! FENCED_LEADER_EPOCH) names its current leader and epoch, and the response lists those
//! leaders' endpoints, so that the client can go straight to the new leader without a Metadata
//! round trip. The two responses have their own generated types; this module holds what they
//! share: looking the partition up in the image and collecting the leaders' endpoints.

use std::collections::BTreeSet;

use sluice_controller::image::{BrokerImage, MetadataImage};
use uuid::Uuid;

/// The leaders named so far in one response.
#[derive(Default)]
pub struct NewLeaders {
    leaders: BTreeSet<i32>,
}

impl NewLeaders {
    /// The current leader and leader epoch of partition `index` of topic `topic_id` (`None` when
    /// the topic or partition is gone); a live leader is remembered for [`Self::endpoints`].
    pub fn current(&mut self, image: &MetadataImage, topic_id: Option<Uuid>, index: i32) -> Option<(i32, i32)> {
        let now = image.topics.get(&topic_id?)?.partitions.get(&index)?;
        if now.leader >= 0 {
            self.leaders.insert(now.leader);
        }
        Some((now.leader, now.leader_epoch))
    }

    /// The unfenced brokers among the leaders named, by id, built into the response's endpoint
    /// type by `endpoint`.
    pub fn endpoints<T>(self, image: &MetadataImage, endpoint: impl Fn(i32, &BrokerImage) -> T) -> Vec<T> {
        self.leaders
            .into_iter()
            .filter_map(|id| image.brokers.get(&id).filter(|b| !b.fenced).map(|b| endpoint(id, b)))
            .collect()
    }
}
