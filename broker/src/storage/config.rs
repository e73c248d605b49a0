//! Per-log settings, named after Kafka's topic configs (`segment.bytes`, `retention.ms`, ...)
//! with Kafka's defaults, except `flush.messages`, whose Sluice default makes every
//! acknowledged write durable.

/// Settings of one partition log. Cheap to copy; `Log::update_config` swaps them at runtime.
///
/// # Durability
///
/// `flush_messages == 1` (Sluice's default) means every acknowledged write is fsynced before the
/// acknowledgement: the produce path calls `Log::flush_to(last_offset + 1)` and waits. Calls are
/// grouped, so one fsync covers every write pending when it starts.
///
/// Any larger value gives Kafka's semantics: acknowledgements do not wait for fsync; a background
/// task calls `Log::maybe_flush`, which fsyncs once `flush_messages` records are unflushed or
/// `flush_ms` has elapsed since the last fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll a new segment before a write would make the active one larger.
    pub segment_bytes: u64,
    /// `segment.ms`: roll once the active segment's first batch is this old.
    pub segment_ms: i64,
    /// `retention.ms`: delete segments whose newest timestamp is older; `-1` keeps forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete oldest segments while the log is larger; `-1` is unlimited.
    pub retention_bytes: i64,
    /// `max.message.bytes`: the largest batch (header included) accepted.
    pub max_message_bytes: i32,
    /// `flush.messages`: see the type's `# Durability`.
    pub flush_messages: i64,
    /// `flush.ms`: see the type's `# Durability`.
    pub flush_ms: i64,
    /// `message.timestamp.type=LogAppendTime` when true, `CreateTime` when false.
    pub message_timestamp_type_log_append: bool,
    /// `message.timestamp.before.max.ms`: how far in the past a CreateTime timestamp may be.
    pub message_timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far in the future a CreateTime timestamp may be.
    pub message_timestamp_after_max_ms: i64,
    /// `cleanup.policy` contains `delete`: retention deletes old segments. A `compact`-only
    /// topic keeps them (compaction itself is a later feature).
    pub cleanup_delete: bool,
    /// `index.interval.bytes`: log bytes between two offset-index entries.
    pub index_interval_bytes: u32,
    /// `segment.index.bytes`: roll when either index of the active segment reaches this size.
    pub segment_index_bytes: u32,
}

impl LogConfig {
    /// True when acknowledgements must wait for fsync (`flush_messages <= 1`).
    pub fn durable_acks(&self) -> bool {
        self.flush_messages <= 1
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        const DAY_MS: i64 = 24 * 60 * 60 * 1000;
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * DAY_MS,
            retention_ms: 7 * DAY_MS,
            retention_bytes: -1,
            max_message_bytes: 1_048_588,
            flush_messages: 1,
            flush_ms: i64::MAX,
            message_timestamp_type_log_append: false,
            message_timestamp_before_max_ms: i64::MAX,
            message_timestamp_after_max_ms: 3_600_000,
            cleanup_delete: true,
            index_interval_bytes: 4096,
            segment_index_bytes: 10 * 1024 * 1024,
        }
    }
}
