//! The records a group coordinator writes to `__consumer_offsets`, and their byte encoding.
//!
//! Two kinds, each a (key, value) pair; a record with no value is a tombstone, so that log
//! compaction keeps only the latest value per key, as in Kafka:
//!
//! - OffsetCommit, keyed by (group, topic, partition): the committed offset.
//! - GroupMetadata, keyed by group: a snapshot of the group after a rebalance (generation,
//!   protocol, leader, members with their subscription and assignment).
//!
//! The encoding is Sluice's own (not Kafka's schema), compact and versioned. Integers are
//! big-endian; `str` is a u32 length and UTF-8; `nstr` is an i32 length (-1 = null) and UTF-8;
//! `bytes` is a u32 length and the raw bytes.
//!
//! ```text
//! key   := type:u8 version:u8 body
//!   type 1 (offset commit),  version 0: group:str topic:str partition:i32
//!   type 2 (group metadata), version 0: group:str
//! value := type:u8 version:u8 body            (no value: tombstone)
//!   type 1, version 0: offset:i64 leader_epoch:i32 metadata:str commit_timestamp_ms:i64
//!   type 2, version 0: protocol_type:str generation_id:i32 protocol:nstr leader:nstr
//!                      state_timestamp_ms:i64 member_count:u32 member*
//!     member := member_id:str group_instance_id:nstr client_id:str client_host:str
//!               rebalance_timeout_ms:i32 session_timeout_ms:i32 subscription:bytes
//!               assignment:bytes
//! ```
//!
//! A decoder meets bytes written by any version of Sluice, or damaged ones: it checks every
//! length against what is left before allocating, and rejects unknown types, unknown versions
//! and trailing bytes rather than guess.

use bytes::Bytes;

const TYPE_OFFSET: u8 = 1;
const TYPE_GROUP: u8 = 2;
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
    Offset {
        group_id: String,
        topic: String,
        partition: i32,
    },
    Group {
        group_id: String,
    },
}

impl RecordKey {
    pub fn group_id(&self) -> &str {
        match self {
            Self::Offset { group_id, .. } | Self::Group { group_id } => group_id,
        }
    }

    fn record_type(&self) -> u8 {
        match self {
            Self::Offset { .. } => TYPE_OFFSET,
            Self::Group { .. } => TYPE_GROUP,
        }
    }
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
}

impl RecordValue {
    fn record_type(&self) -> u8 {
        match self {
            Self::Offset(_) => TYPE_OFFSET,
            Self::Group(_) => TYPE_GROUP,
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
        Self {
            key: offset_key(group_id, tp),
            value: Some(RecordValue::Offset(value)),
        }
    }

    /// Deletes a committed offset.
    pub fn offset_tombstone(group_id: &str, tp: &super::TopicPartition) -> Self {
        Self {
            key: offset_key(group_id, tp),
            value: None,
        }
    }

    /// Deletes a group's metadata.
    pub fn group_tombstone(group_id: &str) -> Self {
        Self {
            key: RecordKey::Group {
                group_id: group_id.to_owned(),
            },
            value: None,
        }
    }
}

fn offset_key(group_id: &str, tp: &super::TopicPartition) -> RecordKey {
    RecordKey::Offset {
        group_id: group_id.to_owned(),
        topic: tp.topic.clone(),
        partition: tp.partition,
    }
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
            return Err(RecordError::TypeMismatch {
                key: key.record_type(),
                value: v.record_type(),
            });
        }
    }
    Ok(Record { key, value })
}

fn encode_key(key: &RecordKey) -> Result<Vec<u8>, RecordError> {
    let mut w = Writer(vec![key.record_type(), VERSION_0]);
    match key {
        RecordKey::Offset {
            group_id,
            topic,
            partition,
        } => {
            w.str(group_id)?;
            w.str(topic)?;
            w.i32(*partition);
        }
        RecordKey::Group { group_id } => w.str(group_id)?,
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

fn decode_key(bytes: &[u8]) -> Result<RecordKey, RecordError> {
    let mut r = Reader(bytes);
    let record_type = r.header()?;
    let key = match record_type {
        TYPE_OFFSET => RecordKey::Offset {
            group_id: r.str()?,
            topic: r.str()?,
            partition: r.i32()?,
        },
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
    Ok(GroupValue {
        protocol_type,
        generation_id,
        protocol_name,
        leader_id,
        state_timestamp_ms,
        members,
    })
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
        if record_type != TYPE_OFFSET && record_type != TYPE_GROUP {
            return Err(RecordError::UnknownType(record_type));
        }
        if version != VERSION_0 {
            return Err(RecordError::UnsupportedVersion {
                record_type,
                version,
            });
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
            key: RecordKey::Group {
                group_id: "g".into(),
            },
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
        let tp = TopicPartition {
            topic: "t".into(),
            partition: 3,
        };
        let offset = OffsetValue {
            offset: 42,
            leader_epoch: 5,
            metadata: "m€".into(),
            commit_timestamp_ms: 9,
        };
        let records = vec![
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
        assert!(matches!(
            decode(&newer, None),
            Err(RecordError::UnsupportedVersion { .. })
        ));
        assert_eq!(decode(&[9, 0], None), Err(RecordError::UnknownType(9)));
        let (offset_key, _) = encode(&Record::offset_tombstone(
            "g",
            &TopicPartition {
                topic: "t".into(),
                partition: 0,
            },
        ))
        .unwrap();
        assert!(matches!(
            decode(&offset_key, Some(&v)),
            Err(RecordError::TypeMismatch { .. })
        ));
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
