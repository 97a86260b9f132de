//! Broker metrics, named after Kafka's JMX metrics where one exists (the names the Prometheus
//! JMX exporter gives them), rendered in Prometheus text format by the admin listener.
//!
//! Three kinds, for cost reasons:
//! * Event metrics (per-API request and error counts, fsyncs, connections, purgatory sizes)
//!   go through the `metrics` crate. The Prometheus recorder is installed as the process-wide
//!   recorder, and every handle used on a hot path is created once and cached here, so
//!   recording is an atomic add, never a registry lookup or a label string built per request.
//! * Per-API request-time histograms (four per request) are [`LatencyHistogram`]s: fixed
//!   buckets on plain atomics, rendered here, timed with TSC timestamps; the exporter's
//!   histograms cost several times more per sample.
//! * State metrics (log sizes and offsets, per-topic byte and message totals, group lag and
//!   states, disk space) are read from the broker's own structures at scrape time by
//!   [`render`]. Per-partition byte and message counters live in [`PartitionStats`] inside
//!   each partition, so the produce and fetch paths add to an atomic they already hold.
//!
//! Hook for later subsystems (Raft): anything may call `metrics::counter!`/`histogram!`/
//! `gauge!` and it appears on `/metrics`, because the recorder is global; state that is best
//! read at scrape time can be added with [`register_source`].

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use parking_lot::{Mutex, RwLock};
use rill_protocol::messages::{ApiKey, ResponseKind};
use rill_protocol::ResponseError;

use crate::broker::Broker;

/// Histogram buckets in seconds, from 50µs (an in-memory metadata answer) to 30s (the
/// longest fetch long-poll Rill allows).
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0,
];

/// Byte and record totals of one partition since the broker started. Written with relaxed
/// atomics on the produce and fetch paths; read by [`render`] and the `/v1` endpoints.
#[derive(Debug, Default)]
pub struct PartitionStats {
    pub bytes_in: AtomicU64,
    pub messages_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub messages_out: AtomicU64,
}

impl PartitionStats {
    /// One produced batch, appended.
    pub fn produced(&self, bytes: usize, records: i32) {
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
        self.messages_in.fetch_add(records.max(0) as u64, Ordering::Relaxed);
    }

    /// A record set handed to a fetching client. Records are counted from the batch headers
    /// (a fixed-offset field per batch), never by parsing records.
    pub fn fetched(&self, records: &[u8]) {
        if records.is_empty() {
            return;
        }
        self.bytes_out.fetch_add(records.len() as u64, Ordering::Relaxed);
        self.messages_out.fetch_add(count_records(records), Ordering::Relaxed);
    }
}

/// Sums `recordsCount` over the whole batches of a record set (a trailing partial batch, as a
/// fetch may end with, is not counted).
pub fn count_records(mut set: &[u8]) -> u64 {
    // Batch v2 header: baseOffset i64, batchLength i32 (bytes after this field), ...,
    // recordsCount i32 at byte 57 of 61.
    const RECORDS_COUNT_AT: usize = 57;
    let mut n = 0u64;
    while set.len() >= 61 {
        let len = i32::from_be_bytes([set[8], set[9], set[10], set[11]]);
        let total = 12 + len.max(0) as usize;
        if len < 49 || total > set.len() {
            break;
        }
        let c = &set[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4];
        n += i32::from_be_bytes([c[0], c[1], c[2], c[3]]).max(0) as u64;
        set = &set[total..];
    }
    n
}

/// A histogram with [`LATENCY_BUCKETS`]: recording is two relaxed atomic adds (bucket and
/// sum), no allocation. Request timing records four of these per request, where the exporter's
/// own histograms (a sample queue drained at upkeep) measured several times the cost.
pub struct LatencyHistogram {
    /// Non-cumulative counts; the last slot is +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram { buckets: std::array::from_fn(|_| AtomicU64::new(0)), sum_nanos: AtomicU64::new(0) }
    }
}

/// [`LATENCY_BUCKETS`] in nanoseconds, so recording compares integers.
const LATENCY_BOUNDS_NANOS: [u64; LATENCY_BUCKETS.len()] = {
    let mut out = [0u64; LATENCY_BUCKETS.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = (LATENCY_BUCKETS[i] * 1e9) as u64;
        i += 1;
    }
    out
};

