//! The records a group coordinator writes to `__consumer_offsets`, and their byte encoding.
//!
//! Each record is a (key, value) pair; a record with no value is a tombstone, so that log
//! compaction keeps only the latest value per key, as in Kafka:
//!
//! - OffsetCommit, keyed by (group, topic, partition): the committed offset.
//! - GroupMetadata, keyed by group: a snapshot of a classic group after a rebalance (generation,
//!   protocol, leader, members with their subscription and assignment).
//! - KIP-848 consumer groups, as Kafka splits them (its ConsumerGroupMetadata,
//!   ConsumerGroupMemberMetadata + ConsumerGroupCurrentMemberAssignment, and
//!   ConsumerGroupTargetAssignmentMember records; Sluice folds a member's metadata and its current
//!   assignment into one record, and the group epoch, the target assignment epoch and the
//!   subscribed topics' partition counts into another):
//!   - ConsumerGroup, keyed by group: group epoch, assignment epoch, partition counts;
//!   - ConsumerMember, keyed by (group, member): subscription and current assignment;
//!   - ConsumerTarget, keyed by (group, member): the member's target assignment.
//!
//! The encoding is Sluice's own (not Kafka's schema), compact and versioned. Integers are
//! big-endian; `str` is a u32 length and UTF-8; `nstr` is an i32 length (-1 = null) and UTF-8;
//! `bytes` is a u32 length and the raw bytes.
//!
//! ```text
//! key   := type:u8 version:u8 body
//!   type 1 (offset commit),  version 0: group:str topic:str partition:i32
//!   type 2 (group metadata), version 0: group:str
//!   type 3 (consumer group), version 0: group:str
//!   type 4 (consumer member), version 0: group:str member:str
//!   type 5 (consumer target), version 0: group:str member:str
//! value := type:u8 version:u8 body            (no value: tombstone)
//!   type 1, version 0: offset:i64 leader_epoch:i32 metadata:str commit_timestamp_ms:i64
//!   type 2, version 0: protocol_type:str generation_id:i32 protocol:nstr leader:nstr
//!                      state_timestamp_ms:i64 member_count:u32 member*
//!     member := member_id:str group_instance_id:nstr client_id:str client_host:str
//!               rebalance_timeout_ms:i32 session_timeout_ms:i32 subscription:bytes
//!               assignment:bytes
//!   type 3, version 0: group_epoch:i32 assignment_epoch:i32 count:u32 (topic:str partitions:i32)*
//!   type 4, version 0: instance_id:nstr rack_id:nstr client_id:str client_host:str
//!                      rebalance_timeout_ms:i32 server_assignor:nstr count:u32 topic:str*
//!                      member_epoch:i32 previous_member_epoch:i32 state:u8
//!                      assigned:assignment pending_revocation:assignment
//!   type 5, version 0: assignment
//!     assignment := count:u32 (topic:str count:u32 partition:i32*)*
//! ```
//!
//! A decoder meets bytes written by any version of Sluice, or damaged ones: it checks every
//! length against what is left before allocating, and rejects unknown types, unknown versions
//! and trailing bytes rather than guess.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

const TYPE_OFFSET: u8 = 1;
const TYPE_GROUP: u8 = 2;
const TYPE_CONSUMER_GROUP: u8 = 3;
const TYPE_CONSUMER_MEMBER: u8 = 4;
const TYPE_CONSUMER_TARGET: u8 = 5;
const VERSION_0: u8 = 0;

/// Why a record could not be encoded or decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record truncated")]
    Truncated,
    #[error("unknown record type {0}")]
    UnknownType(u8),
    #[error("unsupported version {version} of record type {record_type}")]
    UnsupportedVersion { record_type: u8, version: u8 },
    #[error("a string field is not UTF-8")]
    InvalidUtf8,
    #[error("{0} bytes after the end of the record")]
    TrailingBytes(usize),
    #[error("the key is of type {key} but the value of type {value}")]
    TypeMismatch { key: u8, value: u8 },
    #[error("a field is longer than the format allows")]
    FieldTooLong,
}

