//! Idempotent-producer bookkeeping for one partition: the last batches each producer wrote, so
//! a retried batch is answered with its original offset instead of being written twice.
//!
//! The state is kept in memory and rebuilt from the batch headers at the tail of the log when
//! a partition is first written after a start, and whenever a replica becomes leader, so a
//! producer retrying a batch that the old leader (or the node before its crash) wrote gets
//! the original offset back instead of a second copy. Producers whose last batch lies before
//! that tail ([`REBUILD_WINDOW`] offsets) are accepted at whatever sequence they send, as
//! Kafka does for producers whose state expired.

use std::collections::{HashMap, VecDeque};

use rill_protocol::batch;
use rill_storage::{PartitionLog, StorageError};

use crate::error::KafkaError;

/// How many offsets back from the log end a rebuild reads. A client retries a batch for at
/// most `delivery.timeout.ms`; this covers that window for partitions taking up to a few
/// hundred batches a second without reading a whole log on every leader change.
pub const REBUILD_WINDOW: i64 = 100_000;
/// Bytes read from the log per step of a rebuild.
const REBUILD_CHUNK: usize = 1 << 20;

/// Kafka keeps the last five batches per producer: a client has at most five in flight.
const CACHED_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy)]
struct BatchRecord {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
}

#[derive(Debug, Default)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchRecord>,
}

impl ProducerEntry {
    fn find(&self, first_seq: i32, last_seq: i32) -> Option<&BatchRecord> {
        self.batches.iter().find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
    }
}

/// What to do with an incoming idempotent batch.
#[derive(Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// New data: append it.
    Append,
    /// A retry of a batch already written at this base offset.
    Duplicate { base_offset: i64 },
    /// A retry of a batch that is still being replicated: its outcome is not known yet.
    InFlight,
}

#[derive(Debug, Default)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