impl LatencyHistogram {
    pub fn record(&self, d: Duration) {
        let nanos = d.as_nanos().min(u64::MAX as u128) as u64;
        let slot = LATENCY_BOUNDS_NANOS.partition_point(|&b| b < nanos);
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Writes `_bucket`, `_sum` and `_count` samples (the caller writes the family header).
    fn render(&self, w: &mut PromWriter<'_>, name: &str, labels: &[(&str, &str)]) {
        let mut cumulative = 0u64;
        let bucket = format!("{name}_bucket");
        let mut with_le: Vec<(&str, &str)> = labels.to_vec();
        with_le.push(("le", ""));
        let les: Vec<String> = LATENCY_BUCKETS.iter().map(|b| b.to_string()).chain(["+Inf".to_string()]).collect();
        for (count, le) in self.buckets.iter().zip(&les) {
            cumulative += count.load(Ordering::Relaxed);
            *with_le.last_mut().expect("le pushed above") = ("le", le);
            w.sample(&bucket, &with_le, cumulative as f64);
        }
        w.sample(&format!("{name}_sum"), labels, self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9);
        w.sample(&format!("{name}_count"), labels, cumulative as f64);
    }
}

/// Handles of one API's request metrics.
struct ApiMetrics {
    name: &'static str,
    requests: Counter,
    queue: LatencyHistogram,
    local: LatencyHistogram,
    remote: LatencyHistogram,
    total: LatencyHistogram,
}

/// The request-time histogram families: (name, help, which of an API's histograms).
/// Picks one of an API's histograms.
type HistogramOf = fn(&ApiMetrics) -> &LatencyHistogram;

const REQUEST_TIMES: [(&str, &str, HistogramOf); 4] = [
    (
        "kafka_network_requestmetrics_requestqueuetime_seconds",
        "From a whole request frame read to its dispatch (decode and in-flight backpressure)",
        |a| &a.queue,
    ),
    (
        "kafka_network_requestmetrics_localtime_seconds",
        "Time in the request's handler on the connection (includes a fetch's long-poll wait)",
        |a| &a.local,
    ),
    (
        "kafka_network_requestmetrics_remotetime_seconds",
        "Time waiting after the handler returned (a produce waiting for its fsync)",
        |a| &a.remote,
    ),
    (
        "kafka_network_requestmetrics_totaltime_seconds",
        "From a whole request frame read to its response being ready to send",
        |a| &a.total,
    ),
];

/// Process-wide metrics state: the recorder's render handle and cached handles.
pub struct Metrics {
    prometheus: PrometheusHandle,
    started: Instant,
    apis: Vec<OnceLock<ApiMetrics>>,
    errors: Mutex<HashMap<(i16, i16), Counter>>,
    fsync: Histogram,
    raft_commit: Histogram,
    produce_purgatory: Gauge,
    fetch_purgatory: Gauge,
    listeners: Mutex<HashMap<String, (Gauge, Counter)>>,
    sources: RwLock<Vec<Arc<dyn MetricsSource>>>,
}

/// State another subsystem renders itself at scrape time (Raft will add its terms, commit
/// indexes and follower lag this way).
pub trait MetricsSource: Send + Sync {
    /// Appends Prometheus text (with `# TYPE` lines) to `out`. Names must not collide with
    /// the broker's.
    fn render(&self, out: &mut String);
}

/// Adds a [`MetricsSource`] to every later scrape.
pub fn register_source(source: Arc<dyn MetricsSource>) {
    get().sources.write().push(source);
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process's metrics; the first call installs the Prometheus recorder as the global
/// `metrics` recorder and registers the storage fsync hook.
pub fn get() -> &'static Metrics {
    METRICS.get_or_init(Metrics::install)
}

fn api_name(key: ApiKey) -> &'static str {
    // Once per API for the process: leaking keeps labels `&'static str` (no clone per use).
    Box::leak(format!("{key:?}").into_boxed_str())
}

/// `UnknownTopicOrPartition` -> `UNKNOWN_TOPIC_OR_PARTITION`, Kafka's spelling.
fn error_name(code: i16) -> String {
    let camel = match ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?}"),
        None => return format!("UNKNOWN_{code}"),
    };
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn observe_fsync(took: Duration) {
    get().fsync.record(took.as_secs_f64());
}

