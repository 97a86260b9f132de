//! A real Rill broker on the lossy filesystem: every record it acknowledged is still there after
//! kill -9 and a power loss (Rill fsyncs before acknowledging, `flush.messages=1`).
//!
//! Needs the `rill` binary (`cargo build --release -p rill-cli`; found through `RILL_BIN`,
//! `$CARGO_TARGET_DIR/release/rill` or `<workspace>/target/release/rill`) and skips, saying so,
//! without it. Needs root and /dev/fuse, and fails without them.
//!
//! With `LOSSYFS_KAFKA=1`, Apache Kafka runs the same way (tests/support/apache-kafka.sh, Java
//! and the Maven jars), its whole directory on the mount. Kafka acknowledges before it fsyncs
//! by default, so it may lose acknowledged records: the test only asserts that it comes back
//! and serves the topic, and prints what was lost, unless `LOSSYFS_KAFKA_PROPS` (space-separated
//! key=value pairs for server.properties) sets `log.flush.interval.messages=1`. Kafka's storage
//! format is not fsynced, so the test makes it durable with `LossyFs::sync` before producing.

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use rill_jepsen::lossyfs::LossyFs;

const TOPIC: &str = "lossy";
const RECORDS: usize = 300;

fn rill_bin() -> Option<PathBuf> {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent()?.to_path_buf();
    let candidates = [
        std::env::var_os("RILL_BIN").map(PathBuf::from),
        std::env::var_os("CARGO_TARGET_DIR").map(|t| PathBuf::from(t).join("release/rill")),
        Some(workspace.join("target/release/rill")),
    ];
    candidates.into_iter().flatten().find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_broker(bin: &Path, data: &Path, port: u16, log: &Path) -> Broker {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let child = Command::new(bin)
        .arg("broker")
        .args(["--set", &format!("log.dirs={}", data.display())])
        .args(["--set", &format!("listeners=PLAINTEXT://127.0.0.1:{port}")])
        .args(["--set", "admin.listener=off"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let broker = Broker(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the broker never listened on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    broker
}

/// Produces batches of 30 concurrent records named `<prefix>-<n>` (so some share one
/// group-committed fsync) until `batches` are done or a whole batch fails (the broker died);
/// returns the acknowledged ones.
fn produce(bootstrap: &str, prefix: &str, batches: usize, timeout: Duration) -> BTreeSet<String> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("message.timeout.ms", timeout.as_millis().to_string())
        .set("linger.ms", "1")
        .create()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut acked = BTreeSet::new();
        for batch in 0..batches {
            let mut sends = tokio::task::JoinSet::new();
            for i in 0..30 {
                let value = format!("{prefix}-{}", batch * 30 + i);
                let producer = producer.clone();
                sends.spawn(async move {
                    let record = FutureRecord::<(), _>::to(TOPIC).payload(&value);
                    producer.send(record, timeout).await.map(|_| value.clone())
                });
            }
            let before = acked.len();
            while let Some(done) = sends.join_next().await {
                if let Ok(Ok(value)) = done {
                    acked.insert(value);
                }
            }
            if acked.len() == before {
                break;
            }
        }
        acked
    })
}

fn consume(bootstrap: &str, want: &BTreeSet<String>) -> BTreeSet<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "lossyfs-check")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let mut got = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !want.is_subset(&got) && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) {
            if let Some(Ok(v)) = m.payload_view::<str>() {
                got.insert(v.to_string());
            }
        }
    }
    got
}

