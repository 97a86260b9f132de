//! Fetch with long polling. Sessions (KIP-227) are declined by answering with session id 0,
//! so clients keep sending full requests, which Kafka clients handle.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::select_all;
use rill_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use rill_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use rill_protocol::ResponseError;
use tokio::time::Instant;
use uuid::Uuid;

use crate::broker::Broker;
use crate::error::KafkaError;
use crate::topics::Partition;

/// Upper bound on how long a fetch may wait, whatever the client asks.
const MAX_WAIT: Duration = Duration::from_secs(30);

struct Wanted {
    topic: TopicName,
    topic_id: Uuid,
    partitions: Vec<WantedPartition>,
}

struct WantedPartition {
    index: i32,
    offset: i64,
    max_bytes: usize,
    current_leader_epoch: i32,
    target: Result<Arc<Partition>, KafkaError>,
}

/// Reads every requested partition once; returns the response and the bytes it carries.
fn read_all(wanted: &[Wanted], max_bytes: usize) -> (Vec<FetchableTopicResponse>, usize) {
    let mut remaining = max_bytes;
    let mut total = 0;
    let mut topics = Vec::with_capacity(wanted.len());
    for w in wanted {
        let mut parts = Vec::with_capacity(w.partitions.len());
        for wp in &w.partitions {
            let mut pd = PartitionData::default()
                .with_partition_index(wp.index)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_records(Some(Bytes::new()));
            let p = match &wp.target {
                Err(e) => {
                    parts.push(pd.with_error_code(e.code()));
                    continue;
                }
                Ok(p) => p,
            };
            if let Err(e) = p.check_leader() {
                parts.push(pd.with_error_code(e.code()));
                continue;
            }
            if let Err(e) = p.check_epoch(wp.current_leader_epoch) {
                parts.push(pd.with_error_code(e.code()));
                continue;
            }
            let hw = p.high_watermark();
            pd = pd.with_high_watermark(hw).with_last_stable_offset(hw);
            // KIP-74: the first partition with data returns at least one whole batch even if
            // it exceeds the limits; later ones only what still fits.
            let limit = wp.max_bytes.min(remaining);
            if limit == 0 && total > 0 {
                parts.push(pd.with_log_start_offset(p.log.log_start_offset()));
                continue;
            }
            match p.log.read(wp.offset, limit.max(1), hw) {
                Ok(r) => {
                    let n = r.records.len();
                    total += n;
                    remaining = remaining.saturating_sub(n);
                    parts.push(pd.with_log_start_offset(r.log_start_offset).with_records(Some(r.records)));
                }
                Err(e) => {
                    let e = KafkaError::from(e);
                    parts.push(pd.with_log_start_offset(p.log.log_start_offset()).with_error_code(e.code()));
                }
            }
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(w.topic.clone())
                .with_topic_id(w.topic_id)
                .with_partitions(parts),
        );
    }
    (topics, total)
}

/// Adds what the response carries to each partition's bytes/messages-out totals. Only the
/// read that is answered counts: a long poll may read (too little) several times.
fn count_out(wanted: &[Wanted], topics: &[FetchableTopicResponse]) {
    for (w, t) in wanted.iter().zip(topics) {
        for (wp, pd) in w.partitions.iter().zip(&t.partitions) {
            if let (Ok(p), Some(records)) = (&wp.target, &pd.records) {
                p.stats.fetched(records);
            }
        }
    }
}

pub async fn handle(broker: &Arc<Broker>, req: FetchRequest, version: i16) -> FetchResponse {
    if req.session_id != 0 {
        // We never hand out sessions, so any id is one we do not know.
        return FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code());
    }
    let wanted: Vec<Wanted> = req
        .topics
        .into_iter()
        .map(|ft| {
            let topic = if version >= 13 {
                broker.topics.get_by_id(&ft.topic_id)
            } else {
                broker.topics.get(ft.topic.0.as_str())
            };
            let partitions = ft
                .partitions
                .into_iter()
                .map(|fp| WantedPartition {
                    index: fp.partition,
                    offset: fp.fetch_offset,
                    max_bytes: fp.partition_max_bytes.max(0) as usize,
                    current_leader_epoch: fp.current_leader_epoch,
                    target: match &topic {
                        Some(t) => t.partition(fp.partition),
                        None if version >= 13 => Err(KafkaError::UnknownTopicId),
                        None => Err(KafkaError::UnknownTopicOrPartition),
                    },
                })
                .collect();
            Wanted { topic: ft.topic, topic_id: ft.topic_id, partitions }
        })
        .collect();
    let max_bytes = if req.max_bytes <= 0 { usize::MAX } else { req.max_bytes as usize };
    let min_bytes = req.min_bytes.max(0) as usize;
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT);
    let waitable: Vec<Arc<Partition>> =
        wanted.iter().flat_map(|w| w.partitions.iter().filter_map(|p| p.target.as_ref().ok().cloned())).collect();
    loop {
        // Register interest before reading, so an append between the read and the wait is not missed.
        let mut notified: Vec<Pin<Box<tokio::sync::futures::Notified<'_>>>> =
            waitable.iter().map(|p| Box::pin(p.appended.notified())).collect();
        for n in &mut notified {
            n.as_mut().enable();
        }
        let (topics, total) = read_all(&wanted, max_bytes);
        let has_error = topics.iter().any(|t| t.partitions.iter().any(|p| p.error_code != 0));
        if total >= min_bytes.max(1) || has_error || notified.is_empty() || Instant::now() >= deadline || min_bytes == 0
        {
            count_out(&wanted, &topics);
            return FetchResponse::default().with_responses(topics);
        }
        let _waiting = crate::metrics::FetchWait::enter();
        tokio::select! {
            _ = select_all(notified) => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}