/// A produce batch's time from being queued in its partition's Raft group to being committed
/// by a quorum (replication plus the followers' and the leader's fsyncs).
pub fn observe_raft_commit(took: Duration) {
    get().raft_commit.record(took.as_secs_f64());
}

/// One log cleaner pass: bytes of the segments it read and bytes it freed.
pub fn observe_cleaning(bytes_read: u64, bytes_freed: u64) {
    get();
    metrics::counter!("rill_log_cleaner_bytes_cleaned_total").increment(bytes_read);
    metrics::counter!("rill_log_cleaner_bytes_reclaimed_total").increment(bytes_freed);
    metrics::counter!("rill_log_cleaner_passes_total").increment(1);
}

impl Metrics {
    fn install() -> Metrics {
        let recorder =
            PrometheusBuilder::new().set_buckets(LATENCY_BUCKETS).expect("bucket list is not empty").build_recorder();
        let prometheus = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a global metrics recorder was already installed; /metrics shows only scrape-time metrics");
        }
        rill_storage::observe::set_sync_observer(observe_fsync);
        metrics::describe_histogram!(
            "kafka_log_logflushstats_logflush_seconds",
            metrics::Unit::Seconds,
            "Duration of each group-commit fsync round (fdatasync of every dirty file of a partition); _count is the fsync count"
        );
        metrics::describe_counter!(
            "rill_log_cleaner_bytes_cleaned_total",
            "Bytes of segments read by log cleaner passes (compacted topics)"
        );
        metrics::describe_counter!("rill_log_cleaner_bytes_reclaimed_total", "Bytes freed by log cleaner passes");
        metrics::describe_counter!("rill_log_cleaner_passes_total", "Log cleaner passes that ran");
        metrics::describe_histogram!(
            "rill_raft_commit_seconds",
            metrics::Unit::Seconds,
            "Time from queueing a produced batch in its partition's Raft group to its commit by a quorum"
        );
        metrics::describe_counter!("kafka_network_requestmetrics_requests_total", "Requests received, by API");
        metrics::describe_counter!(
            "kafka_network_requestmetrics_errors_total",
            "Error codes returned, by API and error (one per partition or group in error)"
        );
        metrics::describe_gauge!(
            "kafka_server_delayedoperationpurgatory_purgatorysize",
            "Requests waiting: Produce for fsync, Fetch for data (long poll)"
        );
        metrics::describe_gauge!("kafka_server_socketservermetrics_connection_count", "Open connections, by listener");
        metrics::describe_counter!(
            "kafka_server_socketservermetrics_connection_creation_total",
            "Connections accepted, by listener"
        );
        Metrics {
            prometheus,
            started: Instant::now(),
            apis: (0..128).map(|_| OnceLock::new()).collect(),
            errors: Mutex::new(HashMap::new()),
            fsync: metrics::histogram!("kafka_log_logflushstats_logflush_seconds"),
            raft_commit: metrics::histogram!("rill_raft_commit_seconds"),
            produce_purgatory: metrics::gauge!(
                "kafka_server_delayedoperationpurgatory_purgatorysize",
                "delayedOperation" => "Produce"
            ),
            fetch_purgatory: metrics::gauge!(
                "kafka_server_delayedoperationpurgatory_purgatorysize",
                "delayedOperation" => "Fetch"
            ),
            listeners: Mutex::new(HashMap::new()),
            sources: RwLock::new(Vec::new()),
        }
    }

    fn api(&self, key: ApiKey) -> Option<&ApiMetrics> {
        let slot = self.apis.get(key as i16 as usize)?;
        Some(slot.get_or_init(|| {
            let name = api_name(key);
            ApiMetrics {
                name,
                requests: metrics::counter!("kafka_network_requestmetrics_requests_total", "request" => name),
                queue: LatencyHistogram::default(),
                local: LatencyHistogram::default(),
                remote: LatencyHistogram::default(),
                total: LatencyHistogram::default(),
            }
        }))
    }

    fn count_error(&self, api: &ApiMetrics, key: ApiKey, code: i16) {
        // Errors are rare next to requests; a map behind a lock is cheap enough and keeps the
        // number of series bounded by the error codes actually seen.
        let mut errors = self.errors.lock();
        let counter = errors.entry((key as i16, code)).or_insert_with(|| {
            metrics::counter!("kafka_network_requestmetrics_errors_total", "request" => api.name, "error" => error_name(code))
        });
        counter.increment(1);
    }

    /// Seconds since the metrics (and so the broker) started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// A timestamp for request timing: the TSC scaled by `quanta` (calibrated once at start),
