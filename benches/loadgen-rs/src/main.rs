//! librdkafka load generator (rdkafka crate), the same contract as benches/loadgen.py:
//!
//!     rill-loadgen produce --bootstrap H:P --topic T --count N --size S --acks 1|all [--timeout SEC]
//!     rill-loadgen consume --bootstrap H:P --topic T --count N [--size S] [--timeout SEC]
//!     rill-loadgen latency --bootstrap H:P --topic T --rate R --duration SEC [--warmup SEC]
//!                          [--size S] [--acks 1|all] [--linger-ms MS] [--keyed 1] [--timeout SEC]
//!     (latency: --topic may be a comma list; records go to the topics in turn)
//!
//! Prints one JSON object: records, bytes, elapsed_s, records_per_s, mb_per_s (10^6 bytes of
//! record values per second), errors, client_cpu_s (whole process), main_thread_cpu_s.
//! Producer: timed from the first send until every delivery report arrived.
//! Consumer: assign() every partition from offset 0, timed until `count` records were read
//! (group.id set, never committed). Both bounded by --timeout; exit code 2 when it expires.
//!
//! Latency (`latency`, see latency.rs): a producer on a fixed schedule (record i is due at
//! start + i/rate) and a consumer in the same process; each record carries its *intended* send
//! time, so a stalled send is charged to every record due meanwhile (coordinated omission
//! corrected). Reports produce latency (intended send -> delivery report) and end-to-end latency
//! (intended send -> received by the consumer), p50/p99/p99.9/max, over the records after the
//! warm-up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, ToBytes};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

mod latency;

#[derive(Default)]
struct Ctx {
    ok: AtomicU64,
    err: AtomicU64,
}
impl ClientContext for Ctx {}
impl ProducerContext for Ctx {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.err.fetch_add(1, Ordering::Relaxed),
        };
    }
}

pub(crate) fn cpu(who: libc::c_int) -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(who, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}
pub(crate) fn process_cpu() -> f64 {
    cpu(libc::CLOCK_PROCESS_CPUTIME_ID)
}
pub(crate) fn thread_cpu() -> f64 {
    cpu(libc::CLOCK_THREAD_CPUTIME_ID)
}

#[derive(Clone)]
pub(crate) struct Args {
    mode: String,
    /// Options only some modes read (latency: rate, duration, warmup, linger-ms, keyed).
    kv: HashMap<String, String>,
    pub(crate) bootstrap: String,
    pub(crate) topic: String,
    count: u64,
    pub(crate) size: usize,
    pub(crate) acks: String,
    pub(crate) timeout: f64,
}

impl Args {
    pub(crate) fn opt<T: std::str::FromStr>(&self, k: &str, default: T) -> T {
        self.kv.get(k).map(|v| v.parse().unwrap_or_else(|_| panic!("bad --{k} {v}"))).unwrap_or(default)
    }
}

fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let mode = it.next().unwrap_or_default();
    let mut kv = HashMap::new();
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("missing value for {k}"));
        kv.insert(k.trim_start_matches("--").to_string(), v);
    }
    let get = |k: &str, d: &str| kv.get(k).cloned().unwrap_or_else(|| d.to_string());
    if mode != "produce" && mode != "consume" && mode != "latency" {
        eprintln!("usage: rill-loadgen produce|consume|latency --bootstrap H:P --topic T --count N [--size S] [--acks 1|all] [--timeout SEC]");
        std::process::exit(64);
    }
    Args {
        mode,
        bootstrap: get("bootstrap", "127.0.0.1:9092"),
        topic: get("topic", "bench"),
        count: get("count", "1000000").parse().expect("count"),
        size: get("size", "100").parse().expect("size"),
        acks: get("acks", "all"),
        timeout: get("timeout", "300").parse().expect("timeout"),
        kv,
    }
}

struct Out {
    records: u64,
    bytes: u64,
    elapsed: f64,
    cpu: f64,
    thread_cpu: f64,
    errors: u64,
    timed_out: bool,
}

/// Sends `rec`, serving delivery reports while librdkafka's queue is full; false if `deadline`
/// passed first.
pub(crate) fn send_retrying<C, K>(p: &BaseProducer<C>, mut rec: BaseRecord<'_, K, [u8]>, deadline: Instant) -> bool
where
    C: ProducerContext<DeliveryOpaque = ()>,
    K: ToBytes + ?Sized,
{
    loop {
        match p.send(rec) {
            Ok(()) => return true,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                rec = r;
                p.poll(Duration::from_millis(1));
                if Instant::now() > deadline {
                    return false;
                }
            }
            Err((e, _)) => panic!("send: {e}"),
        }
    }
}

