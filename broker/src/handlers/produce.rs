//! Produce and InitProducerId.
//!
//! A produced batch is validated (header, CRC, size, one batch per partition as Kafka
//! requires from v3), copied once into a mutable buffer so the log can stamp its offset in
//! place, and appended. With acks=all the response waits for the group-committed fsync when
//! the topic's flush policy asks for one (Rill's default).

use std::sync::Arc;

use bytes::BytesMut;
use futures::future::join_all;
use rill_protocol::batch::{self, BatchHeader};
use rill_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use rill_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse, ProducerId,
};
use rill_protocol::records::RecordValidator;
use rill_protocol::ResponseError;

use crate::broker::{now_ms, Broker};
use crate::error::KafkaError;
use crate::producer_state::{ProducerStates, SequenceCheck};
use crate::topics::{Partition, Topic};
use std::sync::atomic::Ordering;

thread_local! {
    /// One decompression buffer per worker thread, reused across batches.
    static VALIDATOR: std::cell::RefCell<RecordValidator> = std::cell::RefCell::new(RecordValidator::default());
}

struct Appended {
    base_offset: i64,
    log_append_time: i64,
    log_start_offset: i64,
    /// Offset up to which (exclusive) the data must be durable before acknowledging.
    sync_upto: Option<i64>,
}

fn validate_batch(topic: &Topic, records: Option<&[u8]>) -> Result<BatchHeader, KafkaError> {
    let records = records
        .filter(|r| !r.is_empty())
        .ok_or_else(|| KafkaError::InvalidRecord("produce request without records".into()))?;
    let mut batches = batch::split_batches(records);
    let (_, whole) = match batches.next() {
        Some(Ok(b)) => b,
        Some(Err(e)) => return Err(e.into()),
        None => {
            let header = BatchHeader::parse(records)?;
            return Err(batch::BatchError::Truncated { need: header.total_len(), have: records.len() }.into());
        }
    };
    if whole.len() != records.len() {
        return Err(KafkaError::InvalidRecord(
            "Produce requests with version 3+ are only allowed to contain exactly one record batch per partition"
                .into(),
        ));
    }
    if whole.len() > topic.settings.max_message_bytes {
        return Err(KafkaError::MessageTooLarge { size: whole.len(), max: topic.settings.max_message_bytes });
    }
    let header = batch::validate(whole)?;
    // Like Kafka's LogValidator, look inside: a batch whose header and CRC are fine can
    // still hold malformed records, and consumers must never be served those.
    // On a compacted topic every record needs a key (LogValidator: INVALID_RECORD).
    VALIDATOR.with(|v| {
        let mut v = v.borrow_mut();
        if topic.settings.compact {
            v.validate_keyed(whole)
        } else {
            v.validate(whole)
        }
    })?;
    if header.is_control() {
        return Err(KafkaError::InvalidRecord("clients may not produce control batches".into()));
    }
    if header.is_transactional() {
        return Err(KafkaError::InvalidRequest("transactions are not supported yet".into()));
    }
    Ok(header)
}

