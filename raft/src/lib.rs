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
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Batches(pub Bytes);

impl Serialize for Batches {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

/// Deserialises as a slice of the frame being decoded when [`decode_in`] names one (no copy
/// of a replicated entry's records: a follower would otherwise hold every AppendEntries
/// twice, as the frame and as its entries), else as a copy.
impl<'de> Deserialize<'de> for Batches {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Batches;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("record batches as bytes")
            }
            fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<Batches, E> {
                Ok(Batches(FRAME.with(|frame| match &*frame.borrow() {
                    Some(f) if within(f, v) => f.slice_ref(v),
                    _ => Bytes::copy_from_slice(v),
                })))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Batches, E> {
                Ok(Batches(Bytes::copy_from_slice(v)))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Batches, E> {
                Ok(Batches(Bytes::from(v)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Batches, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(b) = seq.next_element::<u8>()? {
                    v.push(b);
                }
                Ok(Batches(Bytes::from(v)))
            }
        }
        d.deserialize_bytes(Visitor)
    }
}

thread_local! {
    static FRAME: std::cell::RefCell<Option<Bytes>> = const { std::cell::RefCell::new(None) };
}

fn within(frame: &Bytes, v: &[u8]) -> bool {
    let (start, end) = (frame.as_ptr() as usize, frame.as_ptr() as usize + frame.len());
    let (vs, ve) = (v.as_ptr() as usize, v.as_ptr() as usize + v.len());
    start <= vs && ve <= end
}

/// Runs `decode` (which must decode from `frame`'s bytes, synchronously) with every
/// [`Batches`] it yields sharing `frame`'s memory instead of copying out of it.
pub fn decode_in<T>(frame: &Bytes, decode: impl FnOnce(&[u8]) -> T) -> T {
    FRAME.with(|f| *f.borrow_mut() = Some(frame.clone()));
    let out = decode(frame);
    FRAME.with(|f| *f.borrow_mut() = None);
    out
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(entries: &[Batches]) -> Bytes {
        Bytes::from(postcard::to_stdvec(entries).unwrap())
    }

    #[test]
    fn batches_decoded_in_a_frame_share_its_memory_and_otherwise_are_copied() {
        let sent =
            vec![Batches(Bytes::from_static(b"first batch")), Batches(Bytes::new()), Batches(vec![7; 4096].into())];
        let frame = frame_of(&sent);

        let shared: Vec<Batches> = decode_in(&frame, |b| postcard::from_bytes(b)).unwrap();
        assert_eq!(shared, sent);
        for b in shared.iter().filter(|b| !b.0.is_empty()) {
            assert!(within(&frame, &b.0), "{b:?} was copied out of the frame");
        }

        let copied: Vec<Batches> = postcard::from_bytes(&frame).unwrap();
        assert_eq!(copied, sent);
        assert!(copied.iter().all(|b| b.0.is_empty() || !within(&frame, &b.0)));

        // The frame is forgotten after decoding: a later decode of other bytes copies.
        let other = frame_of(&sent);
        let later: Vec<Batches> = postcard::from_bytes(&other).unwrap();
        assert!(!within(&other, &later[0].0));
        // A format that writes bytes as a sequence still reads back.
        let json = serde_json::to_string(&sent[0]).unwrap();
        assert_eq!(serde_json::from_str::<Batches>(&json).unwrap(), sent[0]);
    }
}
