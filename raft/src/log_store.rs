//! openraft's log storage over a partition's segment log and its entry index.
//!
//! Appending a data entry appends its record batches to the [`PartitionLog`] (which assigns
//! dense Kafka offsets from its end and stamps the Raft term as the batches' partition leader
//! epoch), then appends the entry's small index record. Nothing is fsynced inline: a flusher
//! task per log fsyncs segments and index once for every append that arrived meanwhile and
//! only then reports them flushed to openraft (group commit).
//!
//! After a crash the two files may disagree about the tail; [`LogStore::open`] cuts both back
//! to what both hold. Only entries reported flushed can have been acknowledged, and those are
//! in both.

use std::fmt::Debug;
use std::fs::File;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::Stream;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{EntryPayload, OptionalSend};
use parking_lot::{Mutex, RwLock};
use rill_protocol::batch::split_batches;
use rill_storage::{LogConfig, PartitionLog, StorageError};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::entry_index::{EntryIndex, EntryKind, EntryMeta};
use crate::{Batches, Entry, LogId, SnapshotMeta, StoredMembership, TypeConfig, Vote};

/// The vote: written only durably (fsynced file, rename, fsynced directory). Files written by
/// older versions also hold a committed hint, which is still read.
pub const STATE_FILE: &str = "raft-state.json";
/// The committed hint, in a file of its own: it is written often and not fsynced, so a power
/// loss may leave it empty or stale, and it must never share a file (or a temporary file)
/// with the vote, whose loss would let this node vote twice in one term.
pub const COMMITTED_FILE: &str = "raft-committed.json";
/// The last snapshot's position, written durably before the log is purged up to it: a
/// partition snapshot carries no records, only where the log continues (see `purge`).
pub const SNAPSHOT_FILE: &str = "raft-snapshot.json";

/// How often the committed index is written down at most. It is only a hint for replaying
/// after a restart (openraft re-learns the commit index from the leader), so it is not fsynced.
const COMMITTED_SAVE_INTERVAL: Duration = Duration::from_millis(200);

/// Record bytes one AppendEntries carries at most, unless its first entry alone is larger.
/// openraft caps a request by entries only (`max_payload_entries`): with produce batches of a
/// megabyte, a busy group sent frames of tens of megabytes to each follower, and a hundred
/// busy partitions held gigabytes, each frame allocated, faulted in and freed again. A
/// quarter of a megabyte per round trip still moves over 100 MB/s per partition and
/// follower, and bounds what a hundred busy partitions hold in flight to tens of MB.
const REPLICATION_BYTES: usize = 256 << 10;

/// A partition snapshot: the Raft position of a log prefix that retention or DeleteRecords
/// removed, and the Kafka offset the log continues at. It carries no records: a follower
/// that receives one starts its log, empty, at `high_watermark`, as a Kafka follower starts
/// at the leader's log start offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPoint {
    pub meta: SnapshotMeta,
    pub high_watermark: i64,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct PersistedState {
    vote: Option<Vote>,
    committed: Option<LogId>,
}

/// State shared by a group's log store, its state machine and the broker.
pub struct Shared {
    pub log: Arc<PartitionLog>,
    dir: PathBuf,
    index: RwLock<EntryIndex>,
    state: Mutex<(PersistedState, Option<Instant>)>,
    /// Kafka high watermark: end offset of the last applied entry.
    hw: AtomicI64,
    hw_tx: watch::Sender<i64>,
    /// The snapshot the log was last purged to (persisted in [`SNAPSHOT_FILE`]).
    snapshot: Mutex<Option<SnapshotPoint>>,
    /// A prefix the broker asked to remove: the next snapshot is built at this entry.
    cut: Mutex<Option<EntryMeta>>,
    /// Whether this group's ticker is paused (see `quiesce`).
    pub quiet: crate::quiesce::QuietState,
    /// Whether the state machine reads the records of the entries it applies (the metadata
    /// group's does; a partition's needs only the offsets, which the entry index holds).
    pub(crate) apply_reads_records: AtomicBool,
}

impl Shared {
    pub fn high_watermark(&self) -> i64 {
        self.hw.load(Ordering::Acquire)
    }

    /// Changes whenever the high watermark moves (fetch long polls wait on it).
    pub fn watch_high_watermark(&self) -> watch::Receiver<i64> {
        self.hw_tx.subscribe()
    }

