//! The nemesis: a seeded schedule of faults, each held for a while and then healed, with quiet
//! gaps between them. Every start and stop is recorded in the history (process
//! [`NEMESIS_PROCESS`]): `invoke` when it begins, `info` once it is in place or healed.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::db::{Cluster, State};
use crate::history::{Body, NemesisAction, OpType, Recorder, NEMESIS_PROCESS};
use crate::net::{grudge, Net};
use crate::{jlog, workload};

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// kill -9 nodes (one, a partition leader, a majority or all), then restart them.
    Kill,
    /// SIGSTOP nodes (one, a partition leader or a majority), then SIGCONT.
    Pause,
    /// Drop packets between nodes (halves, isolated node or leader, majority ring, bridge).
    Partition,
    /// Skew the nodes' wall clocks (libfaketime), or strobe them between two offsets.
    Clock,
    /// Power loss: kill every node, drop what its disk had not fsynced, restart (needs
    /// `--lossy-disk`).
    LoseUnsynced,
    /// Add a node and move partition replicas onto it, then move them back and remove it
    /// (`grow`); or move replicas among the voters (`move`, more than 3 nodes). Rill only.
    Membership,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::Kill => "kill",
            Fault::Pause => "pause",
            Fault::Partition => "partition",
            Fault::Clock => "clock",
            Fault::LoseUnsynced => "lose-unsynced",
            Fault::Membership => "membership",
        })
    }
}

/// Parses `--nemesis`: a comma list of fault names, `all`, or `none`. `membership` is
/// whether the system under test can add and remove nodes (Rill can; the Kafka setup here
/// cannot).
pub fn parse_faults(s: &str, lossy_disk: bool, membership: bool) -> Result<Vec<Fault>> {
    let mut set = BTreeSet::new();
    for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match name {
            "none" => {}
            "all" => {
                set.extend([Fault::Kill, Fault::Pause, Fault::Partition, Fault::Clock]);
                if lossy_disk {
                    set.insert(Fault::LoseUnsynced);
                }
                if membership {
                    set.insert(Fault::Membership);
                }
            }
            "kill" => drop(set.insert(Fault::Kill)),
            "pause" => drop(set.insert(Fault::Pause)),
            "partition" => drop(set.insert(Fault::Partition)),
            "clock" => drop(set.insert(Fault::Clock)),
            "lose-unsynced" => {
                if !lossy_disk {
                    bail!("nemesis lose-unsynced needs --lossy-disk (data directories on a LossyFs mount)");
                }
                set.insert(Fault::LoseUnsynced);
            }
            "membership" => {
                if !membership {
                    bail!(
                        "nemesis membership is for Rill only: the Kafka cluster here has a fixed set of \
                         combined broker+controller nodes and no spare"
                    );
                }
                set.insert(Fault::Membership);
            }
            other => {
                bail!("unknown nemesis {other:?} (kill, pause, partition, clock, lose-unsynced, membership, all, none)")
            }
        }
    }
    Ok(set.into_iter().collect())
}

/// Power loss of the nodes' disks, provided by the LossyFs mounts (see main).
pub trait PowerLoss: Send {
    /// Drops every un-fsynced write of node `i`'s disk (the node must be dead).
    fn power_loss(&mut self, i: usize) -> Result<()>;
}

/// The scheduler and the faults currently in place.
pub struct Nemesis {
    pub cluster: Arc<Mutex<Cluster>>,
    pub net: Arc<Mutex<Net>>,
    pub rec: Arc<Recorder>,
    pub faults: Vec<Fault>,
    /// How long a fault is held, and the mean quiet gap between faults.
    pub interval: Duration,
    pub rng: StdRng,
    pub disks: Option<Box<dyn PowerLoss>>,
    /// Fault starts that failed to apply (also in the log).
    pub errors: Vec<String>,
    /// The membership nemesis's state (`None` unless it is among `faults`).
    pub membership: Option<Membership>,
}

/// One partition moved by the membership nemesis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    pub partition: i32,
    /// The replicas it had: what healing moves it back to.
    pub original: Vec<i32>,
    pub target: Vec<i32>,
}

