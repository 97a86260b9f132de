//! `rill-jepsen`: see jepsen/README.md.
//!
//! `run` builds the namespaced cluster, runs the workload under the nemesis, heals, drains,
//! tears everything down, checks the history and writes the report; `check` re-checks a
//! stored run. Exit status: 0 valid, 1 a forbidden anomaly or an incomplete drain, 2 a
//! harness error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use rand::SeedableRng;

use rill_jepsen::db::{self, Cluster};
use rill_jepsen::history::{self, Body, Op, OpType, Recorder};
use rill_jepsen::lossyfs::LossyFs;
use rill_jepsen::nemesis::{self, Nemesis};
use rill_jepsen::net::{self, Net};
use rill_jepsen::workload::{self, Idempotence, SubVia, Workload};
use rill_jepsen::{checker, report};
use rill_jepsen::{jlog, log};

#[derive(Parser)]
#[command(name = "rill-jepsen", about = "Jepsen-style fault tests of Rill (see jepsen/README.md)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a test: cluster in network namespaces, workload, nemeses, drain, check, report.
    Run(RunArgs),
    /// Re-check a stored run (`DIR/history.jsonl`) and rewrite its report.
    Check {
        /// The run's directory.
        dir: PathBuf,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum System {
    Rill,
    Kafka,
}

#[derive(clap::Args, Clone, Debug)]
struct RunArgs {
    /// The system under test.
    #[arg(long, value_enum, default_value = "rill")]
    system: System,
    /// Cluster size.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=9))]
    nodes: u16,
    /// Seconds of workload under faults (setup, drain and teardown come on top).
    #[arg(long, default_value_t = 120)]
    time_limit: u64,
    /// Seed of every random choice (faults, targets, keys); printed, and random if not given.
    #[arg(long)]
    seed: Option<u64>,
    /// Faults: comma list of kill, pause, partition, clock, lose-unsynced, membership; `all`;
    /// `none`.
    #[arg(long, default_value = "kill,pause,partition")]
    nemesis: String,
    /// Seconds a fault is held (and the mean quiet gap between faults).
    #[arg(long, default_value_t = 6.0)]
    nemesis_interval: f64,
    /// Partitions of the workload topic (= keys).
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Producer processes.
    #[arg(long, default_value_t = 4)]
    producers: u32,
    /// Consumer processes.
    #[arg(long, default_value_t = 4)]
    consumers: u32,
    /// Producer processes sharing one librdkafka producer (their requests pipeline).
    #[arg(long, default_value_t = 2)]
    procs_per_producer: u32,
    /// enable.idempotence of the producers; `both` alternates per producer instance.
    #[arg(long, value_enum, default_value = "both")]
    idempotence: Idempotence,
    /// How consumers take partitions, assigned round-robin to consumer processes.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "assign,subscribe")]
    sub_via: Vec<SubVia>,
    /// Target operations per second over all processes.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Data directories on a LossyFs mount per node (enables the lose-unsynced nemesis).
    #[arg(long)]
    lossy_disk: bool,
    /// The rill binary (default: target/release/rill next to this binary).
    #[arg(long, env = "RILL_BIN")]
    rill_bin: Option<PathBuf>,
    /// Output directory (default jepsen/store/<timestamp>-<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Run(a) => match run(a) {
            Ok(code) => code,
            Err(e) => {
                jlog!("harness error: {e:#}");
                emergency_cleanup();
                2
            }
        },
        Cmd::Check { dir } => match check_dir(&dir) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("rill-jepsen check: {e:#}");
                2
            }
        },
    };
    // exit, not return: librdkafka handles were leaked on purpose (destroying them can hang).
    std::process::exit(code);
}

