//! `rill consume`: print records of some topics, either assign-style (chosen partitions from a
//! chosen offset, no group) or as a member of a consumer group (`--group`: the group's
//! committed offsets, its assignment, commits as records are printed).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use rill_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use rill_protocol::messages::*;
use rill_protocol::records::{decode_batches, RecordOut};
use rill_protocol::ResponseError;
use serde_json::{json, Value};

use crate::admin::{connect, list_offsets, tn, topic_metadata, usage, Conn, Output};
use crate::client::{check, Pool};
use crate::member::{Assignor, Member, Tp, HEARTBEAT_INTERVAL};

/// Auto-commit interval: the issue asks for at least every second.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Args)]
pub struct ConsumeArgs {
    /// Topic(s) to read.
    #[arg(required = true, value_name = "TOPIC")]
    topics: Vec<String>,
    /// Only this partition of each topic (default: all). Not with --group.
    #[arg(long, short = 'p', conflicts_with = "group")]
    partition: Option<i32>,
    /// Where to start: earliest, latest, an offset, or @TIMESTAMP_MS. With --group, only where
    /// the group has no committed offset (auto.offset.reset): earliest or latest.
    #[arg(long, visible_alias = "from", default_value = "latest")]
    offset: String,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    num: Option<u64>,
    /// Stop once the end of every (assigned) partition is reached.
    #[arg(long, short = 'e')]
    exit_at_end: bool,
    /// Output format per record (see above). Default: '%v\n'.
    #[arg(long, short = 'f')]
    format: Option<String>,
    /// Consume as a member of this consumer group (classic protocol): the group's members
    /// share the partitions, and reading resumes after the group's committed offsets.
    #[arg(long, short = 'g', value_name = "GROUP")]
    group: Option<String>,
    /// With --group: commit the offsets of printed records (auto: at least every second and at
    /// exit) or never (none).
    #[arg(long, value_enum, default_value_t = Commit::Auto, requires = "group")]
    commit: Commit,
    /// With --group: the partition assignment strategy, when this process leads the group.
    #[arg(long, value_enum, default_value_t = Assignor::Range, requires = "group")]
    assignor: Assignor,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Commit {
    Auto,
    None,
}

enum Piece {
    Lit(String),
    Topic,
    Partition,
    Offset,
    Key,
    Value,
    Timestamp,
    Headers,
}

fn parse_format(f: &str) -> anyhow::Result<Vec<Piece>> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut chars = f.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('n') => lit.push('\n'),
                Some('t') => lit.push('\t'),
                Some('r') => lit.push('\r'),
                Some('\\') => lit.push('\\'),
                Some(o) => {
                    lit.push('\\');
                    lit.push(o);
                }
                None => lit.push('\\'),
            },
            '%' => {
                let piece = match chars.next() {
                    Some('%') => {
                        lit.push('%');
                        continue;
                    }
                    Some('t') => Piece::Topic,
                    Some('p') => Piece::Partition,
                    Some('o') => Piece::Offset,
                    Some('k') => Piece::Key,
                    Some('v') => Piece::Value,
                    Some('T') => Piece::Timestamp,
                    Some('h') => Piece::Headers,
                    Some(o) => {
                        return Err(usage(format!("unknown format directive %{o} (use %t %p %o %k %v %T %h %%)")))
                    }
                    None => return Err(usage("format ends with a lone %")),
                };
                if !lit.is_empty() {
                    out.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                out.push(piece);
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    Ok(out)
}

/// Writes records to stdout in the chosen format and counts them against --num.
struct Printer {
    format: Vec<Piece>,
    json: bool,
    out: std::io::BufWriter<std::io::StdoutLock<'static>>,
    num: Option<u64>,
    printed: u64,
    bytes: u64,
    progress: crate::progress::Progress,
}

impl Printer {
    fn new(args: &ConsumeArgs, json: bool) -> anyhow::Result<Printer> {
        Ok(Printer {
            format: parse_format(args.format.as_deref().unwrap_or("%v\\n"))?,
            json,
            out: std::io::BufWriter::new(std::io::stdout().lock()),
            num: args.num,
            printed: 0,
            bytes: 0,
            // Progress only when the records don't go to the same terminal.
            progress: crate::progress::Progress::new("consumed", !std::io::IsTerminal::is_terminal(&std::io::stdout())),
        })
    }

    fn full(&self) -> bool {
        self.num.is_some_and(|n| self.printed >= n)
    }

    fn print(&mut self, topic: &str, p: i32, r: &RecordOut) -> std::io::Result<()> {
        let out = &mut self.out;
        if self.json {
            let h: Vec<Value> = r
                .headers
                .iter()
                .map(|h| {
                    json!({"key": String::from_utf8_lossy(&h.key),
                    "value": h.value.as_ref().map(|v| String::from_utf8_lossy(v).into_owned())})
                })
                .collect();
            let v = json!({"topic": topic, "partition": p, "offset": r.offset, "timestamp": r.timestamp,
                "key": r.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
                "value": r.value.as_ref().map(|v| String::from_utf8_lossy(v).into_owned()),
                "headers": h});
            serde_json::to_writer(&mut *out, &v)?;
            out.write_all(b"\n")?;
        } else {
            for piece in &self.format {
                match piece {
                    Piece::Lit(l) => out.write_all(l.as_bytes())?,
                    Piece::Topic => out.write_all(topic.as_bytes())?,
                    Piece::Partition => write!(out, "{p}")?,
                    Piece::Offset => write!(out, "{}", r.offset)?,
                    Piece::Key => out.write_all(r.key.as_deref().unwrap_or(b""))?,
                    Piece::Value => out.write_all(r.value.as_deref().unwrap_or(b""))?,
                    Piece::Timestamp => write!(out, "{}", r.timestamp)?,
                    Piece::Headers => {
                        for (i, h) in r.headers.iter().enumerate() {
                            if i > 0 {
                                out.write_all(b",")?;
                            }
                            out.write_all(&h.key)?;
                            out.write_all(b"=")?;
                            out.write_all(h.value.as_deref().unwrap_or(b""))?;
                        }
                    }
                }
            }
        }
        self.printed += 1;
        self.bytes += (r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len())) as u64;
        self.progress.update(self.printed, self.bytes);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// The partitions being read: next offset and leader of each, and which reached the end.
struct Reader {
    pos: BTreeMap<Tp, i64>,
    leaders: BTreeMap<Tp, i32>,
    at_end: BTreeSet<Tp>,
    /// ListOffsets timestamp to restart from after OFFSET_OUT_OF_RANGE (-2 earliest, -1 latest).
    reset_to: i64,
    exit_at_end: bool,
}

impl Reader {
    /// Reads `parts` starting at `pos`; leaders from Metadata.
    async fn new(pool: &mut Pool, pos: BTreeMap<Tp, i64>, reset_to: i64, exit_at_end: bool) -> anyhow::Result<Reader> {
        let topics: BTreeSet<String> = pos.keys().map(|tp| tp.0.clone()).collect();
        let leaders = leaders(pool, &topics).await?;
        Ok(Reader { pos, leaders, at_end: BTreeSet::new(), reset_to, exit_at_end })
    }

    /// True when --exit-at-end applies and every partition is at its end.
    fn finished(&self) -> bool {
        self.exit_at_end && self.pos.keys().all(|tp| self.at_end.contains(tp))
    }

    /// One Fetch per leader; prints what comes back and moves the positions past the printed
    /// records only, so that commits never cover a record not printed.
    async fn round(&mut self, pool: &mut Pool, printer: &mut Printer) -> anyhow::Result<()> {
        let wait_ms = if self.exit_at_end { 100 } else { 500 };
        let mut by_leader: BTreeMap<i32, BTreeMap<&str, Vec<FetchPartition>>> = BTreeMap::new();
        for (tp, &offset) in &self.pos {
            if self.exit_at_end && self.at_end.contains(tp) {
                continue;
            }
            let leader = self.leaders.get(tp).copied().unwrap_or(-1);
            by_leader.entry(leader).or_default().entry(&tp.0).or_default().push(
                FetchPartition::default()
                    .with_partition(tp.1)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1024 * 1024),
            );
        }
        if by_leader.is_empty() {
            // Nothing assigned (more members than partitions): idle like a fetch would.
            tokio::time::sleep(Duration::from_millis(wait_ms as u64)).await;
            return Ok(());
        }
        let requests: Vec<(i32, FetchRequest)> = by_leader
            .into_iter()
            .map(|(leader, topics)| {
                let req = FetchRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_max_wait_ms(wait_ms)
                    .with_min_bytes(1)
                    .with_max_bytes(50 * 1024 * 1024)
                    .with_isolation_level(1)
                    .with_topics(
                        topics
                            .into_iter()
                            .map(|(t, ps)| FetchTopic::default().with_topic(tn(t)).with_partitions(ps))
                            .collect(),
                    );
                (leader, req)
            })
            .collect();
        let mut moved = false;
        for (leader, req) in requests {
            let resp = pool.node(leader).await?.send(&req).await?;
            check(resp.error_code, None, "fetching")?;
            for t in resp.responses {
                let topic = t.topic.to_string();
                for pd in t.partitions {
                    let tp = (topic.clone(), pd.partition_index);
                    let Some(&start) = self.pos.get(&tp) else { continue };
                    match ResponseError::try_from_code(pd.error_code) {
                        None => {}
                        Some(ResponseError::OffsetOutOfRange) => {
                            let o = list_offsets(pool, &topic, &[(tp.1, leader)], self.reset_to).await?;
                            self.pos.insert(tp.clone(), o.get(&tp.1).copied().unwrap_or(0));
                            continue;
                        }
                        // The leader moved (a cluster failover): ask Metadata again below.
                        Some(
                            ResponseError::NotLeaderOrFollower
                            | ResponseError::LeaderNotAvailable
                            | ResponseError::FencedLeaderEpoch
                            | ResponseError::UnknownLeaderEpoch,
                        ) => {
                            moved = true;
                            continue;
                        }
                        Some(_) => check(pd.error_code, None, format!("fetching from {topic}/{}", tp.1))?,
                    }
                    let records = pd.records.as_deref().map(decode_batches).transpose()?.unwrap_or_default();
                    let mut next = start;
                    let mut stopped = false;
                    for r in records {
                        if r.offset < next {
                            continue;
                        }
                        if printer.full() {
                            stopped = true;
                            break;
                        }
                        next = r.offset + 1;
                        if !r.control {
                            printer.print(&topic, tp.1, &r)?;
                        }
                    }
                    // A batch may end in offsets without records, or hold none (compaction):
                    // move past the whole batches fetched, unless the printer stopped early.
                    if !stopped {
                        let fetched_end = pd.records.as_deref().and_then(rill_protocol::batch::next_offset);
                        next = next.max(fetched_end.unwrap_or(next));
                    }
                    self.pos.insert(tp.clone(), next);
                    let end = if pd.last_stable_offset >= 0 { pd.last_stable_offset } else { pd.high_watermark };
                    if next >= end {
                        self.at_end.insert(tp);
                    }
                }
            }
            if printer.full() {
                break;
            }
        }
        printer.flush()?;
        if moved {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let topics: BTreeSet<String> = self.pos.keys().map(|tp| tp.0.clone()).collect();
            self.leaders = leaders(pool, &topics).await?;
        }
        Ok(())
    }
}

/// Each partition's leader, for every partition of `topics` (which must exist).
async fn leaders(pool: &mut Pool, topics: &BTreeSet<String>) -> anyhow::Result<BTreeMap<Tp, i32>> {
    let mut out = BTreeMap::new();
    for t in topics {
        let md = topic_metadata(pool, t).await?;
        out.extend(md.partitions.iter().map(|p| ((t.clone(), p.partition_index), p.leader_id.0)));
    }
    Ok(out)
}

/// The ListOffsets timestamp of an auto.offset.reset-like policy.
fn reset_timestamp(offset: &str) -> Option<i64> {
    match offset {
        "earliest" | "beginning" => Some(-2),
        "latest" | "end" => Some(-1),
        _ => None,
    }
}

/// Start offsets of `parts` for --offset (earliest, latest, N or @TIMESTAMP_MS).
async fn start_offsets(pool: &mut Pool, parts: &BTreeMap<Tp, i32>, offset: &str) -> anyhow::Result<BTreeMap<Tp, i64>> {
    let fixed = match (reset_timestamp(offset), offset.strip_prefix('@')) {
        (Some(_), _) | (_, Some(_)) => None,
        (None, None) => {
            let n: i64 = offset
                .parse()
                .map_err(|_| usage(format!("--offset must be earliest, latest, N or @TIMESTAMP, not {offset:?}")))?;
            if n < 0 {
                return Err(usage("--offset must not be negative"));
            }
            Some(n)
        }
    };
    let mut by_topic: BTreeMap<&str, Vec<(i32, i32)>> = BTreeMap::new();
    for ((t, p), &leader) in parts {
        by_topic.entry(t).or_default().push((*p, leader));
    }
    let mut out = BTreeMap::new();
    for (topic, ps) in by_topic {
        let found = match (fixed, reset_timestamp(offset), offset.strip_prefix('@')) {
            (Some(n), _, _) => ps.iter().map(|&(p, _)| (p, n)).collect(),
            (None, Some(ts), _) => list_offsets(pool, topic, &ps, ts).await?,
            (None, None, Some(ts)) => {
                let ts: i64 = ts.parse().map_err(|_| usage(format!("bad timestamp in --offset {offset}")))?;
                let at = list_offsets(pool, topic, &ps, ts).await?;
                let end = list_offsets(pool, topic, &ps, -1).await?;
                // Nothing at or after the time: start at the end.
                at.into_iter().map(|(p, o)| (p, if o < 0 { end.get(&p).copied().unwrap_or(0) } else { o })).collect()
            }
            (None, None, None) => unreachable!("parsed above"),
        };
        out.extend(found.into_iter().map(|(p, o)| ((topic.to_string(), p), o)));
    }
    Ok(out)
}

pub async fn consume(conn: &Conn, args: ConsumeArgs) -> anyhow::Result<()> {
    let mut printer = Printer::new(&args, conn.output == Output::Json)?;
    let mut topics = args.topics.clone();
    topics.dedup();
    let mut pool = connect(conn).await?;
    // Fails early, with UNKNOWN_TOPIC_OR_PARTITION, on a topic that doesn't exist.
    let all = leaders(&mut pool, &topics.iter().cloned().collect()).await?;
    if args.num == Some(0) {
        return Ok(());
    }
    match args.group.clone() {
        Some(group) => consume_group(&mut pool, &args, &group, &topics, &mut printer).await,
        None => {
            let mut parts = all;
            if let Some(p) = args.partition {
                parts.retain(|tp, _| tp.1 == p);
                for t in &topics {
                    if !parts.contains_key(&(t.clone(), p)) {
                        return Err(usage(format!("topic {t} has no partition {p}")));
                    }
                }
            }
            let pos = start_offsets(&mut pool, &parts, &args.offset).await?;
            // Assign-style consumers have always restarted from the earliest offset.
            let mut reader = Reader::new(&mut pool, pos, -2, args.exit_at_end).await?;
            while !reader.finished() && !printer.full() {
                reader.round(&mut pool, &mut printer).await?;
            }
            printer.flush()?;
            Ok(())
        }
    }
}

/// Set by the first SIGINT/SIGTERM so the consumer commits and leaves its group before it
/// exits; a second one exits at once (e.g. while a JoinGroup waits for a slow rebalance).
fn stop_on_signal() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            return;
        };
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if flag.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        }
    });
    stop
}

