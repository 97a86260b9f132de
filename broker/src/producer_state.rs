//! Idempotent-producer bookkeeping for one partition: the last batches each producer wrote, so
//! a retried batch is answered with its original offset instead of being written twice.
//!
//! The state is kept in memory. After a restart a producer the partition has not seen since
//! is accepted at whatever sequence it sends, as Kafka does for producers whose state expired.

use std::collections::{HashMap, VecDeque};

use crate::error::KafkaError;

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

/// What to do with an incoming idempotent batch.
#[derive(Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// New data: append it.
    Append,
    /// A retry of a batch already written at this base offset.
    Duplicate { base_offset: i64 },
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
    /// Checks a batch's producer epoch and sequence range before it is appended.
    pub fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
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
        if let Some(dup) = entry.batches.iter().find(|b| b.first_seq == first_seq && b.last_seq == last_seq) {
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
        assert_eq!(s.check(7, 0, 0, 4).unwrap(), SequenceCheck::Append);
        s.record(7, 0, 0, 4, 100);
        assert_eq!(s.check(7, 0, 0, 4).unwrap(), SequenceCheck::Duplicate { base_offset: 100 });
        assert_eq!(s.check(7, 0, 5, 5).unwrap(), SequenceCheck::Append);
        assert!(matches!(s.check(7, 0, 9, 9), Err(KafkaError::OutOfOrderSequence { expected: 5, .. })));
        s.record(7, 1, 0, 0, 200);
        assert!(matches!(s.check(7, 0, 1, 1), Err(KafkaError::InvalidProducerEpoch)));
    }

    #[test]
    fn sequence_wraps() {
        let mut s = ProducerStates::default();
        s.record(1, 0, i32::MAX - 1, i32::MAX, 0);
        assert_eq!(s.check(1, 0, 0, 3).unwrap(), SequenceCheck::Append);
    }
}