    pub(crate) fn set_high_watermark(&self, hw: i64) {
        self.hw.store(hw, Ordering::Release);
        self.hw_tx.send_replace(hw);
    }

    /// Runs `f` on the entry index (offset translation for the broker: leader epochs etc.).
    pub fn with_index<T>(&self, f: impl FnOnce(&EntryIndex) -> T) -> T {
        f(&self.index.read())
    }

    pub(crate) fn committed(&self) -> Option<LogId> {
        self.state.lock().0.committed
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn snapshot(&self) -> Option<SnapshotPoint> {
        self.snapshot.lock().clone()
    }

    /// Records `point` durably as the current snapshot (before any purge relies on it).
    pub(crate) fn save_snapshot(&self, point: SnapshotPoint) -> io::Result<()> {
        let data = serde_json::to_vec(&point).map_err(io::Error::other)?;
        write_atomically(&self.dir, SNAPSHOT_FILE, &data, true)?;
        *self.snapshot.lock() = Some(point);
        Ok(())
    }

    pub(crate) fn request_cut(&self, cut: EntryMeta) {
        *self.cut.lock() = Some(cut);
    }

    pub(crate) fn take_cut(&self) -> Option<EntryMeta> {
        self.cut.lock().take()
    }

    /// The membership in effect at entry `index`: the last membership entry at or before it,
    /// else the one recorded with the last snapshot.
    pub(crate) fn membership_at(&self, index: u64) -> StoredMembership {
        let idx = self.index.read();
        let first = idx.first_index().unwrap_or(index + 1);
        let found = (first..=index).rev().find_map(|i| match idx.get(i) {
            Some(EntryMeta { log_id, kind: EntryKind::Membership(m), .. }) => Some((*log_id, m.clone())),
            _ => None,
        });
        match found {
            Some((id, m)) => StoredMembership::new(Some(id), m),
            None => self.snapshot().map(|s| s.meta.last_membership).unwrap_or_default(),
        }
    }

    /// Whether the log holds entry `log_id` or was purged exactly up to it.
    pub(crate) fn holds(&self, log_id: &LogId) -> bool {
        let idx = self.index.read();
        idx.get(log_id.index).is_some_and(|m| m.log_id == *log_id) || idx.purged().is_some_and(|p| p.log_id == *log_id)
    }

    /// Installs a snapshot's position on a log that does not hold it: the index restarts
    /// after `meta` and the segment log, emptied, at `meta.end` (the leader deleted what lies
    /// below; what this log held there is superseded). The index goes first: a crash in
    /// between leaves an index ahead of the log, which [`LogStore::open`] finishes.
    pub(crate) fn reset_to(&self, meta: EntryMeta) -> io::Result<()> {
        let end = meta.end;
        self.index.write().reset_to(meta)?;
        if self.log.log_end_offset() != end || self.log.log_start_offset() != end {
            self.log.reset_to(end).map_err(to_io)?;
        }
        Ok(())
    }
}

pub(crate) fn to_io(e: StorageError) -> io::Error {
    match e {
        StorageError::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

fn write_atomically(dir: &Path, name: &str, data: &[u8], durable: bool) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, data)?;
    if durable {
        File::open(&tmp)?.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    if durable {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A Raft group's log storage. Cheap to clone (it is also its own log reader).
#[derive(Clone)]
pub struct LogStore {
    pub shared: Arc<Shared>,
    flush_tx: mpsc::UnboundedSender<IOFlushed<TypeConfig>>,
}

impl LogStore {
    /// Opens the group's log in `dir` (segments, entry index, vote), reconciling the segment
    /// log and the index after a crash. Must run inside a Tokio runtime (it starts the flusher).
    pub fn open(dir: &Path, config: LogConfig) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let log = Arc::new(PartitionLog::open(dir, config).map_err(to_io)?);
        let mut index = EntryIndex::open(dir)?;
        // A snapshot install that crashed between resetting the index and the log.
        if let Some(p) = index.purged() {
            if index.is_empty() && p.end > log.log_end_offset() {
                log.reset_to(p.end).map_err(to_io)?;
            }
        }
        // Entries whose records did not all reach the segment file never became durable.
        let log_end = log.log_end_offset();
        index.drop_beyond(log_end)?;
        match index.next_offset() {
            Some(end) if end < log_end => log.truncate_to(end).map_err(to_io)?,
            None if log_end > log.log_start_offset() => {
                // Records without any index entry: never acknowledged through Raft.
                log.truncate_to(log.log_start_offset()).map_err(to_io)?
            }
            _ => {}
        }
        let mut state: PersistedState = match std::fs::read(dir.join(STATE_FILE)) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                io::Error::other(format!("{}: {e} (the Raft vote cannot be read)", dir.join(STATE_FILE).display()))
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => PersistedState::default(),
            Err(e) => return Err(e),
        };
        // The hint survives a power loss only by luck: empty, torn or naming an entry the log
        // no longer holds (cut by the reconciliation above), it is dropped and the state
        // machine replays instead.
        if let Ok(b) = std::fs::read(dir.join(COMMITTED_FILE)) {
            state.committed = serde_json::from_slice(&b).unwrap_or(None);
        }
        if let Some(c) = state.committed {
            if index.get(c.index).map(|m| m.log_id) != Some(c) {
                state.committed = None;
            }
        }
        let snapshot: Option<SnapshotPoint> = match std::fs::read(dir.join(SNAPSHOT_FILE)) {
            Ok(b) => Some(serde_json::from_slice(&b).map_err(|e| {
                io::Error::other(format!(
                    "{}: {e} (the last snapshot cannot be read)",
                    dir.join(SNAPSHOT_FILE).display()
                ))
            })?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let hw0 = index.purged().map_or_else(|| log.log_start_offset(), |p| p.end);
        let (hw_tx, _) = watch::channel(hw0);
        let shared = Arc::new(Shared {
            log,
            dir: dir.to_path_buf(),
            index: RwLock::new(index),
            state: Mutex::new((state, None)),
            hw: AtomicI64::new(hw0),
            hw_tx,
            snapshot: Mutex::new(snapshot),
            cut: Mutex::new(None),
            quiet: Default::default(),
            apply_reads_records: AtomicBool::new(true),
        });
        let (flush_tx, flush_rx) = mpsc::unbounded_channel();
        tokio::spawn(flusher(shared.clone(), flush_rx));
        Ok(LogStore { shared, flush_tx })
    }

    fn save_vote_file(&self) -> io::Result<()> {
        let vote = self.shared.state.lock().0.vote;
        let data = serde_json::to_vec(&PersistedState { vote, committed: None }).map_err(io::Error::other)?;
        write_atomically(&self.shared.dir, STATE_FILE, &data, true)
    }

    fn save_committed_file(&self) -> io::Result<()> {
        let committed = self.shared.state.lock().0.committed;
        let data = serde_json::to_vec(&committed).map_err(io::Error::other)?;
        write_atomically(&self.shared.dir, COMMITTED_FILE, &data, false)
    }
}

/// Group commit: one fsync of the segments and one of the index for every append that
/// arrived while the previous fsync ran.
async fn flusher(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<IOFlushed<TypeConfig>>) {
    let mut pending = Vec::new();
    while rx.recv_many(&mut pending, 1024).await > 0 {
        let result = if shared.log.sync_on_ack() {
            let handle = shared.index.read().sync_handle();
            let s = shared.clone();
            tokio::task::spawn_blocking(move || {
                s.log.sync(i64::MAX).map_err(to_io)?;
                handle?.sync_data()
            })
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)))
        } else {
            Ok(())
        };
        for cb in pending.drain(..) {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            };
            cb.io_completed(r);
        }
    }
}

