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
//! A group's records all go to partition `abs(javaHashCode(group)) % partitions`, as in Kafka, so
//! they are ordered by the log.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes};
use rill_protocol::records::{self, EncodeOptions, RecordIn};

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
    Offset { group: String, topic: String, partition: i32, value: Option<OffsetValue> },
    Group { group: String, value: Option<GroupValue> },
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
            OffsetsRecord::Offset { group, .. } | OffsetsRecord::Group { group, .. } => group,
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
            _ => None,
        }
    }
}

/// The partitions of `__consumer_offsets` (in a cluster: attached once the topic exists).
pub struct OffsetsLog {
    partitions: parking_lot::RwLock<Vec<Arc<Partition>>>,
}

impl OffsetsLog {
    pub fn new(partitions: Vec<Arc<Partition>>) -> Self {
        OffsetsLog { partitions: parking_lot::RwLock::new(partitions) }
    }

    pub fn attach(&self, partitions: Vec<Arc<Partition>>) {
        *self.partitions.write() = partitions;
    }

    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().clone()
    }

    /// The partition holding `group`'s records, if the topic exists yet.
    pub fn partition_of(&self, group: &str) -> Option<Arc<Partition>> {
        let parts = self.partitions.read();
        (!parts.is_empty()).then(|| parts[partition_for(group, parts.len())].clone())
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
        assert_eq!(OffsetsRecord::decode(&[0, 1, 0, 5, b'a'], None), None);
    }
}
