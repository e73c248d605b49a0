//! Incremental fetch sessions (KIP-227).
//!
//! A full fetch with epoch 0 creates a session holding the partitions it asked for; later fetches
//! with the session id and the next epoch list only what changed (added, updated or forgotten
//! partitions), and the response lists only partitions with news (records, a moved high watermark
//! or log start, an error). The cache is bounded (`max.incremental.fetch.session.cache.slots`,
//! Kafka's 1000); when it is full the least recently used session is evicted and its owner, on its
//! next incremental fetch, gets FETCH_SESSION_ID_NOT_FOUND and starts over with a full fetch.

use std::collections::HashMap;

use uuid::Uuid;

/// Kafka's default `max.incremental.fetch.session.cache.slots`.
pub const SESSION_SLOTS: usize = 1000;
/// Epoch of a request that opens a new session.
pub const INITIAL_EPOCH: i32 = 0;
/// Epoch of a request that closes its session (and fetches without one).
pub const FINAL_EPOCH: i32 = -1;

/// A partition a session fetches, and what its last response said about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPartition {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    pub fetch_offset: i64,
    pub partition_max_bytes: i32,
    pub current_leader_epoch: i32,
    /// The epoch of the last batch a follower holds (Fetch v12+), `-1` for consumers.
    pub last_fetched_epoch: i32,
    /// (high watermark, log start offset) last sent; `None` before the first response.
    pub last_sent: Option<(i64, i64)>,
}

#[derive(Debug)]
pub struct Session {
    pub next_epoch: i32,
    pub partitions: Vec<SessionPartition>,
    last_used: u64,
}

/// Why an incremental fetch cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    NotFound,
    InvalidEpoch,
}

/// The bounded set of open sessions.
#[derive(Debug, Default)]
pub struct SessionCache {
    sessions: HashMap<i32, Session>,
    next_id: i32,
    clock: u64,
}

impl SessionCache {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Opens a session over `partitions`; returns its id (0 if sessions are disabled).
    pub fn create(&mut self, partitions: Vec<SessionPartition>) -> i32 {
        if self.sessions.len() >= SESSION_SLOTS {
            if let Some(oldest) = self.sessions.iter().min_by_key(|(_, s)| s.last_used).map(|(id, _)| *id) {
                self.sessions.remove(&oldest);
            }
        }
        let now = self.tick();
        loop {
            self.next_id = self.next_id.wrapping_add(1);
            if self.next_id > 0 && !self.sessions.contains_key(&self.next_id) {
                break;
            }
        }
        self.sessions.insert(self.next_id, Session { next_epoch: 1, partitions, last_used: now });
        self.next_id
    }

    /// Closes a session (no error if it is already gone).
    pub fn remove(&mut self, id: i32) {
        self.sessions.remove(&id);
    }

    /// The session `id` at `epoch`, ready for an incremental fetch.
    ///
    /// # Errors
    /// `NotFound` or `InvalidEpoch`, Kafka's FETCH_SESSION_ID_NOT_FOUND / INVALID_FETCH_SESSION_EPOCH.
    pub fn get_mut(&mut self, id: i32, epoch: i32) -> Result<&mut Session, SessionError> {
        let now = self.tick();
        let session = self.sessions.get_mut(&id).ok_or(SessionError::NotFound)?;
        if session.next_epoch != epoch {
            return Err(SessionError::InvalidEpoch);
        }
        session.last_used = now;
        session.next_epoch = if epoch == i32::MAX { 1 } else { epoch + 1 };
        Ok(session)
    }
}

impl SessionCache {
    /// The session `id` without touching its epoch (to record what a response carried).
    ///
    /// # Errors
    /// `NotFound` when it was evicted meanwhile.
    pub fn peek_mut(&mut self, id: i32) -> Result<&mut Session, SessionError> {
        self.sessions.get_mut(&id).ok_or(SessionError::NotFound)
    }
}

impl Session {
    /// Adds or updates a partition (an incremental request lists partitions whose fetch state
    /// changed, or that are new to the session).
    pub fn upsert(&mut self, p: SessionPartition) {
        match self
            .partitions
            .iter_mut()
            .find(|q| q.topic_id == p.topic_id && q.topic == p.topic && q.partition == p.partition)
        {
            Some(q) => {
                q.fetch_offset = p.fetch_offset;
                q.partition_max_bytes = p.partition_max_bytes;
                q.current_leader_epoch = p.current_leader_epoch;
                q.last_fetched_epoch = p.last_fetched_epoch;
            }
            None => self.partitions.push(p),
        }
    }

    /// Drops a partition the client no longer wants.
    pub fn forget(&mut self, topic: &str, topic_id: Uuid, partition: i32) {
        self.partitions.retain(|q| !(q.topic == topic && q.topic_id == topic_id && q.partition == partition));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(partition: i32, fetch_offset: i64) -> SessionPartition {
        SessionPartition {
            topic: "t".into(),
            topic_id: Uuid::nil(),
            partition,
            fetch_offset,
            partition_max_bytes: 1024,
            current_leader_epoch: -1,
            last_fetched_epoch: -1,
            last_sent: None,
        }
    }

    #[test]
    fn epochs_advance_and_stale_epochs_are_refused() {
        let mut cache = SessionCache::default();
        let id = cache.create(vec![part(0, 0), part(1, 0)]);
        assert!(id > 0);
        let s = cache.get_mut(id, 1).expect("epoch 1");
        s.upsert(part(0, 10));
        s.forget("t", Uuid::nil(), 1);
        assert_eq!(s.partitions, vec![part(0, 10)]);
        assert_eq!(cache.get_mut(id, 1).err(), Some(SessionError::InvalidEpoch));
        assert!(cache.get_mut(id, 2).is_ok());
        assert_eq!(cache.get_mut(id + 1, 1).err(), Some(SessionError::NotFound));
        cache.remove(id);
        assert_eq!(cache.get_mut(id, 3).err(), Some(SessionError::NotFound));
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut cache = SessionCache::default();
        let first = cache.create(vec![]);
        for _ in 0..SESSION_SLOTS {
            cache.create(vec![]);
        }
        assert_eq!(cache.sessions.len(), SESSION_SLOTS);
        assert_eq!(cache.get_mut(first, 1).err(), Some(SessionError::NotFound), "the least recently used session went");
    }
}
