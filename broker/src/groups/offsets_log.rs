//! `__consumer_offsets`: the internal topic that makes committed offsets and group metadata
//! durable, with Kafka's record layouts.
//!
//! Every record is keyed; the latest value of a key wins and a null value (tombstone) deletes
//! it. Keys and values are Kafka's (big-endian, i16-length strings), so Kafka's own tools can
//! read the topic:
//! ```text
//! OffsetCommitKey   v1: version i16, group str, topic str, partition i32
//! OffsetCommitValue v3: version i16, offset i64, leader_epoch i32, metadata str, commit_timestamp i64
//! GroupMetadataKey  v2: version i16, group str
//! GroupMetadataValue v3: version i16, protocol_type str, generation i32, protocol str?, leader str?,
//!                     current_state_timestamp i64, members [member_id str, group_instance_id str?,
//!                     client_id str, client_host str, rebalance_timeout i32, session_timeout i32,
//!                     subscription bytes, assignment bytes]
//! ```
//! Consumer groups of KIP-848 use Kafka's `ConsumerGroup*` records: the key is the record
//! type as version (3 metadata, 4 partition metadata, 5 member metadata, 6 target assignment
//! metadata, 7 target assignment member, 8 current member assignment), then the group id and,
//! for per-member records, the member id; values are version 0 in the flexible format
//! (compact strings and arrays, tagged fields), as in Kafka's JSON schemas. The member
//! metadata value carries two Rill tagged fields Kafka skips: the member's principal
//! (tag 20000) and the topics its regex matched (tag 20001).
//!
//! A group's records all go to partition `abs(javaHashCode(group)) % partitions`, as in Kafka, so
//! they are ordered by the log.

use std::sync::Arc;

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes};
use rill_protocol::records::{self, EncodeOptions, RecordIn};
use uuid::Uuid;

use super::assignor::Assignment;
use super::consumer::{ConsumerRecord, MemberState, StoredAssignment, StoredConsumerMember, TopicInfo};

use crate::error::KafkaError;
use crate::topics::Partition;

/// The internal topic's name.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Kafka's `Utils.abs(groupId.hashCode) % partitions`.
pub fn partition_for(group: &str, partitions: usize) -> usize {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(unit as i32);
    }
    (h & 0x7fff_ffff) as usize % partitions.max(1)
}

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

/// A member in the stored group metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// Group metadata as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp: i64,
    pub members: Vec<StoredMember>,
}

/// One record of `__consumer_offsets`; `None` values are tombstones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetsRecord {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<OffsetValue>,
    },
    Group {
        group: String,
        value: Option<GroupValue>,
    },
    /// A record of a consumer (KIP-848) group.
    Consumer {
        group: String,
        rec: ConsumerRecord,
    },
}

/// Rill's tagged fields in ConsumerGroupMemberMetadataValue (high, clear of Kafka's).
const TAG_PRINCIPAL: u32 = 20000;
const TAG_MATCHED: u32 = 20001;

fn put_uvarint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

fn put_compact_str(out: &mut Vec<u8>, s: &str) {
    put_uvarint(out, s.len() as u32 + 1);
    out.put_slice(s.as_bytes());
}

fn put_compact_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_compact_str(out, s),
        None => put_uvarint(out, 0),
    }
}

fn put_compact_strs(out: &mut Vec<u8>, v: &[String]) {
    put_uvarint(out, v.len() as u32 + 1);
    for s in v {
        put_compact_str(out, s);
    }
}

/// `[]TopicPartitions{TopicId uuid, Partitions []int32}` (each struct with empty tagged fields).
fn put_topic_partitions(out: &mut Vec<u8>, a: &Assignment) {
    put_uvarint(out, a.len() as u32 + 1);
    for (t, ps) in a {
        out.put_slice(t.as_bytes());
        put_uvarint(out, ps.len() as u32 + 1);
        for p in ps {
            out.put_i32(*p);
        }
        put_uvarint(out, 0);
    }
}

fn flex_value(body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_i16(0);
    body(&mut out);
    out
}

