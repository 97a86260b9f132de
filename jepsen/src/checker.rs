//! The history checker: finds Jepsen's Kafka anomaly classes in a [`history`](crate::history).
//!
//! The anomaly names and their meaning follow `jepsen.tests.kafka`, restricted to what a
//! non-transactional queue workload can show:
//!
//! - `inconsistent-offsets`: one (key, offset) observed (acked send or poll) holding two
//!   different values.
//! - `duplicate`: one value observed at two or more (key, offset) positions. Allowed when its
//!   sender ran a non-idempotent producer (a retried produce may land twice).
//! - `lost-write`: an acked send at or below the highest offset polled for its key, whose
//!   value no poll ever returned.
//! - `unseen`: an acked send never polled, above the highest polled offset. Only a loss once a
//!   complete drain read every log to its end; before that it may just not have been read yet.
//! - `aborted-read`: a poll returned a value whose send completed `fail`.
//! - `phantom`: a poll returned a value that was never sent to that key.
//! - `nonmonotonic-send`: a process's later acked send to a key got an offset at or below an
//!   earlier one of its acked sends to that key.
//! - `nonmonotonic-poll` / `poll-skip`: across a process's successive polls of a key, the
//!   consumer went back (or repeated), or jumped over an offset known to hold a value. Allowed
//!   while the process is subscribed: a group rebalance legitimately moves partitions.
//! - `int-nonmonotonic-poll` / `int-poll-skip`: the same within the records of one poll.
//!
//! Offsets may have gaps (transaction markers, aborted batches, compaction), so a skip is only
//! reported when a skipped offset is known from some observation to hold a value.
//!
//! The check is a few passes over the history plus two sorts of the observations, so it is
//! O(n log n) in the number of operations and records.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::history::{Body, Key, Offset, Op, OpType, Process, Val};

/// How many examples an [`AnomalyReport`] keeps.
pub const MAX_EXAMPLES: usize = 16;

/// Settings of the run that change what is allowed.
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// Processes whose producer ran with enable.idempotence=false: duplicates of values they
    /// sent are allowed (retries may write twice).
    pub non_idempotent: BTreeSet<Process>,
}

/// The checker's verdict on one history.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Analysis {
    /// True when no forbidden anomaly was found.
    pub valid: bool,
    /// The forbidden anomaly kinds found, sorted.
    pub bad: Vec<String>,
    /// Every anomaly kind found, allowed or not.
    pub anomalies: BTreeMap<String, AnomalyReport>,
    /// Counts describing the history.
    pub stats: Stats,
}

/// All cases of one anomaly kind.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct AnomalyReport {
    /// Number of cases.
    pub count: usize,
    /// True when every case is allowed under this run's settings.
    pub allowed: bool,
    /// Why the cases are allowed (set exactly when `allowed`).
    pub why_allowed: Option<String>,
    /// At most [`MAX_EXAMPLES`] cases, forbidden and most telling first. Each carries the
    /// key, offsets, values and op indexes needed to find it in the history.
    pub examples: Vec<Value>,
}

/// Counts describing a history.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Lines in the history.
    pub ops: usize,
    pub sends_invoked: usize,
    pub sends_ok: usize,
    pub sends_fail: usize,
    pub sends_info: usize,
    /// Sends invoked that never completed (the run ended first); treated like `info`.
    pub sends_pending: usize,
    pub polls_ok: usize,
    /// Polls that completed `info` or `fail` (the process's positions reset after them).
    pub polls_not_ok: usize,
    /// Records returned by polls, repeats included.
    pub records_polled: usize,
    /// Distinct values returned by polls.
    pub values_read: usize,
    /// Keys sent to or polled.
    pub distinct_keys: usize,
    /// Acked sends whose value some poll returned.
    pub acked_read: usize,
    /// Acked sends never polled, above the highest polled offset of their key.
    pub unseen: usize,
    /// Acked sends never polled, at or below the highest polled offset of their key.
    pub lost: usize,
    /// Acked sends some poll returned that the complete final drain did not.
    #[serde(default)]
    pub missing_from_drain: usize,
    /// Sends that completed `info` (or never completed) whose value was polled: they happened.
    pub indefinite_sends_read: usize,
    /// `None` without a drain; otherwise whether some drain reached every end offset.
    pub drain_complete: Option<bool>,
    /// Nemesis operations (invocations and completions).
    pub nemesis_ops: usize,
}

/// Checks a history; see the module documentation for the anomaly kinds.
pub fn check(ops: &[Op], opts: &CheckOptions) -> Analysis {
    let mut stats = Stats { ops: ops.len(), ..Stats::default() };
    let table = Table::build(ops, &mut stats);
    let mut found = Findings::default();
    table.value_anomalies(opts, &mut found, &mut stats);
    table.acked_send_anomalies(&mut found, &mut stats);
    table.process_order_anomalies(ops, &mut found);
    stats.distinct_keys = table.known_offsets.len();
    found.into_analysis(stats, table.drain.is_some())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Pending,
    Ok,
    Fail,
    Info,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
        }
    }
}

/// One send, from its invocation and its completion.
struct SendRec {
    key: Key,
    value: Val,
    process: Process,
    invoke: u64,
    completion: Option<u64>,
    outcome: Outcome,
    offset: Option<Offset>,
}

