//! Raft for Rill (openraft 0.10): every partition, and the cluster metadata, is a Raft group
//! whose Raft log *is* the partition's segment log.
//!
//! - [`entry_index`] keeps, per Raft entry, its log id, its kind and the Kafka offsets it
//!   covers; record batches themselves live once, in the segment files.
//! - [`log_store`] implements openraft's log storage over a [`rill_storage::PartitionLog`]
//!   and that index; [`state_machine`] tracks what is applied (the high watermark).
//! - [`network`] is the inter-node transport: one TCP connection per peer pair, multiplexing
//!   the RPCs of every group.

pub mod entry_index;
pub mod group;
pub mod log_store;
pub mod network;
pub mod quiesce;
pub mod state_machine;

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A Raft entry's application payload: one or more whole Kafka v2 record batches for one
/// partition, as the producer sent them (the leader has validated them; offsets are assigned
/// when the entry is appended to a replica's log, identically on every replica).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Batches(pub Bytes);

impl fmt::Debug for Batches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Batches({} bytes)", self.0.len())
    }
}

impl fmt::Display for Batches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What applying a data entry answers the proposer: the Kafka offsets it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Appended {
    /// Offset of the first record; `-1` for entries without records.
    pub base_offset: i64,
    /// One past the offset of the last record.
    pub end_offset: i64,
}

openraft::declare_raft_types!(
    /// Rill's Raft types: node ids are Kafka `node.id`s, nodes carry their Raft address.
    pub TypeConfig:
        D = Batches,
        R = Appended,
        NodeId = u64,
        Node = openraft::BasicNode,
);

pub type NodeId = u64;
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub type Entry = <TypeConfig as openraft::RaftTypeConfig>::Entry;
pub type Vote = <TypeConfig as openraft::RaftTypeConfig>::Vote;
pub type Membership = openraft::Membership<NodeId, openraft::BasicNode>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
pub type Raft = openraft::Raft<TypeConfig, state_machine::StateMachine>;
