//! `rill-loadgen latency`: fixed-rate producer + consumer, coordinated omission corrected.
//!
//! Record i is due at `start + i / rate`. The producer sends it as soon as it is due (never
//! skipping: a producer that fell behind sends the backlog back to back) and writes the *due*
//! time (ns since a process-wide base instant) into the first 8 bytes of the value; byte 8 marks
//! warm-up records (not recorded). Latencies are measured from that due time, so time a record
//! spent waiting because an earlier send stalled is counted (Gil Tene's coordinated omission).
//!   produce latency: due time -> delivery report (the broker's acknowledgement)
//!   end-to-end:      due time -> the consumer (assign() from offset 0, same process) polls it
//! Output: one JSON line with records, elapsed_s, records_per_s (achieved send rate), and
//! produce_latency_ms / e2e_latency_ms = {p50, p99, p999, max, n}.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

use crate::{consumer_config, every_partition_from_start, process_cpu, send_retrying, thread_cpu, Args};

/// Microseconds, 1 us .. 1 h, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds")
}

/// (due ns since base, warm-up) from a record value written by the producer.
fn stamp(v: Option<&[u8]>) -> Option<(u64, bool)> {
    let v = v?;
    (v.len() >= 9).then(|| (u64::from_le_bytes(v[..8].try_into().unwrap()), v[8] == 1))
}

fn record_since(h: &Mutex<Histogram<u64>>, base: Instant, due_ns: u64) {
    let now_ns = base.elapsed().as_nanos() as u64;
    let us = (now_ns.saturating_sub(due_ns) / 1000).max(1);
    h.lock().unwrap().saturating_record(us);
}