/// Last-resort cleanup for panics, signals, the watchdog and errors: kill every node
/// process this run started, detach the lossy mounts and delete the namespaces and the bridge.
fn emergency_cleanup() {
    // A run that did not get the lock owns nothing; the namespaces belong to the run that has it.
    if !HOLDS_LOCK.load(std::sync::atomic::Ordering::Acquire) {
        return;
    }
    db::kill_all_tracked();
    let mounts = std::mem::take(&mut *MOUNTS.lock().unwrap_or_else(|e| e.into_inner()));
    for m in mounts {
        if let Ok(c) = std::ffi::CString::new(m.as_os_str().as_encoded_bytes()) {
            // SAFETY: a plain system call with a valid C string. MNT_DETACH: a FUSE mount whose
            // server (this process) is going away must not stay behind as a dead mount.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
    net::remove_leftovers();
}

/// Runs share fixed names (namespaces `rj-n*`, the bridge, node addresses) and remove the
/// leftovers of crashed runs at start, so a second run at the same time would tear down the
/// first one's cluster and talk to its nodes. One run per machine, then: this lock file is held
/// (flock, released by the kernel when the process ends, even by kill -9) for the whole run.
const LOCK_FILE: &str = "/run/rill-jepsen.lock";
static HOLDS_LOCK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn take_run_lock() -> Result<()> {
    use std::os::fd::IntoRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_FILE)
        .with_context(|| format!("opening {LOCK_FILE}"))?;
    // The descriptor is kept open (leaked) for the life of the process: closing it would unlock.
    let fd = f.into_raw_fd();
    // SAFETY: flock on a descriptor this process owns.
    if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        bail!("another rill-jepsen run holds {LOCK_FILE}: runs share namespaces and addresses, so one at a time");
    }
    HOLDS_LOCK.store(true, std::sync::atomic::Ordering::Release);
    Ok(())
}

/// Mountpoints of this run's lossy disks, for [`emergency_cleanup`].
static MOUNTS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The nodes' lossy disks: node `i`'s data directory `<out>/n{i}/data` is a LossyFs mount
/// passing through to `<out>/n{i}/disk`.
struct Disks(Vec<LossyFs>);

impl nemesis::PowerLoss for Disks {
    fn power_loss(&mut self, i: usize) -> Result<()> {
        let fs = &mut self.0[i - 1];
        jlog!("n{i}: power loss drops {} un-fsynced bytes", fs.dirty_bytes());
        fs.power_loss()
    }
}

fn mount_disks(out: &Path, n: usize) -> Result<Disks> {
    let mut v = Vec::new();
    for i in 1..=n {
        let dir = out.join(format!("n{i}"));
        let mp = dir.join("data");
        let fs = LossyFs::mount(&dir.join("disk"), &mp).with_context(|| format!("mounting the lossy disk of n{i}"))?;
        MOUNTS.lock().unwrap_or_else(|e| e.into_inner()).push(mp);
        v.push(fs);
    }
    Ok(Disks(v))
}

/// Kills the run when it overstays its bounded budget (a hung client or node).
fn watchdog(budget: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(budget);
        jlog!("watchdog: the run exceeded its hard deadline ({budget:?}); tearing down");
        emergency_cleanup();
        std::process::exit(2);
    });
}

fn default_rill_bin() -> PathBuf {
    // The harness and the broker are built into the same target directory.
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent().map(|d| d.join("rill")).unwrap_or_else(|| PathBuf::from("rill"))
}

/// The Kafka 4.x classpath from the Maven jars of tests/java/pom.xml (tests/support/classpath.sh).
fn kafka_classpath() -> Result<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/support/classpath.sh");
    let out = std::process::Command::new("bash").arg(&script).output().context("tests/support/classpath.sh")?;
    if !out.status.success() {
        bail!("{} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A KRaft cluster id (16 bytes, URL-safe base64 without padding) derived from the seed.
fn kafka_cluster_id(seed: u64) -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::StdRng::seed_from_u64(seed ^ 0x006b_6166_6b61).fill_bytes(&mut bytes);
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = String::new();
    for b in bytes {
        bits = (bits << 8) | u32::from(b);
        nbits += 8;
        while nbits >= 6 {
            nbits -= 6;
            out.push(A[((bits >> nbits) & 63) as usize] as char);
        }
    }
    if nbits > 0 {
        out.push(A[((bits << (6 - nbits)) & 63) as usize] as char);
    }
    out
}

/// The command line that repeats this run (same flags, the seed made explicit, no --out).
fn rerun_command(seed: u64) -> String {
    let mut out = vec!["rill-jepsen".to_string()];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--seed" || a == "--out" {
            args.next();
            continue;
        }
        if a.starts_with("--seed=") || a.starts_with("--out=") {
            continue;
        }
        out.push(a);
    }
    out.push("--seed".into());
    out.push(seed.to_string());
    out.join(" ")
}

