//! Kafka RecordBatch v2 over raw bytes: parse the 61-byte header, validate a produce request's
//! record set without decompressing it, and rewrite the header fields the broker owns.
//!
//! Everything here is a pure function over a byte slice: no I/O, no allocation sized from a wire
//! value, no arithmetic on wire values that can overflow.

use super::error::{Result, StorageError};

/// Bytes before the records of a batch.
pub const HEADER_LEN: usize = 61;
/// Bytes before the `batchLength` count starts counting (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;
/// The only message format Sluice stores.
pub const MAGIC_V2: i8 = 2;

const BATCH_LENGTH_AT: usize = 8;
const LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;
const MAX_CODEC: u8 = 4;

/// The fixed header of one v2 record batch, as read off the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after the `batchLength` field itself.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Compression codec: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> u8 {
        // Masked to three bits, so the cast cannot truncate.
        (self.attributes & COMPRESSION_MASK) as u8
    }

    /// True when the timestamps are `LogAppendTime` (set by the broker), not `CreateTime`.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// Whole batch size on disk: `batchLength + 12`. Never below `HEADER_LEN` once parsed.
    pub fn size(&self) -> usize {
        // parse_header rejected batch_length < HEADER_LEN - LOG_OVERHEAD, so this is positive.
        usize::try_from(self.batch_length).unwrap_or(0) + LOG_OVERHEAD
    }

    /// Offset of the batch's last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset.saturating_add(i64::from(self.last_offset_delta))
    }

    /// Sequence of the batch's last record, wrapping to 0 after `i32::MAX` as Kafka does.
    pub fn last_sequence(&self) -> i32 {
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }

    /// True when the batch comes from an idempotent or transactional producer.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
}

/// `sequence + delta`, wrapping past `i32::MAX` to 0 (Kafka's `incrementSequence`).
pub fn increment_sequence(sequence: i32, delta: i32) -> i32 {
    let sum = i64::from(sequence) + i64::from(delta);
    let wrapped = sum.rem_euclid(i64::from(i32::MAX) + 1);
    // rem_euclid by 2^31 gives 0..2^31, which fits i32.
    i32::try_from(wrapped).unwrap_or(0)
}

/// One batch found by [`validate_record_set`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    /// Where the batch starts inside the record set.
    pub position: usize,
    /// Whole batch size (`batchLength + 12`).
    pub size: usize,
    pub header: BatchHeader,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(x)
}

/// Reads the header at the start of `bytes`.
///
/// # Errors
///
/// `UnsupportedForMessageFormat` when the magic byte (at the same place in every format) is not
/// 2; `CorruptMessage` when fewer than 61 bytes are given or `batchLength` is too small to hold
/// the header.
pub fn parse_header(bytes: &[u8]) -> Result<BatchHeader> {
    if bytes.len() <= MAGIC_AT {
        return Err(StorageError::CorruptMessage);
    }
    let magic = i8::from_be_bytes([bytes[MAGIC_AT]]);
    if magic != MAGIC_V2 {
        return Err(StorageError::UnsupportedForMessageFormat(magic));
    }
    if bytes.len() < HEADER_LEN {
        return Err(StorageError::CorruptMessage);
    }
    let batch_length = be_i32(bytes, BATCH_LENGTH_AT);
    if i64::from(batch_length) < (HEADER_LEN - LOG_OVERHEAD) as i64 {
        return Err(StorageError::CorruptMessage);
    }
    Ok(BatchHeader {
        base_offset: be_i64(bytes, 0),
        batch_length,
        partition_leader_epoch: be_i32(bytes, LEADER_EPOCH_AT),
        magic,
        crc: u32::from_be_bytes([bytes[17], bytes[18], bytes[19], bytes[20]]),
        attributes: be_i16(bytes, ATTRIBUTES_AT),
        last_offset_delta: be_i32(bytes, LAST_OFFSET_DELTA_AT),
        base_timestamp: be_i64(bytes, BASE_TIMESTAMP_AT),
        max_timestamp: be_i64(bytes, MAX_TIMESTAMP_AT),
        producer_id: be_i64(bytes, PRODUCER_ID_AT),
        producer_epoch: be_i16(bytes, PRODUCER_EPOCH_AT),
        base_sequence: be_i32(bytes, BASE_SEQUENCE_AT),
        record_count: be_i32(bytes, RECORD_COUNT_AT),
    })
}