struct Ctx {
    base: Instant,
    ok: AtomicU64,
    err: AtomicU64,
    hist: Mutex<Histogram<u64>>,
}
impl ClientContext for Ctx {}
impl ProducerContext for Ctx {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(m) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                if let Some((due, false)) = stamp(m.payload()) {
                    record_since(&self.hist, self.base, due);
                }
            }
            Err(_) => {
                self.err.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn summary(h: &Histogram<u64>) -> String {
    let ms = |us: u64| us as f64 / 1000.0;
    format!(
        "{{\"p50\": {:.3}, \"p99\": {:.3}, \"p999\": {:.3}, \"max\": {:.3}, \"mean\": {:.3}, \"n\": {}}}",
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
        h.mean() / 1000.0,
        h.len()
    )
}

struct ConsumerOut {
    got: u64,
    errors: u64,
    hist: Histogram<u64>,
}

/// Reads the topic from offset 0 until `target` records (set by the producer once it knows how
/// many were delivered) or the deadline; records the end-to-end latency of non-warm-up records.
fn consumer(a: &Args, base: Instant, target: Arc<AtomicU64>, ready: Arc<AtomicBool>, deadline: Instant) -> ConsumerOut {
    let c: BaseConsumer = consumer_config(&a.bootstrap, "rill-bench-latency-unused")
        .set("fetch.wait.max.ms", a.opt("fetch-wait-max-ms", 100u32).to_string())
        .create()
        .expect("consumer");
    c.assign(&every_partition_from_start(&c, &a.topic)).expect("assign");
    let mut out = ConsumerOut { got: 0, errors: 0, hist: histogram() };
    let h = Mutex::new(histogram());
    let armed = Instant::now() + Duration::from_millis(500);
    while out.got < target.load(Ordering::Relaxed) && Instant::now() < deadline {
        if !ready.load(Ordering::Relaxed) && Instant::now() > armed {
            ready.store(true, Ordering::Release);
        }
        match c.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                out.got += 1;
                if let Some((due, false)) = stamp(m.payload()) {
                    record_since(&h, base, due);
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => {
                out.errors += 1;
                if out.errors <= 3 {
                    eprintln!("consume error: {e}");
                }
            }
            None => {}
        }
    }
    ready.store(true, Ordering::Release);
    out.hist = h.into_inner().unwrap();
    out
}

pub(crate) fn run(a: &Args) {
    let rate: f64 = a.opt("rate", 5000.0);
    let duration: f64 = a.opt("duration", 30.0);
    let warmup: f64 = a.opt("warmup", 2.0);
    let keyed: u8 = a.opt("keyed", 0u8);
    assert!(rate > 0.0 && duration > 0.0 && a.size >= 9, "need --rate > 0, --duration > 0, --size >= 9");
    let base = Instant::now();
    let deadline = base + Duration::from_secs_f64(warmup + duration + a.timeout);
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let ready = Arc::new(AtomicBool::new(false));
    let cons = {
        let (target, ready) = (target.clone(), ready.clone());
        let a2 = a.clone();
        std::thread::spawn(move || consumer(&a2, base, target, ready, deadline))
    };
    let p: BaseProducer<Ctx> = ClientConfig::new()
        .set("bootstrap.servers", &a.bootstrap)
        .set("acks", &a.acks)
        .set("linger.ms", a.opt("linger-ms", 5u32).to_string())
        .set("compression.type", "none")
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", ((a.timeout * 1000.0) as u64).to_string())
        .create_with_context(Ctx { base, ok: AtomicU64::new(0), err: AtomicU64::new(0), hist: Mutex::new(histogram()) })
        .expect("producer");
    let topics: Vec<&str> = a.topic.split(',').collect();
    for t in &topics {
        p.client().fetch_metadata(Some(t), Duration::from_secs(30)).expect("metadata");
    }
    while !ready.load(Ordering::Acquire) && Instant::now() < deadline {
        p.poll(Duration::from_millis(10));
    }
    let n_warm = (rate * warmup) as u64;
    let n = n_warm + (rate * duration) as u64;
    let mut value = vec![0u8; a.size];
    for (i, b) in value.iter_mut().enumerate().skip(9) {
        *b = (i as u32).wrapping_mul(2654435761).to_le_bytes()[3];
    }
    let interval_ns = 1e9 / rate;
    let start_ns = base.elapsed().as_nanos() as u64 + 1_000_000;
    let (c0, th0) = (process_cpu(), thread_cpu());
    let t_start = base + Duration::from_nanos(start_ns);
    let (mut i, mut max_lag_ns, mut timed_out) = (0u64, 0u64, false);
    while i < n {
        let due = start_ns + (i as f64 * interval_ns) as u64;
        let now = base.elapsed().as_nanos() as u64;
        if now < due {
            let wait = due - now;
            if wait > 1_500_000 {
                p.poll(Duration::from_millis((wait / 1_000_000 - 1).max(1)));
            } else {
                p.poll(Duration::ZERO);
                std::thread::sleep(Duration::from_nanos(wait.min(200_000)));
            }
            continue;
        }
        max_lag_ns = max_lag_ns.max(now - due);
        value[..8].copy_from_slice(&due.to_le_bytes());
        value[8] = (i < n_warm) as u8;
        let key = i.to_le_bytes();
        let mut rec = BaseRecord::<[u8], [u8]>::to(topics[i as usize % topics.len()]).payload(&value[..]);
        if keyed != 0 {
            rec = rec.key(&key[..]);
        }
        if !send_retrying(&p, rec, deadline) {
            timed_out = true;
            break;
        }
        i += 1;
        p.poll(Duration::ZERO);
    }
    let send_elapsed = Instant::now().saturating_duration_since(t_start);
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
    if p.flush(left).is_err() {
        timed_out = true;
    }
    p.poll(Duration::ZERO);
    let ctx = p.context();
    let ok = ctx.ok.load(Ordering::Relaxed);
    target.store(ok, Ordering::Relaxed);
    let co = cons.join().expect("consumer thread");
    let timed_out = timed_out || ok < n || co.got < ok;
    let produce_hist = ctx.hist.lock().unwrap();
    let elapsed = send_elapsed.as_secs_f64();
    let measured = ok.saturating_sub(n_warm);
    println!(
        "{{\"mode\": \"latency\", \"client\": \"rust\", \"target_rate\": {rate}, \"duration_s\": {duration}, \"warmup_s\": {warmup}, \
\"records\": {ok}, \"measured\": {measured}, \"consumed\": {}, \"bytes\": {}, \"elapsed_s\": {elapsed:.4}, \"records_per_s\": {:.1}, \"mb_per_s\": {:.3}, \
\"max_send_lag_ms\": {:.3}, \"produce_latency_ms\": {}, \"e2e_latency_ms\": {}, \
\"client_cpu_s\": {:.3}, \"main_thread_cpu_s\": {:.3}, \"errors\": {}, \"timed_out\": {timed_out}}}",
        co.got,
        ok * a.size as u64,
        if elapsed > 0.0 { i as f64 / elapsed } else { 0.0 },
        if elapsed > 0.0 { (ok * a.size as u64) as f64 / elapsed / 1e6 } else { 0.0 },
        max_lag_ns as f64 / 1e6,
        summary(&produce_hist),
        summary(&co.hist),
        process_cpu() - c0,
        thread_cpu() - th0,
        ctx.err.load(Ordering::Relaxed) + co.errors,
    );
    std::process::exit(if timed_out { 2 } else { 0 });
}
