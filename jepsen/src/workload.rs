//! Jepsen's Kafka `queue` workload with stock librdkafka clients: producer processes send
//! unique values to keys (partitions of one topic), consumer processes read them by manual
//! assignment or as members of one consumer group, and a final drain reads every key from the
//! log start to the high watermark once the faults are healed.
//!
//! Processes are numbered: producers `0..P`, consumers `P..P+C`, the drain `P+C`. Every
//! operation is recorded before it is issued and again when it completes, so the history is
//! a faithful invoke/complete interleaving.
//!
//! librdkafka handles are never dropped: with rdkafka 0.39 / librdkafka 2.12.1 dropping a
//! consumer can hang in `rd_kafka_destroy` (see tests/tests/groups_rdkafka.rs). A replaced
//! client is unassigned, polled briefly and leaked; the process exits without destroying the
//! rest. Leaked clients are few (one per consumer crash) and their fetch buffers are small.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::history::{Body, Key, OpType, Process, Recorder, Val};
use crate::jlog;

/// The workload's topic; key `k` is its partition `k`.
pub const TOPIC: &str = "jepsen-queue";
/// The consumer group of the subscribing consumers.
pub const GROUP: &str = "jepsen-group";

/// Where every key's log starts: the workload never deletes records.
const LOG_START: i64 = 0;

/// Which producers run with `enable.idempotence=true`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Idempotence {
    On,
    Off,
    /// Alternate producer instances: even ones on, odd ones off.
    Both,
}

/// How a consumer process takes its partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SubVia {
    Assign,
    Subscribe,
}

/// The workload's shape.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Options {
    pub bootstrap: String,
    pub partitions: u32,
    pub replication: i32,
    pub producers: u32,
    pub consumers: u32,
    pub idempotence: Idempotence,
    pub sub_via: Vec<SubVia>,
    /// Target operations per second over all processes.
    pub rate: f64,
    pub seed: u64,
    /// Processes sharing one producer instance (so requests of several pipeline).
    pub procs_per_producer: u32,
}

impl Options {
    /// Producer processes whose producer has `enable.idempotence=false`.
    pub fn non_idempotent(&self) -> BTreeSet<Process> {
        (0..self.producers).filter(|p| !self.instance_idempotent(p / self.procs_per_producer.max(1))).collect()
    }

    fn instance_idempotent(&self, instance: u32) -> bool {
        match self.idempotence {
            Idempotence::On => true,
            Idempotence::Off => false,
            Idempotence::Both => instance.is_multiple_of(2),
        }
    }

    /// The drain's process number.
    pub fn drain_process(&self) -> Process {
        self.producers + self.consumers
    }

    fn keys(&self) -> Vec<Key> {
        (0..self.partitions).collect()
    }
}

/// Creates the topic with `partitions` partitions and RF = cluster size (retried briefly:
/// a freshly elected controller may not accept it at once).
pub async fn create_topic(o: &Options) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &o.bootstrap).create().context("admin client")?;
    let admin = std::mem::ManuallyDrop::new(admin);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let topic = NewTopic::new(TOPIC, o.partitions as i32, TopicReplication::Fixed(o.replication));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let err = match admin.create_topics(&[topic], &opts).await {
            Ok(rs) => match rs.into_iter().next() {
                Some(Ok(_)) => return Ok(()),
                Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => return Ok(()),
                Some(Err((_, code))) => format!("{code:?}"),
                None => "no result".to_string(),
            },
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            bail!("creating topic {TOPIC}: {err}");
        }
        jlog!("create topic: {err}; retrying");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A client context that keeps librdkafka's warnings and errors (to `clients.log`): they say
/// why a client did something surprising, e.g. `OFFSET ... offset reset (at offset N, broker
/// B)` when a broker answered OFFSET_OUT_OF_RANGE and the consumer jumped to the log start.
/// Offset resets are also copied to jepsen.log.
pub struct ClientLog {
    /// Which client: `p3`, `producer-1`, `drain`.
    pub name: String,
}

