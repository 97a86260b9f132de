//! The history: every operation's invocation and completion, in the order the harness saw
//! them, written as JSON lines (`history.jsonl`) and read back by the checker.
//!
//! Model (after Jepsen's Kafka `queue` workload): a *key* names one topic-partition; every
//! value sent is unique in the whole run. A client *process* performs one operation at a
//! time: an `invoke` is followed by exactly one completion of the same process (`ok`, `fail`
//! or `info`) before that process invokes again. `fail` means the operation certainly did
//! not take effect; `info` means the outcome is unknown (a timeout, a lost connection).
//! Nemesis events use [`NEMESIS_PROCESS`].

use std::io::{self, BufRead, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// A key: one topic-partition of the workload, numbered 0.. across the run's topics.
pub type Key = u32;
/// A value sent by the workload; unique within a run.
pub type Val = u64;
/// A Kafka offset.
pub type Offset = i64;
/// A client process; [`NEMESIS_PROCESS`] for the nemesis.
pub type Process = u32;

pub const NEMESIS_PROCESS: Process = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// What an operation does, with its arguments (on `invoke`) and results (on `ok`/`info`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", content = "value", rename_all = "kebab-case")]
pub enum Body {
    /// Send one value to one key. `offset` is `None` on the invocation and whenever the
    /// outcome is unknown; an `ok` completion carries the offset the broker acknowledged.
    Send { key: Key, value: Val, offset: Option<Offset> },
    /// One `poll` call of the process's consumer. Empty on the invocation; on `ok`, the
    /// records returned as `(key, offset, value)`, in the order the client delivered them. A
    /// subscribed consumer commits (synchronously) before it reports `ok`.
    // Tuples, not a map keyed by `Key`: JSON object keys are strings, and serde's flatten
    // cannot read integer map keys back.
    Poll { records: Vec<(Key, Offset, Val)> },
    /// Replace the consumer's partitions with these keys (manual assignment). With
    /// `seek_to_beginning` the consumer starts at each partition's log start; otherwise at the
    /// group's committed offset, or the log start when there is none.
    Assign { keys: Vec<Key>, seek_to_beginning: bool },
    /// Replace the consumer's subscription with the topics holding these keys; the group
    /// coordinator decides which partitions it gets.
    Subscribe { keys: Vec<Key> },
    /// The process's clients were torn down and replaced by fresh ones (its consumer position
    /// is reset, as after a client restart).
    Crash,
    /// A nemesis event. `invoke` when the fault starts being applied, `info` when it is in
    /// place (or healed); `targets` are node names such as `n1`.
    Nemesis { name: String, action: NemesisAction, targets: Vec<String> },
    /// The final phase read every key from its log start up to `end_offsets` (the high
    /// watermarks seen after every fault was healed). `complete` is false when the drain gave
    /// up before reaching them (for instance because a partition never became available).
    Drain { complete: bool, end_offsets: Vec<(Key, Offset)> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NemesisAction {
    Start,
    Stop,
}

/// One line of the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Position in the history, 0-based, dense.
    pub index: u64,
    /// Nanoseconds since the run started (monotonic clock of the harness).
    pub time_ns: u64,
    pub process: Process,
    #[serde(rename = "type")]
    pub kind: OpType,
    #[serde(flatten)]
    pub body: Body,
    /// Why an operation failed or is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Appends operations to a history file as they happen, from any thread. Each line is
/// flushed to the OS at once so a harness that dies still leaves the history behind.
pub struct Recorder {
    start: Instant,
    inner: Mutex<RecorderInner>,
}

struct RecorderInner {
    next_index: u64,
    out: Box<dyn Write + Send>,
}

impl Recorder {
    pub fn create(path: &Path) -> io::Result<Recorder> {
        let file = std::fs::File::create(path)?;
        Ok(Recorder::to_writer(Box::new(file)))
    }

    pub fn to_writer(out: Box<dyn Write + Send>) -> Recorder {
        Recorder { start: Instant::now(), inner: Mutex::new(RecorderInner { next_index: 0, out }) }
    }

    /// Nanoseconds since this recorder was created (the run's clock).
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Records one operation; returns it as written (with its index and time).
    pub fn record(&self, process: Process, kind: OpType, body: Body, error: Option<String>) -> io::Result<Op> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // Index and time are taken under the lock so both are monotonic in file order.
        let op = Op { index: inner.next_index, time_ns: self.now_ns(), process, kind, body, error };
        let mut line = serde_json::to_vec(&op).map_err(io::Error::other)?;
        line.push(b'\n');
        inner.out.write_all(&line)?;
        inner.out.flush()?;
        inner.next_index += 1;
        Ok(op)
    }
}

/// Reads a history written by [`Recorder`].
pub fn read(path: &Path) -> io::Result<Vec<Op>> {
    let file = std::fs::File::open(path)?;
    let mut ops = Vec::new();
    for (n, line) in io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let op: Op = serde_json::from_str(&line)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}:{}: {e}", path.display(), n + 1)))?;
        ops.push(op);
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip_through_json_lines() {
        let dir = std::env::temp_dir().join(format!("rill-jepsen-hist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("history.jsonl");
        let rec = Recorder::create(&path).unwrap();
        let send = Body::Send { key: 2, value: 7, offset: None };
        rec.record(0, OpType::Invoke, send, None).unwrap();
        let acked = Body::Send { key: 2, value: 7, offset: Some(41) };
        rec.record(0, OpType::Ok, acked.clone(), None).unwrap();
        let polled = Body::Poll { records: vec![(2, 41, 7)] };
        rec.record(1, OpType::Ok, polled.clone(), None).unwrap();
        let ops = read(&path).unwrap();
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[1].body, acked);
        assert_eq!(ops[2].body, polled);
        assert_eq!(ops.iter().map(|o| o.index).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert!(ops[0].time_ns <= ops[2].time_ns);
        let line = std::fs::read_to_string(&path).unwrap();
        assert!(line.starts_with(r#"{"index":0,"#), "{line}");
        assert!(line.contains(r#""type":"invoke","f":"send","value":{"key":2"#), "{line}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