/// What a record is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RecordKey {
    Offset { group_id: String, topic: String, partition: i32 },
    Group { group_id: String },
    ConsumerGroup { group_id: String },
    ConsumerMember { group_id: String, member_id: String },
    ConsumerTarget { group_id: String, member_id: String },
}

impl RecordKey {
    pub fn group_id(&self) -> &str {
        match self {
            Self::Offset { group_id, .. }
            | Self::Group { group_id }
            | Self::ConsumerGroup { group_id }
            | Self::ConsumerMember { group_id, .. }
            | Self::ConsumerTarget { group_id, .. } => group_id,
        }
    }

    fn record_type(&self) -> u8 {
        match self {
            Self::Offset { .. } => TYPE_OFFSET,
            Self::Group { .. } => TYPE_GROUP,
            Self::ConsumerGroup { .. } => TYPE_CONSUMER_GROUP,
            Self::ConsumerMember { .. } => TYPE_CONSUMER_MEMBER,
            Self::ConsumerTarget { .. } => TYPE_CONSUMER_TARGET,
        }
    }
}

/// A KIP-848 assignment: topic name → partitions.
pub type TopicAssignment = BTreeMap<String, BTreeSet<i32>>;

/// A consumer group's epochs and the partition counts its target assignment was computed from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsumerGroupValue {
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub partition_counts: BTreeMap<String, i32>,
}

/// A consumer group member: what it sent and where its reconciliation stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsumerMemberValue {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub server_assignor: Option<String>,
    pub subscribed_topics: BTreeSet<String>,
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    /// 0 stable, 1 unrevoked partitions, 2 unreleased partitions (Kafka's `MemberState`).
    pub state: u8,
    pub assigned: TopicAssignment,
    pub pending_revocation: TopicAssignment,
}

/// A committed offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    /// -1 when unknown.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// A member inside a [`GroupValue`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the group's chosen protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group snapshot: Empty if it has no members, Stable otherwise, when replayed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupValue {
    /// "" for none.
    pub protocol_type: String,
    pub generation_id: i32,
    pub protocol_name: Option<String>,
    pub leader_id: Option<String>,
    /// When the group last changed state; -1 for unknown.
    pub state_timestamp_ms: i64,
    pub members: Vec<MemberValue>,
}

/// A record's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordValue {
    Offset(OffsetValue),
    Group(GroupValue),
    ConsumerGroup(ConsumerGroupValue),
    ConsumerMember(ConsumerMemberValue),
    ConsumerTarget(TopicAssignment),
}

impl RecordValue {
    fn record_type(&self) -> u8 {
        match self {
            Self::Offset(_) => TYPE_OFFSET,
            Self::Group(_) => TYPE_GROUP,
            Self::ConsumerGroup(_) => TYPE_CONSUMER_GROUP,
            Self::ConsumerMember(_) => TYPE_CONSUMER_MEMBER,
            Self::ConsumerTarget(_) => TYPE_CONSUMER_TARGET,
        }
    }
}

/// One record of `__consumer_offsets`; `value: None` is a tombstone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub key: RecordKey,
    pub value: Option<RecordValue>,
}

impl Record {
    /// A committed offset.
    pub fn offset(tp: &super::TopicPartition, group_id: &str, value: OffsetValue) -> Self {
        Self { key: offset_key(group_id, tp), value: Some(RecordValue::Offset(value)) }
    }

    /// Deletes a committed offset.
    pub fn offset_tombstone(group_id: &str, tp: &super::TopicPartition) -> Self {
        Self { key: offset_key(group_id, tp), value: None }
    }

    /// Deletes a group's metadata.
    pub fn group_tombstone(group_id: &str) -> Self {
        Self { key: RecordKey::Group { group_id: group_id.to_owned() }, value: None }
    }
}

fn offset_key(group_id: &str, tp: &super::TopicPartition) -> RecordKey {
    RecordKey::Offset { group_id: group_id.to_owned(), topic: tp.topic.clone(), partition: tp.partition }
}