/// a few nanoseconds where `clock_gettime` costs tens, and three are taken per request.
pub fn now() -> quanta::Instant {
    quanta::Instant::now()
}

/// Times one request through its phases. Made when the request is dispatched; [`Self::done`]
/// records it once the response is ready.
pub struct RequestTimer {
    key: ApiKey,
    received: quanta::Instant,
    dispatched: quanta::Instant,
    handled: Option<quanta::Instant>,
}

impl RequestTimer {
    /// `received` is when the request's whole frame had been read.
    pub fn start(key: ApiKey, received: quanta::Instant) -> Self {
        RequestTimer { key, received, dispatched: quanta::Instant::now(), handled: None }
    }

    /// The handler returned but the response waits (a produce for its fsync): what follows is
    /// remote time, and the request sits in the produce purgatory until [`Self::done`].
    pub fn deferred(mut self) -> Self {
        self.handled = Some(quanta::Instant::now());
        get().produce_purgatory.increment(1.0);
        self
    }

    /// Records the request's times and the error codes of its response.
    pub fn done(self, response: Option<&ResponseKind>) {
        let m = get();
        let Some(api) = m.api(self.key) else { return };
        let now = quanta::Instant::now();
        let handled = match self.handled {
            Some(h) => {
                m.produce_purgatory.decrement(1.0);
                api.remote.record(now.duration_since(h));
                h
            }
            None => {
                api.remote.record(Duration::ZERO);
                now
            }
        };
        api.requests.increment(1);
        api.queue.record(self.dispatched.duration_since(self.received));
        api.local.record(handled.duration_since(self.dispatched));
        api.total.record(now.duration_since(self.received));
        if let Some(r) = response {
            for_each_error(r, |code| m.count_error(api, self.key, code));
        }
    }
}

/// Calls `f` with every non-zero error code of a response: per partition, topic or group
/// where the API answers per item, else the top-level code.
fn for_each_error(r: &ResponseKind, mut f: impl FnMut(i16)) {
    let mut g = |code: i16| {
        if code != 0 {
            f(code)
        }
    };
    match r {
        ResponseKind::Produce(r) => {
            r.responses.iter().flat_map(|t| &t.partition_responses).for_each(|p| g(p.error_code))
        }
        ResponseKind::Fetch(r) => {
            g(r.error_code);
            r.responses.iter().flat_map(|t| &t.partitions).for_each(|p| g(p.error_code));
        }
        ResponseKind::Metadata(r) => {
            g(r.error_code);
            r.topics.iter().for_each(|t| g(t.error_code));
        }
        ResponseKind::ListOffsets(r) => r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| g(p.error_code)),
        ResponseKind::OffsetCommit(r) => r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| g(p.error_code)),
        ResponseKind::OffsetFetch(r) => {
            g(r.error_code);
            r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| g(p.error_code));
            for grp in &r.groups {
                g(grp.error_code);
                grp.topics.iter().flat_map(|t| &t.partitions).for_each(|p| g(p.error_code));
            }
        }
        ResponseKind::CreateTopics(r) => r.topics.iter().for_each(|t| g(t.error_code)),
        ResponseKind::DeleteTopics(r) => r.responses.iter().for_each(|t| g(t.error_code)),
        ResponseKind::FindCoordinator(r) => {
            g(r.error_code);
            r.coordinators.iter().for_each(|c| g(c.error_code));
        }
        ResponseKind::DescribeGroups(r) => r.groups.iter().for_each(|grp| g(grp.error_code)),
        ResponseKind::JoinGroup(r) => g(r.error_code),
        ResponseKind::SyncGroup(r) => g(r.error_code),
        ResponseKind::Heartbeat(r) => g(r.error_code),
        ResponseKind::LeaveGroup(r) => g(r.error_code),
        ResponseKind::ListGroups(r) => g(r.error_code),
        ResponseKind::InitProducerId(r) => g(r.error_code),
        ResponseKind::ApiVersions(r) => g(r.error_code),
        ResponseKind::ConsumerGroupHeartbeat(r) => g(r.error_code),
        _ => {}
    }
}

