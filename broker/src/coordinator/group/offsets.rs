//! A group's committed offsets: changed only by records that are durable (live completion and
//! replay go through [`GroupOffsets::apply`]), plus a count of writes still in flight per
//! partition, so that retention never expires an offset a pending write is about to change.

use std::collections::BTreeMap;

use super::records::OffsetValue;
use super::{FetchedOffset, TopicPartition};

#[derive(Debug, Default)]
pub(super) struct GroupOffsets {
    committed: BTreeMap<TopicPartition, OffsetValue>,
    in_flight: BTreeMap<TopicPartition, u32>,
}

impl GroupOffsets {
    /// Applies a durable offset record (`None`: a tombstone).
    pub(super) fn apply(&mut self, tp: TopicPartition, value: Option<OffsetValue>) {
        match value {
            Some(v) => {
                self.committed.insert(tp, v);
            }
            None => {
                self.committed.remove(&tp);
            }
        }
    }

    pub(super) fn begin_writes<'a>(&mut self, keys: impl IntoIterator<Item = &'a TopicPartition>) {
        for tp in keys {
            *self.in_flight.entry(tp.clone()).or_insert(0) += 1;
        }
    }

    pub(super) fn end_writes<'a>(&mut self, keys: impl IntoIterator<Item = &'a TopicPartition>) {
        for tp in keys {
            if let Some(n) = self.in_flight.get_mut(tp) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.in_flight.remove(tp);
                }
            }
        }
    }

    /// Whether the partition has a committed offset or a write in flight for it.
    pub(super) fn has(&self, tp: &TopicPartition) -> bool {
        self.committed.contains_key(tp) || self.in_flight.contains_key(tp)
    }

    pub(super) fn len(&self) -> usize {
        self.committed.len()
    }

    pub(super) fn nothing_in_flight(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// Every partition with a committed offset or a write in flight: what a group deletion
    /// must tombstone.
    pub(super) fn all_keys(&self) -> Vec<TopicPartition> {
        let mut keys: Vec<TopicPartition> = self.committed.keys().cloned().collect();
        keys.extend(self.in_flight.keys().filter(|tp| !self.committed.contains_key(tp)).cloned());
        keys
    }

    pub(super) fn fetch(&self, tp: &TopicPartition) -> FetchedOffset {
        match self.committed.get(tp) {
            Some(v) => fetched(tp, v),
            None => unknown_offset(tp),
        }
    }

    pub(super) fn fetch_all(&self) -> Vec<FetchedOffset> {
        self.committed.iter().map(|(tp, v)| fetched(tp, v)).collect()
    }

    /// Partitions whose offsets have outlived `retention_ms` since `base_ms(offset)`, skipping
    /// topics the group still consumes and partitions with a write in flight.
    pub(super) fn expired(
        &self,
        now_ms: i64,
        retention_ms: i64,
        base_ms: impl Fn(&OffsetValue) -> i64,
        subscribed: impl Fn(&str) -> bool,
    ) -> Vec<TopicPartition> {
        self.committed
            .iter()
            .filter(|(tp, v)| {
                !subscribed(&tp.topic)
                    && !self.in_flight.contains_key(*tp)
                    && now_ms.saturating_sub(base_ms(v)) >= retention_ms
            })
            .map(|(tp, _)| tp.clone())
            .collect()
    }
}

fn fetched(tp: &TopicPartition, v: &OffsetValue) -> FetchedOffset {
    FetchedOffset {
        topic: tp.topic.clone(),
        partition: tp.partition,
        offset: v.offset,
        leader_epoch: v.leader_epoch,
        metadata: v.metadata.clone(),
    }
}

/// What OffsetFetch answers for a partition with no committed offset.
pub(super) fn unknown_offset(tp: &TopicPartition) -> FetchedOffset {
    FetchedOffset {
        topic: tp.topic.clone(),
        partition: tp.partition,
        offset: -1,
        leader_epoch: -1,
        metadata: String::new(),
    }
}