/// Encodes a record as (key bytes, value bytes or None for a tombstone).
///
/// # Errors
/// [`RecordError::FieldTooLong`] if a field exceeds 4 GiB (frame limits make that impossible).
pub fn encode(record: &Record) -> Result<(Vec<u8>, Option<Vec<u8>>), RecordError> {
    let key = encode_key(&record.key)?;
    let value = record.value.as_ref().map(encode_value).transpose()?;
    Ok((key, value))
}

/// Decodes a record from its key and value bytes.
///
/// # Errors
/// When the bytes are truncated, of an unknown type or version, not UTF-8 where text is
/// expected, followed by trailing bytes, or when key and value disagree on the type.
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Record, RecordError> {
    let key = decode_key(key)?;
    let value = value.map(decode_value).transpose()?;
    if let Some(v) = &value {
        if v.record_type() != key.record_type() {
            return Err(RecordError::TypeMismatch { key: key.record_type(), value: v.record_type() });
        }
    }
    Ok(Record { key, value })
}

fn encode_key(key: &RecordKey) -> Result<Vec<u8>, RecordError> {
    let mut w = Writer(vec![key.record_type(), VERSION_0]);
    match key {
        RecordKey::Offset { group_id, topic, partition } => {
            w.str(group_id)?;
            w.str(topic)?;
            w.i32(*partition);
        }
        RecordKey::Group { group_id } | RecordKey::ConsumerGroup { group_id } => w.str(group_id)?,
        RecordKey::ConsumerMember { group_id, member_id } | RecordKey::ConsumerTarget { group_id, member_id } => {
            w.str(group_id)?;
            w.str(member_id)?;
        }
    }
    Ok(w.0)
}

fn encode_value(value: &RecordValue) -> Result<Vec<u8>, RecordError> {
    let mut w = Writer(vec![value.record_type(), VERSION_0]);
    match value {
        RecordValue::Offset(v) => {
            w.i64(v.offset);
            w.i32(v.leader_epoch);
            w.str(&v.metadata)?;
            w.i64(v.commit_timestamp_ms);
        }
        RecordValue::Group(v) => encode_group(&mut w, v)?,
        RecordValue::ConsumerGroup(v) => {
            w.i32(v.group_epoch);
            w.i32(v.assignment_epoch);
            w.len(v.partition_counts.len())?;
            for (topic, count) in &v.partition_counts {
                w.str(topic)?;
                w.i32(*count);
            }
        }
        RecordValue::ConsumerMember(v) => encode_consumer_member(&mut w, v)?,
        RecordValue::ConsumerTarget(a) => w.assignment(a)?,
    }
    Ok(w.0)
}

fn encode_group(w: &mut Writer, v: &GroupValue) -> Result<(), RecordError> {
    w.str(&v.protocol_type)?;
    w.i32(v.generation_id);
    w.nstr(v.protocol_name.as_deref())?;
    w.nstr(v.leader_id.as_deref())?;
    w.i64(v.state_timestamp_ms);
    w.len(v.members.len())?;
    for m in &v.members {
        w.str(&m.member_id)?;
        w.nstr(m.group_instance_id.as_deref())?;
        w.str(&m.client_id)?;
        w.str(&m.client_host)?;
        w.i32(m.rebalance_timeout_ms);
        w.i32(m.session_timeout_ms);
        w.bytes(&m.subscription)?;
        w.bytes(&m.assignment)?;
    }
    Ok(())
}

fn encode_consumer_member(w: &mut Writer, v: &ConsumerMemberValue) -> Result<(), RecordError> {
    w.nstr(v.instance_id.as_deref())?;
    w.nstr(v.rack_id.as_deref())?;
    w.str(&v.client_id)?;
    w.str(&v.client_host)?;
    w.i32(v.rebalance_timeout_ms);
    w.nstr(v.server_assignor.as_deref())?;
    w.len(v.subscribed_topics.len())?;
    for topic in &v.subscribed_topics {
        w.str(topic)?;
    }
    w.i32(v.member_epoch);
    w.i32(v.previous_member_epoch);
    w.0.push(v.state);
    w.assignment(&v.assigned)?;
    w.assignment(&v.pending_revocation)
}

