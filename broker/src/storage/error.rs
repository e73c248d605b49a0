//! The storage layer's one error type. Each variant maps to exactly one Kafka error code at the
//! handler boundary; storage itself never knows about error codes.

use std::io;

/// Everything that can go wrong in `storage`.
///
/// Variants above `Io` describe a bad request (the client's data or sequence) and leave the log
/// untouched; `Io` and `Corrupted` describe the broker's own disk or state and map to `KAFKA_STORAGE_ERROR`.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A batch failed its CRC-32C, is truncated, or has an impossible length
    /// (`CORRUPT_MESSAGE`).
    #[error("corrupt message: bad CRC, truncated batch or impossible length")]
    CorruptMessage,

    /// A batch is well-formed on the outside but its contents break the format rules
    /// (`INVALID_RECORD`).
    #[error("invalid record: {0}")]
    InvalidRecord(String),

    /// A CreateTime batch's timestamps lie further from the broker's clock than
    /// `message.timestamp.before.max.ms` / `message.timestamp.after.max.ms` allow
    /// (`INVALID_TIMESTAMP`).
    #[error("timestamp {timestamp} of a record is out of range (broker time {now_ms}, {bound})")]
    InvalidTimestamp { timestamp: i64, now_ms: i64, bound: &'static str },

    /// A batch is larger than `max.message.bytes` (`MESSAGE_TOO_LARGE`).
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge { size: usize, max: i32 },

    /// A batch has a magic other than 2 (`UNSUPPORTED_FOR_MESSAGE_FORMAT`).
    #[error("unsupported message format magic {0}")]
    UnsupportedForMessageFormat(i8),

    /// A batch names a compression codec outside 0..=4 (`UNSUPPORTED_COMPRESSION_TYPE`).
    #[error("unsupported compression codec {0}")]
    UnsupportedCompressionType(u8),

    /// An idempotent batch's sequence does not follow the producer's last one
    /// (`OUT_OF_ORDER_SEQUENCE_NUMBER`).
    #[error(
        "out of order sequence for producer {producer_id} epoch {producer_epoch}: \
         got {base_sequence}, last was {last_sequence}"
    )]
    OutOfOrderSequence {
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
        /// `-1` when the producer had no batch in this epoch.
        last_sequence: i32,
    },

    /// An idempotent batch carries an epoch older than the producer's current one
    /// (`INVALID_PRODUCER_EPOCH`).
    #[error("producer {producer_id} epoch {producer_epoch} is older than current {current_epoch}")]
    InvalidProducerEpoch { producer_id: i64, producer_epoch: i16, current_epoch: i16 },

    /// A read asked for an offset outside `[log_start, log_end]` (`OFFSET_OUT_OF_RANGE`).
    #[error("offset {offset} is outside the log range [{log_start}, {log_end}]")]
    OffsetOutOfRange { offset: i64, log_start: i64, log_end: i64 },

    /// A replicated record set does not continue the log: its first batch does not start at
    /// the log end offset, or a batch does not start right after the previous one. Nothing was
    /// written. The follower's fetch state is out of step with its log (a bug or a race with a
    /// truncation), not the leader's data; the replica layer decides what to do.
    #[error("replicated batch starts at offset {found}, expected {expected}")]
    NonContiguousAppend { expected: i64, found: i64 },

    /// The operating system refused a file operation (`KAFKA_STORAGE_ERROR`).
    #[error("storage I/O error: {0}")]
    Io(#[from] io::Error),

    /// A file on disk is not what this layer wrote, or the in-memory state of a log can no
    /// longer be trusted (a thread panicked while holding its lock) (`KAFKA_STORAGE_ERROR`).
    #[error("on-disk data corrupted: {0}")]
    Corrupted(String),
}

/// Shorthand used throughout `storage`.
pub type Result<T> = std::result::Result<T, StorageError>;