fn append(topic: &Topic, partition: &Partition, records: &[u8], acks: i16) -> Result<Appended, KafkaError> {
    let header = validate_batch(topic, Some(records))?;
    let log_append_time = topic.settings.log_append_time.then(now_ms);
    let idempotent = header.producer_id >= 0;
    let last_seq = header.base_sequence.wrapping_add(header.last_offset_delta);
    let mut producers = partition.producers.lock();
    // Generation 1 = rebuilt from the log since this start (a single node has one leader).
    if idempotent && partition.producers_term.swap(1, Ordering::AcqRel) != 1 {
        *producers = ProducerStates::rebuild(&partition.log)?;
    }
    if idempotent {
        match producers.check(header.producer_id, header.producer_epoch, header.base_sequence, last_seq, i64::MAX)? {
            // A single node appends under this lock, so nothing is ever in flight here.
            SequenceCheck::Append | SequenceCheck::InFlight => {}
            SequenceCheck::Duplicate { base_offset } => {
                return Ok(Appended {
                    base_offset,
                    log_append_time: -1,
                    log_start_offset: partition.log.log_start_offset(),
                    sync_upto: (acks == -1 && partition.log.sync_on_ack()).then(|| base_offset + 1),
                });
            }
        }
    }
    // The one copy on the produce path: the request buffer is shared and immutable.
    let mut buf = BytesMut::from(records);
    let info = partition.log.append(&mut buf, crate::handlers::metadata::LEADER_EPOCH, log_append_time)?;
    if idempotent {
        producers.record(header.producer_id, header.producer_epoch, header.base_sequence, last_seq, info.first_offset);
    }
    drop(producers);
    partition.stats.produced(records.len(), header.records_count);
    partition.appended.notify_waiters();
    Ok(Appended {
        base_offset: info.first_offset,
        log_append_time: info.log_append_time,
        log_start_offset: info.log_start_offset,
        sync_upto: (acks == -1 && partition.log.sync_on_ack()).then_some(info.last_offset + 1),
    })
}

fn partition_response(index: i32, result: Result<Appended, KafkaError>) -> PartitionProduceResponse {
    let r = PartitionProduceResponse::default().with_index(index);
    match result {
        Ok(a) => r
            .with_base_offset(a.base_offset)
            .with_log_append_time_ms(a.log_append_time)
            .with_log_start_offset(a.log_start_offset),
        Err(e) => {
            if matches!(e, KafkaError::Storage(_)) {
                tracing::error!(error = %e, "append failed");
            }
            r.with_error_code(e.code()).with_error_message(Some(super::s(e.to_string()))).with_base_offset(-1)
        }
    }
}

type Commit = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Appended, KafkaError>> + Send>>;

/// What an acknowledgement still waits for.
enum Wait {
    /// Single node: the fsync of the partition up to this offset.
    Sync(Arc<Partition>, i64),
    /// Cluster: the Raft commit of the batch.
    Commit(Commit),
}

/// A produce whose appends are done (or queued for replication) and whose acknowledgement
/// may still wait for fsyncs or commits.
pub struct Started {
    acks: i16,
    response: ProduceResponse,
    /// (topic index, partition index, what to wait for)
    syncs: Vec<(usize, usize, Wait)>,
}

/// Cluster mode: validates the batch and queues it in the partition's Raft group; the
/// returned future resolves once a quorum has it. Offsets are assigned as the entry is
/// appended on each replica, so they are only known then.
async fn replicate(topic: &Topic, p: &Arc<Partition>, records: &[u8]) -> Result<Commit, KafkaError> {
    let g = p.replica.as_ref().expect("replicated partition");
    p.check_leader()?;
    let header = validate_batch(topic, Some(records))?;
    let idempotent = header.producer_id >= 0;
    let last_seq = header.base_sequence.wrapping_add(header.last_offset_delta);
    let (pid, epoch, seq) = (header.producer_id, header.producer_epoch, header.base_sequence);
    {
        let mut producers = p.producers.lock();
        let term = g.term();
        if idempotent && p.producers_term.swap(term, Ordering::AcqRel) != term {
            // A new leader: the old one's batches are in our log (Raft), so a retry of one
            // of them must be recognised, not appended again.
            *producers = ProducerStates::rebuild_keeping_in_flight(&p.log, &producers)?;
        }
        if idempotent {
            match producers.check(pid, epoch, seq, last_seq, p.high_watermark())? {
                SequenceCheck::Append => producers.record(pid, epoch, seq, last_seq, -1),
                SequenceCheck::Duplicate { base_offset } => {
                    let a = Appended {
                        base_offset,
                        log_append_time: -1,
                        log_start_offset: p.log.log_start_offset(),
                        sync_upto: None,
                    };
                    return Ok(Box::pin(async move { Ok(a) }));
                }
                SequenceCheck::InFlight => return Ok(Box::pin(await_in_flight(p.clone(), pid, epoch, seq, last_seq))),
            }
        }
    }
    let mut buf = BytesMut::from(records);
    let log_append_time = if topic.settings.log_append_time {
        // Stamped by the leader before replication so every replica stores the same bytes.
        let t = now_ms();
        batch::stamp_log_append_time(&mut buf, t);
        t
    } else {
        -1
    };
    let queued = std::time::Instant::now();
    let commit = match g.submit(buf.freeze()).await {
        Ok(c) => c,
        Err(e) => {
            if idempotent {
                p.producers.lock().forget_from(pid, epoch, seq);
            }
            return Err(KafkaError::InvalidRequest(e.to_string()));
        }
    };
    // The producer state learns the outcome in a task of its own: if the client's request is
    // dropped (its connection closed), a retry must still find the batch resolved, never
    // in flight for ever.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let p = p.clone();
    tokio::spawn(async move {
        let result = commit.await;
        if result.is_ok() {
            crate::metrics::observe_raft_commit(queued.elapsed());
        }
        let mut producers = p.producers.lock();
        let reply = match result {
            Ok(a) => {
                if idempotent {
                    producers.set_offset(pid, epoch, seq, a.base_offset);
                }
                Ok(Appended {
                    base_offset: a.base_offset,
                    log_append_time,
                    log_start_offset: p.log.log_start_offset(),
                    sync_upto: None,
                })
            }
            Err(e) => {
                if idempotent {
                    producers.forget_from(pid, epoch, seq);
                }
                Err(match e {
                    rill_raft::group::WriteError::NotLeader { .. } => KafkaError::NotLeaderOrFollower,
                    other => KafkaError::InvalidRequest(other.to_string()),
                })
            }
        };
        let _ = tx.send(reply);
    });
    Ok(Box::pin(async move { rx.await.map_err(|_| KafkaError::InvalidRequest("replication task ended".into()))? }))
}