/// A fetch waiting in its long poll, counted in the fetch purgatory while it lives.
pub struct FetchWait(());

impl FetchWait {
    pub fn enter() -> Self {
        get().fetch_purgatory.increment(1.0);
        FetchWait(())
    }
}

impl Drop for FetchWait {
    fn drop(&mut self) {
        get().fetch_purgatory.decrement(1.0);
    }
}

/// An open connection, counted per listener while it lives.
pub struct ConnectionGauge(Gauge);

impl ConnectionGauge {
    pub fn open(listener: &str) -> Self {
        let m = get();
        let mut l = m.listeners.lock();
        let (gauge, created) = l.entry(listener.to_string()).or_insert_with(|| {
            let name = listener.to_string();
            (
                metrics::gauge!("kafka_server_socketservermetrics_connection_count", "listener" => name.clone()),
                metrics::counter!("kafka_server_socketservermetrics_connection_creation_total", "listener" => name),
            )
        });
        created.increment(1);
        gauge.increment(1.0);
        ConnectionGauge(gauge.clone())
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Drains histogram samples into their buckets; without it an unscraped broker would keep
/// every sample. Runs until the process ends.
pub async fn run_upkeep() {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        get().prometheus.run_upkeep();
    }
}

// ------------------------------------------------------------------------------------------
// Scrape-time metrics
// ------------------------------------------------------------------------------------------

/// Writes Prometheus text, one `# HELP`/`# TYPE` header per family.
pub struct PromWriter<'a> {
    out: &'a mut String,
}

impl<'a> PromWriter<'a> {
    pub fn new(out: &'a mut String) -> Self {
        PromWriter { out }
    }

    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                for c in v.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// A consumer group's committed offset and lag on one partition.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub committed_offset: i64,
    pub log_end_offset: i64,
    pub log_start_offset: i64,
    /// Records between the committed offset and the log end (never negative).
    pub lag: i64,
}

/// Lag of every partition a group has committed offsets for, on partitions that still exist.
pub fn group_lag(broker: &Broker, group: &str) -> Vec<PartitionLag> {
    let mut out = Vec::new();
    for (topic, parts) in broker.groups.fetch(group, None) {
        let Some(t) = broker.topics.get(&topic) else { continue };
        for (partition, value) in parts {
            let (Some(v), Ok(p)) = (value, t.partition(partition)) else { continue };
            let end = p.log.log_end_offset();
            out.push(PartitionLag {
                topic: topic.clone(),
                partition,
                committed_offset: v.offset,
                log_end_offset: end,
                log_start_offset: p.log.log_start_offset(),
                lag: (end - v.offset).max(0),
            });
        }
    }
    out
}

/// Free and total bytes of the filesystem holding `dir`.
pub fn disk_space(dir: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes only into the struct we pass; `path` is NUL-terminated.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(path.as_ptr(), &mut s) != 0 {
            return None;
        }
        let frsize = s.f_frsize as u64;
        Some((s.f_bavail as u64 * frsize, s.f_blocks as u64 * frsize))
    }
}

/// The whole `/metrics` page: recorder metrics, then state read from the broker now.
pub fn render(broker: Option<&Broker>, ready: bool) -> String {
    let m = get();
    let mut out = m.prometheus.render();
    let mut w = PromWriter::new(&mut out);
    w.family("rill_broker_ready", "gauge", "1 when /health/ready would answer 200");
    w.sample("rill_broker_ready", &[], if ready { 1.0 } else { 0.0 });
    w.family("rill_broker_uptime_seconds", "gauge", "Seconds since the broker process started");
    w.sample("rill_broker_uptime_seconds", &[], m.uptime().as_secs_f64());
    for (name, help, which) in REQUEST_TIMES {
        w.family(name, "histogram", help);
        for api in m.apis.iter().filter_map(OnceLock::get) {
            which(api).render(&mut w, name, &[("request", api.name)]);
        }
    }
    let Some(broker) = broker else {
        return out;
    };
    render_broker(&mut w, broker);
    for s in m.sources.read().iter() {
        s.render(w.out);
    }
    out
}

/// A metric family read from each item: name, help, reader.
type Family<T, V> = (&'static str, &'static str, fn(&T) -> V);