/// The membership nemesis: the spare node, the partitions moved and how to move them
/// (`rill topic reassign`, `rill cluster unregister`, run from the root namespace).
pub struct Membership {
    pub rill_bin: PathBuf,
    /// The voters' Kafka listeners.
    pub bootstrap: String,
    /// The topic whose partitions are moved.
    pub topic: String,
    /// Moves planned by `choose` for the fault being started.
    planned: Vec<Move>,
    /// Moves made (or maybe made: a timed-out request may still take effect) and not yet
    /// undone.
    moved: Vec<Move>,
    /// The spare has been started since it was last wiped.
    spare_used: bool,
}

impl Membership {
    pub fn new(rill_bin: PathBuf, bootstrap: String, topic: &str) -> Membership {
        Membership {
            rill_bin,
            bootstrap,
            topic: topic.to_string(),
            planned: Vec::new(),
            moved: Vec::new(),
            spare_used: false,
        }
    }

    /// Runs `rill <args> -b <bootstrap>`, killed after `timeout`; its stdout, or an error with
    /// its stderr.
    fn rill(&self, args: &[String], timeout: Duration) -> Result<String> {
        use std::process::{Command, Stdio};
        let mut child = Command::new(&self.rill_bin)
            .args(args)
            .arg("--bootstrap-server")
            .arg(&self.bootstrap)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {}", self.rill_bin.display()))?;
        let deadline = Instant::now() + timeout;
        loop {
            if child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("rill {} did not finish within {timeout:?}", args.join(" "));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = child.wait_with_output()?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!("rill {} failed ({}): {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(stdout)
    }

    /// `rill topic reassign`: without `wait`, tried up to three times (elections make single
    /// requests fail); with `wait`, tried again until the move is done or `wait` is used up.
    fn reassign(&self, partition: i32, replicas: &[i32], wait: Option<Duration>) -> Result<()> {
        let list: Vec<String> = replicas.iter().map(i32::to_string).collect();
        let args: Vec<String> = vec![
            "topic".into(),
            "reassign".into(),
            self.topic.clone(),
            "--partition".into(),
            partition.to_string(),
            "--replicas".into(),
            list.join(","),
        ];
        let deadline = Instant::now() + wait.unwrap_or_default();
        let mut last = None;
        for attempt in 1.. {
            let left = deadline.saturating_duration_since(Instant::now());
            if attempt > 3 && (wait.is_none() || left.is_zero()) {
                break;
            }
            let mut a = args.clone();
            if wait.is_some() {
                a.extend(["--wait".into(), left.as_secs().max(5).to_string()]);
            }
            match self.rill(&a, left + Duration::from_secs(60)) {
                Ok(_) => {
                    let done = if wait.is_some() { " (done)" } else { "" };
                    jlog!("nemesis: {} partition {partition} -> {replicas:?}{done}", self.topic);
                    return Ok(());
                }
                Err(e) => {
                    jlog!("nemesis: reassign attempt {attempt} failed: {e:#}");
                    last = Some(e);
                    std::thread::sleep(Duration::from_secs(2));
                }
            }
        }
        Err(last.expect("at least three attempts"))
    }
}

/// A grow move: one replica of `current` (a random one) replaced by `spare`, in its place.
/// `None` if the spare holds a replica already.
pub fn replace_one(current: &[i32], spare: i32, rng: &mut impl Rng) -> Option<Vec<i32>> {
    if current.is_empty() || current.contains(&spare) {
        return None;
    }
    let mut target = current.to_vec();
    let k = rng.gen_range(0..target.len());
    target[k] = spare;
    Some(target)
}

/// A move among voters `1..=voters` (only when there are more than 3): one replica replaced
/// by a voter that holds none, or, when every voter holds one (the workload's RF is the
/// cluster size), one replica dropped (at least 3 stay). `None` when neither applies.
pub fn move_among(current: &[i32], voters: usize, rng: &mut impl Rng) -> Option<Vec<i32>> {
    if voters <= 3 || current.is_empty() {
        return None;
    }
    let outside: Vec<i32> = (1..=voters as i32).filter(|v| !current.contains(v)).collect();
    let mut target = current.to_vec();
    let k = rng.gen_range(0..target.len());
    if let Some(&v) = outside.choose(rng) {
        target[k] = v;
    } else if target.len() > 3 {
        target.remove(k);
    } else {
        return None;
    }
    Some(target)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Nemesis {
    fn record(&self, t: OpType, name: &str, action: NemesisAction, targets: &[usize], err: Option<String>) {
        let targets = targets.iter().map(|i| format!("n{i}")).collect();
        let body = Body::Nemesis { name: name.to_string(), action, targets };
        if let Err(e) = self.rec.record(NEMESIS_PROCESS, t, body, err) {
            jlog!("history write failed: {e}");
        }
    }

    /// Sleeps up to `d`, returning early (false) when `stop` is set.
    fn sleep(stop: &AtomicBool, d: Duration) -> bool {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50).min(end.saturating_duration_since(Instant::now())));
        }
        true
    }