/// How often a retried batch looks whether its first attempt has been resolved.
const IN_FLIGHT_POLL: std::time::Duration = std::time::Duration::from_millis(5);
/// Kafka's default `request.timeout.ms`: after this the retry is told to try again.
const IN_FLIGHT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A retry of a batch whose first attempt is still replicating: answered like the first
/// attempt once that is resolved. Answering at once would acknowledge a batch that may yet
/// be lost with its leader.
async fn await_in_flight(
    p: Arc<Partition>,
    pid: i64,
    epoch: i16,
    seq: i32,
    last_seq: i32,
) -> Result<Appended, KafkaError> {
    let deadline = tokio::time::Instant::now() + IN_FLIGHT_WAIT;
    loop {
        tokio::time::sleep(IN_FLIGHT_POLL).await;
        // A batch in the log above the high watermark is decided by the next leader.
        p.check_leader()?;
        match p.producers.lock().check(pid, epoch, seq, last_seq, p.high_watermark())? {
            SequenceCheck::Duplicate { base_offset } => {
                return Ok(Appended {
                    base_offset,
                    log_append_time: -1,
                    log_start_offset: p.log.log_start_offset(),
                    sync_upto: None,
                })
            }
            // The first attempt failed and was forgotten: the client retries and appends.
            SequenceCheck::Append => return Err(KafkaError::NotLeaderOrFollower),
            SequenceCheck::InFlight if tokio::time::Instant::now() >= deadline => {
                return Err(KafkaError::RequestTimedOut)
            }
            SequenceCheck::InFlight => {}
        }
    }
}

impl Started {
    /// True when nothing is left to wait for.
    pub fn is_done(&self) -> bool {
        self.syncs.is_empty()
    }

