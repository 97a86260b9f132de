//! The nodes under test: Rill broker (or Apache Kafka) processes, each in its own network namespace, started,
//! killed, paused, resumed and restarted by the nemeses; and the cluster-wide questions the
//! harness asks through Kafka Metadata (is everyone registered, who leads a partition).
//!
//! A node is started as `ip netns exec rj-n{i} <rill> broker ...`. `ip netns exec` (without
//! `-b`atch mode) enters the namespace and then `execvp`s the command, so the child's pid *is*
//! the broker's pid and signals sent to it reach the broker itself.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::jlog;
use crate::net;

/// libfaketime as Debian ships it (package `faketime`).
pub const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
/// The Kafka port of every node (each has its own address).
pub const KAFKA_PORT: u16 = 9092;
const RAFT_PORT: u16 = 9192;
const ADMIN_PORT: u16 = 9644;

/// Raft timings as in tests/support/cluster.py (FAST_RAFT): faults are detected within about
/// a second, so a few-second fault shows elections and catch-up, not just a stall.
const FAST_RAFT: &[(&str, &str)] = &[
    ("rill.raft.heartbeat.interval.ms", "100"),
    ("rill.raft.election.timeout.ms", "600"),
    ("offsets.topic.num.partitions", "6"),
];

/// How one node runs now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Running,
    Paused,
    Down,
}

struct Node {
    id: usize,
    dir: PathBuf,
    child: Option<Child>,
    state: State,
}

/// Pids of every node process alive, for the emergency cleanup (panic hook, signals), which
/// cannot reach the `Cluster` itself.
pub static LIVE_PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn track(pid: u32, alive: bool) {
    let mut p = LIVE_PIDS.lock().unwrap_or_else(|e| e.into_inner());
    p.retain(|&x| x != pid);
    if alive {
        p.push(pid);
    }
}