#[test]
fn rill_keeps_every_acknowledged_record_across_a_power_loss() {
    let Some(bin) = rill_bin() else {
        eprintln!("SKIPPED: no rill binary (build it with `cargo build --release -p rill-cli`, or set RILL_BIN)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("rill.log");
    if std::env::var_os("LOSSYFS_BASELINE").is_some() {
        // The same load on a plain directory, to see what the mount costs.
        let port = free_port();
        let broker = start_broker(&bin, &dir.path().join("plain"), port, &log);
        let started = Instant::now();
        let acked = produce(&format!("127.0.0.1:{port}"), "record", RECORDS / 30, Duration::from_secs(30));
        eprintln!("baseline: {} records acknowledged in {:?} without the mount", acked.len(), started.elapsed());
        drop(broker);
    }
    let mut fs = LossyFs::mount(&dir.path().join("backing"), &dir.path().join("mnt"))
        .unwrap_or_else(|e| panic!("the lossy filesystem needs root and /dev/fuse: {e:#}"));
    let data = fs.mountpoint().join("data");

    let port = free_port();
    let broker = start_broker(&bin, &data, port, &log);
    let started = Instant::now();
    let mut acked = produce(&format!("127.0.0.1:{port}"), "record", RECORDS / 30, Duration::from_secs(30));
    eprintln!("{} records acknowledged in {:?}", acked.len(), started.elapsed());
    assert!(acked.len() >= RECORDS / 2, "too few acknowledged: {}", acked.len());
    drop(broker); // kill -9
    eprintln!("power loss drops {} bytes held in {:?}", fs.dirty_bytes(), fs.dirty_files());
    fs.power_loss().unwrap();

    // Again, but the broker dies while records are in flight: a torn, un-fsynced tail to
    // recover from, on top of the log recovered above.
    let port = free_port();
    let broker = start_broker(&bin, &data, port, &log);
    let bootstrap = format!("127.0.0.1:{port}");
    let producing = std::thread::spawn(move || produce(&bootstrap, "inflight", 1000, Duration::from_secs(3)));
    std::thread::sleep(Duration::from_millis(700));
    drop(broker); // kill -9 mid-stream
    let inflight = producing.join().unwrap();
    eprintln!("{} more acknowledged before the kill; power loss drops {} bytes", inflight.len(), fs.dirty_bytes());
    assert!(!inflight.is_empty(), "nothing acknowledged before the kill");
    acked.extend(inflight);
    fs.power_loss().unwrap();

    let port = free_port();
    let broker = start_broker(&bin, &data, port, &log);
    let got = consume(&format!("127.0.0.1:{port}"), &acked);
    drop(broker);
    let lost: Vec<&String> = acked.difference(&got).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged records lost, e.g. {:?} (broker log: {})",
        lost.len(),
        &lost[..lost.len().min(5)],
        log.display()
    );
    fs.unmount().unwrap();
}

fn kafka_script(cmd: &str, port: u16, dir: &Path, props: &[String]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/support/apache-kafka.sh");
    let status = Command::new("bash").arg(script).arg(cmd).arg(port.to_string()).arg(dir).args(props).status().unwrap();
    assert!(status.success(), "apache-kafka.sh {cmd} failed (see {}/kafka.log)", dir.display());
}

#[test]
fn apache_kafka_runs_on_the_lossy_filesystem() {
    if std::env::var_os("LOSSYFS_KAFKA").is_none() {
        eprintln!("SKIPPED: set LOSSYFS_KAFKA=1 to run Apache Kafka (Java, Maven jars) on the mount");
        return;
    }
    let props: Vec<String> =
        std::env::var("LOSSYFS_KAFKA_PROPS").unwrap_or_default().split_whitespace().map(String::from).collect();
    let flushes = props.iter().any(|p| p == "log.flush.interval.messages=1");
    let dir = tempfile::tempdir().unwrap();
    let mut fs = LossyFs::mount(&dir.path().join("backing"), &dir.path().join("mnt"))
        .unwrap_or_else(|e| panic!("the lossy filesystem needs root and /dev/fuse: {e:#}"));
    let kafka = fs.mountpoint().join("kafka");
    let port = free_port();
    kafka_script("start", port, &kafka, &props);
    // The storage format (bootstrap.checkpoint, meta.properties) is not fsynced by Kafka.
    let durable = |name: &str| std::fs::metadata(fs.backing().join("kafka/data").join(name)).map(|m| m.len()).ok();
    eprintln!(
        "kafka: durable after format: bootstrap.checkpoint {:?} bytes, meta.properties {:?} bytes",
        durable("bootstrap.checkpoint"),
        durable("meta.properties")
    );
    fs.sync().unwrap();
    let started = Instant::now();
    let acked = produce(&format!("127.0.0.1:{port}"), "record", RECORDS / 30, Duration::from_secs(30));
    eprintln!("kafka: {} records acknowledged in {:?}", acked.len(), started.elapsed());
    kafka_script("kill9", port, &kafka, &[]);
    eprintln!("kafka: power loss drops {} bytes held in {} files", fs.dirty_bytes(), fs.dirty_files().len());
    fs.power_loss().unwrap();

    let port = free_port();
    kafka_script("start", port, &kafka, &props);
    let got = consume(&format!("127.0.0.1:{port}"), &acked);
    kafka_script("kill9", port, &kafka, &[]);
    let lost = acked.difference(&got).count();
    eprintln!("kafka: {lost} of {} acknowledged records lost (props {props:?})", acked.len());
    if flushes {
        assert_eq!(lost, 0, "Kafka fsyncing every message lost acknowledged records");
    }
    fs.unmount().unwrap();
}
