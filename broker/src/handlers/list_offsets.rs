//! ListOffsets and OffsetForLeaderEpoch.

use rill_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use rill_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use rill_protocol::messages::{
    ListOffsetsRequest, ListOffsetsResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
};

use crate::broker::Broker;
use crate::error::KafkaError;
use crate::handlers::metadata::LEADER_EPOCH;
use crate::topics::Partition;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

/// (offset, timestamp) for one lookup; offset -1 when no record qualifies.
fn lookup(p: &Partition, timestamp: i64) -> Result<(i64, i64), KafkaError> {
    match timestamp {
        LATEST => Ok((p.high_watermark(), -1)),
        EARLIEST | EARLIEST_LOCAL => Ok((p.log.log_start_offset(), -1)),
        // Nothing is tiered: the answer Kafka gives without remote storage.
        LATEST_TIERED => Ok((-1, -1)),
        MAX_TIMESTAMP => match p.log.max_timestamp()? {
            // Compaction may have removed that record; the batch's answer is the honest fallback.
            Some((last_offset, max_ts)) => {
                Ok(first_record_at(p, last_offset, |ts| ts == max_ts)?.0.unwrap_or((last_offset, max_ts)))
            }
            None => Ok((-1, -1)),
        },
        ts if ts >= 0 => match p.log.offset_for_timestamp(ts)? {
            Some((mut offset, _)) => loop {
                // A compacted batch keeps its header's max timestamp but maybe not the record it
                // came from: then the answer lies in a later batch.
                match first_record_at(p, offset, |t| t >= ts)? {
                    (Some(found), _) => break Ok(found),
                    (None, Some(next)) => offset = next,
                    (None, None) => break Ok((-1, -1)),
                }
            },
            None => Ok((-1, -1)),
        },
        other => Err(KafkaError::InvalidRequest(format!("invalid ListOffsets timestamp {other}"))),
    }
}

/// The storage answers timestamp queries per batch; Kafka answers per record. Walk the batch
/// holding `offset` and return the first record at or after it whose timestamp matches.
/// `(offset, timestamp)` of a record, as ListOffsets answers.
type Found = (i64, i64);

/// Not a hot path: this is the only place the broker looks inside records. Also returns the
/// offset after the batch, if there is one.
fn first_record_at(
    p: &Partition,
    offset: i64,
    matches: impl Fn(i64) -> bool,
) -> Result<(Option<Found>, Option<i64>), KafkaError> {
    let read = p.log.read(offset, 1, p.high_watermark())?;
    let Some(Ok((header, batch))) = rill_protocol::batch::split_batches(&read.records).next() else {
        return Ok((None, None));
    };
    let mut scratch = Vec::new();
    let mut found = None;
    rill_protocol::records::for_each_record(batch, &mut scratch, |r| {
        let record_offset = header.base_offset + r.offset_delta as i64;
        let ts =
            if header.is_log_append_time() { header.max_timestamp } else { header.base_timestamp + r.timestamp_delta };
        if found.is_none() && record_offset >= offset.min(header.last_offset()) && matches(ts) {
            found = Some((record_offset, ts));
        }
    })?;
    Ok((found, Some(header.last_offset() + 1)))
}

pub fn handle(broker: &Broker, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = broker.topics.get(t.name.0.as_str());
            let partitions = t
                .partitions
                .into_iter()
                .map(|lp| {
                    let r = ListOffsetsPartitionResponse::default().with_partition_index(lp.partition_index);
                    let found = topic
                        .as_ref()
                        .ok_or(KafkaError::UnknownTopicOrPartition)
                        .and_then(|t| t.partition(lp.partition_index))
                        .and_then(|p| p.check_leader().map(|()| p));
                    let p = match found {
                        Ok(p) => p,
                        Err(e) => return r.with_error_code(e.code()).with_offset(-1).with_timestamp(-1),
                    };
                    if let Err(e) = p.check_epoch(lp.current_leader_epoch) {
                        return r.with_error_code(e.code()).with_offset(-1).with_timestamp(-1);
                    }
                    match lookup(&p, lp.timestamp) {
                        Ok((offset, ts)) => r
                            .with_offset(offset)
                            .with_timestamp(ts)
                            .with_leader_epoch(if offset >= 0 && version >= 4 { p.leader_epoch() } else { -1 }),
                        Err(e) => r.with_error_code(e.code()).with_offset(-1).with_timestamp(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// Kafka's answer for "where does epoch `epoch` end": the largest epoch at or below it with
/// records and the first offset after them, from the log; the current epoch ends at the log
/// end. (-1, -1) for an epoch newer than ours.
///
/// Never bounded by the high watermark: a leader learns the commit index of its term only
/// when an entry of the term commits, so just after an election its high watermark can be
/// below what consumers have already read. librdkafka validates its fetch position (which
/// runs ahead of what the application has polled) with this answer and seeks to it when it
/// is lower, dropping what it prefetched in between: consumers skipped records (jepsen
/// seed 2027, a poll-skip of 4,245 records after every node restarted).
fn epoch_end(p: &Partition, epoch: i32) -> (i32, i64) {
    let current = p.leader_epoch();
    if epoch > current {
        return (-1, -1);
    }
    match &p.replica {
        None => (LEADER_EPOCH, p.high_watermark()),
        Some(_) if epoch == current => (current, p.log.log_end_offset()),
        Some(g) => match g.shared.with_index(|idx| idx.epoch_end(epoch.max(0) as u64)) {
            Some((e, end)) => (e as i32, end),
            None => (-1, -1),
        },
    }
}

pub fn offset_for_leader_epoch(broker: &Broker, req: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = broker.topics.get(t.topic.0.as_str());
            let partitions = t
                .partitions
                .into_iter()
                .map(|op| {
                    let r = EpochEndOffset::default().with_partition(op.partition);
                    let found = topic
                        .as_ref()
                        .ok_or(KafkaError::UnknownTopicOrPartition)
                        .and_then(|t| t.partition(op.partition));
                    let p = match found.and_then(|p| p.check_leader().map(|()| p)) {
                        Ok(p) => p,
                        Err(e) => return r.with_error_code(e.code()).with_leader_epoch(-1).with_end_offset(-1),
                    };
                    if let Err(e) = p.check_epoch(op.current_leader_epoch) {
                        return r.with_error_code(e.code()).with_leader_epoch(-1).with_end_offset(-1);
                    }
                    let (epoch, end) = epoch_end(&p, op.leader_epoch);
                    r.with_leader_epoch(epoch).with_end_offset(end)
                })
                .collect();
            OffsetForLeaderTopicResult::default().with_topic(t.topic).with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
