//! Rill's storage engine: the on-disk log of one Kafka partition.
//!
//! A [`PartitionLog`] is a directory of segments in Kafka's layout (`<base offset>.log` plus
//! sparse `.index` / `.timeindex` files), holding record batches v2 byte-exact as produced,
//! with broker-assigned dense offsets. It appends whole batches (offsets and epochs stamped in
//! place), serves reads by offset and by timestamp, makes writes durable with group-committed
//! fdatasync, enforces retention, and recovers from crashes by truncating torn tails. Memory
//! maps and file descriptors are bounded per partition so that a broker with tens of thousands
//! of partitions stays within `vm.max_map_count` and its fd limit.
//!
//! It also compacts logs (`cleanup.policy=compact`, see [`PartitionLog::clean`]) without ever
//! changing a batch's offset range.
//!
//! This crate must never do networking, parse individual records outside the log cleaner
//! (batches are the unit of all other work), or serve bytes that failed validation after a
//! crash. It knows nothing of Raft,
//! replication or high watermarks beyond the `max_offset` a caller passes to reads.

mod cleaner;
mod config;
mod error;
mod index;
mod log;
pub mod observe;
mod recovery;
mod segment;

pub use cleaner::{CleanSummary, CleanerConfig};
pub use config::LogConfig;
pub use error::StorageError;
pub use log::{AppendInfo, PartitionLog, ReadResult};

#[cfg(test)]
mod tests {
    /// The broker shares logs across threads through `Arc`.
    #[test]
    fn partition_log_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<super::PartitionLog>();
    }
}