fn range_bounds<RB: RangeBounds<u64>>(range: &RB) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s + 1,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

/// Reads Kafka offsets `[start, end)` from the log: whole batches, possibly across segments.
fn read_records(log: &PartitionLog, start: i64, end: i64) -> io::Result<Bytes> {
    let mut parts: Vec<Bytes> = Vec::new();
    let mut at = start;
    while at < end {
        let r = log.read_retained(at, usize::MAX / 2, end).map_err(to_io)?;
        if r.records.is_empty() {
            return Err(io::Error::other(format!("records {at}..{end} missing from the log")));
        }
        let mut last_end = at;
        for b in split_batches(&r.records) {
            let (h, _) = b.map_err(|e| io::Error::other(e.to_string()))?;
            last_end = h.last_offset() + 1;
        }
        at = last_end;
        parts.push(r.records);
    }
    Ok(match parts.len() {
        1 => parts.pop().unwrap(),
        _ => parts.concat().into(),
    })
}

impl LogStore {
    /// The entries of `metas` (consecutive), their records cut from `records`, which holds
    /// whole batches from the first data entry's start on (and possibly more after the last).
    fn entries(metas: Vec<EntryMeta>, records: &Bytes) -> io::Result<Vec<Entry>> {
        let mut pos = 0usize;
        let mut entries = Vec::with_capacity(metas.len());
        for m in metas {
            let payload = match m.kind {
                EntryKind::Blank => EntryPayload::Blank,
                EntryKind::Membership(mem) => EntryPayload::Membership(mem),
                EntryKind::Data => {
                    let from = pos;
                    let mut next = m.start;
                    while next < m.end {
                        let rest = &records[pos..];
                        let Some(b) = split_batches(rest).next() else {
                            return Err(io::Error::other(format!("entry {} records end early", m.log_id)));
                        };
                        let (h, bytes) = b.map_err(|e| io::Error::other(e.to_string()))?;
                        if h.base_offset != next {
                            return Err(io::Error::other(format!(
                                "entry {}: batch at offset {} where {next} was expected",
                                m.log_id, h.base_offset
                            )));
                        }
                        pos += bytes.len();
                        next = h.last_offset() + 1;
                    }
                    EntryPayload::Normal(Batches(records.slice(from..pos)))
                }
            };
            entries.push(Entry::new(m.log_id, payload));
        }
        Ok(entries)
    }