fn encode_consumer(group: &str, rec: &ConsumerRecord) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut key = Vec::new();
    let (kind, member) = match rec {
        ConsumerRecord::Epoch(_) => (3, None),
        ConsumerRecord::Topics(_) => (4, None),
        ConsumerRecord::Member(m, _) => (5, Some(m)),
        ConsumerRecord::TargetEpoch(_) => (6, None),
        ConsumerRecord::Target(m, _) => (7, Some(m)),
        ConsumerRecord::Current(m, _) => (8, Some(m)),
    };
    key.put_i16(kind);
    put_str(&mut key, group);
    if let Some(m) = member {
        put_str(&mut key, m);
    }
    let value = match rec {
        ConsumerRecord::Epoch(v) | ConsumerRecord::TargetEpoch(v) => v.map(|e| {
            flex_value(|out| {
                out.put_i32(e);
                put_uvarint(out, 0);
            })
        }),
        ConsumerRecord::Topics(v) => v.as_ref().map(|topics| {
            flex_value(|out| {
                put_uvarint(out, topics.len() as u32 + 1);
                for (name, (id, n)) in topics {
                    out.put_slice(id.as_bytes());
                    put_compact_str(out, name);
                    out.put_i32(*n);
                    put_uvarint(out, 1); // PartitionMetadata: empty (unused since Kafka 4.0)
                    put_uvarint(out, 0);
                }
                put_uvarint(out, 0);
            })
        }),
        ConsumerRecord::Member(_, v) => v.as_ref().map(|m| {
            flex_value(|out| {
                put_compact_opt_str(out, m.instance_id.as_deref());
                put_compact_opt_str(out, m.rack_id.as_deref());
                put_compact_str(out, &m.client_id);
                put_compact_str(out, &m.client_host);
                put_compact_strs(out, &m.subscribed);
                put_compact_opt_str(out, m.regex.as_deref());
                out.put_i32(m.rebalance_timeout_ms);
                put_compact_opt_str(out, m.server_assignor.as_deref());
                let mut principal = Vec::new();
                put_compact_str(&mut principal, &m.principal);
                let mut matched = Vec::new();
                put_compact_strs(&mut matched, &m.matched);
                put_uvarint(out, 2);
                for (tag, data) in [(TAG_PRINCIPAL, principal), (TAG_MATCHED, matched)] {
                    put_uvarint(out, tag);
                    put_uvarint(out, data.len() as u32);
                    out.put_slice(&data);
                }
            })
        }),
        ConsumerRecord::Target(_, v) => v.as_ref().map(|a| {
            flex_value(|out| {
                put_topic_partitions(out, a);
                put_uvarint(out, 0);
            })
        }),
        ConsumerRecord::Current(_, v) => v.as_ref().map(|a| {
            flex_value(|out| {
                out.put_i32(a.member_epoch);
                out.put_i32(a.previous_epoch);
                out.put_i8(match a.state {
                    MemberState::Stable => 0,
                    MemberState::UnrevokedPartitions => 1,
                    MemberState::UnreleasedPartitions => 2,
                });
                put_topic_partitions(out, &a.assigned);
                put_topic_partitions(out, &a.revoking);
                put_uvarint(out, 0);
            })
        }),
    };
    (key, value)
}