fn wait_topic_leaders(cluster: &Mutex<Cluster>, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        match cluster.lock().unwrap_or_else(|e| e.into_inner()).leaders(workload::TOPIC) {
            Ok(l) if !l.is_empty() && l.iter().all(|&x| x >= 1) => return Ok(()),
            Ok(l) => last = format!("leaders {l:?}"),
            Err(e) => last = format!("{e:#}"),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("partitions of {} without a leader after {timeout:?}: {last}", workload::TOPIC)
}

/// Removes what an earlier run left in `out`: above all its nodes' data directories, which
/// the new cluster would otherwise start from (a rerun into the same `--out` once read the
/// first run's records back as duplicates and phantoms).
fn clear_previous_run(out: &Path) -> Result<()> {
    let files = ["jepsen.log", "clients.log", "history.jsonl", "summary.json", "report.html"];
    // Up to 9 nodes and the membership nemesis's spare.
    let dirs = (1..=10).map(|i| format!("n{i}"));
    for name in files.iter().map(|f| f.to_string()).chain(dirs) {
        let path = out.join(&name);
        let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        match removed {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {} left by an earlier run", path.display()))
            }
            _ => {}
        }
    }
    Ok(())
}

fn run(a: RunArgs) -> Result<i32> {
    take_run_lock()?;
    let seed = a.seed.unwrap_or_else(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        (t.as_nanos() as u64 ^ u64::from(std::process::id())) % 1_000_000_000
    });
    let started_at = log::utc_now(true);
    let out = a.out.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("store").join(format!("{}-{seed}", log::utc_now(false)))
    });
    clear_previous_run(&out)?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    log::to_file(&out.join("jepsen.log")).context("jepsen.log")?;
    let rerun = rerun_command(seed);
    jlog!("rill-jepsen: seed {seed}, output {}", out.display());
    jlog!("re-run: {rerun}");

    let faults = nemesis::parse_faults(&a.nemesis, a.lossy_disk, a.system == System::Rill)?;
    if a.system == System::Kafka && faults.contains(&nemesis::Fault::Clock) {
        bail!("the clock nemesis is for Rill only (libfaketime under a JVM is not supported here)");
    }
    if a.producers == 0 && a.consumers == 0 {
        bail!("no producers and no consumers: nothing to test");
    }
    let n = a.nodes as usize;
    let kind = match a.system {
        System::Rill => db::Kind::Rill { bin: a.rill_bin.clone().unwrap_or_else(default_rill_bin) },
        System::Kafka => db::Kind::Kafka { classpath: kafka_classpath()?, cluster_id: kafka_cluster_id(seed) },
    };

    // Setup (bounded 240 s), workload, heal (bounded ~60 s), drain (bounded 90 s), teardown.
    watchdog(Duration::from_secs(a.time_limit + 600));
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        emergency_cleanup();
    }));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.spawn(async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            return;
        };
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        jlog!("signal: tearing down");
        emergency_cleanup();
        std::process::exit(130);
    });

    // The membership nemesis's spare node n{n+1} gets its namespace with the others (so every
    // cleanup path removes it too) but starts only when the nemesis adds it.
    let spare = faults.contains(&nemesis::Fault::Membership);
    let net = Arc::new(Mutex::new(Net::setup(n + usize::from(spare)).context("network setup")?));
    // From here on the namespaces exist: whatever happens, they go.
    let _net_guard = Guard(net.clone());
    let uses_clock = faults.contains(&nemesis::Fault::Clock);
    let is_kafka = matches!(kind, db::Kind::Kafka { .. });
    let rill_bin = match &kind {
        db::Kind::Rill { bin } => Some(bin.clone()),
        db::Kind::Kafka { .. } => None,
    };
    let cluster = Arc::new(Mutex::new(Cluster::new(kind, &out, n, uses_clock, spare)?));
    // Mounted after the node directories exist and before any node starts; unmounted (by
    // Drop) after the guard below has stopped the nodes.
    let disks = if a.lossy_disk { Some(mount_disks(&out, n)?) } else { None };
    let _cluster_guard = ClusterGuard(cluster.clone());
    let t0 = Instant::now();
    {
        let mut c = cluster.lock().unwrap_or_else(|e| e.into_inner());
        for i in 1..=n {
            c.start(i)?;
        }
        if let Err(e) = c.wait_ready(Duration::from_secs(120)) {
            let tails: Vec<String> = (1..=n).map(|i| format!("--- n{i} ---\n{}", c.log_tail(i, 20))).collect();
            bail!("{e:#}\n{}", tails.join("\n"));
        }
    }
    jlog!("cluster of {n} ready in {:.1} s", t0.elapsed().as_secs_f64());
    if let (Some(d), true) = (&disks, is_kafka) {
        // Kafka's storage format does not fsync; without this a power loss leaves a node
        // that cannot start at all, which is not the loss under test.
        for fs in &d.0 {
            fs.sync().context("syncing a lossy disk after the Kafka format")?;
        }
    }

    let opts = workload::Options {
        bootstrap: db::bootstrap(n),
        partitions: a.partitions.max(1),
        replication: n as i32,
        producers: a.producers,
        consumers: a.consumers,
        idempotence: a.idempotence,
        sub_via: if a.sub_via.is_empty() { vec![SubVia::Assign] } else { a.sub_via.clone() },
        rate: a.rate,
        seed,
        procs_per_producer: a.procs_per_producer.max(1),
    };
    rt.block_on(workload::create_topic(&opts))?;
    wait_topic_leaders(&cluster, Duration::from_secs(60))?;
    jlog!("topic {} ready ({} partitions, RF {n})", workload::TOPIC, opts.partitions);

    let rec = Arc::new(Recorder::create(&out.join("history.jsonl")).context("history.jsonl")?);
    let stop_work = Arc::new(AtomicBool::new(false));
    let stop_nemesis = Arc::new(AtomicBool::new(false));
    let wl = Arc::new(Workload::new(opts.clone(), rec.clone(), stop_work.clone()));
    let mut nem = Nemesis {
        cluster: cluster.clone(),
        net: net.clone(),
        rec: rec.clone(),
        faults: faults.clone(),
        interval: Duration::from_secs_f64(a.nemesis_interval.max(0.5)),
        rng: rand::rngs::StdRng::seed_from_u64(seed),
        disks: disks.map(|d| Box::new(d) as Box<dyn nemesis::PowerLoss>),
        errors: Vec::new(),
        membership: match (spare, rill_bin) {
            (true, Some(bin)) => Some(nemesis::Membership::new(bin, db::bootstrap(n), workload::TOPIC)),
            _ => None,
        },
    };
    let work_start = Instant::now();
    jlog!("workload: {} s, nemesis {faults:?}", a.time_limit);
    let work = rt.spawn(wl.clone().run());
    let nem_stop = stop_nemesis.clone();
    let nem_thread = std::thread::spawn(move || {
        nem.run(&nem_stop);
        nem
    });
    std::thread::sleep(Duration::from_secs(a.time_limit));

    jlog!("time limit reached: healing");
    stop_nemesis.store(true, Ordering::Relaxed);
    let mut nem = nem_thread.join().map_err(|_| anyhow::anyhow!("nemesis thread panicked"))?;
    let healed = nem.heal_all();
    stop_work.store(true, Ordering::Relaxed);
    // Every in-flight send completes within message.timeout.ms (+ margin).
    let joined = rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), work).await });
    let workload_secs = work_start.elapsed().as_secs_f64();
    let mut notes: Vec<String> = nem.errors.clone();
    if joined.is_err() {
        notes.push("workload processes did not finish within 30 s of the stop".into());
    }
    if let Err(e) = healed {
        notes.push(format!("heal: {e:#}"));
    }

    jlog!("final phase: waiting for leaders");
    let ready = cluster.lock().unwrap_or_else(|e| e.into_inner()).wait_ready(Duration::from_secs(60));
    let ready = ready.and_then(|()| wait_topic_leaders(&cluster, Duration::from_secs(60)));
    if let Err(e) = &ready {
        notes.push(format!("after healing: {e:#}"));
        jlog!("after healing: {e:#}");
    }
    let complete = match wl.drain(Duration::from_secs(90)) {
        Ok(c) => c,
        Err(e) => {
            notes.push(format!("drain: {e:#}"));
            false
        }
    };
    if !complete {
        notes.push("the drain did not reach every high watermark".into());
    }
    {
        let mut c = cluster.lock().unwrap_or_else(|e| e.into_inner());
        for i in c.reap_exited() {
            notes.push(format!("node n{i} exited on its own:\n{}", c.log_tail(i, 30)));
        }
        c.shutdown();
    }
    net.lock().unwrap_or_else(|e| e.into_inner()).teardown();
    jlog!("cluster stopped, namespaces removed");
    // Dropping a runtime waits for its blocking tasks, and the workload's last one joins the
    // consumer threads: one stuck in a librdkafka call (the 30 s note) held a 30-minute
    // run at exit, after its summary, until the watchdog ended it with status 2.
    rt.shutdown_background();

    let ops = history::read(&out.join("history.jsonl"))?;
    let info = RunSummary {
        system: format!("{:?}", a.system).to_lowercase(),
        seed,
        nodes: n,
        duration_s: workload_secs,
        nemeses: faults.iter().map(|f| f.to_string()).collect(),
        workload: serde_json::to_value(&opts)?,
        rerun,
        started_at,
        notes,
        non_idempotent: opts.non_idempotent(),
    };
    std::fs::write(out.join("run.json"), serde_json::to_vec_pretty(&info)?)?;
    finish(&out, &info, &ops)
}