async fn consume_group(
    pool: &mut Pool,
    args: &ConsumeArgs,
    group: &str,
    topics: &[String],
    printer: &mut Printer,
) -> anyhow::Result<()> {
    let reset_to = reset_timestamp(&args.offset).ok_or_else(|| {
        usage(format!(
            "with --group, --offset/--from must be earliest or latest (where to start without a committed \
             offset), not {:?}",
            args.offset
        ))
    })?;
    let auto_commit = args.commit == Commit::Auto;
    let stop = stop_on_signal();
    let mut member = Member::join(pool, group, topics, args.assignor).await?;
    let (mut reader, mut committed) = assigned_reader(pool, &member, reset_to, args.exit_at_end).await?;
    let mut last_commit = Instant::now();
    let mut last_heartbeat = Instant::now();
    while !stop.load(Ordering::SeqCst) && !reader.finished() && !printer.full() {
        reader.round(pool, printer).await?;
        let mut rejoin = false;
        if auto_commit && last_commit.elapsed() >= COMMIT_INTERVAL {
            rejoin |= commit_changed(pool, &mut member, &reader.pos, &mut committed).await?;
            last_commit = Instant::now();
        }
        if !rejoin && last_heartbeat.elapsed() >= HEARTBEAT_INTERVAL {
            rejoin |= member.heartbeat(pool).await?;
            last_heartbeat = Instant::now();
        }
        if rejoin {
            // Commit what was printed before giving the partitions up (Kafka accepts commits
            // of the current generation while the group prepares the rebalance), so the next
            // owner starts after it.
            if auto_commit {
                commit_changed(pool, &mut member, &reader.pos, &mut committed).await?;
            }
            member.rejoin(pool).await?;
            (reader, committed) = assigned_reader(pool, &member, reset_to, args.exit_at_end).await?;
            last_heartbeat = Instant::now();
        }
    }
    printer.flush()?;
    if auto_commit && commit_changed(pool, &mut member, &reader.pos, &mut committed).await? {
        eprintln!(
            "rill: group {group} rebalanced before the last offsets could be committed: the last records \
             printed will be delivered again"
        );
    }
    member.leave(pool).await
}