fn decode_consumer_member(r: &mut Reader<'_>) -> Result<ConsumerMemberValue, RecordError> {
    let instance_id = r.nstr()?;
    let rack_id = r.nstr()?;
    let client_id = r.str()?;
    let client_host = r.str()?;
    let rebalance_timeout_ms = r.i32()?;
    let server_assignor = r.nstr()?;
    let mut subscribed_topics = BTreeSet::new();
    for _ in 0..r.u32()? {
        subscribed_topics.insert(r.str()?);
    }
    Ok(ConsumerMemberValue {
        instance_id,
        rack_id,
        client_id,
        client_host,
        rebalance_timeout_ms,
        server_assignor,
        subscribed_topics,
        member_epoch: r.i32()?,
        previous_member_epoch: r.i32()?,
        state: r.array::<1>()?[0],
        assigned: r.assignment()?,
        pending_revocation: r.assignment()?,
    })
}

fn decode_key(bytes: &[u8]) -> Result<RecordKey, RecordError> {
    let mut r = Reader(bytes);
    let record_type = r.header()?;
    let key = match record_type {
        TYPE_OFFSET => RecordKey::Offset { group_id: r.str()?, topic: r.str()?, partition: r.i32()? },
        TYPE_CONSUMER_GROUP => RecordKey::ConsumerGroup { group_id: r.str()? },
        TYPE_CONSUMER_MEMBER => RecordKey::ConsumerMember { group_id: r.str()?, member_id: r.str()? },
        TYPE_CONSUMER_TARGET => RecordKey::ConsumerTarget { group_id: r.str()?, member_id: r.str()? },
        _ => RecordKey::Group { group_id: r.str()? },
    };
    r.finish()?;
    Ok(key)
}

fn decode_value(bytes: &[u8]) -> Result<RecordValue, RecordError> {
    let mut r = Reader(bytes);
    let value = match r.header()? {
        TYPE_OFFSET => RecordValue::Offset(OffsetValue {
            offset: r.i64()?,
            leader_epoch: r.i32()?,
            metadata: r.str()?,
            commit_timestamp_ms: r.i64()?,
        }),
        TYPE_CONSUMER_GROUP => {
            let group_epoch = r.i32()?;
            let assignment_epoch = r.i32()?;
            let mut partition_counts = BTreeMap::new();
            for _ in 0..r.u32()? {
                let topic = r.str()?;
                partition_counts.insert(topic, r.i32()?);
            }
            RecordValue::ConsumerGroup(ConsumerGroupValue { group_epoch, assignment_epoch, partition_counts })
        }
        TYPE_CONSUMER_MEMBER => RecordValue::ConsumerMember(decode_consumer_member(&mut r)?),
        TYPE_CONSUMER_TARGET => RecordValue::ConsumerTarget(r.assignment()?),
        _ => RecordValue::Group(decode_group(&mut r)?),
    };
    r.finish()?;
    Ok(value)
}

fn decode_group(r: &mut Reader<'_>) -> Result<GroupValue, RecordError> {
    let protocol_type = r.str()?;
    let generation_id = r.i32()?;
    let protocol_name = r.nstr()?;
    let leader_id = r.nstr()?;
    let state_timestamp_ms = r.i64()?;
    let count = r.u32()?;
    // No capacity from the wire count: each member is read (and bounds-checked) before it is kept.
    let mut members = Vec::new();
    for _ in 0..count {
        members.push(MemberValue {
            member_id: r.str()?,
            group_instance_id: r.nstr()?,
            client_id: r.str()?,
            client_host: r.str()?,
            rebalance_timeout_ms: r.i32()?,
            session_timeout_ms: r.i32()?,
            subscription: r.bytes()?,
            assignment: r.bytes()?,
        });
    }
    Ok(GroupValue { protocol_type, generation_id, protocol_name, leader_id, state_timestamp_ms, members })
}