fn decode_consumer(kind: i16, k: &mut Reader<'_>, value: Option<&[u8]>) -> Option<OffsetsRecord> {
    let group = k.str()?;
    let member = if matches!(kind, 5 | 7 | 8) { Some(k.str()?) } else { None };
    let mut r = value.map(Reader);
    // Only version 0 is known; a later version is a superset Kafka would read as such, but
    // its fields' meaning is unknown here: skip it rather than guess.
    if let Some(r) = &mut r {
        if r.i16()? != 0 {
            return None;
        }
    }
    let rec = match kind {
        3 => ConsumerRecord::Epoch(match r {
            None => None,
            Some(mut r) => Some(r.i32()?),
        }),
        6 => ConsumerRecord::TargetEpoch(match r {
            None => None,
            Some(mut r) => Some(r.i32()?),
        }),
        4 => ConsumerRecord::Topics(match r {
            None => None,
            Some(mut r) => {
                let n = r.compact_len()?;
                let mut topics = BTreeMap::new();
                for _ in 0..n {
                    let id = r.uuid()?;
                    let name = r.compact_str()?;
                    let partitions = r.i32()?;
                    let racks = r.compact_len()?;
                    for _ in 0..racks {
                        r.i32()?;
                        let k = r.compact_len()?;
                        for _ in 0..k {
                            r.compact_str()?;
                        }
                        r.skip_tags()?;
                    }
                    r.skip_tags()?;
                    topics.insert(name, (id, partitions) as TopicInfo);
                }
                Some(topics)
            }
        }),
        5 => ConsumerRecord::Member(
            member?,
            match r {
                None => None,
                Some(mut r) => {
                    let mut m = StoredConsumerMember {
                        instance_id: r.compact_opt_str()?,
                        rack_id: r.compact_opt_str()?,
                        client_id: r.compact_str()?,
                        client_host: r.compact_str()?,
                        subscribed: r.compact_strs()?,
                        regex: r.compact_opt_str()?,
                        rebalance_timeout_ms: r.i32()?,
                        server_assignor: r.compact_opt_str()?,
                        ..Default::default()
                    };
                    let tags = r.uvarint()?;
                    for _ in 0..tags {
                        let tag = r.uvarint()?;
                        let len = r.uvarint()? as usize;
                        r.need(len)?;
                        let mut field = Reader(&r.0[..len]);
                        match tag {
                            TAG_PRINCIPAL => m.principal = field.compact_str()?,
                            TAG_MATCHED => m.matched = field.compact_strs()?,
                            _ => {}
                        }
                        r.0.advance(len);
                    }
                    Some(m)
                }
            },
        ),
        7 => ConsumerRecord::Target(
            member?,
            match r {
                None => None,
                Some(mut r) => Some(r.topic_partitions()?),
            },
        ),
        8 => ConsumerRecord::Current(
            member?,
            match r {
                None => None,
                Some(mut r) => Some(StoredAssignment {
                    member_epoch: r.i32()?,
                    previous_epoch: r.i32()?,
                    state: match r.i8()? {
                        1 => MemberState::UnrevokedPartitions,
                        2 => MemberState::UnreleasedPartitions,
                        _ => MemberState::Stable,
                    },
                    assigned: r.topic_partitions()?,
                    revoking: r.topic_partitions()?,
                }),
            },
        ),
        _ => return None,
    };
    Some(OffsetsRecord::Consumer { group, rec })
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.put_i16(s.len() as i16);
    out.put_slice(s.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_str(out, s),
        None => out.put_i16(-1),
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.put_i32(b.len() as i32);
    out.put_slice(b);
}

/// A bounds-checked reader; every failure is "malformed record".
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn need(&self, n: usize) -> Option<()> {
        (self.0.remaining() >= n).then_some(())
    }
    fn i8(&mut self) -> Option<i8> {
        self.need(1)?;
        Some(self.0.get_i8())
    }
    fn uvarint(&mut self) -> Option<u32> {
        let mut v: u32 = 0;
        for shift in (0..35).step_by(7) {
            self.need(1)?;
            let b = self.0.get_u8();
            v |= ((b & 0x7f) as u32) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    /// A compact array's length (null reads as empty).
    fn compact_len(&mut self) -> Option<usize> {
        Some(self.uvarint()?.saturating_sub(1) as usize)
    }
    fn compact_opt_str(&mut self) -> Option<Option<String>> {
        let n = self.uvarint()?;
        if n == 0 {
            return Some(None);
        }
        let len = n as usize - 1;
        self.need(len)?;
        let s = String::from_utf8_lossy(&self.0[..len]).into_owned();
        self.0.advance(len);
        Some(Some(s))
    }
    fn compact_str(&mut self) -> Option<String> {
        self.compact_opt_str()?
    }
    fn compact_strs(&mut self) -> Option<Vec<String>> {
        let n = self.compact_len()?;
        // Each string takes at least a byte: a length beyond the data is malformed.
        self.need(n)?;
        (0..n).map(|_| self.compact_str()).collect()
    }
    fn uuid(&mut self) -> Option<Uuid> {
        self.need(16)?;
        let id = Uuid::from_slice(&self.0[..16]).ok()?;
        self.0.advance(16);
        Some(id)
    }
    fn skip_tags(&mut self) -> Option<()> {
        for _ in 0..self.uvarint()? {
            self.uvarint()?;
            let len = self.uvarint()? as usize;
            self.need(len)?;
            self.0.advance(len);
        }
        Some(())
    }
    fn topic_partitions(&mut self) -> Option<Assignment> {
        let n = self.compact_len()?;
        self.need(n)?;
        let mut a = Assignment::new();
        for _ in 0..n {
            let t = self.uuid()?;
            let k = self.compact_len()?;
            self.need(k.saturating_mul(4))?;
            let ps: std::collections::BTreeSet<i32> = (0..k).map(|_| self.0.get_i32()).collect();
            self.skip_tags()?;
            if !ps.is_empty() {
                a.entry(t).or_default().extend(ps);
            }
        }
        Some(a)
    }
    fn i16(&mut self) -> Option<i16> {
        self.need(2)?;
        Some(self.0.get_i16())
    }
    fn i32(&mut self) -> Option<i32> {
        self.need(4)?;
        Some(self.0.get_i32())
    }
    fn i64(&mut self) -> Option<i64> {
        self.need(8)?;
        Some(self.0.get_i64())
    }
    fn opt_str(&mut self) -> Option<Option<String>> {
        let len = self.i16()?;
        if len < 0 {
            return Some(None);
        }
        self.need(len as usize)?;
        let s = String::from_utf8_lossy(&self.0[..len as usize]).into_owned();
        self.0.advance(len as usize);
        Some(Some(s))
    }
    fn str(&mut self) -> Option<String> {
        self.opt_str()?
    }
    fn bytes(&mut self) -> Option<Bytes> {
        let len = self.i32()?;
        if len < 0 {
            return Some(Bytes::new());
        }
        self.need(len as usize)?;
        let b = Bytes::copy_from_slice(&self.0[..len as usize]);
        self.0.advance(len as usize);
        Some(b)
    }
}

impl OffsetsRecord {
    pub fn group(&self) -> &str {
        match self {
            OffsetsRecord::Offset { group, .. }
            | OffsetsRecord::Group { group, .. }
            | OffsetsRecord::Consumer { group, .. } => group,
        }
    }

    /// (key, value) bytes.
    pub fn encode(&self) -> (Vec<u8>, Option<Vec<u8>>) {
        let mut key = Vec::new();
        match self {
            OffsetsRecord::Offset { group, topic, partition, value } => {
                key.put_i16(1);
                put_str(&mut key, group);
                put_str(&mut key, topic);
                key.put_i32(*partition);
                let value = value.as_ref().map(|v| {
                    let mut out = Vec::new();
                    out.put_i16(3);
                    out.put_i64(v.offset);
                    out.put_i32(v.leader_epoch);
                    put_str(&mut out, &v.metadata);
                    out.put_i64(v.commit_timestamp);
                    out
                });
                (key, value)
            }
            OffsetsRecord::Group { group, value } => {
                key.put_i16(2);
                put_str(&mut key, group);
                let value = value.as_ref().map(|g| {
                    let mut out = Vec::new();
                    out.put_i16(3);
                    put_str(&mut out, &g.protocol_type);
                    out.put_i32(g.generation);
                    put_opt_str(&mut out, g.protocol.as_deref());
                    put_opt_str(&mut out, g.leader.as_deref());
                    out.put_i64(g.state_timestamp);
                    out.put_i32(g.members.len() as i32);
                    for m in &g.members {
                        put_str(&mut out, &m.member_id);
                        put_opt_str(&mut out, m.instance_id.as_deref());
                        put_str(&mut out, &m.client_id);
                        put_str(&mut out, &m.client_host);
                        out.put_i32(m.rebalance_timeout_ms);
                        out.put_i32(m.session_timeout_ms);
                        put_bytes(&mut out, &m.subscription);
                        put_bytes(&mut out, &m.assignment);
                    }
                    out
                });
                (key, value)
            }
            OffsetsRecord::Consumer { group, rec } => encode_consumer(group, rec),
        }
    }

    /// Decodes one record; `None` for keys of other kinds or malformed data (skipped on load).
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Option<Self> {
        let mut k = Reader(key);
        match k.i16()? {
            0 | 1 => {
                let group = k.str()?;
                let topic = k.str()?;
                let partition = k.i32()?;
                let value = match value {
                    None => None,
                    Some(v) => {
                        let mut r = Reader(v);
                        let version = r.i16()?;
                        let offset = r.i64()?;
                        let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
                        let metadata = r.str()?;
                        let commit_timestamp = r.i64()?;
                        Some(OffsetValue { offset, leader_epoch, metadata, commit_timestamp })
                    }
                };
                Some(OffsetsRecord::Offset { group, topic, partition, value })
            }
            2 => {
                let group = k.str()?;
                let value = match value {
                    None => None,
                    Some(v) => {
                        let mut r = Reader(v);
                        let version = r.i16()?;
                        let protocol_type = r.str()?;
                        let generation = r.i32()?;
                        let protocol = r.opt_str()?;
                        let leader = r.opt_str()?;
                        let state_timestamp = if version >= 2 { r.i64()? } else { -1 };
                        let n = r.i32()?.max(0) as usize;
                        let mut members = Vec::with_capacity(n.min(1024));
                        for _ in 0..n {
                            let member_id = r.str()?;
                            let instance_id = if version >= 3 { r.opt_str()? } else { None };
                            let client_id = r.str()?;
                            let client_host = r.str()?;
                            let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { -1 };
                            let session_timeout_ms = r.i32()?;
                            let subscription = r.bytes()?;
                            let assignment = r.bytes()?;
                            members.push(StoredMember {
                                member_id,
                                instance_id,
                                client_id,
                                client_host,
                                rebalance_timeout_ms,
                                session_timeout_ms,
                                subscription,
                                assignment,
                            });
                        }
                        Some(GroupValue { protocol_type, generation, protocol, leader, state_timestamp, members })
                    }
                };
                Some(OffsetsRecord::Group { group, value })
            }
            kind @ 3..=8 => decode_consumer(kind, &mut k, value),
            _ => None,
        }
    }
}

/// The partitions of `__consumer_offsets` (in a cluster: attached once the topic exists).
/// Slots are by partition index: in a cluster a node holds replicas of some partitions only
/// (they can be moved), yet a group's partition is chosen among all of them.
pub struct OffsetsLog {
    partitions: parking_lot::RwLock<Vec<Option<Arc<Partition>>>>,
}

impl OffsetsLog {
    pub fn new(partitions: Vec<Option<Arc<Partition>>>) -> Self {
        OffsetsLog { partitions: parking_lot::RwLock::new(partitions) }
    }

    pub fn attach(&self, partitions: Vec<Option<Arc<Partition>>>) {
        *self.partitions.write() = partitions;
    }

    /// The partitions this node holds a replica of.
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().iter().flatten().cloned().collect()
    }

    /// How many partitions the topic has (0 before it exists).
    pub fn count(&self) -> usize {
        self.partitions.read().len()
    }

    /// This node's replica of partition `k`, if it holds one.
    pub fn slot(&self, k: usize) -> Option<Arc<Partition>> {
        self.partitions.read().get(k).cloned().flatten()
    }

    /// The partition holding `group`'s records, if the topic exists yet and this node holds
    /// a replica of it.
    pub fn partition_of(&self, group: &str) -> Option<Arc<Partition>> {
        let parts = self.partitions.read();
        (!parts.is_empty()).then(|| parts[partition_for(group, parts.len())].clone()).flatten()
    }

    fn batch(records: &[OffsetsRecord], now: i64) -> bytes::BytesMut {
        let encoded: Vec<_> = records.iter().map(OffsetsRecord::encode).collect();
        let ins: Vec<RecordIn<'_>> = encoded
            .iter()
            .map(|(k, v)| RecordIn { key: Some(k), value: v.as_deref(), headers: &[], timestamp: now })
            .collect();
        records::encode_batch(&ins, &EncodeOptions::default())
    }

    /// Cluster mode: appends `records` through the partition's Raft group; returns the offset
    /// of the first record once a quorum has it.
    pub async fn append_replicated(&self, group: &str, records: &[OffsetsRecord], now: i64) -> Result<i64, KafkaError> {
        let p = self.partition_of(group).ok_or(KafkaError::LeaderNotAvailable)?;
        Self::write_replicated(&p, records, now).await
    }

    /// Appends `records` through `p`'s Raft group (see [`OffsetsLog::append_replicated`]).
    pub async fn write_replicated(p: &Partition, records: &[OffsetsRecord], now: i64) -> Result<i64, KafkaError> {
        let replica = p.replica.as_ref().ok_or(KafkaError::NotLeaderOrFollower)?;
        let batch = Self::batch(records, now).freeze();
        match replica.write(batch).await {
            Ok(a) => Ok(a.base_offset),
            Err(rill_raft::group::WriteError::NotLeader { .. }) => Err(KafkaError::NotLeaderOrFollower),
            Err(e) => Err(KafkaError::InvalidRequest(e.to_string())),
        }
    }

    /// Appends `records` (all of one group) as one batch. Does not fsync: returns the
    /// partition and the offset to [`rill_storage::PartitionLog::sync`] up to, and the offset
    /// of the first record.
    pub fn append(&self, group: &str, records: &[OffsetsRecord], now: i64) -> Result<Appended, KafkaError> {
        let p = self.partition_of(group).ok_or(KafkaError::LeaderNotAvailable)?;
        let mut batch = Self::batch(records, now);
        let info = p.log.append(&mut batch, crate::handlers::metadata::LEADER_EPOCH, None)?;
        p.appended.notify_waiters();
        Ok(Appended { partition: p, first_offset: info.first_offset, sync_upto: info.last_offset + 1 })
    }

    /// Replays every partition, oldest record first, calling `f` for each record.
    pub fn replay(&self, mut f: impl FnMut(i64, OffsetsRecord)) -> anyhow::Result<usize> {
        let mut n = 0;
        for p in self.partitions() {
            n += Self::replay_partition(&p, &mut f)?;
        }
        Ok(n)
    }

    /// Replays one partition's committed records (up to its high watermark).
    pub fn replay_partition(p: &Partition, mut f: impl FnMut(i64, OffsetsRecord)) -> anyhow::Result<usize> {
        let mut n = 0;
        {
            let mut at = p.log.log_start_offset();
            let end = p.high_watermark();
            while at < end {
                let read = p.log.read(at, 1 << 20, end)?;
                if read.records.is_empty() {
                    break;
                }
                // Compacted batches may hold fewer records than offsets, or none.
                let Some(next) = rill_protocol::batch::next_offset(&read.records) else { break };
                for r in records::decode_batches(&read.records)? {
                    if r.offset < at || r.control {
                        continue;
                    }
                    let Some(key) = r.key.as_deref() else { continue };
                    if let Some(rec) = OffsetsRecord::decode(key, r.value.as_deref()) {
                        f(r.offset, rec);
                        n += 1;
                    }
                }
                at = next;
            }
        }
        Ok(n)
    }
}

/// Where an append landed.
pub struct Appended {
    pub partition: Arc<Partition>,
    pub first_offset: i64,
    pub sync_upto: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_like_kafka() {
        // Java: "my-group".hashCode() == 1_177_478_298 (well-known value); 1177478298 % 50 = 48.
        let h = "my-group".encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32));
        assert_eq!(partition_for("my-group", 50), (h & 0x7fff_ffff) as usize % 50);
        assert!(partition_for("", 50) == 0);
        for g in ["a", "consumer-group-with-a-long-name-that-overflows", "ü"] {
            assert!(partition_for(g, 7) < 7);
        }
    }

    #[test]
    fn records_round_trip() {
        let recs = [
            OffsetsRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
                value: Some(OffsetValue { offset: 42, leader_epoch: 0, metadata: "m".into(), commit_timestamp: 7 }),
            },
            OffsetsRecord::Offset { group: "g".into(), topic: "t".into(), partition: 3, value: None },
            OffsetsRecord::Group {
                group: "g".into(),
                value: Some(GroupValue {
                    protocol_type: "consumer".into(),
                    generation: 5,
                    protocol: Some("range".into()),
                    leader: Some("m-1".into()),
                    state_timestamp: 9,
                    members: vec![StoredMember {
                        member_id: "m-1".into(),
                        instance_id: Some("i".into()),
                        client_id: "c".into(),
                        client_host: "/127.0.0.1".into(),
                        rebalance_timeout_ms: 300000,
                        session_timeout_ms: 45000,
                        subscription: Bytes::from_static(b"sub"),
                        assignment: Bytes::from_static(b"asg"),
                    }],
                }),
            },
            OffsetsRecord::Group { group: "g".into(), value: None },
        ];
        for r in recs {
            let (k, v) = r.encode();
            assert_eq!(OffsetsRecord::decode(&k, v.as_deref()), Some(r));
        }
        assert_eq!(OffsetsRecord::decode(&[0, 9], None), None);
    }

    #[test]
    fn consumer_records_round_trip_in_kafka_layout() {
        let t = Uuid::from_u128(0x1234);
        let mut a = Assignment::new();
        a.insert(t, [0, 2, 5].into_iter().collect());
        let member = StoredConsumerMember {
            instance_id: Some("i-1".into()),
            rack_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            subscribed: vec!["a".into(), "b".into()],
            regex: Some("claims-.*".into()),
            rebalance_timeout_ms: 300000,
            server_assignor: Some("uniform".into()),
            principal: "User:alice".into(),
            matched: vec!["claims-eu".into()],
        };
        let current = StoredAssignment {
            member_epoch: 7,
            previous_epoch: 6,
            state: MemberState::UnrevokedPartitions,
            assigned: a.clone(),
            revoking: Assignment::new(),
        };
        let recs = [
            ConsumerRecord::Epoch(Some(9)),
            ConsumerRecord::Epoch(None),
            ConsumerRecord::Topics(Some([("claims-eu".to_string(), (t, 6))].into_iter().collect())),
            ConsumerRecord::Topics(None),
            ConsumerRecord::Member("m".into(), Some(member)),
            ConsumerRecord::Member("m".into(), None),
            ConsumerRecord::TargetEpoch(Some(8)),
            ConsumerRecord::Target("m".into(), Some(a)),
            ConsumerRecord::Target("m".into(), None),
            ConsumerRecord::Current("m".into(), Some(current)),
            ConsumerRecord::Current("m".into(), None),
        ];
        for rec in recs {
            let r = OffsetsRecord::Consumer { group: "g".into(), rec };
            let (k, v) = r.encode();
            assert_eq!(OffsetsRecord::decode(&k, v.as_deref()), Some(r));
        }
        // Kafka's bytes for ConsumerGroupMetadataKey("g") / Value{Epoch: 9}: the key's version
        // is the record type, the value is flexible (an empty tagged-field section ends it).
        let (k, v) = OffsetsRecord::Consumer { group: "g".into(), rec: ConsumerRecord::Epoch(Some(9)) }.encode();
        assert_eq!(k, vec![0, 3, 0, 1, b'g']);
        assert_eq!(v.unwrap(), vec![0, 0, 0, 0, 0, 9, 0]);
        // A value with a truncated tagged field is skipped, not misread.
        let (k, v) = OffsetsRecord::Consumer {
            group: "g".into(),
            rec: ConsumerRecord::Member("m".into(), Some(StoredConsumerMember::default())),
        }
        .encode();
        let v = v.unwrap();
        assert_eq!(OffsetsRecord::decode(&k, Some(&v[..v.len() - 2])), None);
        assert_eq!(OffsetsRecord::decode(&[0, 1, 0, 5, b'a'], None), None);
    }
}