/// librdkafka debug facilities (of `debug=topic`) that show where a consumer's fetch position
/// moves and why: assign and seek, offset resets and validation, fetch version changes,
/// partitions dropped from and returned to metadata. Kept in `clients.log`, so that a
/// poll-skip can be traced to the client or the broker. Low volume: none is per fetch.
const POSITION_FACILITIES: &[&str] = &[
    "FETCH",
    "FETCHDEC",
    "OFFSET",
    "VALIDATE",
    "OFFSETVALID",
    "DESIRED",
    "REMOVE",
    "PARTCNT",
    "PARTSTATE",
    "BRKDELGT",
];

impl ClientContext for ClientLog {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        if matches!(level, RDKafkaLogLevel::Debug) && POSITION_FACILITIES.contains(&fac) {
            crate::log::client_line(&format!("{} {fac} {msg}", self.name));
        } else if (level as i32) <= RDKafkaLogLevel::Warning as i32 {
            crate::log::client_line(&format!("{} {level:?} {fac} {msg}", self.name));
            if fac == "OFFSET" {
                jlog!("client {}: {fac} {msg}", self.name);
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        crate::log::client_line(&format!("{} error {error}: {reason}", self.name));
    }
}

impl ConsumerContext for ClientLog {}

/// A consumer with the logging context.
pub type LoggedConsumer = BaseConsumer<ClientLog>;

/// Shared state of a running workload.
pub struct Workload {
    pub opts: Options,
    rec: Arc<Recorder>,
    stop: Arc<AtomicBool>,
    next_value: Arc<AtomicU64>,
}

fn producer_config(o: &Options, idempotent: bool) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &o.bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", if idempotent { "true" } else { "false" })
        // Retries stay at librdkafka's default (effectively unbounded) but are bounded in time
        // by message.timeout.ms, so every send completes within ~10 s even during a fault.
        .set("message.timeout.ms", "10000")
        .set("request.timeout.ms", "5000")
        .set("socket.timeout.ms", "5000")
        .set("linger.ms", "5")
        .set("batch.size", "1024")
        .set("topic.metadata.refresh.interval.ms", "2000");
    c.set_log_level(RDKafkaLogLevel::Warning);
    c
}

fn consumer_config(o: &Options, group: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &o.bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        // A consumer that stops polling (a leaked, crashed one) leaves the group soon.
        .set("max.poll.interval.ms", "15000")
        .set("socket.timeout.ms", "5000")
        .set("fetch.wait.max.ms", "200")
        // Small prefetch: bounds the memory of leaked clients.
        .set("queued.max.messages.kbytes", "2048")
        .set("topic.metadata.refresh.interval.ms", "2000")
        .set("debug", "topic");
    // rust-rdkafka derives librdkafka's log level from the `log` crate, which the harness
    // does not use: without this, librdkafka drops everything below errors.
    c.set_log_level(RDKafkaLogLevel::Debug);
    c
}

impl Workload {
    /// A workload recording into `rec`; `stop` ends it.
    pub fn new(opts: Options, rec: Arc<Recorder>, stop: Arc<AtomicBool>) -> Workload {
        Workload { opts, rec, stop, next_value: Arc::new(AtomicU64::new(1)) }
    }

    fn record(&self, p: Process, t: OpType, b: Body, e: Option<String>) {
        if let Err(err) = self.rec.record(p, t, b, e) {
            jlog!("history write failed: {err}");
        }
    }

