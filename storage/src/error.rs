//! The one error type of this crate.

use std::io;

use rill_protocol::batch::BatchError;
use thiserror::Error;

/// Everything a [`crate::PartitionLog`] operation can fail with. The broker maps these to
/// Kafka error codes in one place.
#[derive(Debug, Error)]
pub enum StorageError {
    /// An I/O error from the file system (disk full, permissions, ...).
    #[error("storage I/O error: {0}")]
    Io(#[from] io::Error),
    /// The requested offset is outside `[log_start, log_end]`.
    #[error("offset {requested} out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange { requested: i64, log_start: i64, log_end: i64 },
    /// On-disk data failed validation somewhere recovery cannot repair by truncation.
    #[error("corrupt log data: {0}")]
    Corrupt(String),
    /// The records handed to `append` are not a sequence of whole, valid v2 batches.
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// The records handed to `append` are malformed in a way that `BatchError` does not cover.
    #[error("invalid records: {0}")]
    InvalidRecords(String),
    /// An earlier fsync or write failed; the page cache may no longer match the disk, so the
    /// log refuses further writes and syncs until it is reopened (and recovered).
    #[error("log is poisoned by an earlier I/O failure; reopen it to recover")]
    Poisoned,
    /// The log was closed.
    #[error("log is closed")]
    Closed,
}
