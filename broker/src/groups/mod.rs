//! Consumer groups: the classic protocol (JoinGroup/SyncGroup: the coordinator and the pure
//! per-group state machine), the consumer protocol of KIP-848 (ConsumerGroupHeartbeat: its
//! pure state machine and server-side assignors), and the durable `__consumer_offsets` log of
//! committed offsets and group metadata.

pub mod assignor;
pub mod consumer;
pub mod coordinator;
pub mod offsets_log;
pub mod state;

pub use coordinator::GroupCoordinator;
pub use offsets_log::OFFSETS_TOPIC;