impl ProducerStates {
    /// Checks a batch's producer epoch and sequence range before it is appended. A batch
    /// already in the log at or above `committed_end` (the high watermark) is still in flight:
    /// answering a retry with its offset would acknowledge a write a leader change may yet
    /// remove.
    pub fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
        committed_end: i64,
    ) -> Result<SequenceCheck, KafkaError> {
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(SequenceCheck::Append);
        };
        if epoch < entry.epoch {
            return Err(KafkaError::InvalidProducerEpoch);
        }
        if epoch > entry.epoch {
            // A bumped epoch restarts the sequence at zero.
            return if first_seq == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(KafkaError::OutOfOrderSequence { producer_id, expected: 0, got: first_seq })
            };
        }
        if let Some(dup) = entry.find(first_seq, last_seq) {
            if dup.base_offset < 0 || dup.base_offset >= committed_end {
                return Ok(SequenceCheck::InFlight);
            }
            return Ok(SequenceCheck::Duplicate { base_offset: dup.base_offset });
        }
        let expected = entry.batches.back().map_or(0, |b| next_seq(b.last_seq));
        if first_seq == expected {
            Ok(SequenceCheck::Append)
        } else {
            Err(KafkaError::OutOfOrderSequence { producer_id, expected, got: first_seq })
        }
    }

    /// Records a batch that was appended.
    pub fn record(&mut self, producer_id: i64, epoch: i16, first_seq: i32, last_seq: i32, base_offset: i64) {
        let entry = self.producers.entry(producer_id).or_default();
        if epoch != entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == CACHED_BATCHES {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchRecord { first_seq, last_seq, base_offset });
    }

    /// The state a log's tail implies: the last batches of every idempotent producer that
    /// wrote among the last [`REBUILD_WINDOW`] offsets. Reads batch headers only.
    pub fn rebuild(log: &PartitionLog) -> Result<ProducerStates, StorageError> {
        let mut states = ProducerStates::default();
        let end = log.log_end_offset();
        let mut offset = (end - REBUILD_WINDOW).max(log.log_start_offset());
        while offset < end {
            let chunk = match log.read(offset, REBUILD_CHUNK, end) {
                Ok(r) => r.records,
                // Retention moved the log start under us: carry on from there.
                Err(StorageError::OffsetOutOfRange { log_start, .. }) if log_start > offset => {
                    offset = log_start;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let before = offset;
            for b in batch::split_batches(&chunk) {
                let Ok((h, _)) = b else { break };
                offset = h.last_offset() + 1;
                if h.producer_id >= 0 && !h.is_control() {
                    let last_seq = h.base_sequence.wrapping_add(h.last_offset_delta);
                    states.record(h.producer_id, h.producer_epoch, h.base_sequence, last_seq, h.base_offset);
                }
            }
            if offset == before {
                break; // nothing readable (a corrupt tail is recovery's business, not ours)
            }
        }
        Ok(states)
    }

    /// [`ProducerStates::rebuild`] for a leader of a new term, keeping from `old` the batches
    /// this node submitted whose outcome it has not learnt yet. Their entries may still be on
    /// their way into the log (openraft appends a write queued under the old term once this
    /// node leads the new one): rebuilt without them, the state took a retry of such a batch
    /// for new data and the batch was written twice (jepsen seed 2027, adjacent offsets, right
    /// after a power loss of every node). Their commit tasks resolve them as before.
    pub fn rebuild_keeping_in_flight(log: &PartitionLog, old: &ProducerStates) -> Result<ProducerStates, StorageError> {
        let mut states = Self::rebuild(log)?;
        for (&pid, o) in &old.producers {
            if states.producers.get(&pid).is_some_and(|e| e.epoch > o.epoch) {
                continue; // the log already holds a newer epoch of this producer
            }
            for b in o.batches.iter().filter(|b| b.base_offset < 0) {
                // One already in the log stays as logged: the high watermark decides when it
                // is written.
                let logged = states
                    .producers
                    .get(&pid)
                    .is_some_and(|e| e.epoch == o.epoch && e.find(b.first_seq, b.last_seq).is_some());
                if !logged {
                    states.record(pid, o.epoch, b.first_seq, b.last_seq, -1);
                }
            }
        }
        Ok(states)
    }

    /// Cluster mode records a batch before it is committed (so the producer's next in-flight
    /// batch passes the sequence check) and fills in its offset here once it is.
    pub fn set_offset(&mut self, producer_id: i64, epoch: i16, first_seq: i32, base_offset: i64) {
        if let Some(e) = self.producers.get_mut(&producer_id).filter(|e| e.epoch == epoch) {
            if let Some(b) = e.batches.iter_mut().find(|b| b.first_seq == first_seq) {
                b.base_offset = base_offset;
            }
        }
    }

    /// Drops a batch recorded ahead of a commit that failed, and every later one, so retries
    /// are appended rather than taken for duplicates.
    pub fn forget_from(&mut self, producer_id: i64, epoch: i16, first_seq: i32) {
        if let Some(e) = self.producers.get_mut(&producer_id).filter(|e| e.epoch == epoch) {
            if let Some(i) = e.batches.iter().position(|b| b.first_seq == first_seq) {
                e.batches.truncate(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_gaps() {
        let mut s = ProducerStates::default();
        assert_eq!(s.check(7, 0, 0, 4, i64::MAX).unwrap(), SequenceCheck::Append);
        s.record(7, 0, 0, 4, 100);
        assert_eq!(s.check(7, 0, 0, 4, i64::MAX).unwrap(), SequenceCheck::Duplicate { base_offset: 100 });
        assert_eq!(s.check(7, 0, 5, 5, i64::MAX).unwrap(), SequenceCheck::Append);
        assert!(matches!(s.check(7, 0, 9, 9, i64::MAX), Err(KafkaError::OutOfOrderSequence { expected: 5, .. })));
        s.record(7, 1, 0, 0, 200);
        assert!(matches!(s.check(7, 0, 1, 1, i64::MAX), Err(KafkaError::InvalidProducerEpoch)));
    }

    /// A new leader (or a restarted node) must know the batches already in its log: a
    /// producer retrying one of them gets the original offset back.
    #[test]
    fn rebuilt_from_the_log_tail() {
        use rill_protocol::records::{encode_batch, EncodeOptions, RecordIn};
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), rill_storage::LogConfig::default()).unwrap();
        let rec = |v: &'static [u8]| RecordIn { key: None, value: Some(v), headers: &[], timestamp: 1 };
        let append = |pid: i64, seq: i32, n: usize| {
            let recs: Vec<_> = (0..n).map(|_| rec(b"x")).collect();
            let opts = EncodeOptions { producer_id: pid, producer_epoch: 0, base_sequence: seq, ..Default::default() };
            log.append(&mut encode_batch(&recs, &opts), 3, None).unwrap().first_offset
        };
        let first = append(7, 0, 2);
        append(-1, -1, 1); // a plain producer's batch is not tracked
        let second = append(7, 2, 3);
        let other = append(9, 0, 1);
        let s = ProducerStates::rebuild(&log).unwrap();
        assert_eq!(s.check(7, 0, 0, 1, i64::MAX).unwrap(), SequenceCheck::Duplicate { base_offset: first });
        assert_eq!(s.check(7, 0, 2, 4, i64::MAX).unwrap(), SequenceCheck::Duplicate { base_offset: second });
        assert_eq!(s.check(9, 0, 0, 0, i64::MAX).unwrap(), SequenceCheck::Duplicate { base_offset: other });
        assert_eq!(s.check(7, 0, 5, 5, i64::MAX).unwrap(), SequenceCheck::Append);
        assert!(matches!(s.check(7, 0, 6, 6, i64::MAX), Err(KafkaError::OutOfOrderSequence { expected: 5, .. })));
    }

    /// Compaction empties superseded batches but keeps their headers, so the sequences they
    /// carried are still known after a rebuild.
    #[test]
    fn rebuilt_from_a_compacted_log() {
        use rill_protocol::records::{encode_batch, EncodeOptions, RecordIn};
        let dir = tempfile::tempdir().unwrap();
        let config = rill_storage::LogConfig { segment_bytes: 200, ..Default::default() };
        let log = PartitionLog::open(dir.path(), config).unwrap();
        let rec = RecordIn { key: Some(b"k"), value: Some(b"v"), headers: &[], timestamp: 1 };
        let mut firsts = Vec::new();
        for seq in 0..4 {
            let opts = EncodeOptions { producer_id: 7, producer_epoch: 0, base_sequence: seq, ..Default::default() };
            firsts.push(log.append(&mut encode_batch(&[rec], &opts), 3, None).unwrap().first_offset);
        }
        let cleaner = rill_storage::CleanerConfig { min_cleanable_dirty_ratio: 0.0, ..Default::default() };
        let s = log.clean(log.log_end_offset(), &cleaner, 2).unwrap().expect("due");
        assert!(s.records_removed > 0);
        let s = ProducerStates::rebuild(&log).unwrap();
        for (seq, first) in firsts.into_iter().enumerate() {
            let seq = seq as i32;
            assert_eq!(s.check(7, 0, seq, seq, i64::MAX).unwrap(), SequenceCheck::Duplicate { base_offset: first });
        }
        assert_eq!(s.check(7, 0, 4, 4, i64::MAX).unwrap(), SequenceCheck::Append);
    }

    #[test]
    fn a_retry_of_an_unresolved_batch_is_in_flight() {
        let mut s = ProducerStates::default();
        s.record(7, 0, 0, 4, -1);
        assert_eq!(s.check(7, 0, 0, 4, i64::MAX).unwrap(), SequenceCheck::InFlight);
        s.set_offset(7, 0, 0, 40);
        assert_eq!(s.check(7, 0, 0, 4, i64::MAX).unwrap(), SequenceCheck::Duplicate { base_offset: 40 });
        s.record(7, 0, 5, 5, -1);
        s.forget_from(7, 0, 5);
        assert_eq!(s.check(7, 0, 5, 5, i64::MAX).unwrap(), SequenceCheck::Append);
    }

    /// A new leader's rebuild keeps the batches it submitted whose entries have not reached
    /// its log yet; a retry of one waits for it instead of writing it a second time.
    #[test]
    fn rebuild_keeps_batches_still_on_their_way_to_the_log() {
        use rill_protocol::records::{encode_batch, EncodeOptions, RecordIn};
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), rill_storage::LogConfig::default()).unwrap();
        let rec = RecordIn { key: None, value: Some(b"x"), headers: &[], timestamp: 1 };
        let opts = EncodeOptions { producer_id: 7, producer_epoch: 0, base_sequence: 0, ..Default::default() };
        let first = log.append(&mut encode_batch(&[rec], &opts), 3, None).unwrap().first_offset;
        let mut old = ProducerStates::default();
        old.record(7, 0, 0, 0, first);
        old.record(7, 0, 1, 1, -1); // submitted under the old term, not in the log yet
        old.record(9, 0, 0, 0, -1); // a producer the log has never seen
        let s = ProducerStates::rebuild_keeping_in_flight(&log, &old).unwrap();
        assert_eq!(s.check(7, 0, 0, 0, i64::MAX).unwrap(), SequenceCheck::Duplicate { base_offset: first });
        assert_eq!(s.check(7, 0, 1, 1, i64::MAX).unwrap(), SequenceCheck::InFlight);
        assert_eq!(s.check(9, 0, 0, 0, i64::MAX).unwrap(), SequenceCheck::InFlight);
        assert_eq!(s.check(7, 0, 2, 2, i64::MAX).unwrap(), SequenceCheck::Append);
        // Without the old state the retry would have been taken for new data.
        let plain = ProducerStates::rebuild(&log).unwrap();
        assert_eq!(plain.check(7, 0, 1, 1, i64::MAX).unwrap(), SequenceCheck::Append);
    }

    /// A batch in the log above the high watermark is not written yet: a retry of it waits.
    #[test]
    fn a_logged_batch_above_the_high_watermark_is_in_flight() {
        let mut s = ProducerStates::default();
        s.record(7, 0, 0, 4, 100);
        assert_eq!(s.check(7, 0, 0, 4, 100).unwrap(), SequenceCheck::InFlight);
        assert_eq!(s.check(7, 0, 0, 4, 105).unwrap(), SequenceCheck::Duplicate { base_offset: 100 });
    }

    #[test]
    fn sequence_wraps() {
        let mut s = ProducerStates::default();
        s.record(1, 0, i32::MAX - 1, i32::MAX, 0);
        assert_eq!(s.check(1, 0, 0, 3, i64::MAX).unwrap(), SequenceCheck::Append);
    }
}
