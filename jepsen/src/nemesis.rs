//! The nemesis: a seeded schedule of faults, each held for a while and then healed, with quiet
//! gaps between them. Every start and stop is recorded in the history (process
//! [`NEMESIS_PROCESS`]): `invoke` when it begins, `info` once it is in place or healed.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
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
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::Kill => "kill",
            Fault::Pause => "pause",
            Fault::Partition => "partition",
            Fault::Clock => "clock",
            Fault::LoseUnsynced => "lose-unsynced",
        })
    }
}

/// Parses `--nemesis`: a comma list of fault names, `all`, or `none`.
pub fn parse_faults(s: &str, lossy_disk: bool) -> Result<Vec<Fault>> {
    let mut set = BTreeSet::new();
    for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match name {
            "none" => {}
            "all" => {
                set.extend([Fault::Kill, Fault::Pause, Fault::Partition, Fault::Clock]);
                if lossy_disk {
                    set.insert(Fault::LoseUnsynced);
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
            "membership" => bail!(
                "nemesis membership is not available: Rill cannot add or remove nodes yet \
                 (the voter set is fixed by controller.quorum.voters)"
            ),
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
        }
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
    /// those that died on their own, which is logged) and resets the clocks.
    pub fn heal_all(&mut self) -> Result<()> {
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