fn render_broker(w: &mut PromWriter<'_>, broker: &Broker) {
    let node = broker.node_id().to_string();
    w.family("rill_broker_info", "gauge", "Constant 1, labelled with the broker's identity");
    w.sample(
        "rill_broker_info",
        &[("node_id", &node), ("cluster_id", broker.topics.cluster_id()), ("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );

    let topics = broker.topics.list();
    // Per-topic totals, summed over partitions.
    let families: [Family<PartitionStats, u64>; 4] = [
        ("kafka_server_brokertopicmetrics_bytesin_total", "Bytes appended by producers, by topic", |s| {
            s.bytes_in.load(Ordering::Relaxed)
        }),
        ("kafka_server_brokertopicmetrics_messagesin_total", "Records appended by producers, by topic", |s| {
            s.messages_in.load(Ordering::Relaxed)
        }),
        ("kafka_server_brokertopicmetrics_bytesout_total", "Bytes sent to fetching clients, by topic", |s| {
            s.bytes_out.load(Ordering::Relaxed)
        }),
        ("rill_server_brokertopicmetrics_messagesout_total", "Records sent to fetching clients, by topic", |s| {
            s.messages_out.load(Ordering::Relaxed)
        }),
    ];
    for (name, help, read) in families {
        w.family(name, "counter", help);
        for t in &topics {
            let v: u64 = t.hosted().map(|p| read(&p.stats)).sum();
            w.sample(name, &[("topic", &t.name)], v as f64);
        }
    }

    let logs: [Family<crate::topics::Partition, f64>; 4] = [
        ("kafka_log_log_size", "Bytes of all segments of a partition", |p| p.log.size_bytes() as f64),
        ("kafka_log_log_numlogsegments", "Segments of a partition, the active one included", |p| {
            p.log.segment_count() as f64
        }),
        ("kafka_log_log_logstartoffset", "First readable offset of a partition", |p| p.log.log_start_offset() as f64),
        ("kafka_log_log_logendoffset", "Offset the next record of a partition gets", |p| p.log.log_end_offset() as f64),
    ];
    for (name, help, read) in logs {
        w.family(name, "gauge", help);
        for t in &topics {
            for p in t.hosted() {
                let idx = p.index.to_string();
                w.sample(name, &[("topic", &t.name), ("partition", &idx)], read(p));
            }
        }
    }

    let partitions: usize = topics.iter().map(|t| t.partitions.len()).sum();
    // On a single node every partition is led here with no followers; in a cluster the Raft
    // groups tell (ISR = voters that keep up with the leader, see Group::in_sync).
    let (mut leaders, mut under, mut offline) = (0usize, 0usize, 0usize);
    for p in topics.iter().flat_map(|t| t.hosted()) {
        match &p.replica {
            None => leaders += 1,
            Some(g) => match g.leader() {
                None => offline += 1,
                Some(_) if g.is_leader() => {
                    leaders += 1;
                    if g.in_sync(broker.config.replica_lag_max()).len() < g.voters().len() {
                        under += 1;
                    }
                }
                Some(_) => {}
            },
        }
    }
    w.family("kafka_server_replicamanager_partitioncount", "gauge", "Partitions on this broker");
    w.sample("kafka_server_replicamanager_partitioncount", &[], partitions as f64);
    w.family("kafka_server_replicamanager_leadercount", "gauge", "Partitions this broker leads");
    w.sample("kafka_server_replicamanager_leadercount", &[], leaders as f64);
    w.family(
        "kafka_server_replicamanager_underreplicatedpartitions",
        "gauge",
        "Partitions led here whose in-sync replicas are fewer than their replicas",
    );
    w.sample("kafka_server_replicamanager_underreplicatedpartitions", &[], under as f64);
    w.family("kafka_controller_kafkacontroller_offlinepartitionscount", "gauge", "Partitions without a leader");
    w.sample("kafka_controller_kafkacontroller_offlinepartitionscount", &[], offline as f64);
    // Raft: the term of each replicated partition (its leader epoch); it grows with every election.
    w.family("rill_raft_term", "gauge", "Raft term (Kafka leader epoch) of a replicated partition");
    for t in &topics {
        for p in t.hosted() {
            if let Some(g) = &p.replica {
                let idx = p.index.to_string();
                w.sample("rill_raft_term", &[("topic", &t.name), ("partition", &idx)], g.term() as f64);
            }
        }
    }
    if let Some(c) = &broker.cluster {
        w.family("rill_raft_metadata_leader", "gauge", "Node id of the metadata quorum's leader (-1: none)");
        w.sample("rill_raft_metadata_leader", &[], c.metadata_leader().unwrap_or(-1) as f64);
        w.family(
            "rill_raft_elections_started_total",
            "counter",
            "Elections this node stood in as a candidate, over every Raft group, since it started",
        );
        w.sample("rill_raft_elections_started_total", &[], c.peers.elections_started() as f64);
    }

    w.family("rill_log_dir_free_bytes", "gauge", "Bytes available to the broker on the filesystem of a log directory");
    let mut totals = Vec::new();
    for dir in &broker.config.log_dirs {
        if let Some((free, total)) = disk_space(dir) {
            let d = dir.display().to_string();
            w.sample("rill_log_dir_free_bytes", &[("dir", &d)], free as f64);
            totals.push((d, total));
        }
    }
    w.family("rill_log_dir_total_bytes", "gauge", "Size of the filesystem of a log directory");
    for (d, total) in &totals {
        w.sample("rill_log_dir_total_bytes", &[("dir", d)], *total as f64);
    }

    render_groups(w, broker);
}

fn render_groups(w: &mut PromWriter<'_>, broker: &Broker) {
    let groups = broker.groups.list();
    let snapshots = broker.groups.snapshots();
    let mut by_state: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for (_, _, state, _) in &groups {
        *by_state.entry(state).or_default() += 1;
    }
    w.family(
        "kafka_coordinator_group_groupmetadatamanager_numgroups",
        "gauge",
        "Consumer groups, by state (classic and consumer protocol)",
    );
    for (state, n) in &by_state {
        w.sample("kafka_coordinator_group_groupmetadatamanager_numgroups", &[("state", state)], *n as f64);
    }
    w.family("rill_group_members", "gauge", "Members of a consumer group");
    for s in &snapshots {
        w.sample("rill_group_members", &[("group", &s.group), ("state", s.state)], s.members as f64);
    }
    w.family(
        "rill_group_rebalances_total",
        "counter",
        "Rebalances a group completed: its generation (classic) or group epoch (consumer protocol)",
    );
    for s in &snapshots {
        w.sample("rill_group_rebalances_total", &[("group", &s.group), ("type", s.kind)], s.generation.max(0) as f64);
    }
    let lag_families = [
        ("kafka_consumergroup_lag", "Records between a group's committed offset and the log end offset"),
        ("kafka_consumergroup_current_offset", "A group's committed offset on a partition"),
    ];
    let lags: Vec<(String, Vec<PartitionLag>)> =
        groups.iter().map(|(g, ..)| (g.clone(), group_lag(broker, g))).collect();
    for (i, (name, help)) in lag_families.iter().enumerate() {
        w.family(name, "gauge", help);
        for (g, parts) in &lags {
            for l in parts {
                let idx = l.partition.to_string();
                let v = if i == 0 { l.lag } else { l.committed_offset };
                w.sample(name, &[("consumergroup", g), ("topic", &l.topic), ("partition", &idx)], v as f64);
            }
        }
    }
    w.family("kafka_consumergroup_lag_sum", "gauge", "A group's lag summed over its partitions");
    for (g, parts) in &lags {
        w.sample(
            "kafka_consumergroup_lag_sum",
            &[("consumergroup", g)],
            parts.iter().map(|l| l.lag).sum::<i64>() as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
    }

    #[test]
    fn records_are_counted_from_batch_headers() {
        use rill_protocol::records::{encode_batch, EncodeOptions, RecordIn};
        let one = encode_batch(&[RecordIn { value: Some(b"a"), ..Default::default() }; 3], &EncodeOptions::default());
        let two = encode_batch(&[RecordIn { value: Some(b"bb"), ..Default::default() }; 4], &EncodeOptions::default());
        let mut set = one.to_vec();
        set.extend_from_slice(&two);
        assert_eq!(count_records(&set), 7);
        // A fetch may end with a partial batch: it is not counted.
        assert_eq!(count_records(&set[..set.len() - 5]), 3);
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = String::new();
        PromWriter::new(&mut s).sample("m", &[("group", "a\"b\\c\nd")], 1.0);
        assert_eq!(s, "m{group=\"a\\\"b\\\\c\\nd\"} 1\n");
    }
}
