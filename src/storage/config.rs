//! Per-partition log settings.
//!
//! Role: the knobs of one [`PartitionLog`](super::PartitionLog), named after Kafka's topic
//! configs (`segment.bytes`, `segment.ms`, `retention.ms`, `retention.bytes`,
//! `index.interval.bytes`, `max.message.bytes`, `message.timestamp.type`, and the broker's
//! `producer.id.expiration.ms`). The broker maps its
//! config file and topic overrides onto this struct; the store never reads config files itself.
//!
//! Invariant: values are used as given, except that `segment_bytes` is capped at `i32::MAX`
//! (the 32-bit file positions of the offset index, as in Kafka) by [`LogConfig::effective_segment_bytes`].

/// Settings of one partition log. `Default` gives Kafka's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when the active segment would grow beyond this. Default 1 GiB.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment is older than this. Default 7 days.
    pub segment_ms: i64,
    /// `retention.ms`: delete segments whose newest record is older than this; -1 = unlimited.
    /// Default 7 days.
    pub retention_ms: i64,
    /// `retention.bytes`: delete the oldest segments while the log is larger; -1 = unlimited
    /// (default).
    pub retention_bytes: i64,
    /// `index.interval.bytes`: bytes of batches between two index entries. Default 4096.
    pub index_interval_bytes: u32,
    /// `max.message.bytes`: largest batch accepted, including its 12-byte log overhead.
    /// Default 1048588.
    pub max_message_bytes: i32,
    /// `message.timestamp.type == LogAppendTime`: the broker stamps batches with its clock.
    /// Default false (CreateTime).
    pub log_append_time: bool,
    /// `producer.id.expiration.ms` (a broker config in Kafka): idempotent-producer state whose
    /// last write is older than this is dropped by `enforce_retention` (unless a transaction is
    /// ongoing); negative = never. Default 1 day.
    pub producer_id_expiration_ms: i64,
    /// `flush.messages`: fsync once this many messages are unflushed (the append that reaches
    /// it waits for the fsync). Default `i64::MAX` (never).
    pub flush_messages: i64,
    /// `flush.ms`: fsync appends at most this long after they are written. Default `i64::MAX`.
    pub flush_ms: i64,
    /// `compression.type` when it names a codec: batches in another codec are recompressed
    /// ([`super::recompress`]). `None` = `producer` (default): stored as sent.
    pub compression: Option<super::recompress::TargetCodec>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            log_append_time: false,
            producer_id_expiration_ms: 24 * 60 * 60 * 1000,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            compression: None,
        }
    }
}

impl LogConfig {
    /// `segment_bytes` capped to what 32-bit index positions can address (`i32::MAX`, as Kafka).
    pub fn effective_segment_bytes(&self) -> u64 {
        self.segment_bytes.clamp(1, i32::MAX as u64)
    }
}