fn produce(a: &Args) -> Out {
    let p: BaseProducer<Ctx> = ClientConfig::new()
        .set("bootstrap.servers", &a.bootstrap)
        .set("acks", &a.acks)
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("batch.num.messages", "1000000")
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "2097151")
        .set("compression.type", "none")
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", ((a.timeout * 1000.0) as u64).to_string())
        .create_with_context(Ctx::default())
        .expect("producer");
    p.client().fetch_metadata(Some(&a.topic), Duration::from_secs(10)).expect("metadata");
    let payload: Vec<u8> = (0..a.size).map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[3]).collect();
    let deadline = Instant::now() + Duration::from_secs_f64(a.timeout);
    let (c0, th0, t0) = (process_cpu(), thread_cpu(), Instant::now());
    let mut sent = 0u64;
    let mut timed_out = false;
    'outer: while sent < a.count {
        if !send_retrying(&p, BaseRecord::<(), [u8]>::to(&a.topic).payload(&payload[..]), deadline) {
            timed_out = true;
            break 'outer;
        }
        sent += 1;
        if sent % 10_000 == 0 {
            p.poll(Duration::ZERO);
        }
    }
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
    if p.flush(left).is_err() {
        timed_out = true;
    }
    p.poll(Duration::ZERO);
    let elapsed = t0.elapsed().as_secs_f64();
    let ctx = p.context();
    let ok = ctx.ok.load(Ordering::Relaxed);
    Out {
        records: ok,
        bytes: ok * a.size as u64,
        elapsed,
        cpu: process_cpu() - c0,
        thread_cpu: thread_cpu() - th0,
        errors: ctx.err.load(Ordering::Relaxed),
        timed_out: timed_out || ok < a.count,
    }
}

/// A consumer that reads without committing: `group.id` set (librdkafka needs one), offsets
/// neither committed nor stored, no CRC checks.
pub(crate) fn consumer_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("check.crcs", "false");
    c
}

/// Every partition of `topics` (one name or a comma list; from Metadata) at offset 0, for
/// `assign()`.
pub(crate) fn every_partition_from_start(c: &BaseConsumer, topics: &str) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for topic in topics.split(',') {
        let md = c.fetch_metadata(Some(topic), Duration::from_secs(30)).expect("metadata");
        let nparts = md.topics().iter().find(|t| t.name() == topic).map(|t| t.partitions().len()).unwrap_or(0);
        assert!(nparts > 0, "topic {topic} has no partitions");
        for p in 0..nparts as i32 {
            tpl.add_partition_offset(topic, p, Offset::Offset(0)).unwrap();
        }
    }
    tpl
}

fn consume(a: &Args) -> Out {
    let c: BaseConsumer = consumer_config(&a.bootstrap, "rill-bench-unused")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "8388608")
        // librdkafka pauses fetching for fetch.queue.backoff.ms (default 1 s) once its local queue
        // holds queued.min.messages (default 100,000): with 100 B records one 8 MB fetch does that.
        .set("queued.min.messages", "2000000")
        .set("queued.max.messages.kbytes", "1048576")
        .set("fetch.queue.backoff.ms", "10")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let tpl = every_partition_from_start(&c, &a.topic);
    let deadline = Instant::now() + Duration::from_secs_f64(a.timeout);
    let (c0, th0, t0) = (process_cpu(), thread_cpu(), Instant::now());
    c.assign(&tpl).expect("assign");
    let (mut got, mut bytes, mut errors) = (0u64, 0u64, 0u64);
    while got < a.count && Instant::now() < deadline {
        match c.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                got += 1;
                bytes += m.payload().map_or(0, |p| p.len()) as u64;
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => {
                errors += 1;
                if errors <= 3 {
                    eprintln!("consume error: {e}");
                }
            }
            None => {}
        }
    }
    Out {
        records: got,
        bytes,
        elapsed: t0.elapsed().as_secs_f64(),
        cpu: process_cpu() - c0,
        thread_cpu: thread_cpu() - th0,
        errors,
        timed_out: got < a.count,
    }
}

fn main() {
    let a = parse_args();
    if a.mode == "latency" {
        latency::run(&a);
        return;
    }
    let o = if a.mode == "produce" { produce(&a) } else { consume(&a) };
    let rate = |x: f64| if o.elapsed > 0.0 { x / o.elapsed } else { 0.0 };
    println!(
        "{{\"mode\": \"{}\", \"client\": \"rust\", \"records\": {}, \"bytes\": {}, \"elapsed_s\": {:.4}, \"records_per_s\": {:.1}, \"mb_per_s\": {:.3}, \"client_cpu_s\": {:.3}, \"main_thread_cpu_s\": {:.3}, \"errors\": {}, \"timed_out\": {}}}",
        a.mode,
        o.records,
        o.bytes,
        o.elapsed,
        rate(o.records as f64),
        rate(o.bytes as f64) / 1e6,
        o.cpu,
        o.thread_cpu,
        o.errors,
        o.timed_out
    );
    std::process::exit(if o.timed_out { 2 } else { 0 });
}
