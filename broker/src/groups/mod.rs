//! Consumer groups with the classic protocol: the coordinator, the pure per-group state
//! machine, and the durable `__consumer_offsets` log of committed offsets and group metadata.

pub mod coordinator;
pub mod offsets_log;
pub mod state;

pub use coordinator::GroupCoordinator;
pub use offsets_log::OFFSETS_TOPIC;