/// CRC-32C of a whole batch (`bytes` is exactly one batch), as stored at byte 17.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_AT..])
}

/// Splits a produce request's record set into batches and checks each one fully, without
/// decompressing anything.
///
/// # Errors
///
/// `InvalidRecord` for an empty set, a count/offset-delta mismatch, a control batch, an
/// idempotent batch without a sequence, or (uncompressed only) a record area that does not parse;
/// `CorruptMessage` for a truncated batch or a bad CRC; `MessageTooLarge` when one batch exceeds
/// `max_message_bytes`; `UnsupportedForMessageFormat`; `UnsupportedCompressionType`.
pub fn validate_record_set(bytes: &[u8], max_message_bytes: i32) -> Result<Vec<BatchInfo>> {
    validate_set(bytes, Origin::Client { max_message_bytes })
}

/// Splits a record set fetched from the partition leader into batches and checks each one as
/// [`validate_record_set`] does, except that there is no size limit (the leader already applied
/// its `max.message.bytes`, which may differ from ours) and control batches are accepted (the
/// leader writes them itself).
///
/// # Errors
///
/// As [`validate_record_set`], without `MessageTooLarge`.
pub fn validate_replicated_set(bytes: &[u8]) -> Result<Vec<BatchInfo>> {
    validate_set(bytes, Origin::Leader)
}

/// Who wrote a record set, which decides the rules it must follow.
#[derive(Debug, Clone, Copy)]
enum Origin {
    Client { max_message_bytes: i32 },
    Leader,
}

fn validate_set(bytes: &[u8], origin: Origin) -> Result<Vec<BatchInfo>> {
    if bytes.is_empty() {
        return Err(StorageError::InvalidRecord("empty record set".into()));
    }
    let mut batches = Vec::new();
    let mut position = 0;
    while position < bytes.len() {
        let header = validate_batch(&bytes[position..], origin)?;
        let size = header.size();
        batches.push(BatchInfo { position, size, header });
        position += size;
    }
    Ok(batches)
}

/// Checks the batch at the start of `rest` and returns its header.
fn validate_batch(rest: &[u8], origin: Origin) -> Result<BatchHeader> {
    let header = parse_header(rest)?;
    let size = header.size();
    if let Origin::Client { max_message_bytes } = origin {
        if size as u64 > u64::try_from(max_message_bytes).unwrap_or(0) {
            return Err(StorageError::MessageTooLarge { size, max: max_message_bytes });
        }
    }
    if size > rest.len() {
        return Err(StorageError::CorruptMessage);
    }
    let batch = &rest[..size];
    if compute_crc(batch) != header.crc {
        return Err(StorageError::CorruptMessage);
    }
    if header.compression() > MAX_CODEC {
        return Err(StorageError::UnsupportedCompressionType(header.compression()));
    }
    check_header_rules(&header, matches!(origin, Origin::Leader))?;
    if header.compression() == 0 {
        for (index, record) in RecordWalker::new(batch)?.enumerate() {
            if i64::from(record?.offset_delta) != index as i64 {
                return Err(invalid("record offset delta does not match its position"));
            }
        }
    }
    Ok(header)
}

fn invalid(reason: &str) -> StorageError {
    StorageError::InvalidRecord(reason.to_owned())
}

/// The rules a batch header must follow beyond its framing; only a leader may send control
/// batches (which carry a producer id but no sequence).
fn check_header_rules(header: &BatchHeader, control_allowed: bool) -> Result<()> {
    if header.record_count < 1 {
        return Err(invalid("batch has no records"));
    }
    if i64::from(header.last_offset_delta) != i64::from(header.record_count) - 1 {
        return Err(invalid("lastOffsetDelta does not match recordCount"));
    }
    if header.is_control() && !control_allowed {
        return Err(invalid("clients may not write control batches"));
    }
    if header.has_producer_id() && header.base_sequence < 0 && !header.is_control() {
        return Err(invalid("idempotent batch without a base sequence"));
    }
    Ok(())
}

