//! ListOffsets and OffsetForLeaderEpoch.

use rill_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use rill_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use rill_protocol::messages::{
    ListOffsetsRequest, ListOffsetsResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
};

use crate::broker::Broker;
use crate::error::KafkaError;
use crate::handlers::metadata::{check_leader_epoch, LEADER_EPOCH};
use crate::topics::Partition;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

/// (offset, timestamp) for one lookup; offset -1 when no record qualifies.
fn lookup(p: &Partition, timestamp: i64) -> Result<(i64, i64), KafkaError> {
    match timestamp {
        LATEST => Ok((p.log.log_end_offset(), -1)),
        EARLIEST | EARLIEST_LOCAL => Ok((p.log.log_start_offset(), -1)),
        // Nothing is tiered: the answer Kafka gives without remote storage.
        LATEST_TIERED => Ok((-1, -1)),
        MAX_TIMESTAMP => match p.log.max_timestamp()? {
            Some((last_offset, max_ts)) => Ok(first_record_at(p, last_offset, |ts| ts == max_ts)?.unwrap_or((-1, -1))),
            None => Ok((-1, -1)),
        },
        ts if ts >= 0 => match p.log.offset_for_timestamp(ts)? {
            Some((offset, _)) => Ok(first_record_at(p, offset, |t| t >= ts)?.unwrap_or((-1, -1))),
            None => Ok((-1, -1)),
        },
        other => Err(KafkaError::InvalidRequest(format!("invalid ListOffsets timestamp {other}"))),
    }
}

/// The storage answers timestamp queries per batch; Kafka answers per record. Walk the batch
/// holding `offset` and return the first record at or after it whose timestamp matches.
/// Not a hot path: this is the only place the broker looks inside records.
fn first_record_at(
    p: &Partition,
    offset: i64,
    matches: impl Fn(i64) -> bool,
) -> Result<Option<(i64, i64)>, KafkaError> {
    let read = p.log.read(offset, 1, p.log.log_end_offset())?;
    let Some(Ok((header, batch))) = rill_protocol::batch::split_batches(&read.records).next() else {
        return Ok(None);
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
    Ok(found)
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
                        .and_then(|t| t.partition(lp.partition_index));
                    let epoch_check = check_leader_epoch(lp.current_leader_epoch);
                    match (found.and_then(|p| lookup(&p, lp.timestamp)), epoch_check) {
                        (_, Err(e)) => r.with_error_code(e.code()).with_offset(-1).with_timestamp(-1),
                        (Ok((offset, ts)), Ok(())) => r
                            .with_offset(offset)
                            .with_timestamp(ts)
                            .with_leader_epoch(if offset >= 0 && version >= 4 { LEADER_EPOCH } else { -1 }),
                        (Err(e), Ok(())) => r.with_error_code(e.code()).with_offset(-1).with_timestamp(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// With a single leader epoch, the end offset of any epoch up to the current one is the log end.
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
                    match (found, check_leader_epoch(op.current_leader_epoch)) {
                        (Err(e), _) => r.with_error_code(e.code()).with_leader_epoch(-1).with_end_offset(-1),
                        (_, Err(e)) => r.with_error_code(e.code()).with_leader_epoch(-1).with_end_offset(-1),
                        (Ok(_), Ok(())) if op.leader_epoch > LEADER_EPOCH => {
                            r.with_leader_epoch(-1).with_end_offset(-1)
                        }
                        (Ok(p), Ok(())) => r.with_leader_epoch(LEADER_EPOCH).with_end_offset(p.log.log_end_offset()),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default().with_topic(t.topic).with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