/// What a run was, kept beside its history so `check` can rebuild the report.
#[derive(serde::Serialize, serde::Deserialize)]
struct RunSummary {
    system: String,
    seed: u64,
    nodes: usize,
    duration_s: f64,
    nemeses: Vec<String>,
    workload: serde_json::Value,
    rerun: String,
    started_at: String,
    notes: Vec<String>,
    non_idempotent: std::collections::BTreeSet<history::Process>,
}

fn check_dir(dir: &Path) -> Result<i32> {
    let ops = history::read(&dir.join("history.jsonl")).context("reading the history")?;
    let info: RunSummary = serde_json::from_slice(&std::fs::read(dir.join("run.json")).context("run.json")?)?;
    finish(dir, &info, &ops)
}

/// Tallies, checks and reports a history; the exit status (0 valid, 1 forbidden anomaly).
fn finish(out: &Path, info: &RunSummary, ops: &[Op]) -> Result<i32> {
    let mut tally: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for op in ops {
        let f = match &op.body {
            Body::Send { .. } => "send",
            Body::Poll { .. } => "poll",
            Body::Assign { .. } => "assign",
            Body::Subscribe { .. } => "subscribe",
            Body::Crash => "crash",
            Body::Nemesis { .. } => "nemesis",
            Body::Drain { .. } => "drain",
        };
        let t = match op.kind {
            OpType::Invoke => continue,
            OpType::Ok => "ok",
            OpType::Fail => "fail",
            OpType::Info => "info",
        };
        *tally.entry((f, t)).or_default() += 1;
    }
    let opts = checker::CheckOptions { non_idempotent: info.non_idempotent.clone() };
    let analysis = checker::check(ops, &opts);
    let run_info = report::RunInfo {
        system: info.system.clone(),
        seed: info.seed,
        nodes: info.nodes,
        duration_s: info.duration_s,
        nemeses: info.nemeses.clone(),
        workload: info.workload.clone(),
        rerun: info.rerun.clone(),
        started_at: info.started_at.clone(),
        notes: info.notes.clone(),
    };
    report::write(out, &run_info, ops, &analysis).context("writing the report")?;

    let completions: usize = tally.iter().filter(|((f, _), _)| *f != "nemesis").map(|(_, n)| n).sum();
    println!(
        "== rill-jepsen: {} seed {}, {} nodes, {:.0} s, nemeses {:?}",
        info.system, info.seed, info.nodes, info.duration_s, info.nemeses
    );
    let per_f: Vec<String> = tally.iter().map(|((f, t), n)| format!("{f} {t} {n}")).collect();
    println!(
        "   {completions} operations ({:.1}/s): {}",
        completions as f64 / info.duration_s.max(1.0),
        per_f.join(", ")
    );
    let st = &analysis.stats;
    println!(
        "   sends ok {} / info {} / fail {}; acked read {}, lost {}, unseen {}, missing from drain {}; drain complete: {:?}",
        st.sends_ok,
        st.sends_info,
        st.sends_fail,
        st.acked_read,
        st.lost,
        st.unseen,
        st.missing_from_drain,
        st.drain_complete
    );
    for (name, r) in &analysis.anomalies {
        let verdict = if r.allowed { "allowed" } else { "FORBIDDEN" };
        println!("   anomaly {name}: {} ({verdict})", r.count);
        if !r.allowed {
            if let Some(ex) = r.examples.first() {
                println!("      e.g. {ex}");
            }
        }
    }
    for note in &info.notes {
        println!("   note: {}", note.lines().next().unwrap_or(""));
    }
    println!(
        "   verdict: {}",
        if analysis.valid { "valid".to_string() } else { format!("INVALID {:?}", analysis.bad) }
    );
    // A cluster that never let the drain finish is a failure too (of liveness): the checker
    // cannot call writes lost without a complete drain, so the history proves little.
    let drained = st.drain_complete != Some(false);
    if !drained {
        println!("   INCOMPLETE: the drain did not reach every high watermark (cluster unavailable after healing)");
    }
    println!("   report:  {}", out.join("report.html").display());
    println!("   re-run:  {}", info.rerun);
    Ok(if analysis.valid && drained { 0 } else { 1 })
}

/// Tears the network down when dropped (normal exit and error paths alike).
struct Guard(Arc<Mutex<Net>>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).teardown();
    }
}

/// Stops the nodes when dropped.
struct ClusterGuard(Arc<Mutex<Cluster>>);

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).shutdown();
    }
}