struct Writer(Vec<u8>);

impl Writer {
    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    fn len(&mut self, len: usize) -> Result<(), RecordError> {
        let len = u32::try_from(len).map_err(|_| RecordError::FieldTooLong)?;
        self.0.extend_from_slice(&len.to_be_bytes());
        Ok(())
    }

    fn bytes(&mut self, v: &[u8]) -> Result<(), RecordError> {
        self.len(v.len())?;
        self.0.extend_from_slice(v);
        Ok(())
    }

    fn str(&mut self, v: &str) -> Result<(), RecordError> {
        self.bytes(v.as_bytes())
    }

    fn assignment(&mut self, a: &TopicAssignment) -> Result<(), RecordError> {
        self.len(a.len())?;
        for (topic, partitions) in a {
            self.str(topic)?;
            self.len(partitions.len())?;
            for p in partitions {
                self.i32(*p);
            }
        }
        Ok(())
    }

    fn nstr(&mut self, v: Option<&str>) -> Result<(), RecordError> {
        match v {
            None => self.i32(-1),
            Some(s) => {
                let len = i32::try_from(s.len()).map_err(|_| RecordError::FieldTooLong)?;
                self.i32(len);
                self.0.extend_from_slice(s.as_bytes());
            }
        }
        Ok(())
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], RecordError> {
        if n > self.0.len() {
            return Err(RecordError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn header(&mut self) -> Result<u8, RecordError> {
        let [record_type, version] = self.array::<2>()?;
        if !(TYPE_OFFSET..=TYPE_CONSUMER_TARGET).contains(&record_type) {
            return Err(RecordError::UnknownType(record_type));
        }
        if version != VERSION_0 {
            return Err(RecordError::UnsupportedVersion { record_type, version });
        }
        Ok(record_type)
    }

    fn i32(&mut self) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, RecordError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn bytes(&mut self) -> Result<Bytes, RecordError> {
        let len = usize::try_from(self.u32()?).map_err(|_| RecordError::Truncated)?;
        Ok(Bytes::copy_from_slice(self.take(len)?))
    }

    fn utf8(&mut self, len: usize) -> Result<String, RecordError> {
        let raw = self.take(len)?;
        String::from_utf8(raw.to_vec()).map_err(|_| RecordError::InvalidUtf8)
    }

    fn str(&mut self) -> Result<String, RecordError> {
        let len = usize::try_from(self.u32()?).map_err(|_| RecordError::Truncated)?;
        self.utf8(len)
    }

    /// No capacity from wire counts: every element is read (bounds-checked) before it is kept.
    fn assignment(&mut self) -> Result<TopicAssignment, RecordError> {
        let mut a = TopicAssignment::new();
        for _ in 0..self.u32()? {
            let topic = self.str()?;
            let mut partitions = BTreeSet::new();
            for _ in 0..self.u32()? {
                partitions.insert(self.i32()?);
            }
            a.insert(topic, partitions);
        }
        Ok(a)
    }

    fn nstr(&mut self) -> Result<Option<String>, RecordError> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| RecordError::Truncated)?;
        self.utf8(len).map(Some)
    }

    fn finish(&self) -> Result<(), RecordError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(RecordError::TrailingBytes(self.0.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::group::TopicPartition;

    fn group_record() -> Record {
        Record {
            key: RecordKey::Group { group_id: "g".into() },
            value: Some(RecordValue::Group(GroupValue {
                protocol_type: "consumer".into(),
                generation_id: 7,
                protocol_name: Some("range".into()),
                leader_id: Some("m1".into()),
                state_timestamp_ms: 123,
                members: vec![MemberValue {
                    member_id: "m1".into(),
                    group_instance_id: Some("i1".into()),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 60_000,
                    session_timeout_ms: 10_000,
                    subscription: Bytes::from_static(b"sub"),
                    assignment: Bytes::from_static(b"asg"),
                }],
            })),
        }
    }

    #[test]
    fn round_trips_every_kind() {
        let tp = TopicPartition { topic: "t".into(), partition: 3 };
        let offset = OffsetValue { offset: 42, leader_epoch: 5, metadata: "m€".into(), commit_timestamp_ms: 9 };
        let assignment: TopicAssignment = [("t".to_string(), BTreeSet::from([0, 2]))].into();
        let member = ConsumerMemberValue {
            instance_id: Some("i".into()),
            rack_id: None,
            client_id: "c".into(),
            client_host: "/h".into(),
            rebalance_timeout_ms: 300_000,
            server_assignor: Some("range".into()),
            subscribed_topics: BTreeSet::from(["t".to_string(), "u".to_string()]),
            member_epoch: 4,
            previous_member_epoch: 3,
            state: 1,
            assigned: assignment.clone(),
            pending_revocation: [("u".to_string(), BTreeSet::from([1]))].into(),
        };
        let consumer_key = |k: fn(String, String) -> RecordKey| k("g".into(), "m".into());
        let records = vec![
            Record {
                key: RecordKey::ConsumerGroup { group_id: "g".into() },
                value: Some(RecordValue::ConsumerGroup(ConsumerGroupValue {
                    group_epoch: 5,
                    assignment_epoch: 5,
                    partition_counts: [("t".to_string(), 3)].into(),
                })),
            },
            Record {
                key: consumer_key(|group_id, member_id| RecordKey::ConsumerMember { group_id, member_id }),
                value: Some(RecordValue::ConsumerMember(member)),
            },
            Record {
                key: consumer_key(|group_id, member_id| RecordKey::ConsumerTarget { group_id, member_id }),
                value: Some(RecordValue::ConsumerTarget(assignment)),
            },
            Record {
                key: consumer_key(|group_id, member_id| RecordKey::ConsumerTarget { group_id, member_id }),
                value: None,
            },
            group_record(),
            Record::group_tombstone("g"),
            Record::offset(&tp, "g", offset),
            Record::offset_tombstone("g", &tp),
        ];
        for record in records {
            let (k, v) = encode(&record).unwrap();
            assert_eq!(decode(&k, v.as_deref()).unwrap(), record);
        }
    }

    #[test]
    fn rejects_truncation_trailing_bytes_and_unknown_versions() {
        let (k, v) = encode(&group_record()).unwrap();
        let v = v.unwrap();
        for cut in 0..v.len() {
            assert!(decode(&k, Some(&v[..cut])).is_err(), "cut at {cut}");
        }
        let mut long = v.clone();
        long.push(0);
        assert_eq!(decode(&k, Some(&long)), Err(RecordError::TrailingBytes(1)));
        let mut newer = k.clone();
        newer[1] = 1;
        assert!(matches!(decode(&newer, None), Err(RecordError::UnsupportedVersion { .. })));
        assert_eq!(decode(&[9, 0], None), Err(RecordError::UnknownType(9)));
        let (offset_key, _) =
            encode(&Record::offset_tombstone("g", &TopicPartition { topic: "t".into(), partition: 0 })).unwrap();
        assert!(matches!(decode(&offset_key, Some(&v)), Err(RecordError::TypeMismatch { .. })));
    }

    #[test]
    fn huge_counts_do_not_allocate() {
        // A group value claiming 4 billion members, with nothing after the count.
        let mut v = vec![TYPE_GROUP, VERSION_0];
        v.extend_from_slice(&0u32.to_be_bytes()); // protocol type ""
        v.extend_from_slice(&1i32.to_be_bytes());
        v.extend_from_slice(&(-1i32).to_be_bytes());
        v.extend_from_slice(&(-1i32).to_be_bytes());
        v.extend_from_slice(&0i64.to_be_bytes());
        v.extend_from_slice(&u32::MAX.to_be_bytes());
        let (k, _) = encode(&Record::group_tombstone("g")).unwrap();
        assert_eq!(decode(&k, Some(&v)), Err(RecordError::Truncated));
    }
}