    fn metas(&self, start: u64, end: u64) -> Vec<EntryMeta> {
        self.shared.index.read().range(start, end).cloned().collect()
    }
}

/// An entry with records (blank, membership and empty data entries have none).
fn has_records(m: &EntryMeta) -> bool {
    m.kind == EntryKind::Data && m.end > m.start
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = range_bounds(&range);
        let metas = self.metas(start, end);
        let data_start = metas.iter().find(|m| has_records(m)).map(|m| m.start);
        let data_end = metas.iter().rev().find(|m| has_records(m)).map(|m| m.end);
        let records = match (data_start, data_end) {
            (Some(s), Some(e)) => read_records(&self.shared.log, s, e)?,
            _ => Bytes::new(),
        };
        Self::entries(metas, &records)
    }

    /// Replication: whole entries up to [`REPLICATION_BYTES`] of records, at least one entry.
    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> Result<Vec<Entry>, io::Error> {
        let mut metas = self.metas(start, end);
        let Some(first) = metas.iter().position(has_records) else {
            return Self::entries(metas, &Bytes::new());
        };
        let data_start = metas[first].start;
        let data_end = metas.iter().rev().find(|m| has_records(m)).map_or(data_start, |m| m.end);
        // One read of at most REPLICATION_BYTES (whole batches, within one segment), then the
        // entries it holds whole.
        let r = self.shared.log.read_retained(data_start, REPLICATION_BYTES, data_end).map_err(to_io)?;
        let mut covered = data_start;
        for b in split_batches(&r.records) {
            let (h, _) = b.map_err(|e| io::Error::other(e.to_string()))?;
            covered = h.last_offset() + 1;
        }
        let keep = metas.iter().position(|m| has_records(m) && m.end > covered).unwrap_or(metas.len());
        if keep > first {
            metas.truncate(keep);
            return Self::entries(metas, &r.records);
        }
        // The first entry with records is larger than the read (or crosses a segment): alone.
        metas.truncate(first + 1);
        let records = read_records(&self.shared.log, data_start, metas[first].end)?;
        Self::entries(metas, &records)
    }

    /// Applying: a partition's state machine needs no records (see
    /// [`Shared::apply_reads_records`]), so they are not read back from the file; each
    /// replica would otherwise read every committed byte once more.
    async fn entries_stream<RB>(&mut self, range: RB) -> impl Stream<Item = Result<Entry, io::Error>> + OptionalSend
    where
        RB: RangeBounds<u64> + Clone + Debug + OptionalSend,
    {
        let entries = if self.shared.apply_reads_records.load(Ordering::Acquire) {
            self.try_get_log_entries(range).await
        } else {
            let (start, end) = range_bounds(&range);
            let metas = self.metas(start, end);
            Ok(metas
                .into_iter()
                .map(|m| {
                    let payload = match m.kind {
                        EntryKind::Blank => EntryPayload::Blank,
                        EntryKind::Membership(mem) => EntryPayload::Membership(mem),
                        EntryKind::Data => EntryPayload::Normal(Batches(Bytes::new())),
                    };
                    Entry::new(m.log_id, payload)
                })
                .collect())
        };
        let items: Vec<Result<Entry, io::Error>> = match entries {
            Ok(v) => v.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        futures::stream::iter(items)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.shared.state.lock().0.vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let idx = self.shared.index.read();
        let last_purged_log_id = idx.purged().map(|m| m.log_id);
        let last_log_id = idx.last().map(|m| m.log_id);
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.shared.state.lock().0.vote = Some(*vote);
        let s = self.clone();
        tokio::task::spawn_blocking(move || s.save_vote_file()).await.map_err(io::Error::other)?
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let due = {
            let mut st = self.shared.state.lock();
            st.0.committed = committed;
            let due = st.1.is_none_or(|t| t.elapsed() >= COMMITTED_SAVE_INTERVAL);
            if due {
                st.1 = Some(Instant::now());
            }
            due
        };
        if due {
            self.save_committed_file()?;
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.shared.committed())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        {
            let mut idx = self.shared.index.write();
            for e in entries {
                let start = idx.next_offset().unwrap_or_else(|| self.shared.log.log_end_offset());
                let term = e.log_id.leader_id.term;
                let (kind, end) = match e.payload {
                    EntryPayload::Blank => (EntryKind::Blank, start),
                    EntryPayload::Membership(m) => (EntryKind::Membership(m), start),
                    EntryPayload::Normal(Batches(b)) if b.is_empty() => (EntryKind::Data, start),
                    EntryPayload::Normal(Batches(b)) => {
                        // Offsets and the epoch are stamped in place, so the batches need a
                        // mutable copy; it is the one copy on the way to the file.
                        let mut buf = b.to_vec();
                        let info = self.shared.log.append(&mut buf, term as i32, None).map_err(to_io)?;
                        if info.first_offset != start {
                            return Err(io::Error::other(format!(
                                "log end {} disagrees with entry index end {start}",
                                info.first_offset
                            )));
                        }
                        (EntryKind::Data, info.last_offset + 1)
                    }
                };
                idx.push(EntryMeta { log_id: e.log_id, kind, start, end })?;
            }
        }
        self.flush_tx.send(callback).map_err(|_| io::Error::other("log flusher stopped"))?;
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let cut = self.shared.index.write().truncate_after(last_log_id.map(|l| l.index))?;
        if let Some(offset) = cut {
            self.shared.log.truncate_to(offset).map_err(to_io)?;
        }
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // openraft purges only what a snapshot covers, and Rill builds partition snapshots
        // only where retention or DeleteRecords cut the log (`Group::purge_to`): the records
        // below go with the index prefix. The log start never moves back (DeleteRecords may
        // have put it inside the next entry).
        let end = {
            let mut idx = self.shared.index.write();
            idx.purge_upto(log_id)?;
            idx.purged().map(|p| p.end)
        };
        if let Some(end) = end {
            let log = &self.shared.log;
            if end > log.log_start_offset() && end <= log.log_end_offset() {
                log.delete_records_before(end).map_err(to_io)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftLogStorage;

    use super::*;

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(openraft::impls::leader_id_adv::LeaderId { term, node_id: 1 }, index)
    }

    /// A power loss may leave the often-written, never-fsynced committed hint empty or torn;
    /// the vote, in a file of its own written only durably, must come back whatever the hint
    /// file holds.
    #[tokio::test]
    async fn vote_survives_a_torn_committed_hint() {
        let dir = tempfile::tempdir().unwrap();
        let vote = Vote::new(7, 2);
        {
            let mut store = LogStore::open(dir.path(), LogConfig::default()).unwrap();
            store.save_vote(&vote).await.unwrap();
            // A hint naming an entry this log does not hold (here: no entries at all).
            store.save_committed(Some(log_id(7, 40))).await.unwrap();
            let on_disk: PersistedState =
                serde_json::from_slice(&std::fs::read(dir.path().join(STATE_FILE)).unwrap()).unwrap();
            assert_eq!(on_disk.vote, Some(vote));
            assert!(on_disk.committed.is_none(), "the durable file holds the vote only");
        }
        for torn in [&b""[..], &b"{\"te"[..]] {
            std::fs::write(dir.path().join(COMMITTED_FILE), torn).unwrap();
            let mut store = LogStore::open(dir.path(), LogConfig::default()).unwrap();
            assert_eq!(store.read_vote().await.unwrap(), Some(vote));
            assert_eq!(store.read_committed().await.unwrap(), None);
        }
        // A readable hint beyond the log is stale too: replay instead of trusting it.
        std::fs::write(dir.path().join(COMMITTED_FILE), serde_json::to_vec(&Some(log_id(7, 40))).unwrap()).unwrap();
        let mut store = LogStore::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(store.read_committed().await.unwrap(), None);
    }

    /// Files of earlier versions held the vote and the hint together.
    #[tokio::test]
    async fn reads_the_old_combined_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let old = PersistedState { vote: Some(Vote::new(3, 1)), committed: None };
        std::fs::write(dir.path().join(STATE_FILE), serde_json::to_vec(&old).unwrap()).unwrap();
        let mut store = LogStore::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(3, 1)));
    }

    /// One data entry of `n` records with `value_len`-byte values.
    fn data_entry(index: u64, n: usize, value_len: usize) -> Entry {
        use rill_protocol::records::{encode_batch, EncodeOptions, RecordIn};
        let value = vec![b'v'; value_len];
        let recs: Vec<RecordIn<'_>> =
            (0..n).map(|_| RecordIn { value: Some(&value), timestamp: 1, ..Default::default() }).collect();
        Entry::new(
            log_id(1, index),
            EntryPayload::Normal(Batches(encode_batch(&recs, &EncodeOptions::default()).into())),
        )
    }

    fn record_bytes(entries: &[Entry]) -> usize {
        entries.iter().map(|e| if let EntryPayload::Normal(Batches(b)) = &e.payload { b.len() } else { 0 }).sum()
    }

    #[tokio::test]
    async fn replication_reads_whole_entries_up_to_the_limit_and_applying_reads_no_records() {
        use openraft::storage::RaftLogStorageExt;
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path(), LogConfig::default()).unwrap();
        store.blocking_append([Entry::new(log_id(1, 0), EntryPayload::Blank)]).await.unwrap();
        // Entries 1..=40 of about a tenth of the limit each, then one of ~3 MB, then a tail.
        for i in 1..=40 {
            store.blocking_append([data_entry(i, REPLICATION_BYTES / 10 / 1000, 1000)]).await.unwrap();
        }
        store.blocking_append([data_entry(41, 3, 1 << 20)]).await.unwrap();
        store.blocking_append([data_entry(42, 10, 100)]).await.unwrap();
        let all = store.try_get_log_entries(0..43).await.unwrap();
        assert_eq!(all.len(), 43);

        // A prefix of whole entries, the blank one included, within the limit.
        let got = store.limited_get_log_entries(0, 43).await.unwrap();
        assert!(got.len() > 2 && got.len() < 42, "{}", got.len());
        assert!(record_bytes(&got) <= REPLICATION_BYTES, "{}", record_bytes(&got));
        assert!(record_bytes(&got) + record_bytes(&all[got.len()..got.len() + 1]) > REPLICATION_BYTES);
        assert_eq!(got, all[..got.len()]);
        // From the middle, and up to the end of the range asked for.
        let got = store.limited_get_log_entries(30, 35).await.unwrap();
        assert_eq!(got, all[30..35]);
        // An entry larger than the limit comes alone.
        let got = store.limited_get_log_entries(41, 43).await.unwrap();
        assert_eq!(got, all[41..42]);
        assert!(record_bytes(&got) > REPLICATION_BYTES);

        // Applying reads the records only where the state machine wants them.
        use futures::StreamExt;
        let applied: Vec<Entry> = store.entries_stream(0..43).await.map(|e| e.unwrap()).collect().await;
        assert_eq!(applied, all);
        store.shared.apply_reads_records.store(false, Ordering::Release);
        let applied: Vec<Entry> = store.entries_stream(0..43).await.map(|e| e.unwrap()).collect().await;
        assert_eq!(applied.len(), 43);
        assert_eq!(record_bytes(&applied), 0);
        for (a, e) in applied.iter().zip(&all) {
            assert_eq!(a.log_id, e.log_id);
            assert_eq!(matches!(a.payload, EntryPayload::Normal(_)), matches!(e.payload, EntryPayload::Normal(_)));
        }
    }
}