    /// Runs producers (as tasks of the current tokio runtime) and consumers (as threads) until
    /// `stop` is set; returns once every process finished its current operation.
    pub async fn run(self: Arc<Self>) -> Result<()> {
        let o = &self.opts;
        let procs = (o.producers + o.consumers).max(1) as f64;
        // Each process paces itself to its share of the rate (with jitter, so they drift apart).
        let interval = Duration::from_secs_f64(procs / o.rate.max(0.1));
        let per = o.procs_per_producer.max(1);
        let mut instances: BTreeMap<u32, FutureProducer<ClientLog>> = BTreeMap::new();
        let mut tasks = Vec::new();
        for p in 0..o.producers {
            let inst = p / per;
            if let std::collections::btree_map::Entry::Vacant(v) = instances.entry(inst) {
                let prod: FutureProducer<ClientLog> = producer_config(o, o.instance_idempotent(inst))
                    .create_with_context(ClientLog { name: format!("producer-{inst}") })
                    .context("producer")?;
                v.insert(prod);
            }
            let prod = instances[&inst].clone();
            let w = self.clone();
            tasks.push(tokio::spawn(async move { w.producer_loop(p, prod, interval).await }));
        }
        let mut threads = Vec::new();
        for c in 0..o.consumers {
            let p = o.producers + c;
            let via = o.sub_via[c as usize % o.sub_via.len()];
            let w = self.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("consumer-{p}"))
                    .spawn(move || w.consumer_loop(p, via, interval))?,
            );
        }
        for t in tasks {
            let _ = t.await;
        }
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        });
        let _ = joined.await;
        // Producers are leaked, not dropped (see the module docs); their queues are empty.
        for (_, p) in instances {
            std::mem::forget(p);
        }
        Ok(())
    }

    async fn producer_loop(&self, p: Process, prod: FutureProducer<ClientLog>, interval: Duration) {
        let mut rng = StdRng::seed_from_u64(self.opts.seed ^ (0x9e37_79b9 * (p as u64 + 1)));
        while !self.stop.load(Ordering::Relaxed) {
            let key: Key = rng.gen_range(0..self.opts.partitions);
            let value: Val = self.next_value.fetch_add(1, Ordering::Relaxed);
            self.record(p, OpType::Invoke, Body::Send { key, value, offset: None }, None);
            let payload = value.to_string();
            let k = key.to_string();
            let rec = FutureRecord::to(TOPIC).partition(key as i32).key(&k).payload(&payload);
            let (t, off, err) = match prod.send_result(rec) {
                // Refused locally (queue full, unknown partition): never sent.
                Err((e, _)) => (OpType::Fail, None, Some(e.to_string())),
                Ok(fut) => match tokio::time::timeout(Duration::from_secs(15), fut).await {
                    Ok(Ok(Ok(d))) => (OpType::Ok, Some(d.offset), None),
                    Ok(Ok(Err((e, _)))) => (OpType::Info, None, Some(e.to_string())),
                    Ok(Err(_)) => (OpType::Info, None, Some("delivery report lost".into())),
                    Err(_) => (OpType::Info, None, Some("no delivery report within 15 s".into())),
                },
            };
            self.record(p, t, Body::Send { key, value, offset: off }, err);
            tokio::time::sleep(jitter(&mut rng, interval)).await;
        }
    }

    fn consumer_loop(&self, p: Process, via: SubVia, interval: Duration) {
        let mut rng = StdRng::seed_from_u64(self.opts.seed ^ (0x85eb_ca6b * (p as u64 + 1)));
        let group = match via {
            SubVia::Subscribe => GROUP.to_string(),
            // Its own group, never committed: a plain assign starts at the log start.
            SubVia::Assign => format!("jepsen-assign-{p}"),
        };
        let mut consumer: Option<LoggedConsumer> = None;
        let mut assigned: Vec<Key> = Vec::new();
        while !self.stop.load(Ordering::Relaxed) {
            let c = match &consumer {
                Some(c) => c,
                None => {
                    match consumer_config(&self.opts, &group).create_with_context(ClientLog { name: format!("p{p}") }) {
                        Ok(c) => {
                            consumer = Some(c);
                            self.take_partitions(p, via, consumer.as_ref().unwrap(), &mut assigned, &mut rng);
                            continue;
                        }
                        Err(e) => {
                            jlog!("process {p}: creating a consumer: {e}");
                            std::thread::sleep(Duration::from_secs(1));
                            continue;
                        }
                    }
                }
            };
            let roll: f64 = rng.gen();
            if roll < 0.01 {
                // Crash: the client goes away (leaving its group) and a fresh one starts over.
                self.record(p, OpType::Invoke, Body::Crash, None);
                retire(c);
                if let Some(c) = consumer.take() {
                    std::mem::forget(c);
                }
                assigned.clear();
                self.record(p, OpType::Info, Body::Crash, None);
            } else if roll < 0.05 && via == SubVia::Assign {
                self.take_partitions(p, via, c, &mut assigned, &mut rng);
            } else {
                self.poll_once(p, via, c);
            }
            std::thread::sleep(jitter(&mut rng, interval));
        }
        if let Some(c) = consumer.take() {
            retire(&c);
            std::mem::forget(c);
        }
    }

    /// An `Assign` (random non-empty key set, sometimes from the beginning) or `Subscribe` op.
    fn take_partitions(&self, p: Process, via: SubVia, c: &LoggedConsumer, assigned: &mut Vec<Key>, rng: &mut StdRng) {
        match via {
            SubVia::Subscribe => {
                let keys = self.opts.keys();
                self.record(p, OpType::Invoke, Body::Subscribe { keys: keys.clone() }, None);
                let (t, e) = match c.subscribe(&[TOPIC]) {
                    Ok(()) => (OpType::Ok, None),
                    Err(e) => (OpType::Info, Some(e.to_string())),
                };
                self.record(p, t, Body::Subscribe { keys }, e);
            }
            SubVia::Assign => {
                let mut keys = self.opts.keys();
                keys.shuffle(rng);
                keys.truncate(rng.gen_range(1..=keys.len()));
                keys.sort();
                let seek = rng.gen_bool(0.3);
                let body = Body::Assign { keys: keys.clone(), seek_to_beginning: seek };
                self.record(p, OpType::Invoke, body.clone(), None);
                // Keys it keeps continue from where it is; new ones, and all with seek, start
                // at the log start. That is offset 0 (the workload never deletes records),
                // given as such: resolving the logical BEGINNING (or an assign group's never
                // committed offset) takes a ListOffsets, and librdkafka 2.12.1 re-sends one
                // from a timer armed by an outdated reply after the partition is already
                // fetching, then starts over from its answer (a nonmonotonic-poll of the
                // client's own, seed 2027 on f924a42; jepsen/README.md).
                let positions: BTreeMap<i32, i64> = c
                    .position()
                    .map(|l| {
                        l.elements()
                            .iter()
                            .filter_map(|e| match e.offset() {
                                Offset::Offset(o) => Some((e.partition(), o)),
                                _ => None,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let mut tpl = TopicPartitionList::new();
                let mut res = Ok(());
                for &k in &keys {
                    let off = match positions.get(&(k as i32)) {
                        Some(&o) if !seek && assigned.contains(&k) => Offset::Offset(o),
                        _ => Offset::Offset(LOG_START),
                    };
                    if let Err(e) = tpl.add_partition_offset(TOPIC, k as i32, off) {
                        res = Err(e);
                    }
                }
                let res = res.and_then(|()| c.assign(&tpl));
                let (t, e) = match res {
                    Ok(()) => {
                        *assigned = keys;
                        (OpType::Ok, None)
                    }
                    // assign() is local to the client; a failure means it did not happen.
                    Err(e) => (OpType::Fail, Some(e.to_string())),
                };
                self.record(p, t, body, e);
            }
        }
    }

    /// One poll op: up to 200 ms / 100 records; a subscriber commits synchronously first.
    fn poll_once(&self, p: Process, via: SubVia, c: &LoggedConsumer) {
        self.record(p, OpType::Invoke, Body::Poll { records: vec![] }, None);
        let (records, mut err) = gather(c, Duration::from_millis(200), 100);
        if via == SubVia::Subscribe && !records.is_empty() {
            if let Err(e) = c.commit_consumer_state(CommitMode::Sync) {
                err = Some(format!("commit: {e}"));
            }
        }
        let t = if err.is_some() { OpType::Info } else { OpType::Ok };
        self.record(p, t, Body::Poll { records }, err);
    }

    /// The final phase: a fresh consumer assigned every key from the beginning reads until its
    /// position reaches each key's high watermark (read once, after healing), within `budget`.
    pub fn drain(&self, budget: Duration) -> Result<bool> {
        let o = &self.opts;
        let p = o.drain_process();
        let deadline = Instant::now() + budget;
        let c: LoggedConsumer = consumer_config(o, &format!("jepsen-drain-{}", o.seed))
            .create_with_context(ClientLog { name: "drain".into() })
            .context("drain consumer")?;
        let c = std::mem::ManuallyDrop::new(c);
        // High watermarks; retried, since leaders may still be settling.
        let mut ends: BTreeMap<Key, i64> = BTreeMap::new();
        while ends.len() < o.partitions as usize && Instant::now() < deadline {
            for k in o.keys() {
                if ends.contains_key(&k) {
                    continue;
                }
                match c.fetch_watermarks(TOPIC, k as i32, Duration::from_secs(5)) {
                    Ok((_, high)) => {
                        ends.insert(k, high);
                    }
                    Err(e) => jlog!("drain: high watermark of key {k}: {e}"),
                }
            }
            if ends.len() < o.partitions as usize {
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        jlog!("drain: end offsets {ends:?}");
        let keys = o.keys();
        let body = Body::Assign { keys: keys.clone(), seek_to_beginning: true };
        self.record(p, OpType::Invoke, body.clone(), None);
        let mut tpl = TopicPartitionList::new();
        for &k in &keys {
            tpl.add_partition_offset(TOPIC, k as i32, Offset::Beginning)?;
        }
        c.assign(&tpl).context("drain assign")?;
        self.record(p, OpType::Ok, body, None);
        let mut pos: BTreeMap<Key, i64> = BTreeMap::new();
        let done = |pos: &BTreeMap<Key, i64>| {
            keys.iter().all(|k| match ends.get(k) {
                Some(&end) => end <= 0 || pos.get(k).is_some_and(|&p| p >= end),
                None => false,
            })
        };
        let mut reads = 0usize;
        while !done(&pos) && Instant::now() < deadline {
            self.record(p, OpType::Invoke, Body::Poll { records: vec![] }, None);
            let (records, err) = gather(&c, Duration::from_millis(500), 1000);
            reads += records.len();
            for &(k, off, _) in &records {
                let e = pos.entry(k).or_insert(0);
                *e = (*e).max(off + 1);
            }
            // Positions also move past gaps (aborted or missing offsets) without records.
            if let Ok(l) = c.position() {
                for e in l.elements() {
                    if let Offset::Offset(o) = e.offset() {
                        let v = pos.entry(e.partition() as Key).or_insert(0);
                        *v = (*v).max(o);
                    }
                }
            }
            let t = if err.is_some() { OpType::Info } else { OpType::Ok };
            self.record(p, t, Body::Poll { records }, err);
        }
        let complete = done(&pos) && ends.len() == o.partitions as usize;
        let end_offsets: Vec<(Key, i64)> = ends.into_iter().collect();
        let drain = Body::Drain { complete: false, end_offsets: end_offsets.clone() };
        self.record(p, OpType::Invoke, drain, None);
        self.record(p, OpType::Ok, Body::Drain { complete, end_offsets }, None);
        jlog!("drain: read {reads} records, complete: {complete}, positions {pos:?}");
        Ok(complete)
    }
}

/// Reads from `c` for up to `window` or `max` records; the records as `(key, offset, value)`
/// and the first error seen (which ends the gathering).
fn gather(c: &LoggedConsumer, window: Duration, max: usize) -> (Vec<(Key, i64, Val)>, Option<String>) {
    let end = Instant::now() + window;
    let mut records = Vec::new();
    while records.len() < max {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match c.poll(left) {
            None => break,
            Some(Ok(m)) => {
                let v = m.payload().and_then(|b| std::str::from_utf8(b).ok()).and_then(|s| s.parse::<Val>().ok());
                match v {
                    Some(v) => records.push((m.partition() as Key, m.offset(), v)),
                    None => return (records, Some(format!("unparseable value at {}/{}", m.partition(), m.offset()))),
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => return (records, Some(e.to_string())),
        }
    }
    (records, None)
}

/// Stops a consumer's fetching and group membership without destroying it (bounded).
fn retire(c: &LoggedConsumer) {
    c.unsubscribe();
    let _ = c.unassign();
    let end = Instant::now() + Duration::from_millis(300);
    while Instant::now() < end {
        let _ = c.poll(Duration::from_millis(50));
    }
}

fn jitter(rng: &mut StdRng, d: Duration) -> Duration {
    d.mul_f64(rng.gen_range(0.5..1.5))
}