/// Writes the broker-assigned base offset and partition leader epoch into a batch header.
/// Neither field is covered by the CRC, so the batch stays valid.
///
/// # Panics
///
/// When `batch` is shorter than a header: callers pass only validated batches.
pub fn set_base_offset_and_epoch(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    assert!(batch.len() >= HEADER_LEN, "set_base_offset_and_epoch on a short batch");
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    batch[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Stamps a batch (`batch` is exactly one batch) with `LogAppendTime`: sets the timestamp-type
/// bit, sets `maxTimestamp` and `baseTimestamp` to `now_ms`, and recomputes the CRC.
///
/// Kafka's in-place path sets only `maxTimestamp`; consumers of a `LogAppendTime` batch read
/// `maxTimestamp` for every record, so also setting `baseTimestamp` changes nothing a client
/// sees and keeps `base + delta` meaningful for our own timestamp lookups.
///
/// # Panics
///
/// When `batch` is shorter than a header: callers pass only validated batches.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    assert!(batch.len() >= HEADER_LEN, "set_log_append_time on a short batch");
    let attributes = be_i16(batch, ATTRIBUTES_AT) | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8].copy_from_slice(&now_ms.to_be_bytes());
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// What the storage layer needs from one record of an uncompressed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMeta {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
}

/// Walks the records of one uncompressed batch, checking their structure as it goes: each
/// record's length prefix, its fields fitting that length exactly, the lengths summing to the
/// records area, and the count matching `recordCount`.
pub struct RecordWalker<'a> {
    area: &'a [u8],
    pos: usize,
    remaining: i32,
    failed: bool,
}

impl<'a> RecordWalker<'a> {
    /// Starts a walk over `batch` (exactly one batch, header included).
    ///
    /// # Errors
    ///
    /// Those of [`parse_header`], and `CorruptMessage` when `batch` is shorter than its header
    /// says.
    pub fn new(batch: &'a [u8]) -> Result<Self> {
        let header = parse_header(batch)?;
        if batch.len() < header.size() {
            return Err(StorageError::CorruptMessage);
        }
        let area = &batch[HEADER_LEN..header.size()];
        Ok(RecordWalker { area, pos: 0, remaining: header.record_count, failed: false })
    }

    fn next_record(&mut self) -> Result<RecordMeta> {
        let mut pos = self.pos;
        let length = read_varint(self.area, &mut pos)?;
        let length = usize::try_from(length).map_err(|_| invalid("negative record length"))?;
        let end = pos.checked_add(length).filter(|&e| e <= self.area.len());
        let end = end.ok_or_else(|| invalid("record overruns its batch"))?;
        let body = &self.area[pos..end];
        let meta = parse_record_body(body)?;
        self.pos = end;
        Ok(meta)
    }
}

impl Iterator for RecordWalker<'_> {
    type Item = Result<RecordMeta>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.remaining <= 0 {
            if self.pos != self.area.len() {
                self.failed = true;
                return Some(Err(invalid("records area longer than recordCount records")));
            }
            return None;
        }
        self.remaining -= 1;
        let item = self.next_record();
        self.failed = item.is_err();
        Some(item)
    }
}

/// Parses one record body (after its length prefix); every byte must be accounted for.
fn parse_record_body(body: &[u8]) -> Result<RecordMeta> {
    let mut pos = 1; // attributes: i8, unused in v2
    if body.is_empty() {
        return Err(invalid("empty record"));
    }
    let timestamp_delta = read_varlong(body, &mut pos)?;
    let offset_delta = read_varint(body, &mut pos)?;
    skip_bytes_field(body, &mut pos, true)?; // key
    skip_bytes_field(body, &mut pos, true)?; // value
    let headers = read_varint(body, &mut pos)?;
    if headers < 0 {
        return Err(invalid("negative header count"));
    }
    for _ in 0..headers {
        skip_bytes_field(body, &mut pos, false)?; // header key, never null
        skip_bytes_field(body, &mut pos, true)?; // header value
    }
    if pos != body.len() {
        return Err(invalid("record length does not match its fields"));
    }
    Ok(RecordMeta { offset_delta, timestamp_delta })
}

/// Skips a varint-length-prefixed byte field; `-1` means null where `nullable`.
fn skip_bytes_field(body: &[u8], pos: &mut usize, nullable: bool) -> Result<()> {
    let len = read_varint(body, pos)?;
    if len == -1 && nullable {
        return Ok(());
    }
    let len = usize::try_from(len).map_err(|_| invalid("negative field length"))?;
    let end = pos.checked_add(len).filter(|&e| e <= body.len());
    *pos = end.ok_or_else(|| invalid("field overruns its record"))?;
    Ok(())
}

