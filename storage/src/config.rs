//! Per-partition log configuration, named after the Kafka topic configs it mirrors.

/// Tunables of one partition log. Field names follow the Kafka topic configs
/// (`segment.bytes`, `retention.ms`, ...) so the broker can map them one to one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment before an append would push it past this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment once it is older than this.
    pub segment_ms: i64,
    /// `retention.ms`: delete sealed segments whose newest timestamp is older; -1 = unlimited.
    pub retention_ms: i64,
    /// `retention.bytes`: delete oldest sealed segments while the log is larger; -1 = unlimited.
    pub retention_bytes: i64,
    /// `index.interval.bytes`: log bytes between two sparse index entries.
    pub index_interval_bytes: u32,
    /// `segment.index.bytes`: preallocated size of each index file of the active segment.
    pub segment_index_bytes: u32,
    /// `flush.messages`: fsync after this many offsets. Rill defaults to 1, meaning every
    /// acks=all write is fsynced before it is acknowledged (see [`crate::PartitionLog::sync_on_ack`]).
    pub flush_messages: i64,
    /// `flush.ms`: fsync at least this often when there is unflushed data.
    pub flush_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        const DAY_MS: i64 = 24 * 60 * 60 * 1000;
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * DAY_MS,
            retention_ms: 7 * DAY_MS,
            retention_bytes: -1,
            index_interval_bytes: 4096,
            segment_index_bytes: 10 << 20,
            flush_messages: 1,
            flush_ms: i64::MAX,
        }
    }
}