impl SendRec {
    fn describe(&self) -> Value {
        json!({
            "process": self.process,
            "key": self.key,
            "outcome": self.outcome.name(),
            "offset": self.offset,
            "invoke_index": self.invoke,
            "completion_index": self.completion,
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Via {
    Send,
    Poll,
}

/// One (key, offset, value) seen by an acked send or a poll.
#[derive(Clone, Copy)]
struct Obs {
    key: Key,
    offset: Offset,
    value: Val,
    via: Via,
    op: u64,
    process: Process,
}

impl Obs {
    fn describe(&self) -> Value {
        let via = match self.via {
            Via::Send => "send",
            Via::Poll => "poll",
        };
        json!({"via": via, "op_index": self.op, "process": self.process})
    }
}

/// Indexes built in one pass over the history.
struct Table {
    sends: Vec<SendRec>,
    send_of: HashMap<Val, usize>,
    /// Sorted by (key, offset, value, via, op).
    obs: Vec<Obs>,
    /// Per key, the distinct observed offsets, ascending.
    known_offsets: HashMap<Key, Vec<Offset>>,
    /// Per key, the highest polled offset and the poll that returned it.
    max_polled: HashMap<Key, (Offset, u64)>,
    /// Values some poll returned.
    polled_values: HashSet<Val>,
    /// End offsets of the last complete drain, if any.
    drain: Option<HashMap<Key, Offset>>,
    /// Values the drain's own polls returned (the drain is the process of the Drain op).
    drained_values: HashSet<Val>,
}

impl Table {
    fn build(ops: &[Op], stats: &mut Stats) -> Table {
        let mut sends: Vec<SendRec> = Vec::new();
        let mut send_of: HashMap<Val, usize> = HashMap::new();
        let mut obs = Vec::new();
        let mut drain = None;
        let mut drain_process = None;
        for op in ops {
            match &op.body {
                Body::Send { key, value, offset } => {
                    let i = *send_of.entry(*value).or_insert_with(|| {
                        sends.push(SendRec {
                            key: *key,
                            value: *value,
                            process: op.process,
                            invoke: op.index,
                            completion: None,
                            outcome: Outcome::Pending,
                            offset: None,
                        });
                        sends.len() - 1
                    });
                    let rec = &mut sends[i];
                    let outcome = match op.kind {
                        OpType::Invoke => {
                            stats.sends_invoked += 1;
                            continue;
                        }
                        OpType::Ok => Outcome::Ok,
                        OpType::Fail => Outcome::Fail,
                        OpType::Info => Outcome::Info,
                    };
                    rec.completion = Some(op.index);
                    rec.outcome = outcome;
                    if outcome == Outcome::Ok {
                        rec.offset = acked_offset(*offset);
                        if let Some(offset) = &rec.offset {
                            obs.push(Obs {
                                key: *key,
                                offset: *offset,
                                value: *value,
                                via: Via::Send,
                                op: op.index,
                                process: op.process,
                            });
                        }
                    }
                }
                Body::Poll { records } => match op.kind {
                    OpType::Invoke => {}
                    OpType::Fail => stats.polls_not_ok += 1,
                    // An `info` poll's records (if the runner kept any) were still returned
                    // by the broker, so they are observations; only positions are unknown.
                    OpType::Ok | OpType::Info => {
                        if op.kind == OpType::Ok {
                            stats.polls_ok += 1;
                        } else {
                            stats.polls_not_ok += 1;
                        }
                        stats.records_polled += records.len();
                        obs.extend(records.iter().map(|&(key, offset, value)| Obs {
                            key,
                            offset,
                            value,
                            via: Via::Poll,
                            op: op.index,
                            process: op.process,
                        }));
                    }
                },
                Body::Drain { complete, end_offsets } if matches!(op.kind, OpType::Ok | OpType::Info) => {
                    stats.drain_complete = Some(stats.drain_complete.unwrap_or(false) || *complete);
                    if *complete {
                        drain = Some(end_offsets.iter().copied().collect());
                        drain_process = Some(op.process);
                    }
                }
                Body::Nemesis { .. } => stats.nemesis_ops += 1,
                _ => {}
            }
        }
        for rec in &sends {
            match rec.outcome {
                Outcome::Pending => stats.sends_pending += 1,
                Outcome::Ok => stats.sends_ok += 1,
                Outcome::Fail => stats.sends_fail += 1,
                Outcome::Info => stats.sends_info += 1,
            }
        }
        obs.sort_unstable_by_key(|o| (o.key, o.offset, o.value, o.via, o.op));
        let mut known_offsets: HashMap<Key, Vec<Offset>> = HashMap::new();
        let mut max_polled: HashMap<Key, (Offset, u64)> = HashMap::new();
        let mut polled_values = HashSet::new();
        let mut drained_values = HashSet::new();
        for o in &obs {
            let offsets = known_offsets.entry(o.key).or_default();
            if offsets.last() != Some(&o.offset) {
                offsets.push(o.offset);
            }
            if o.via == Via::Poll {
                polled_values.insert(o.value);
                if Some(o.process) == drain_process {
                    drained_values.insert(o.value);
                }
                // Ascending order: the last poll seen for a key is at its highest offset.
                max_polled.insert(o.key, (o.offset, o.op));
            }
        }
        // Keys only ever sent to (never acked) still count as keys of the run.
        for rec in &sends {
            known_offsets.entry(rec.key).or_default();
        }
        stats.values_read = polled_values.len();
        Table { sends, send_of, obs, known_offsets, max_polled, polled_values, drain, drained_values }
    }

    /// The observations of one (key, offset).
    fn at(&self, key: Key, offset: Offset) -> &[Obs] {
        let lo = self.obs.partition_point(|o| (o.key, o.offset) < (key, offset));
        let hi = self.obs.partition_point(|o| (o.key, o.offset) <= (key, offset));
        &self.obs[lo..hi]
    }

    /// Distinct values observed at (key, offset), by polls only with `polled_only`.
    fn values_at(&self, key: Key, offset: Offset, polled_only: bool) -> Vec<Val> {
        let at = self.at(key, offset).iter().filter(|o| !polled_only || o.via == Via::Poll);
        let mut values: Vec<Val> = at.map(|o| o.value).collect();
        values.dedup();
        values
    }

    /// The known offsets of `key` strictly between `lo` and `hi`.
    fn known_between(&self, key: Key, lo: Offset, hi: Offset) -> &[Offset] {
        let Some(offsets) = self.known_offsets.get(&key) else { return &[] };
        let a = offsets.partition_point(|&o| o <= lo);
        let b = offsets.partition_point(|&o| o < hi);
        &offsets[a..b.max(a)]
    }

    /// Describes skipped offsets (the first few) with the values known there.
    fn describe_skipped(&self, key: Key, skipped: &[Offset]) -> Value {
        let shown: Vec<Value> =
            skipped.iter().take(8).map(|&o| json!({"offset": o, "values": self.values_at(key, o, false)})).collect();
        json!({"count": skipped.len(), "first": shown})
    }

    fn writer(&self, value: Val) -> Option<&SendRec> {
        self.send_of.get(&value).map(|&i| &self.sends[i])
    }

    /// `inconsistent-offsets`, `duplicate`, `aborted-read` and `phantom`.
    fn value_anomalies(&self, opts: &CheckOptions, found: &mut Findings, stats: &mut Stats) {
        for group in self.obs.chunk_by(|a, b| (a.key, a.offset) == (b.key, b.offset)) {
            let mut values: Vec<Val> = group.iter().map(|o| o.value).collect();
            values.dedup();
            if values.len() < 2 {
                continue;
            }
            let (key, offset) = (group[0].key, group[0].offset);
            found.add("inconsistent-offsets", true, values.len() as i64, || {
                let per_value: Vec<Value> = values
                    .iter()
                    .map(|&v| {
                        let seen: Vec<Value> =
                            group.iter().filter(|o| o.value == v).take(4).map(Obs::describe).collect();
                        json!({"value": v, "seen_by": seen, "writer": self.writer(v).map(SendRec::describe)})
                    })
                    .collect();
                json!({"key": key, "offset": offset, "values": per_value})
            });
        }

        let mut by_value: Vec<&Obs> = self.obs.iter().collect();
        by_value.sort_unstable_by_key(|o| (o.value, o.key, o.offset, o.via, o.op));
        for group in by_value.chunk_by(|a, b| a.value == b.value) {
            let value = group[0].value;
            let writer = self.writer(value);
            let mut positions: Vec<(Key, Offset)> = group.iter().map(|o| (o.key, o.offset)).collect();
            positions.dedup();
            if positions.len() > 1 {
                let allowed = writer.is_some_and(|w| opts.non_idempotent.contains(&w.process));
                found.add("duplicate", !allowed, positions.len() as i64, || {
                    let at: Vec<Value> = positions
                        .iter()
                        .map(|&(k, o)| {
                            let first = group.iter().find(|x| (x.key, x.offset) == (k, o)).map(|x| x.describe());
                            json!({"key": k, "offset": o, "first_seen": first})
                        })
                        .collect();
                    json!({"value": value, "positions": at, "writer": writer.map(SendRec::describe)})
                });
            }
            // A value read from a key it was never sent to is a phantom there, whatever its
            // reads at the right key show.
            let misplaced = group.iter().find(|o| o.via == Via::Poll && writer.is_none_or(|w| w.key != o.key));
            if let Some(read) = misplaced {
                found.add("phantom", true, 0, || {
                    json!({
                        "key": read.key,
                        "offset": read.offset,
                        "value": value,
                        "first_read": read.describe(),
                        "sent": writer.map(SendRec::describe),
                        "why": if writer.is_some() { "value was sent to another key" } else { "value never sent" },
                    })
                });
            }
            let Some(w) = writer else { continue };
            let mut reads = group.iter().filter(|o| o.via == Via::Poll && o.key == w.key);
            let Some(first_read) = reads.next() else { continue };
            match w.outcome {
                Outcome::Fail => {
                    let count = 1 + reads.count();
                    // More readers make it harder to blame a single client.
                    found.add("aborted-read", true, count as i64, || {
                        json!({
                            "key": w.key,
                            "value": value,
                            "offset": first_read.offset,
                            "writer": w.describe(),
                            "first_read": first_read.describe(),
                            "reads": count,
                        })
                    });
                }
                Outcome::Info | Outcome::Pending => stats.indefinite_sends_read += 1,
                Outcome::Ok => stats.acked_read += 1,
            }
        }
    }

    /// `lost-write`, `unseen` and `missing-from-drain`.
    fn acked_send_anomalies(&self, found: &mut Findings, stats: &mut Stats) {
        let drained = self.drain.is_some();
        for rec in self.sends.iter().filter(|r| r.outcome == Outcome::Ok) {
            if self.polled_values.contains(&rec.value) {
                // Read once, yet absent when the final drain read every key from its log
                // start to its end: the log lost it after it was read (for instance a
                // crash that dropped data the broker had acknowledged and served).
                if drained && !self.drained_values.contains(&rec.value) {
                    stats.missing_from_drain += 1;
                    found.add("missing-from-drain", true, 0, || {
                        json!({
                            "key": rec.key,
                            "value": rec.value,
                            "offset": rec.offset,
                            "drain_end_offset": self.drain.as_ref().and_then(|d| d.get(&rec.key).copied()),
                            "values_polled_at_offset": rec.offset.map(|o| self.values_at(rec.key, o, true)),
                            "writer": rec.describe(),
                        })
                    });
                }
                continue;
            }
            let max = self.max_polled.get(&rec.key).copied();
            match (rec.offset, max) {
                (Some(offset), Some((max_offset, max_op))) if offset <= max_offset => {
                    stats.lost += 1;
                    // Deeper below what consumers read is harder to explain away.
                    found.add("lost-write", true, max_offset - offset, || {
                        json!({
                            "key": rec.key,
                            "value": rec.value,
                            "offset": offset,
                            "max_polled_offset": max_offset,
                            "max_polled_by_op": max_op,
                            "values_polled_at_offset": self.values_at(rec.key, offset, true),
                            "writer": rec.describe(),
                        })
                    });
                }
                _ => {
                    stats.unseen += 1;
                    let end = self.drain.as_ref().and_then(|d| d.get(&rec.key).copied());
                    // Below the drained end offset, the broker claimed the log held it.
                    let below_end = matches!((rec.offset, end), (Some(o), Some(e)) if o < e);
                    found.add("unseen", drained, i64::from(below_end), || {
                        json!({
                            "key": rec.key,
                            "value": rec.value,
                            "offset": rec.offset,
                            "max_polled_offset": max.map(|m| m.0),
                            "drain_end_offset": end,
                            "writer": rec.describe(),
                        })
                    });
                }
            }
        }
    }

    /// `nonmonotonic-send`, `nonmonotonic-poll`, `poll-skip`, `int-nonmonotonic-poll` and
    /// `int-poll-skip`: each process's operations in history order.
    fn process_order_anomalies(&self, ops: &[Op], found: &mut Findings) {
        #[derive(Default)]
        struct ProcState {
            /// Per key, (offset, value, op index) of the last record polled.
            pos: HashMap<Key, (Offset, Val, u64)>,
            /// Per key, (offset, value, op index) of the last acked send.
            sent: HashMap<Key, (Offset, Val, u64)>,
            subscribed: bool,
        }
        let mut procs: HashMap<Process, ProcState> = HashMap::new();
        // Per poll: (key, offset, value) of the last record of each key so far. Polls hold
        // few keys, so a vector beats a map.
        let mut in_poll: Vec<(Key, Offset, Val)> = Vec::new();
        for op in ops {
            match &op.body {
                Body::Assign { .. } => {
                    let st = procs.entry(op.process).or_default();
                    st.pos.clear();
                    // A failed assign leaves the old (possibly subscribed) consumer in place.
                    if op.kind != OpType::Fail && op.kind != OpType::Invoke {
                        st.subscribed = false;
                    }
                }
                Body::Subscribe { .. } => {
                    let st = procs.entry(op.process).or_default();
                    st.pos.clear();
                    // From the invocation on: an unknown outcome may still have subscribed.
                    if op.kind != OpType::Fail {
                        st.subscribed = true;
                    }
                }
                // A fresh consumer starts from the committed offsets. The subscribed flag is
                // kept: the runner may re-subscribe the new client without recording it.
                Body::Crash => procs.entry(op.process).or_default().pos.clear(),
                Body::Poll { .. } if matches!(op.kind, OpType::Info | OpType::Fail) => {
                    procs.entry(op.process).or_default().pos.clear();
                }
                Body::Poll { records } if op.kind == OpType::Ok => {
                    let st = procs.entry(op.process).or_default();
                    in_poll.clear();
                    for &(key, offset, value) in records {
                        if let Some(prev) = in_poll.iter_mut().find(|p| p.0 == key) {
                            self.check_step(op, key, (prev.1, prev.2, op.index), (offset, value), true, false, found);
                            *prev = (key, offset, value);
                        } else {
                            if let Some(&last) = st.pos.get(&key) {
                                self.check_step(op, key, last, (offset, value), false, st.subscribed, found);
                            }
                            in_poll.push((key, offset, value));
                        }
                    }
                    for &(key, offset, value) in &in_poll {
                        st.pos.insert(key, (offset, value, op.index));
                    }
                }
                Body::Send { key, value, offset } if op.kind == OpType::Ok => {
                    let Some(offset) = &acked_offset(*offset) else { continue };
                    let st = procs.entry(op.process).or_default();
                    if let Some(&(prev, prev_value, prev_op)) = st.sent.get(key) {
                        if *offset <= prev {
                            found.add("nonmonotonic-send", true, prev - offset, || {
                                json!({
                                    "process": op.process,
                                    "key": key,
                                    "offsets": [prev, offset],
                                    "values": [prev_value, value],
                                    "op_indexes": [prev_op, op.index],
                                })
                            });
                        }
                    }
                    st.sent.insert(*key, (*offset, *value, op.index));
                }
                _ => {}
            }
        }
    }

    /// Compares one polled record of `key` with the one polled before it (`last`, in the same
    /// poll when `internal`).
    #[allow(clippy::too_many_arguments)]
    fn check_step(
        &self,
        op: &Op,
        key: Key,
        last: (Offset, Val, u64),
        next: (Offset, Val),
        internal: bool,
        subscribed: bool,
        found: &mut Findings,
    ) {
        let (last_offset, last_value, last_op) = last;
        let (offset, value) = next;
        let prefix = if internal { "int-" } else { "" };
        let example = |skipped: Option<Value>| {
            let mut e = json!({
                "process": op.process,
                "key": key,
                "offsets": [last_offset, offset],
                "values": [last_value, value],
                "op_indexes": [last_op, op.index],
            });
            if let Some(s) = skipped {
                e["skipped"] = s;
            }
            if subscribed {
                e["subscribed"] = json!(true);
            }
            e
        };
        if offset <= last_offset {
            let kind = if internal { "int-nonmonotonic-poll" } else { "nonmonotonic-poll" };
            found.add(kind, !subscribed, last_offset - offset, || example(None));
        } else {
            let skipped = self.known_between(key, last_offset, offset);
            if !skipped.is_empty() {
                let kind = format!("{prefix}poll-skip");
                found.add(&kind, !subscribed, skipped.len() as i64, || {
                    example(Some(self.describe_skipped(key, skipped)))
                });
            }
        }
    }
}

/// The offset an acked send claims. librdkafka reports a negative one (-1001, "invalid") when
/// the broker returned none: that is no claim about the log.
fn acked_offset(offset: Option<Offset>) -> Option<Offset> {
    offset.filter(|&o| o >= 0)
}

/// Why a kind can be allowed; `None` for kinds that never are.
fn why_allowed(kind: &str) -> Option<&'static str> {
    match kind {
        "duplicate" => Some("every duplicated value was sent by a producer with enable.idempotence=false, whose retries may write twice"),
        "unseen" => Some("no complete drain: acknowledged values above the highest polled offset may simply not have been read yet"),
        "nonmonotonic-poll" | "poll-skip" => {
            Some("every case is in a subscribed consumer: group rebalances move partitions between consumers and commits")
        }
        _ => None,
    }
}

/// How telling an example is: forbidden first, then by score, then the earliest found.
type Rank = (bool, i64, std::cmp::Reverse<usize>);

/// One anomaly kind being collected: a count and the most telling examples.
#[derive(Default)]
struct Kind {
    count: usize,
    forbidden: usize,
    top: Vec<(Rank, Value)>,
}

#[derive(Default)]
struct Findings {
    kinds: BTreeMap<String, Kind>,
}

impl Findings {
    /// Records one case. `score` orders the examples (higher is more telling); `example` is
    /// only called when the case makes it into the examples, which keeps a history with a
    /// million unseen values cheap.
    fn add(&mut self, kind: &str, forbidden: bool, score: i64, example: impl FnOnce() -> Value) {
        let k = match self.kinds.get_mut(kind) {
            Some(k) => k,
            None => self.kinds.entry(kind.to_string()).or_default(),
        };
        let rank = (forbidden, score, std::cmp::Reverse(k.count));
        k.count += 1;
        k.forbidden += usize::from(forbidden);
        if k.top.len() < MAX_EXAMPLES {
            k.top.push((rank, example()));
            return;
        }
        let (min_i, min_rank) =
            k.top.iter().enumerate().map(|(i, (r, _))| (i, *r)).min_by_key(|&(_, r)| r).expect("full");
        if rank > min_rank {
            k.top[min_i] = (rank, example());
        }
    }

    fn into_analysis(self, stats: Stats, drained: bool) -> Analysis {
        let mut anomalies = BTreeMap::new();
        let mut bad = Vec::new();
        for (name, mut k) in self.kinds {
            let allowed = k.forbidden == 0;
            if !allowed {
                bad.push(name.clone());
            }
            k.top.sort_by_key(|e| std::cmp::Reverse(e.0));
            let why = if allowed {
                let why = why_allowed(&name).unwrap_or("allowed under this run's settings");
                Some(why.to_string())
            } else {
                None
            };
            let examples = k.top.into_iter().map(|(_, e)| e).collect();
            anomalies.insert(name, AnomalyReport { count: k.count, allowed, why_allowed: why, examples });
        }
        debug_assert!(drained || !bad.iter().any(|b| b == "unseen"));
        Analysis { valid: bad.is_empty(), bad, anomalies, stats }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{NemesisAction, NEMESIS_PROCESS};

    /// Builds histories tersely; indexes and times follow the order of calls.
    #[derive(Default)]
    struct H {
        ops: Vec<Op>,
    }

    impl H {
        fn push(&mut self, process: Process, kind: OpType, body: Body) -> &mut Self {
            let index = self.ops.len() as u64;
            self.ops.push(Op { index, time_ns: index * 1_000_000, process, kind, body, error: None });
            self
        }
        /// A send by `p` of `v` to `k` completing `kind` (at `offset` when ok).
        fn send(&mut self, p: Process, k: Key, v: Val, kind: OpType, offset: Option<Offset>) -> &mut Self {
            self.push(p, OpType::Invoke, Body::Send { key: k, value: v, offset: None });
            let offset = if kind == OpType::Ok { offset } else { None };
            self.push(p, kind, Body::Send { key: k, value: v, offset })
        }
        fn ok_send(&mut self, p: Process, k: Key, v: Val, offset: Offset) -> &mut Self {
            self.send(p, k, v, OpType::Ok, Some(offset))
        }
        fn poll(&mut self, p: Process, records: &[(Key, Offset, Val)]) -> &mut Self {
            self.push(p, OpType::Invoke, Body::Poll { records: vec![] });
            self.push(p, OpType::Ok, Body::Poll { records: records.to_vec() })
        }
        fn assign(&mut self, p: Process, keys: &[Key]) -> &mut Self {
            let body = Body::Assign { keys: keys.to_vec(), seek_to_beginning: true };
            self.push(p, OpType::Invoke, body.clone());
            self.push(p, OpType::Ok, body)
        }
        fn subscribe(&mut self, p: Process, keys: &[Key]) -> &mut Self {
            let body = Body::Subscribe { keys: keys.to_vec() };
            self.push(p, OpType::Invoke, body.clone());
            self.push(p, OpType::Ok, body)
        }
        /// A faithful final drain (process 99): it reads again every value polled so far.
        fn drain(&mut self, complete: bool) -> &mut Self {
            let mut seen: Vec<(Key, Offset, Val)> = Vec::new();
            for op in &self.ops {
                if let (OpType::Ok, Body::Poll { records }) = (op.kind, &op.body) {
                    seen.extend(records.iter().filter(|r| !seen.contains(r)).copied().collect::<Vec<_>>());
                }
            }
            seen.sort_unstable();
            self.drain_reading(complete, &seen)
        }
        fn drain_reading(&mut self, complete: bool, records: &[(Key, Offset, Val)]) -> &mut Self {
            let mut keys: Vec<Key> = records.iter().map(|r| r.0).collect();
            keys.dedup();
            self.assign(99, &keys).poll(99, records);
            self.push(99, OpType::Ok, Body::Drain { complete, end_offsets: vec![(0, 10)] })
        }
        fn check(&self) -> Analysis {
            check(&self.ops, &CheckOptions::default())
        }
    }

    /// The kinds found, with their counts.
    fn kinds(a: &Analysis) -> Vec<(&str, usize)> {
        a.anomalies.iter().map(|(k, r)| (k.as_str(), r.count)).collect()
    }

    /// A clean history: two producers, an assigned and a subscribed consumer, a crash, an
    /// `info` send that was read and one that was not, a failed send never read, an `info`
    /// poll followed by a repeat, offset gaps (control records), a nemesis, a complete drain.
    fn clean() -> H {
        let mut h = H::default();
        h.push(NEMESIS_PROCESS, OpType::Invoke, nemesis(NemesisAction::Start));
        h.ok_send(0, 0, 1, 0).ok_send(1, 0, 2, 1).send(0, 0, 3, OpType::Info, None);
        h.send(1, 0, 4, OpType::Fail, None).send(1, 0, 5, OpType::Info, None).ok_send(0, 0, 6, 5);
        h.ok_send(1, 1, 7, 0).ok_send(1, 1, 8, 2);
        h.assign(2, &[0, 1]).poll(2, &[(0, 0, 1), (0, 1, 2), (1, 0, 7)]);
        h.push(2, OpType::Invoke, Body::Poll { records: vec![] });
        h.push(2, OpType::Info, Body::Poll { records: vec![] });
        // After the info poll the consumer may legitimately repeat records.
        h.poll(2, &[(0, 1, 2), (0, 3, 3), (0, 5, 6), (1, 2, 8)]);
        h.push(NEMESIS_PROCESS, OpType::Info, nemesis(NemesisAction::Stop));
        h.subscribe(3, &[0]).poll(3, &[(0, 3, 3)]);
        h.push(3, OpType::Ok, Body::Crash).poll(3, &[(0, 0, 1)]);
        h.assign(4, &[0, 1]).poll(4, &[(0, 0, 1), (0, 1, 2), (0, 3, 3), (0, 5, 6), (1, 0, 7), (1, 2, 8)]);
        h.drain(true);
        h
    }

    fn nemesis(action: NemesisAction) -> Body {
        Body::Nemesis { name: "partition".into(), action, targets: vec!["n1".into()] }
    }

    #[test]
    fn a_clean_history_is_valid() {
        let a = clean().check();
        assert!(a.valid, "{a:#?}");
        assert!(a.anomalies.is_empty(), "{a:#?}");
        let s = &a.stats;
        assert_eq!((s.sends_invoked, s.sends_ok, s.sends_fail, s.sends_info), (8, 5, 1, 2));
        assert_eq!((s.polls_ok, s.polls_not_ok, s.values_read, s.distinct_keys), (6, 1, 6, 2));
        assert_eq!((s.acked_read, s.indefinite_sends_read, s.unseen, s.lost), (5, 1, 0, 0));
        assert_eq!(s.drain_complete, Some(true));
        assert_eq!(s.nemesis_ops, 2);
    }

    /// Kafka without fsync after a power loss of every node: values acknowledged and read
    /// are gone from the log the final drain reads.
    #[test]
    fn read_then_gone_from_the_drain() {
        let mut h = H::default();
        h.ok_send(0, 0, 1, 0).ok_send(0, 0, 2, 1).assign(2, &[0]).poll(2, &[(0, 0, 1), (0, 1, 2)]);
        h.drain_reading(true, &[(0, 0, 1)]);
        let a = h.check();
        assert_eq!(kinds(&a), vec![("missing-from-drain", 1)]);
        assert_eq!(a.bad, vec!["missing-from-drain"]);
        assert_eq!(a.anomalies["missing-from-drain"].examples[0]["value"], 2);
        assert_eq!(a.stats.missing_from_drain, 1);
        // An incomplete drain proves nothing.
        let mut h = H::default();
        h.ok_send(0, 0, 1, 0).assign(2, &[0]).poll(2, &[(0, 0, 1)]).drain_reading(false, &[]);
        assert!(h.check().valid);
    }

    #[test]
    fn inconsistent_offsets() {
        let mut h = H::default();
        h.ok_send(0, 0, 1, 0).ok_send(1, 0, 2, 0).assign(2, &[0]).poll(2, &[(0, 0, 1)]);
        let a = h.check();
        // Value 2 was acked at offset 0 and never read below the polled maximum: also lost.
        assert_eq!(kinds(&a), vec![("inconsistent-offsets", 1), ("lost-write", 1)]);
        assert_eq!(a.bad, vec!["inconsistent-offsets", "lost-write"]);
        let e = &a.anomalies["inconsistent-offsets"].examples[0];
        assert_eq!(e["offset"], 0);
        assert_eq!(e["values"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn duplicate_is_forbidden_for_idempotent_producers_only() {
        let mut h = H::default();
        h.ok_send(0, 0, 1, 0).assign(2, &[0]).poll(2, &[(0, 0, 1), (0, 1, 1)]);
        let a = h.check();
        assert_eq!(kinds(&a), vec![("duplicate", 1)]);
        assert_eq!(a.bad, vec!["duplicate"]);
        assert_eq!(a.anomalies["duplicate"].examples[0]["positions"].as_array().unwrap().len(), 2);

        let opts = CheckOptions { non_idempotent: [0].into() };
        let a = check(&h.ops, &opts);
        assert!(a.valid, "{a:#?}");
        assert_eq!(kinds(&a), vec![("duplicate", 1)]);
        assert!(a.anomalies["duplicate"].allowed);
        assert!(a.anomalies["duplicate"].why_allowed.is_some());
    }

    #[test]
    fn lost_write() {
        let mut h = H::default();
        h.ok_send(0, 0, 1, 0).ok_send(0, 0, 2, 1).ok_send(0, 0, 3, 2);
        h.assign(1, &[0]).poll(1, &[(0, 0, 1), (0, 2, 3)]);
        let a = h.check();
        // Offset 1 is known (from the ack), so the poll also skipped it.
        assert_eq!(kinds(&a), vec![("int-poll-skip", 1), ("lost-write", 1)]);
        let e = &a.anomalies["lost-write"].examples[0];
        assert_eq!(
            (e["value"].as_u64(), e["offset"].as_i64(), e["max_polled_offset"].as_i64()),
            (Some(2), Some(1), Some(2))
        );
        assert_eq!(e["values_polled_at_offset"], json!([]));
        assert_eq!(a.stats.lost, 1);
    }

    #[test]
    fn unseen_is_allowed_until_a_complete_drain() {
        let mut h = H::default();
        h.ok_send(0, 0, 1, 0).ok_send(0, 0, 2, 1).ok_send(0, 1, 3, 0);
        h.assign(1, &[0]).poll(1, &[(0, 0, 1)]);
        let a = h.check();
        assert!(a.valid, "{a:#?}");
        assert_eq!(kinds(&a), vec![("unseen", 2)]);
        assert!(a.anomalies["unseen"].allowed);
        assert_eq!(a.stats.unseen, 2);

        h.drain(false);
        assert!(h.check().valid);
        h.drain(true);
        let a = h.check();
        assert_eq!(a.bad, vec!["unseen"]);
        assert_eq!(a.anomalies["unseen"].count, 2);
    }

    #[test]
    fn negative_ack_offsets_are_unknown_not_conflicting() {
        let mut h = H::default();
        h.ok_send(0, 0, 1, -1001).ok_send(0, 0, 2, -1001).ok_send(0, 0, 3, 0);
        h.assign(1, &[0]).poll(1, &[(0, 0, 3), (0, 1, 1)]);
        let a = h.check();
        assert!(a.valid, "{a:#?}");
        assert_eq!(kinds(&a), vec![("unseen", 1)]);
        assert_eq!(a.anomalies["unseen"].examples[0]["offset"], Value::Null);
    }

    #[test]
    fn aborted_read_and_phantom() {
        let mut h = H::default();
        h.send(0, 0, 1, OpType::Fail, None).ok_send(0, 1, 2, 0);
        h.assign(1, &[0, 1]).poll(1, &[(0, 0, 1), (0, 1, 99), (1, 0, 2), (0, 2, 2)]);
        let a = h.check();
        // 99 was never sent; 2 was sent to key 1, so reading it from key 0 is a phantom too
        // (and 2 sits at two positions: a duplicate).
        assert_eq!(kinds(&a), vec![("aborted-read", 1), ("duplicate", 1), ("phantom", 2)]);
        assert_eq!(a.bad, vec!["aborted-read", "duplicate", "phantom"]);
        assert_eq!(a.anomalies["aborted-read"].examples[0]["value"], 1);
    }

    #[test]
    fn nonmonotonic_send() {
        let mut h = H::default();
        h.ok_send(0, 0, 1, 5).ok_send(0, 0, 2, 3).ok_send(0, 1, 3, 0);
        h.assign(1, &[0, 1]).poll(1, &[(0, 3, 2), (0, 5, 1), (1, 0, 3)]);
        let a = h.check();
        assert_eq!(kinds(&a), vec![("nonmonotonic-send", 1)]);
        assert_eq!(a.anomalies["nonmonotonic-send"].examples[0]["offsets"], json!([5, 3]));
    }

    /// The history behind the poll-order tests: offsets 0..=3 of key 0, then `reads` by
    /// process 1 after `setup`.
    fn polls_after(setup: impl FnOnce(&mut H), reads: &[&[(Key, Offset, Val)]]) -> Analysis {
        let mut h = H::default();
        for (o, v) in [(0, 10), (1, 11), (2, 12), (3, 13)] {
            h.ok_send(0, 0, v, o);
        }
        setup(&mut h);
        for r in reads {
            h.poll(1, r);
        }
        h.check()
    }

    #[test]
    fn nonmonotonic_poll_and_poll_skip_across_polls() {
        let assign = |h: &mut H| {
            h.assign(1, &[0]);
        };
        let a = polls_after(assign, &[&[(0, 0, 10), (0, 1, 11)], &[(0, 1, 11), (0, 2, 12), (0, 3, 13)]]);
        assert_eq!(kinds(&a), vec![("nonmonotonic-poll", 1)]);
        assert_eq!(a.bad, vec!["nonmonotonic-poll"]);
        let e = &a.anomalies["nonmonotonic-poll"].examples[0];
        assert_eq!((e["offsets"].clone(), e["process"].clone()), (json!([1, 1]), json!(1)));

        let a = polls_after(assign, &[&[(0, 0, 10)], &[(0, 2, 12), (0, 3, 13)], &[(0, 0, 10), (0, 1, 11)]]);
        assert_eq!(kinds(&a), vec![("nonmonotonic-poll", 1), ("poll-skip", 1)]);
        assert_eq!(a.anomalies["poll-skip"].examples[0]["skipped"]["first"], json!([{"offset": 1, "values": [11]}]));
    }

    #[test]
    fn subscribed_consumers_may_skip_and_rewind() {
        let subscribe = |h: &mut H| {
            h.subscribe(1, &[0]);
        };
        let a = polls_after(subscribe, &[&[(0, 0, 10)], &[(0, 2, 12), (0, 3, 13)], &[(0, 1, 11)]]);
        assert!(a.valid, "{a:#?}");
        assert_eq!(kinds(&a), vec![("nonmonotonic-poll", 1), ("poll-skip", 1)]);
        assert!(a.anomalies["poll-skip"].allowed && a.anomalies["nonmonotonic-poll"].allowed);
        // Switching to manual assignment ends the allowance.
        let resubscribe = |h: &mut H| {
            h.subscribe(1, &[0]).assign(1, &[0]);
        };
        let a = polls_after(resubscribe, &[&[(0, 0, 10)], &[(0, 2, 12), (0, 3, 13)], &[(0, 1, 11)]]);
        assert_eq!(a.bad, vec!["nonmonotonic-poll", "poll-skip"]);
    }

    #[test]
    fn positions_reset_on_assign_crash_and_unknown_polls() {
        let a = polls_after(
            |h| {
                h.assign(1, &[0]).poll(1, &[(0, 2, 12)]).assign(1, &[0]).poll(1, &[(0, 0, 10)]);
                h.push(1, OpType::Ok, Body::Crash).poll(1, &[(0, 0, 10)]);
                h.push(1, OpType::Invoke, Body::Poll { records: vec![] });
                h.push(1, OpType::Fail, Body::Poll { records: vec![] });
            },
            &[&[(0, 0, 10), (0, 1, 11), (0, 2, 12), (0, 3, 13)]],
        );
        assert!(a.anomalies.is_empty(), "{a:#?}");
    }

    #[test]
    fn internal_poll_anomalies_are_forbidden_even_when_subscribed() {
        let subscribe = |h: &mut H| {
            h.subscribe(1, &[0]);
        };
        let a = polls_after(subscribe, &[&[(0, 0, 10), (0, 2, 12), (0, 3, 13), (0, 1, 11)]]);
        assert_eq!(kinds(&a), vec![("int-nonmonotonic-poll", 1), ("int-poll-skip", 1)]);
        assert_eq!(a.bad, vec!["int-nonmonotonic-poll", "int-poll-skip"]);
    }

    #[test]
    fn offset_gaps_without_known_values_are_not_skips() {
        let mut h = H::default();
        // Offsets 1 and 3 are transaction markers or aborted data: nothing known there.
        h.ok_send(0, 0, 1, 0).ok_send(0, 0, 2, 2).ok_send(0, 0, 3, 4);
        h.assign(1, &[0]).poll(1, &[(0, 0, 1), (0, 2, 2)]).poll(1, &[(0, 4, 3)]);
        assert!(h.check().anomalies.is_empty());
    }

    #[test]
    fn examples_are_capped_and_forbidden_first() {
        let mut h = H::default();
        h.subscribe(1, &[0]);
        for i in 0..40 {
            h.ok_send(0, 0, 100 + i as u64, 2 * i);
        }
        // Subscribed: 19 allowed skips of one known offset each.
        for i in 0..20 {
            h.poll(1, &[(0, 4 * i, 100 + 2 * i as u64)]);
        }
        // Assigned: one forbidden skip.
        h.assign(2, &[0]).poll(2, &[(0, 0, 100)]).poll(2, &[(0, 4, 102)]);
        // Someone reads everything, so nothing is lost or unseen.
        let all: Vec<(Key, Offset, Val)> = (0..40).map(|i| (0, 2 * i, 100 + i as u64)).collect();
        h.assign(3, &[0]).poll(3, &all);
        let a = h.check();
        assert_eq!(kinds(&a), vec![("poll-skip", 20)]);
        let r = &a.anomalies["poll-skip"];
        assert_eq!((r.count, r.allowed), (20, false));
        assert_eq!(r.examples.len(), MAX_EXAMPLES);
        assert_eq!(r.examples[0]["process"], 2);
    }
}