/// Reads an unsigned LEB128 value of at most `max_bytes` bytes.
fn read_unsigned(buf: &[u8], pos: &mut usize, max_bytes: u32) -> Result<u64> {
    let mut value = 0u64;
    for i in 0..max_bytes {
        let byte = *buf.get(*pos).ok_or_else(|| invalid("truncated varint"))?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(invalid("varint too long"))
}

/// Reads a zigzag varint (Kafka `varint`, at most 5 bytes).
fn read_varint(buf: &[u8], pos: &mut usize) -> Result<i32> {
    let raw = read_unsigned(buf, pos, 5)?;
    let raw = u32::try_from(raw).map_err(|_| invalid("varint overflows 32 bits"))?;
    Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// Reads a zigzag varlong (Kafka `varlong`, at most 10 bytes).
fn read_varlong(buf: &[u8], pos: &mut usize) -> Result<i64> {
    let raw = read_unsigned(buf, pos, 10)?;
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Hand-built v2 batches for tests across `storage`.

    use super::*;

    /// Describes a batch to encode; `encode` fills in lengths, counts and the CRC.
    #[derive(Debug, Clone)]
    pub struct TestBatch {
        pub records: usize,
        pub value_len: usize,
        pub base_timestamp: i64,
        /// Per-record timestamp deltas; `0, 1, 2, ...` when empty.
        pub timestamp_deltas: Vec<i64>,
        pub producer_id: i64,
        pub producer_epoch: i16,
        pub base_sequence: i32,
        pub codec: u8,
    }

    impl TestBatch {
        pub fn new(records: usize) -> Self {
            TestBatch {
                records,
                value_len: 10,
                base_timestamp: 1_000,
                timestamp_deltas: Vec::new(),
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
                codec: 0,
            }
        }

        pub fn idempotent(mut self, producer_id: i64, epoch: i16, base_sequence: i32) -> Self {
            self.producer_id = producer_id;
            self.producer_epoch = epoch;
            self.base_sequence = base_sequence;
            self
        }

        fn delta(&self, i: usize) -> i64 {
            self.timestamp_deltas.get(i).copied().unwrap_or(i as i64)
        }

        pub fn encode(&self) -> Vec<u8> {
            let mut records = Vec::new();
            for i in 0..self.records {
                if self.codec == 0 {
                    encode_record(&mut records, i as i32, self.delta(i), self.value_len);
                } else {
                    records.resize(records.len() + self.value_len, 0xAB);
                }
            }
            let max_delta = (0..self.records).map(|i| self.delta(i)).max().unwrap_or(0);
            let mut b = Vec::with_capacity(HEADER_LEN + records.len());
            b.extend_from_slice(&0i64.to_be_bytes());
            b.extend_from_slice(&((HEADER_LEN - LOG_OVERHEAD + records.len()) as i32).to_be_bytes());
            b.extend_from_slice(&(-1i32).to_be_bytes());
            b.push(2);
            b.extend_from_slice(&[0; 4]);
            b.extend_from_slice(&i16::from(self.codec).to_be_bytes());
            b.extend_from_slice(&(self.records as i32 - 1).to_be_bytes());
            b.extend_from_slice(&self.base_timestamp.to_be_bytes());
            b.extend_from_slice(&(self.base_timestamp + max_delta).to_be_bytes());
            b.extend_from_slice(&self.producer_id.to_be_bytes());
            b.extend_from_slice(&self.producer_epoch.to_be_bytes());
            b.extend_from_slice(&self.base_sequence.to_be_bytes());
            b.extend_from_slice(&(self.records as i32).to_be_bytes());
            b.extend_from_slice(&records);
            fix_crc(&mut b);
            b
        }
    }

    /// Recomputes the CRC after a test tampered with a batch.
    pub fn fix_crc(b: &mut [u8]) {
        let crc = compute_crc(b);
        b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    }

    pub fn put_varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }

    fn encode_record(out: &mut Vec<u8>, offset_delta: i32, ts_delta: i64, value_len: usize) {
        let mut body = vec![0u8]; // attributes
        put_varint(&mut body, ts_delta);
        put_varint(&mut body, i64::from(offset_delta));
        put_varint(&mut body, 1); // key length
        body.push(b'k');
        put_varint(&mut body, value_len as i64);
        body.resize(body.len() + value_len, b'v');
        put_varint(&mut body, 1); // one header
        put_varint(&mut body, 1);
        body.push(b'h');
        put_varint(&mut body, -1); // null header value
        put_varint(out, body.len() as i64);
        out.extend_from_slice(&body);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::test_util::*;
    use super::*;

    const MAX: i32 = 1_048_588;

    fn err(bytes: &[u8]) -> StorageError {
        validate_record_set(bytes, MAX).unwrap_err()
    }

    #[test]
    fn valid_set_of_two_batches() {
        let mut set = TestBatch::new(3).encode();
        let second = TestBatch::new(1).encode();
        set.extend_from_slice(&second);
        let infos = validate_record_set(&set, MAX).unwrap();
        assert_eq!(infos.len(), 2);
        assert_eq!(infos[0].position, 0);
        assert_eq!(infos[1].position, set.len() - second.len());
        assert_eq!(infos[0].header.record_count, 3);
        assert_eq!(infos[0].header.max_timestamp, 1_002);
    }

    #[test]
    fn empty_set_is_invalid_record() {
        assert!(matches!(err(&[]), StorageError::InvalidRecord(_)));
    }

    #[test]
    fn truncated_or_garbage_tail_is_corrupt() {
        let mut set = TestBatch::new(2).encode();
        set.extend_from_slice(&TestBatch::new(2).encode());
        let cut = set.len() - 5;
        assert!(matches!(err(&set[..cut]), StorageError::CorruptMessage));
        let mut tail = TestBatch::new(1).encode();
        tail.extend_from_slice(&[0, 0, 0]);
        assert!(matches!(err(&tail), StorageError::CorruptMessage));
        let short = TestBatch::new(1).encode();
        assert!(matches!(err(&short[..40]), StorageError::CorruptMessage));
    }

    #[test]
    fn tiny_batch_length_is_corrupt() {
        let mut b = TestBatch::new(1).encode();
        b[8..12].copy_from_slice(&10i32.to_be_bytes());
        assert!(matches!(err(&b), StorageError::CorruptMessage));
        b[8..12].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(matches!(err(&b), StorageError::CorruptMessage));
    }

    #[test]
    fn huge_batch_length_is_too_large_not_a_panic() {
        let mut b = TestBatch::new(1).encode();
        b[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(err(&b), StorageError::MessageTooLarge { .. }));
    }

    #[test]
    fn wrong_magic_is_unsupported() {
        let mut b = TestBatch::new(1).encode();
        b[16] = 1;
        assert!(matches!(err(&b), StorageError::UnsupportedForMessageFormat(1)));
    }

    #[test]
    fn bad_crc_is_corrupt() {
        let mut b = TestBatch::new(2).encode();
        let last = b.len() - 1;
        b[last] ^= 0xff;
        assert!(matches!(err(&b), StorageError::CorruptMessage));
    }

    #[test]
    fn unknown_codec_is_unsupported_but_compressed_is_not_walked() {
        let mut t = TestBatch::new(2);
        t.codec = 5;
        assert!(matches!(err(&t.encode()), StorageError::UnsupportedCompressionType(5)));
        t.codec = 4;
        assert!(validate_record_set(&t.encode(), MAX).is_ok());
    }

    #[test]
    fn count_and_delta_mismatch_is_invalid() {
        let mut b = TestBatch::new(2).encode();
        b[23..27].copy_from_slice(&5i32.to_be_bytes());
        fix_crc(&mut b);
        assert!(matches!(err(&b), StorageError::InvalidRecord(_)));
        let mut b = TestBatch::new(2).encode();
        b[23..27].copy_from_slice(&(-1i32).to_be_bytes());
        b[57..61].copy_from_slice(&0i32.to_be_bytes());
        fix_crc(&mut b);
        assert!(matches!(err(&b), StorageError::InvalidRecord(_)));
    }

    #[test]
    fn record_count_must_match_records_area() {
        // Header claims 3 records, area holds 2.
        let mut b = TestBatch::new(2).encode();
        b[23..27].copy_from_slice(&2i32.to_be_bytes());
        b[57..61].copy_from_slice(&3i32.to_be_bytes());
        fix_crc(&mut b);
        assert!(matches!(err(&b), StorageError::InvalidRecord(_)));
        // Header claims 1 record, area holds 2.
        let mut b = TestBatch::new(2).encode();
        b[23..27].copy_from_slice(&0i32.to_be_bytes());
        b[57..61].copy_from_slice(&1i32.to_be_bytes());
        fix_crc(&mut b);
        assert!(matches!(err(&b), StorageError::InvalidRecord(_)));
    }

    #[test]
    fn record_offset_delta_must_match_index() {
        let mut b = TestBatch::new(2).encode();
        // Record 0: length varint (1 byte), attributes, ts delta varint (1 byte), offset delta.
        let at = HEADER_LEN + 3;
        assert_eq!(b[at], 0);
        b[at] = 4; // zigzag 2
        fix_crc(&mut b);
        assert!(matches!(err(&b), StorageError::InvalidRecord(_)));
    }

    #[test]
    fn record_length_overrun_is_invalid() {
        let mut b = TestBatch::new(1).encode();
        b[HEADER_LEN] = 0x7e; // length 63, more than the area holds
        fix_crc(&mut b);
        assert!(matches!(err(&b), StorageError::InvalidRecord(_)));
    }

    #[test]
    fn control_batch_from_client_is_invalid() {
        let mut b = TestBatch::new(1).encode();
        b[22] |= 0x20;
        fix_crc(&mut b);
        assert!(matches!(err(&b), StorageError::InvalidRecord(_)));
    }

    #[test]
    fn replicated_sets_skip_the_size_limit_and_may_hold_control_batches() {
        let big = TestBatch::new(200).encode();
        assert!(matches!(validate_record_set(&big, 1_000), Err(StorageError::MessageTooLarge { .. })));
        assert_eq!(validate_replicated_set(&big).unwrap()[0].header.record_count, 200);
        let mut control = TestBatch::new(1).idempotent(7, 0, -1).encode();
        control[22] |= 0x20;
        fix_crc(&mut control);
        assert!(matches!(err(&control), StorageError::InvalidRecord(_)));
        assert!(validate_replicated_set(&control).unwrap()[0].header.is_control());
        // Every other rule still holds.
        let mut bad = TestBatch::new(2).encode();
        bad[70] ^= 1;
        assert!(matches!(validate_replicated_set(&bad), Err(StorageError::CorruptMessage)));
        let no_seq = TestBatch::new(1).idempotent(7, 0, -1).encode();
        assert!(matches!(validate_replicated_set(&no_seq), Err(StorageError::InvalidRecord(_))));
        assert!(matches!(validate_replicated_set(&[]), Err(StorageError::InvalidRecord(_))));
    }

    #[test]
    fn idempotent_without_sequence_is_invalid() {
        let b = TestBatch::new(1).idempotent(7, 0, -1).encode();
        assert!(matches!(err(&b), StorageError::InvalidRecord(_)));
    }

    #[test]
    fn message_too_large() {
        let b = TestBatch::new(10).encode();
        let e = validate_record_set(&b, 100).unwrap_err();
        assert!(matches!(e, StorageError::MessageTooLarge { max: 100, .. }), "{e}");
    }

    #[test]
    fn base_offset_rewrite_keeps_crc() {
        let mut b = TestBatch::new(3).encode();
        set_base_offset_and_epoch(&mut b, 1234, 7);
        let infos = validate_record_set(&b, MAX).unwrap();
        assert_eq!(infos[0].header.base_offset, 1234);
        assert_eq!(infos[0].header.partition_leader_epoch, 7);
        assert_eq!(infos[0].header.last_offset(), 1236);
    }

    #[test]
    fn log_append_time_rewrite() {
        let mut b = TestBatch::new(3).encode();
        set_log_append_time(&mut b, 99_000);
        let h = validate_record_set(&b, MAX).unwrap()[0].header;
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 99_000);
        assert_eq!(h.base_timestamp, 99_000);
        assert_eq!(h.compression(), 0);
    }

    #[test]
    fn sequence_wraps() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(increment_sequence(5, 2), 7);
    }

    #[test]
    fn walker_reports_deltas() {
        let mut t = TestBatch::new(3);
        t.timestamp_deltas = vec![5, -2, 300];
        let b = t.encode();
        let metas: Vec<_> = RecordWalker::new(&b).unwrap().map(|r| r.unwrap()).collect();
        let deltas: Vec<_> = metas.iter().map(|m| m.timestamp_delta).collect();
        assert_eq!(deltas, vec![5, -2, 300]);
    }

    #[test]
    fn garbage_never_panics() {
        let base = TestBatch::new(2).encode();
        for i in 0..base.len() {
            for x in [0u8, 0x7f, 0x80, 0xff] {
                let mut b = base.clone();
                b[i] = x;
                let _ = validate_record_set(&b, MAX);
                let _ = validate_replicated_set(&b);
                fix_crc(&mut b);
                let _ = validate_record_set(&b, MAX);
                let _ = validate_replicated_set(&b);
            }
        }
    }
}