    /// Waits for the fsyncs (shared with concurrent producers: group commit) and builds the
    /// response; `None` for acks=0.
    pub async fn finish(mut self) -> Option<ProduceResponse> {
        let syncs = std::mem::take(&mut self.syncs).into_iter().map(|(ti, pi, wait)| async move {
            let res = match wait {
                Wait::Sync(p, upto) => match tokio::task::spawn_blocking(move || p.log.sync(upto)).await {
                    Ok(Ok(())) => Ok(None),
                    Ok(Err(e)) => Err(KafkaError::Storage(e)),
                    Err(join) => Err(KafkaError::InvalidRequest(format!("sync task failed: {join}"))),
                },
                Wait::Commit(c) => c.await.map(Some),
            };
            (ti, pi, res)
        });
        for (ti, pi, res) in join_all(syncs).await {
            let part = &mut self.response.responses[ti].partition_responses[pi];
            let err = match res {
                Ok(None) => continue,
                Ok(Some(a)) => {
                    part.base_offset = a.base_offset;
                    part.log_append_time_ms = a.log_append_time;
                    part.log_start_offset = a.log_start_offset;
                    continue;
                }
                Err(e) => e,
            };
            if matches!(err, KafkaError::Storage(_)) {
                tracing::error!(error = %err, "fsync failed; produce not acknowledged");
            }
            part.error_code = err.code();
            part.error_message = Some(super::s(err.to_string()));
            part.base_offset = -1;
        }
        (self.acks != 0).then_some(self.response)
    }
}

/// Validates and appends every partition's batch. Runs inline on the connection, so appends
/// happen in request order as Kafka guarantees; only the fsync (or Raft commit) wait is left
/// for [`Started::finish`].
pub async fn start(broker: &Broker, req: ProduceRequest, version: i16) -> Started {
    let acks = req.acks;
    let mut syncs = Vec::new();
    let mut topics_out = Vec::with_capacity(req.topic_data.len());
    for td in req.topic_data {
        let topic =
            if version >= 13 { broker.topics.get_by_id(&td.topic_id) } else { broker.topics.get(td.name.0.as_str()) };
        let mut parts = Vec::with_capacity(td.partition_data.len());
        for pd in td.partition_data {
            let result = if !matches!(acks, -1..=1) {
                Err(KafkaError::InvalidRequiredAcks(acks))
            } else {
                match &topic {
                    None if version >= 13 => Err(KafkaError::UnknownTopicId),
                    None => Err(KafkaError::UnknownTopicOrPartition),
                    Some(t) if t.name == crate::groups::OFFSETS_TOPIC => {
                        Err(KafkaError::InvalidTopic(format!("Cannot append to internal topic {}", t.name)))
                    }
                    Some(t) => match t.partition(pd.index) {
                        Err(e) => Err(e),
                        Ok(p) if p.replica.is_some() => {
                            let records = pd.records.as_deref().unwrap_or(&[]);
                            replicate(t, &p, records).await.map(|commit| {
                                syncs.push((topics_out.len(), parts.len(), Wait::Commit(commit)));
                                // Filled in when the commit resolves.
                                Appended { base_offset: -1, log_append_time: -1, log_start_offset: -1, sync_upto: None }
                            })
                        }
                        Ok(p) => {
                            let records = pd.records.as_deref().unwrap_or(&[]);
                            append(t, &p, records, acks).inspect(|a| {
                                if let Some(upto) = a.sync_upto {
                                    syncs.push((topics_out.len(), parts.len(), Wait::Sync(p.clone(), upto)));
                                }
                            })
                        }
                    },
                }
            };
            parts.push(partition_response(pd.index, result));
        }
        topics_out.push(
            TopicProduceResponse::default()
                .with_name(td.name)
                .with_topic_id(td.topic_id)
                .with_partition_responses(parts),
        );
    }
    Started { acks, response: ProduceResponse::default().with_responses(topics_out), syncs }
}

pub async fn handle(broker: &Arc<Broker>, req: ProduceRequest, version: i16) -> Option<ProduceResponse> {
    start(broker, req, version).await.finish().await
}

pub fn init_producer_id(broker: &Broker, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    if req.transactional_id.is_some() {
        // Transactions come with their coordinator; refuse clearly rather than half-work.
        return resp.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    // KIP-360: a producer may ask to bump its epoch after a timeout.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        return resp.with_producer_id(req.producer_id).with_producer_epoch(req.producer_epoch + 1);
    }
    match broker.topics.allocate_producer_id() {
        Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => resp.with_error_code(e.code()),
    }
}