/// A reader of the member's assignment, from the group's committed offsets or else `reset_to`;
/// and those committed offsets (a position reset by `reset_to` is committed like any other, as
/// the Java consumer does, so the group remembers where it started).
async fn assigned_reader(
    pool: &mut Pool,
    member: &Member,
    reset_to: i64,
    exit_at_end: bool,
) -> anyhow::Result<(Reader, BTreeMap<Tp, i64>)> {
    let committed = member.committed(pool).await?;
    let mut pos = committed.clone();
    let missing: BTreeSet<Tp> = member.assignment.iter().filter(|tp| !pos.contains_key(*tp)).cloned().collect();
    if !missing.is_empty() {
        let topics: BTreeSet<String> = missing.iter().map(|tp| tp.0.clone()).collect();
        let parts: BTreeMap<Tp, i32> =
            leaders(pool, &topics).await?.into_iter().filter(|(tp, _)| missing.contains(tp)).collect();
        let offset = if reset_to == -2 { "earliest" } else { "latest" };
        pos.extend(start_offsets(pool, &parts, offset).await?);
    }
    Ok((Reader::new(pool, pos, reset_to, exit_at_end).await?, committed))
}

/// Commits the positions that moved since the last commit; true when the member has to rejoin.
async fn commit_changed(
    pool: &mut Pool,
    member: &mut Member,
    pos: &BTreeMap<Tp, i64>,
    committed: &mut BTreeMap<Tp, i64>,
) -> anyhow::Result<bool> {
    let changed: BTreeMap<Tp, i64> =
        pos.iter().filter(|(tp, o)| committed.get(*tp) != Some(*o)).map(|(tp, o)| (tp.clone(), *o)).collect();
    let rejoin = member.commit(pool, &changed).await?;
    if !rejoin {
        committed.extend(changed);
    }
    Ok(rejoin)
}