    /// Runs the schedule until `stop` is set, then heals everything.
    pub fn run(&mut self, stop: &AtomicBool) {
        if self.faults.is_empty() {
            while Self::sleep(stop, Duration::from_secs(1)) {}
            return;
        }
        loop {
            let gap = self.interval.mul_f64(self.rng.gen_range(0.5..1.5));
            if !Self::sleep(stop, gap) {
                break;
            }
            let fault = *self.faults.choose(&mut self.rng).expect("non-empty");
            let n = lock(&self.cluster).len();
            let (name, targets) = self.choose(fault, n);
            jlog!("nemesis: {name} {targets:?}");
            self.record(OpType::Invoke, &name, NemesisAction::Start, &targets, None);
            let applied = self.apply(fault, &name, &targets);
            let err = applied.as_ref().err().map(|e| format!("{e:#}"));
            if let Some(e) = &err {
                jlog!("nemesis: {name} failed to apply: {e}");
                self.errors.push(format!("{name}: {e}"));
            }
            self.record(OpType::Info, &name, NemesisAction::Start, &targets, err);
            let hold = self.interval.mul_f64(self.rng.gen_range(0.5..1.5));
            if fault == Fault::Clock && name.ends_with("strobe") {
                self.strobe(stop, &targets, hold);
            } else {
                Self::sleep(stop, hold);
            }
            self.record(OpType::Invoke, &name, NemesisAction::Stop, &targets, None);
            let healed = self.heal_all();
            let err = healed.as_ref().err().map(|e| format!("{e:#}"));
            self.record(OpType::Info, &name, NemesisAction::Stop, &targets, err);
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
    }

    fn random_node(&mut self, n: usize) -> usize {
        self.rng.gen_range(1..=n)
    }

    fn majority(&mut self, n: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (1..=n).collect();
        all.shuffle(&mut self.rng);
        all.truncate(n / 2 + 1);
        all.sort();
        all
    }

    /// The node leading a random partition of the workload's topic (a random node if
    /// Metadata names none).
    fn leader(&mut self, n: usize) -> usize {
        let parts = lock(&self.cluster).leaders(workload::TOPIC).map(|l| l.len()).unwrap_or(0);
        if parts > 0 {
            let p = self.rng.gen_range(0..parts) as i32;
            if let Some(l) = lock(&self.cluster).leader_of(workload::TOPIC, p) {
                return l;
            }
        }
        self.random_node(n)
    }

    /// Picks the fault's mode and targets: a name such as `kill-leader` and the nodes it hits.
    fn choose(&mut self, fault: Fault, n: usize) -> (String, Vec<usize>) {
        match fault {
            Fault::Kill | Fault::Pause => {
                let modes: &[&str] = if fault == Fault::Kill {
                    &["one", "leader", "majority", "all"]
                } else {
                    &["one", "leader", "majority"]
                };
                let mode = *modes.choose(&mut self.rng).expect("modes");
                let targets = match mode {
                    "one" => vec![self.random_node(n)],
                    "leader" => vec![self.leader(n)],
                    "majority" => self.majority(n),
                    _ => (1..=n).collect(),
                };
                (format!("{fault}-{mode}"), targets)
            }
            Fault::Partition => {
                let mode = *["halves", "isolate", "leader", "ring", "bridge"].choose(&mut self.rng).expect("modes");
                let targets = match mode {
                    // The minority side of a random split (the majority is the rest).
                    "halves" => {
                        let mut m = self.majority(n);
                        m = (1..=n).filter(|i| !m.contains(i)).collect();
                        m
                    }
                    "isolate" => vec![self.random_node(n)],
                    "leader" => vec![self.leader(n)],
                    // Ring order, then bridge: the node in the middle.
                    "ring" => {
                        let mut order: Vec<usize> = (1..=n).collect();
                        order.shuffle(&mut self.rng);
                        order
                    }
                    _ => {
                        let mut order: Vec<usize> = (1..=n).collect();
                        order.shuffle(&mut self.rng);
                        order
                    }
                };
                (format!("partition-{mode}"), targets)
            }
            Fault::Clock => {
                let mode = *["skew", "strobe"].choose(&mut self.rng).expect("modes");
                let k = self.rng.gen_range(1..=n);
                let mut all: Vec<usize> = (1..=n).collect();
                all.shuffle(&mut self.rng);
                all.truncate(k);
                all.sort();
                (format!("clock-{mode}"), all)
            }
            Fault::LoseUnsynced => ("lose-unsynced".to_string(), (1..=n).collect()),
            Fault::Membership => self.choose_membership(n),
        }
    }

    /// Plans a membership fault: `grow` (partitions onto the spare) or, with more than 3
    /// voters, `move` (among the voters). The targets are the nodes that gain or lose replicas.
    fn choose_membership(&mut self, n: usize) -> (String, Vec<usize>) {
        let mode = if n > 3 && self.rng.gen_bool(0.5) { "move" } else { "grow" };
        let name = format!("membership-{mode}");
        let spare = lock(&self.cluster).spare();
        let replicas = lock(&self.cluster).replicas(workload::TOPIC).unwrap_or_default();
        let Some(m) = self.membership.as_mut() else { return (name, Vec::new()) };
        // Partitions still moved (a heal that failed) are left alone.
        let mut free: Vec<usize> =
            (0..replicas.len()).filter(|&p| !m.moved.iter().any(|x| x.partition == p as i32)).collect();
        free.shuffle(&mut self.rng);
        let count = if mode == "grow" { self.rng.gen_range(1..=replicas.len().div_ceil(2).max(1)) } else { 1 };
        m.planned.clear();
        for p in free.into_iter().take(count) {
            let current = &replicas[p];
            let target = match (mode, spare) {
                ("grow", Some(s)) => replace_one(current, s as i32, &mut self.rng),
                ("move", _) => move_among(current, n, &mut self.rng),
                _ => None,
            };
            if let Some(target) = target {
                m.planned.push(Move { partition: p as i32, original: current.clone(), target });
            }
        }
        let mut targets: BTreeSet<usize> = BTreeSet::new();
        if mode == "grow" {
            targets.extend(spare);
        }
        for mv in &m.planned {
            let changed = mv
                .original
                .iter()
                .filter(|r| !mv.target.contains(r))
                .chain(mv.target.iter().filter(|r| !mv.original.contains(r)));
            targets.extend(changed.map(|&r| r as usize));
        }
        (name, targets.into_iter().collect())
    }

    /// Starts a membership fault: for `grow`, starts the spare and waits until it is
    /// registered; then starts the planned moves (without waiting for them to finish).
    fn grow(&mut self, name: &str) -> Result<()> {
        let planned = self.membership.as_mut().map(|m| std::mem::take(&mut m.planned)).unwrap_or_default();
        if name == "membership-grow" {
            let spare = lock(&self.cluster).spare().ok_or_else(|| anyhow::anyhow!("no spare node"))?;
            lock(&self.cluster).start(spare)?;
            if let Some(m) = self.membership.as_mut() {
                m.spare_used = true;
            }
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let brokers = lock(&self.cluster).brokers().unwrap_or_default();
                if brokers.contains(&(spare as i32)) {
                    jlog!("nemesis: n{spare} registered (brokers {brokers:?})");
                    break;
                }
                if Instant::now() > deadline {
                    bail!("n{spare} not registered within 60 s (brokers {brokers:?})");
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        if planned.is_empty() {
            bail!("no partition to move (metadata unavailable, or every partition still moved)");
        }
        let m = self.membership.as_mut().ok_or_else(|| anyhow::anyhow!("membership nemesis not set up"))?;
        for mv in planned {
            // Remembered first: a request that timed out may still have taken effect.
            m.moved.push(mv.clone());
            m.reassign(mv.partition, &mv.target, None)?;
        }
        Ok(())
    }

    /// Ends membership faults: moves every moved partition back to its original replicas
    /// (waiting up to 60 s each), then unregisters, stops and wipes the spare. A partition that
    /// does not get back stays on the list (and the spare keeps running) for the next heal.
    fn shrink(&mut self) -> Result<()> {
        let spare = lock(&self.cluster).spare();
        let Some(m) = self.membership.as_mut() else { return Ok(()) };
        let mut failed: Vec<Move> = Vec::new();
        let mut first: Option<anyhow::Error> = None;
        for mv in std::mem::take(&mut m.moved) {
            if let Err(e) = m.reassign(mv.partition, &mv.original, Some(Duration::from_secs(60))) {
                first.get_or_insert(e.context(format!("moving partition {} back to {:?}", mv.partition, mv.original)));
                failed.push(mv);
            }
        }
        m.moved = failed;
        if let Some(e) = first {
            return Err(e);
        }
        let (Some(spare), true) = (spare, m.spare_used) else { return Ok(()) };
        let args: Vec<String> = vec!["cluster".into(), "unregister".into(), "--id".into(), spare.to_string()];
        let mut unregistered = Err(anyhow::anyhow!("not tried"));
        for _ in 0..5 {
            unregistered = match m.rill(&args, Duration::from_secs(60)) {
                Ok(_) => {
                    jlog!("nemesis: n{spare} unregistered");
                    Ok(())
                }
                // It may never have registered (a grow that failed early).
                Err(e) if format!("{e:#}").contains("BROKER_ID_NOT_REGISTERED") => Ok(()),
                Err(e) => Err(e),
            };
            match &unregistered {
                // The node asked may not have applied the last move yet ("still holds
                // replicas"), or an election is under way.
                Err(e) => {
                    jlog!("nemesis: unregistering n{spare} failed: {e:#}");
                    std::thread::sleep(Duration::from_secs(1));
                }
                Ok(()) => break,
            }
        }
        let mut c = lock(&self.cluster);
        c.stop(spare, Duration::from_secs(5));
        jlog!("node n{spare}: stopped");
        // Still registered, it may hold replicas the cluster counts on: wiping it would be a
        // disk loss, a different fault. It keeps its data, and the next shrink tries again.
        if unregistered.is_ok() {
            m.spare_used = false;
            c.wipe_data(spare)?;
        }
        unregistered
    }

    fn apply(&mut self, fault: Fault, name: &str, targets: &[usize]) -> Result<()> {
        let n = lock(&self.cluster).len();
        match fault {
            Fault::Kill => {
                let mut c = lock(&self.cluster);
                for &i in targets {
                    c.kill(i)?;
                }
            }
            Fault::Pause => {
                let mut c = lock(&self.cluster);
                for &i in targets {
                    c.pause(i)?;
                }
            }
            Fault::Partition => {
                let g = match name {
                    "partition-halves" => grudge::split(n, &targets.iter().copied().collect()),
                    "partition-ring" => grudge::majority_ring(targets),
                    "partition-bridge" => {
                        // targets is a shuffled order: its first n/2 on one side, the next one
                        // the bridge, the rest the other side.
                        let a: BTreeSet<usize> = targets[..n / 2].iter().copied().collect();
                        grudge::bridge(n, &a, targets[n / 2])
                    }
                    _ => grudge::isolate(n, targets[0]),
                };
                jlog!("nemesis: grudge {g:?}");
                lock(&self.net).partition(&g)?;
            }
            Fault::Clock => {
                let c = lock(&self.cluster);
                for &i in targets {
                    let skew = self.rng.gen_range(5.0..60.0) * if self.rng.gen_bool(0.5) { 1.0 } else { -1.0 };
                    jlog!("nemesis: n{i} clock {skew:+.1} s");
                    c.set_clock_offset(i, skew)?;
                }
            }
            Fault::Membership => self.grow(name)?,
            Fault::LoseUnsynced => {
                let mut c = lock(&self.cluster);
                for &i in targets {
                    c.kill(i)?;
                }
                let disks = self.disks.as_mut().ok_or_else(|| anyhow::anyhow!("no lossy disks"))?;
                for &i in targets {
                    disks.power_loss(i)?;
                }
                // Restarted at once: the fault is the lost data, not the downtime.
                for &i in targets {
                    c.start(i)?;
                }
            }
        }
        Ok(())
    }

    /// Flips the targets' clocks between two offsets every 200-400 ms for `hold`.
    fn strobe(&mut self, stop: &AtomicBool, targets: &[usize], hold: Duration) {
        let end = Instant::now() + hold;
        let (a, b) = (self.rng.gen_range(-30.0..0.0), self.rng.gen_range(0.0..30.0));
        jlog!("nemesis: strobing {targets:?} between {a:+.1} and {b:+.1} s");
        let mut flip = false;
        while Instant::now() < end && !stop.load(Ordering::Relaxed) {
            {
                let c = lock(&self.cluster);
                for &i in targets {
                    let _ = c.set_clock_offset(i, if flip { a } else { b });
                }
            }
            flip = !flip;
            std::thread::sleep(Duration::from_millis(self.rng.gen_range(200..400)));
        }
    }

    /// Ends every fault: heals the network, resumes paused nodes, restarts dead ones (also
    /// those that died on their own, which is logged), resets the clocks, and moves the
    /// partitions that the membership nemesis moved back (removing the spare). A failure of
    /// the last is also kept in `errors`.
    pub fn heal_all(&mut self) -> Result<()> {
        let healed = self.heal_nodes();
        if let Err(e) = self.shrink() {
            let msg = format!("membership shrink: {e:#}");
            jlog!("nemesis: {msg}");
            self.errors.push(msg);
            return healed.and(Err(e));
        }
        healed
    }

    fn heal_nodes(&mut self) -> Result<()> {
        let mut first: Option<anyhow::Error> = None;
        if let Err(e) = lock(&self.net).heal() {
            first.get_or_insert(e);
        }
        let mut c = lock(&self.cluster);
        for i in c.reap_exited() {
            let msg = format!("node n{i} exited on its own:\n{}", c.log_tail(i, 30));
            jlog!("{msg}");
            self.errors.push(msg);
        }
        for i in 1..=c.len() {
            let r = match c.state(i) {
                State::Paused => c.resume(i),
                State::Down => c.start(i),
                State::Running => Ok(()),
            };
            if let Err(e) = r.and_then(|()| c.set_clock_offset(i, 0.0)) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn grow_replaces_exactly_one_replica_by_the_spare_in_place() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut replaced = BTreeSet::new();
        for _ in 0..50 {
            let t = replace_one(&[1, 2, 3], 4, &mut rng).unwrap();
            assert_eq!(t.len(), 3);
            let k = t.iter().position(|&r| r == 4).unwrap();
            replaced.insert([1, 2, 3][k]);
            for (i, r) in t.iter().enumerate() {
                if i != k {
                    assert_eq!(*r, [1, 2, 3][i]);
                }
            }
        }
        // Every replica gets replaced now and then (the leader's slot included).
        assert_eq!(replaced, BTreeSet::from([1, 2, 3]));
        assert_eq!(replace_one(&[1, 4, 3], 4, &mut rng), None);
        assert_eq!(replace_one(&[], 4, &mut rng), None);
    }

    #[test]
    fn move_stays_among_the_voters() {
        let mut rng = StdRng::seed_from_u64(3);
        // Three voters: never.
        assert_eq!(move_among(&[1, 2, 3], 3, &mut rng), None);
        for _ in 0..50 {
            // A voter without a replica takes one's place; the replication factor is kept.
            let t = move_among(&[1, 2, 3], 5, &mut rng).unwrap();
            assert_eq!(t.len(), 3);
            assert!(t.iter().all(|r| (1..=5).contains(r)));
            assert_eq!(t.iter().filter(|r| ![1, 2, 3].contains(*r)).count(), 1);
            assert_eq!(t.iter().collect::<BTreeSet<_>>().len(), 3);
            // Every voter holds one: one replica goes, at least 3 stay.
            let t = move_among(&[1, 2, 3, 4], 4, &mut rng).unwrap();
            assert_eq!(t.len(), 3);
            assert!(t.iter().all(|r| [1, 2, 3, 4].contains(r)));
        }
    }

    #[test]
    fn membership_is_for_rill_only_and_in_all() {
        assert!(parse_faults("all", false, true).unwrap().contains(&Fault::Membership));
        assert!(!parse_faults("all", false, false).unwrap().contains(&Fault::Membership));
        assert_eq!(parse_faults("membership", false, true).unwrap(), vec![Fault::Membership]);
        let e = parse_faults("kill,membership", false, false).unwrap_err();
        assert!(e.to_string().contains("Rill only"), "{e}");
    }
}