/// Kills every tracked node process with SIGKILL (after SIGCONT, so a paused one dies too).
pub fn kill_all_tracked() {
    let pids = std::mem::take(&mut *LIVE_PIDS.lock().unwrap_or_else(|e| e.into_inner()));
    for pid in pids {
        // SAFETY: plain signal sends to pids this process started.
        unsafe {
            libc::kill(pid as i32, libc::SIGCONT);
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
}

/// What runs on the nodes.
#[derive(Clone, Debug)]
pub enum Kind {
    /// `rill broker`, this binary.
    Rill { bin: PathBuf },
    /// Apache Kafka 4.x KRaft, combined broker+controller, from the Maven jars on `classpath`
    /// (tests/support/classpath.sh); every node formatted with the one `cluster_id`.
    Kafka { classpath: String, cluster_id: String },
}

/// Apache Kafka's settings for the checker's validation run: a configuration that is known to
/// lose acknowledged writes under faults (no fsync, unclean leader election, one in-sync
/// replica is enough), RF 3 everywhere.
const KAFKA_VALIDATION: &[(&str, &str)] = &[
    ("unclean.leader.election.enable", "true"),
    ("min.insync.replicas", "1"),
    ("default.replication.factor", "3"),
    ("offsets.topic.replication.factor", "3"),
    ("offsets.topic.num.partitions", "6"),
    ("transaction.state.log.replication.factor", "3"),
    ("transaction.state.log.min.isr", "1"),
    ("share.coordinator.state.topic.replication.factor", "3"),
    ("share.coordinator.state.topic.min.isr", "1"),
    ("group.initial.rebalance.delay.ms", "0"),
    ("num.partitions", "1"),
];
const KAFKA_CONTROLLER_PORT: u16 = 9093;

/// A cluster of `n` nodes in namespaces rj-n1..rj-n{n}, and optionally a spare node n{n+1}
/// for the membership nemesis: not started with the others, not a metadata voter; it joins as
/// a broker when started (`rill.raft.address`).
pub struct Cluster {
    kind: Kind,
    /// The voters, then the spare if there is one.
    nodes: Vec<Node>,
    /// How many of `nodes` are the cluster proper (`controller.quorum.voters`).
    voters: usize,
    faketime: bool,
    meta: Mutex<MetaClient>,
}

/// The harness's own metadata client. Never dropped: destroying a librdkafka handle can hang
/// (see workload.rs). In 30-minute runs this long-lived client twice kept failing (transport
/// failure, no brokers) for minutes after all nodes had been killed and restarted, while fresh
/// clients (the CLI, the drain) were served at once; so after `META_RENEW` of failures it is
/// replaced (the old one leaked), at most `META_RENEWALS` times per run.
struct MetaClient {
    client: std::mem::ManuallyDrop<BaseConsumer>,
    bootstrap: String,
    failing_since: Option<Instant>,
    renewals: u32,
}

const META_RENEW: Duration = Duration::from_secs(10);
const META_RENEWALS: u32 = 20;

impl MetaClient {
    fn new(bootstrap: String) -> Result<MetaClient> {
        let client = Self::connect(&bootstrap)?;
        Ok(MetaClient { client, bootstrap, failing_since: None, renewals: 0 })
    }

    fn connect(bootstrap: &str) -> Result<std::mem::ManuallyDrop<BaseConsumer>> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("socket.timeout.ms", "5000")
            .set("topic.metadata.refresh.interval.ms", "1000")
            .create()
            .context("metadata client")?;
        Ok(std::mem::ManuallyDrop::new(c))
    }

    fn fetch(&mut self, topic: Option<&str>) -> rdkafka::error::KafkaResult<rdkafka::metadata::Metadata> {
        let r = self.client.fetch_metadata(topic, Duration::from_secs(3));
        match &r {
            Ok(_) => self.failing_since = None,
            Err(e) => {
                let since = *self.failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= META_RENEW && self.renewals < META_RENEWALS {
                    if let Ok(c) = Self::connect(&self.bootstrap) {
                        jlog!("metadata client failing for {:?} ({e}); replaced by a new one", since.elapsed());
                        // Assigning drops only the ManuallyDrop wrapper: the old client leaks.
                        self.client = c;
                        self.renewals += 1;
                        self.failing_since = None;
                    }
                }
            }
        }
        r
    }
}

impl Cluster {
    /// Prepares node directories under `dir` (not started yet): `n` voters and, with `spare`,
    /// node `n + 1` besides. Node `i` keeps its log in `<dir>/n{i}/data` (a LossyFs mount
    /// point or a plain directory).
    pub fn new(kind: Kind, dir: &Path, n: usize, faketime: bool, spare: bool) -> Result<Cluster> {
        if let Kind::Rill { bin } = &kind {
            if !bin.exists() {
                bail!("rill binary not found: {} (cargo build --release -p rill-cli, or --rill-bin)", bin.display());
            }
        }
        if faketime && !Path::new(FAKETIME_LIB).exists() {
            bail!("{FAKETIME_LIB} missing: install the Debian package faketime (or run without --nemesis clock)");
        }
        let mut nodes = Vec::new();
        for id in 1..=n + usize::from(spare) {
            let d = dir.join(format!("n{id}"));
            fs::create_dir_all(d.join("data")).with_context(|| format!("creating {}", d.display()))?;
            fs::write(d.join("faketime"), "+0\n")?;
            nodes.push(Node { id, dir: d, child: None, state: State::Down });
        }
        let meta = Mutex::new(MetaClient::new(bootstrap(n))?);
        Ok(Cluster { kind, nodes, voters: n, faketime, meta })
    }

    /// Number of nodes of the cluster proper (the voters; the spare is not counted).
    pub fn len(&self) -> usize {
        self.voters
    }

    /// The spare node's id (`len() + 1`), if this cluster has one.
    pub fn spare(&self) -> Option<usize> {
        (self.nodes.len() > self.voters).then_some(self.voters + 1)
    }

    /// Empties node `i`'s data directory (the node must be down), so that it next starts as a
    /// node that never held anything.
    pub fn wipe_data(&mut self, i: usize) -> Result<()> {
        if self.nodes[i - 1].state != State::Down {
            bail!("n{i} still runs; stop it before wiping its data");
        }
        let data = self.nodes[i - 1].dir.join("data");
        match fs::remove_dir_all(&data) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", data.display()))
            }
            _ => {}
        }
        fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
        jlog!("node n{i}: data directory wiped");
        Ok(())
    }

    /// Always false (a cluster has nodes); for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node's directory (`<out>/n{i}`).
    pub fn node_dir(&self, i: usize) -> &Path {
        &self.nodes[i - 1].dir
    }

    /// The node's state as the harness left it.
    pub fn state(&self, i: usize) -> State {
        self.nodes[i - 1].state
    }

    /// Starts node `i` (1-based); a no-op when it runs.
    pub fn start(&mut self, i: usize) -> Result<()> {
        if self.nodes[i - 1].state != State::Down {
            return Ok(());
        }
        let mut cmd = match self.kind.clone() {
            Kind::Rill { bin } => self.rill_command(i, &bin),
            Kind::Kafka { classpath, cluster_id } => self.kafka_command(i, &classpath, &cluster_id)?,
        };
        let node = &mut self.nodes[i - 1];
        if self.faketime {
            // Only the wall clock is faked: tokio's timers and Raft's election timeouts run on
            // CLOCK_MONOTONIC, which must keep ticking for the node to work at all.
            cmd.env("LD_PRELOAD", FAKETIME_LIB)
                .env("FAKETIME_TIMESTAMP_FILE", node.dir.join("faketime"))
                .env("FAKETIME_NO_CACHE", "1")
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        let log = OpenOptions::new().create(true).append(true).open(node.dir.join(self.kind.log_name()))?;
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        // Its own process group, so a Ctrl-C at the terminal reaches the harness only (which
        // then tears the nodes down in order).
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().with_context(|| format!("starting node {i}"))?;
        track(child.id(), true);
        jlog!("node n{i}: started, pid {}", child.id());
        node.child = Some(child);
        node.state = State::Running;
        Ok(())
    }

    fn rill_command(&self, i: usize, bin: &Path) -> Command {
        let n = self.voters;
        let voters: Vec<String> = (1..=n).map(|j| format!("{j}@{}:{RAFT_PORT}", net::node_ip(j))).collect();
        let ip = net::node_ip(i);
        let mut sets: Vec<String> = vec![
            format!("node.id={i}"),
            format!("listeners=PLAINTEXT://{ip}:{KAFKA_PORT}"),
            format!("log.dirs={}", self.nodes[i - 1].dir.join("data").display()),
            format!("controller.quorum.voters={}", voters.join(",")),
            format!("admin.listener={ip}:{ADMIN_PORT}"),
        ];
        if i > n {
            // Not a voter: it joins the running cluster as a broker, reached here.
            sets.push(format!("rill.raft.address={ip}:{RAFT_PORT}"));
        }
        sets.extend(FAST_RAFT.iter().map(|(k, v)| format!("{k}={v}")));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &net::ns(i)]).arg(bin).arg("broker");
        for s in &sets {
            cmd.arg("--set").arg(s);
        }
        cmd
    }

    /// Writes node `i`'s server.properties, formats its storage the first time (outside the
    /// namespace: formatting needs no network) and returns the command that runs it.
    fn kafka_command(&self, i: usize, classpath: &str, cluster_id: &str) -> Result<Command> {
        let n = self.voters;
        let dir = &self.nodes[i - 1].dir;
        let ip = net::node_ip(i);
        let voters: Vec<String> = (1..=n).map(|j| format!("{j}@{}:{KAFKA_CONTROLLER_PORT}", net::node_ip(j))).collect();
        let mut props = format!(
            "process.roles=broker,controller\nnode.id={i}\ncontroller.quorum.voters={}\n\
             listeners=PLAINTEXT://{ip}:{KAFKA_PORT},CONTROLLER://{ip}:{KAFKA_CONTROLLER_PORT}\n\
             advertised.listeners=PLAINTEXT://{ip}:{KAFKA_PORT}\ncontroller.listener.names=CONTROLLER\n\
             inter.broker.listener.name=PLAINTEXT\nlistener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
             log.dirs={}\n",
            voters.join(","),
            dir.join("data").display()
        );
        for (k, v) in KAFKA_VALIDATION {
            props.push_str(&format!("{k}={v}\n"));
        }
        let props_path = dir.join("server.properties");
        fs::write(&props_path, props)?;
        fs::write(
            dir.join("log4j.properties"),
            "log4j.rootLogger=INFO, stdout\nlog4j.appender.stdout=org.apache.log4j.ConsoleAppender\n\
             log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n\
             log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\nlog4j.logger.kafka.request.logger=WARN\n",
        )?;
        let jopts: Vec<String> = vec![
            "-Xms128m".into(),
            "-Xmx512m".into(),
            "-XX:+UseG1GC".into(),
            "-XX:TieredStopAtLevel=1".into(),
            "-Djava.awt.headless=true".into(),
            format!("-Dlog4j.configuration=file:{}", dir.join("log4j.properties").display()),
            "-cp".into(),
            classpath.to_string(),
        ];
        if !dir.join("data").join("meta.properties").exists() {
            let out = Command::new("java")
                .args(&jopts)
                .arg("kafka.tools.StorageTool")
                .arg("format")
                // `=`: a cluster id may start with '-', which would read as an option.
                .arg(format!("--cluster-id={cluster_id}"))
                .arg("-c")
                .arg(&props_path)
                .stdin(Stdio::null())
                .output()
                .context("java kafka.tools.StorageTool format")?;
            if !out.status.success() {
                bail!(
                    "formatting n{i}: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &net::ns(i), "java"]).args(&jopts).arg("kafka.Kafka").arg(&props_path);
        Ok(cmd)
    }

    /// Sends `sig` to node `i`'s process, if it has one.
    fn signal(&self, i: usize, sig: i32) -> Result<()> {
        if let Some(c) = &self.nodes[i - 1].child {
            // SAFETY: a signal to our own child, which has not been reaped yet (so the pid is
            // still ours even if the process died).
            if unsafe { libc::kill(c.id() as i32, sig) } != 0 {
                bail!("kill({}, {sig}): {}", c.id(), std::io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// kill -9 node `i` and reap it.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        let _ = self.signal(i, libc::SIGCONT);
        self.signal(i, libc::SIGKILL)?;
        let node = &mut self.nodes[i - 1];
        if let Some(mut c) = node.child.take() {
            let _ = c.wait();
            track(c.id(), false);
        }
        node.state = State::Down;
        jlog!("node n{i}: killed");
        Ok(())
    }

    /// SIGSTOP node `i`.
    pub fn pause(&mut self, i: usize) -> Result<()> {
        if self.nodes[i - 1].state == State::Running {
            self.signal(i, libc::SIGSTOP)?;
            self.nodes[i - 1].state = State::Paused;
        }
        Ok(())
    }

    /// SIGCONT node `i`.
    pub fn resume(&mut self, i: usize) -> Result<()> {
        if self.nodes[i - 1].state == State::Paused {
            self.signal(i, libc::SIGCONT)?;
            self.nodes[i - 1].state = State::Running;
        }
        Ok(())
    }

    /// Stops node `i` gracefully (SIGTERM, then SIGKILL after `grace`).
    pub fn stop(&mut self, i: usize, grace: Duration) {
        let _ = self.signal(i, libc::SIGCONT);
        let _ = self.signal(i, libc::SIGTERM);
        let node = &mut self.nodes[i - 1];
        if let Some(mut c) = node.child.take() {
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
            track(c.id(), false);
        }
        node.state = State::Down;
    }

    /// Notices nodes that died on their own (reaps them, marks them down) and returns them.
    pub fn reap_exited(&mut self) -> Vec<usize> {
        let mut dead = Vec::new();
        for node in &mut self.nodes {
            if let Some(c) = &mut node.child {
                if let Ok(Some(status)) = c.try_wait() {
                    jlog!("node n{}: exited on its own ({status}); see {}/rill.log", node.id, node.dir.display());
                    track(c.id(), false);
                    node.child = None;
                    node.state = State::Down;
                    dead.push(node.id);
                }
            }
        }
        dead
    }

    /// Writes node `i`'s libfaketime offset (e.g. `+30` or `-4.5` seconds; `+0` = true time).
    pub fn set_clock_offset(&self, i: usize, offset_s: f64) -> Result<()> {
        let path = self.nodes[i - 1].dir.join("faketime");
        // Written whole and renamed, so the node never reads a half-written file.
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, format!("{offset_s:+.3}\n"))?;
        fs::rename(&tmp, &path)?;
        Ok(())
    }

    /// Until every voter is registered (a spare may be too) and `__consumer_offsets` has a
    /// leader for every partition (as RillCluster.wait_ready).
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            match self.metadata(Some("__consumer_offsets")) {
                Ok(md) => {
                    let brokers = md.brokers().len();
                    let led = md
                        .topics()
                        .iter()
                        .find(|t| t.name() == "__consumer_offsets")
                        .map(|t| !t.partitions().is_empty() && t.partitions().iter().all(|p| p.leader() >= 0));
                    // Kafka creates __consumer_offsets only when a group first needs it.
                    let kafka = matches!(self.kind, Kind::Kafka { .. });
                    if brokers >= self.voters && (led == Some(true) || kafka) {
                        return Ok(());
                    }
                    last = format!("{brokers} brokers, offsets topic led: {led:?}");
                }
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        bail!("cluster not ready within {timeout:?} ({last})")
    }

    /// Leaders of `topic`'s partitions as Metadata reports them now (-1: none).
    pub fn leaders(&self, topic: &str) -> Result<Vec<i32>> {
        let md = self.metadata(Some(topic)).context("metadata")?;
        let t = md.topics().iter().find(|t| t.name() == topic).context("topic missing from metadata")?;
        if let Some(e) = t.error() {
            bail!("topic {topic}: {e:?}");
        }
        let mut v: Vec<(i32, i32)> = t.partitions().iter().map(|p| (p.id(), p.leader())).collect();
        v.sort();
        Ok(v.into_iter().map(|(_, l)| l).collect())
    }

    /// The voter leading `topic`/`partition`, if Metadata names one.
    pub fn leader_of(&self, topic: &str, partition: i32) -> Option<usize> {
        let l = *self.leaders(topic).ok()?.get(partition as usize)?;
        (l >= 1 && (l as usize) <= self.voters).then_some(l as usize)
    }

    /// The replicas of each of `topic`'s partitions (by partition index) as Metadata reports
    /// them now.
    pub fn replicas(&self, topic: &str) -> Result<Vec<Vec<i32>>> {
        let md = self.metadata(Some(topic)).context("metadata")?;
        let t = md.topics().iter().find(|t| t.name() == topic).context("topic missing from metadata")?;
        if let Some(e) = t.error() {
            bail!("topic {topic}: {e:?}");
        }
        let mut v: Vec<(i32, Vec<i32>)> = t.partitions().iter().map(|p| (p.id(), p.replicas().to_vec())).collect();
        v.sort();
        Ok(v.into_iter().map(|(_, r)| r).collect())
    }

    /// The node ids Metadata lists as brokers now.
    fn metadata(&self, topic: Option<&str>) -> rdkafka::error::KafkaResult<rdkafka::metadata::Metadata> {
        self.meta.lock().unwrap_or_else(|e| e.into_inner()).fetch(topic)
    }

    pub fn brokers(&self) -> Result<Vec<i32>> {
        let md = self.metadata(None).context("metadata")?;
        let mut v: Vec<i32> = md.brokers().iter().map(|b| b.id()).collect();
        v.sort_unstable();
        Ok(v)
    }

    /// Stops every node (SIGTERM, bounded) and forgets them.
    pub fn shutdown(&mut self) {
        for i in 1..=self.nodes.len() {
            self.stop(i, Duration::from_secs(5));
        }
    }

    /// The tail of node `i`'s log, for error reports.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = fs::read_to_string(self.nodes[i - 1].dir.join(self.kind.log_name())).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut c) = node.child.take() {
                let _ = c.kill();
                let _ = c.wait();
                track(c.id(), false);
            }
        }
    }
}

impl Kind {
    /// The node log's file name in the node directory.
    pub fn log_name(&self) -> &'static str {
        match self {
            Kind::Rill { .. } => "rill.log",
            Kind::Kafka { .. } => "kafka.log",
        }
    }
}

/// `10.77.0.11:9092,...` for `n` nodes.
pub fn bootstrap(n: usize) -> String {
    (1..=n).map(|i| format!("{}:{KAFKA_PORT}", net::node_ip(i))).collect::<Vec<_>>().join(",")
}
