//! [`PartitionLog`]: the segmented log of one partition.
//!
//! Locking, and why:
//! * `state` (parking_lot `RwLock`) holds segments and offsets. Appends, rolls, deletes and
//!   truncations take it for writing; reads take it for reading. It is never held across an
//!   fsync, so readers and appenders do not wait on the disk's flush latency.
//! * `sync` (`Mutex` + `Condvar`) is the group-commit barrier: at most one thread fsyncs at a
//!   time; everyone else who needs durability waits for it and re-checks, so concurrent
//!   acks=all producers share one fdatasync (raft-engine's write barrier idea).
//! * `reader_cache` holds the one most recently read sealed segment (its fd and two index maps),
//!   bounding maps and descriptors per partition however many segments it has.
//! * `checkpoint` serializes writes of the log start offset checkpoint file.
//! * `cleaning` lets one compaction pass run at a time; the pass reads and rewrites segment
//!   files without `state`, which it takes for reading to plan and for writing only for the
//!   renames that swap a rewritten segment in.
//!
//! Durability contract: `append` only writes to the page cache. An offset is durable once
//! [`PartitionLog::flushed_offset`] is above it, which only `sync` (directly or via `close` /
//! `flush_if_due`) advances, after fdatasync of every file holding data below it and of the
//! directory if segments were created. A failed fsync poisons the log: the kernel may have
//! dropped the dirty pages, so nothing written since can be trusted to reach disk.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};
use rill_protocol::batch::{split_batches, stamp_log_append_time, stamp_offset_and_epoch, BatchHeader};
use tracing::warn;

use crate::cleaner::{self, Checkpoint, CleanSummary, CleanerConfig, KeyMap, Source, SwapStep};
use crate::recovery::{fsync_dir, recover, write_checkpoint, CLEAN_MARKER};
use crate::segment::{
    delete_segment_files, segment_path, ActiveSegment, SealedReader, SealedSegment, SegmentRef, LOG_EXT,
};
use crate::{LogConfig, StorageError};

/// Outcome of a successful [`PartitionLog::append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset assigned to the first record.
    pub first_offset: i64,
    /// Offset assigned to the last record.
    pub last_offset: i64,
    /// The LogAppendTime stamped into the batches, or -1 if they keep CreateTime.
    pub log_append_time: i64,
    /// Log start offset at the time of the append.
    pub log_start_offset: i64,
}

/// Outcome of a [`PartitionLog::read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Whole v2 batches, byte-exact as stored (empty at the log end).
    pub records: Bytes,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

struct LogState {
    config: LogConfig,
    /// Every segment but the active one, by base offset.
    sealed: BTreeMap<i64, SealedSegment>,
    /// `None` once closed.
    active: Option<ActiveSegment>,
    log_start: i64,
    /// Files of segments sealed since the last sync; fsynced by the next one.
    unsynced: Vec<Arc<File>>,
    /// Segment files were created since the last sync; the directory needs an fsync.
    dir_dirty: bool,
    /// Bumped by every truncation so a sync that raced one does not claim the old end (and
    /// a compaction pass that raced one does not install what it wrote).
    truncations: u64,
    /// The log cleaner's progress (persisted by the cleaner, lowered by truncations).
    cleaner: Checkpoint,
}

impl LogState {
    fn active(&self) -> Result<&ActiveSegment, StorageError> {
        self.active.as_ref().ok_or(StorageError::Closed)
    }
    fn active_mut(&mut self) -> Result<&mut ActiveSegment, StorageError> {
        self.active.as_mut().ok_or(StorageError::Closed)
    }
    /// Base offset of the segment following `base`.
    fn next_base(&self, base: i64) -> i64 {
        let active_base = self.active.as_ref().map_or(i64::MAX, |a| a.base());
        self.sealed.range(base + 1..).next().map_or(active_base, |(b, _)| *b)
    }
    fn size_bytes(&self) -> u64 {
        self.sealed.values().map(|s| s.size).sum::<u64>() + self.active.as_ref().map_or(0, |a| a.size())
    }
}

#[derive(Default)]
struct SyncState {
    in_flight: bool,
}

/// The log of one partition: a directory of segments with Kafka's on-disk layout.
/// `Send + Sync`; share it through an `Arc`. All methods take `&self`.
pub struct PartitionLog {
    dir: PathBuf,
    state: RwLock<LogState>,
    sync: Mutex<SyncState>,
    sync_done: Condvar,
    reader_cache: Mutex<Option<Arc<SealedReader>>>,
    checkpoint: Mutex<()>,
    cleaning: Mutex<()>,
    // Mirrors of `state` for lock-free getters.
    log_end: AtomicI64,
    log_start: AtomicI64,
    flushed: AtomicI64,
    last_flush_ms: AtomicI64,
    poisoned: AtomicBool,
}

/// Runs of adjacent cleaning sources that one rewritten segment can hold: all dirty or all
/// clean (so a merge never restarts the tombstone clock of clean segments), together no more
/// than `segment.bytes` before cleaning, and spanning offsets the indexes can address.
fn merge_groups(sources: &[Source], segment_bytes: u64) -> Vec<Vec<&Source>> {
    let mut groups: Vec<Vec<&Source>> = Vec::new();
    let mut bytes = 0;
    for src in sources {
        let fits = groups.last().is_some_and(|g| {
            let first = g[0];
            first.dirty == src.dirty
                && bytes + src.size <= segment_bytes
                && src.next_base - first.base <= u32::MAX as i64
                && g[g.len() - 1].next_base == src.base
        });
        if fits {
            bytes += src.size;
            groups.last_mut().expect("checked").push(src);
        } else {
            bytes = src.size;
            groups.push(vec![src]);
        }
    }
    groups
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl PartitionLog {
    /// Opens (creating if absent) the log in `dir`, running crash recovery if the last
    /// shutdown was not clean (see the `recovery` module).
    pub fn open(dir: &Path, config: LogConfig) -> Result<Self, StorageError> {
        let now = now_ms();
        let r = recover(dir, &config, now)?;
        let log_end = r.active.next_offset();
        let first_base = r.sealed.keys().next().copied().unwrap_or(r.active.base());
        // A checkpoint beyond the end means the deleted records never became durable; the
        // log then simply starts (empty) at its end.
        let log_start = r.checkpoint.unwrap_or(i64::MIN).max(first_base).min(log_end);
        let mut cleaner = Checkpoint::load(dir)?;
        cleaner.first_dirty = cleaner.first_dirty.min(log_end);
        Ok(PartitionLog {
            dir: dir.to_path_buf(),
            state: RwLock::new(LogState {
                config,
                sealed: r.sealed,
                active: Some(r.active),
                log_start,
                unsynced: Vec::new(),
                dir_dirty: false,
                truncations: 0,
                cleaner,
            }),
            sync: Mutex::new(SyncState::default()),
            sync_done: Condvar::new(),
            reader_cache: Mutex::new(None),
            checkpoint: Mutex::new(()),
            cleaning: Mutex::new(()),
            log_end: AtomicI64::new(log_end),
            log_start: AtomicI64::new(log_start),
            flushed: AtomicI64::new(log_end),
            last_flush_ms: AtomicI64::new(now),
            poisoned: AtomicBool::new(false),
        })
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn check_poisoned(&self) -> Result<(), StorageError> {
        if self.poisoned.load(Ordering::Acquire) {
            Err(StorageError::Poisoned)
        } else {
            Ok(())
        }
    }

    fn poison(&self, what: &str, e: &io::Error) {
        warn!(dir = %self.dir.display(), error = %e, "{what} failed; poisoning the log");
        self.poisoned.store(true, Ordering::Release);
    }

    /// Appends one or more whole, already-validated v2 batches. Assigns offsets densely from
    /// the log end offset and stamps each batch in place (base offset, leader epoch, and
    /// LogAppendTime when `log_append_time` is `Some`), rolls the active segment first if the
    /// write would exceed `segment.bytes` (or it is older than `segment.ms`, or its index is
    /// full), then writes all of `records` with one positioned write. Does not fsync.
    pub fn append(
        &self,
        records: &mut [u8],
        leader_epoch: i32,
        log_append_time: Option<i64>,
    ) -> Result<AppendInfo, StorageError> {
        self.check_poisoned()?;
        // Batch layout first, outside the lock: (start, header).
        let mut batches: Vec<(usize, BatchHeader)> = Vec::new();
        let mut at = 0;
        for b in split_batches(records) {
            let (h, bytes) = b?;
            batches.push((at, h));
            at += bytes.len();
        }
        if batches.is_empty() || at != records.len() {
            return Err(StorageError::InvalidRecords(format!(
                "{} of {} bytes are not whole batches",
                records.len() - at,
                records.len()
            )));
        }
        let offsets: i64 = batches.iter().map(|(_, h)| h.last_offset_delta as i64 + 1).sum();

        let mut st = self.state.write();
        let now = now_ms();
        if self.should_roll(&st, records.len() as u64, batches.len(), offsets, now)? {
            self.roll(&mut st)?;
        }
        let interval = st.config.index_interval_bytes;
        let log_start = st.log_start;
        let active = st.active_mut()?;
        let first_offset = active.next_offset();
        let mut next = first_offset;
        for (start, h) in batches.iter_mut() {
            let batch = &mut records[*start..*start + h.total_len()];
            stamp_offset_and_epoch(batch, next, leader_epoch);
            h.base_offset = next;
            if let Some(t) = log_append_time {
                stamp_log_append_time(batch, t);
                h.max_timestamp = t;
            }
            next = h.last_offset() + 1;
        }
        let pos = active.size();
        if let Err(e) = active.log.write_all_at(records, pos) {
            // Undo a partial write so the file never holds bytes the log does not account for.
            if let Err(e2) = active.log.set_len(pos) {
                self.poison("undoing a failed write", &e2);
            }
            return Err(e.into());
        }
        for (start, h) in &batches {
            active.track(pos + *start as u64, h, interval);
        }
        if active.roll_basis_ms.is_none() {
            active.roll_basis_ms = Some(now);
        }
        self.log_end.store(next, Ordering::Release);
        Ok(AppendInfo {
            first_offset,
            last_offset: next - 1,
            log_append_time: log_append_time.unwrap_or(-1),
            log_start_offset: log_start,
        })
    }

    fn should_roll(
        &self,
        st: &LogState,
        bytes: u64,
        batches: usize,
        offsets: i64,
        now: i64,
    ) -> Result<bool, StorageError> {
        let a = st.active()?;
        if a.size() == 0 {
            return Ok(false);
        }
        let c = &st.config;
        Ok(a.size() + bytes > c.segment_bytes
            // Positions in the offset index are u32; keep segments addressable.
            || a.size() + bytes > i32::MAX as u64
            || a.roll_basis_ms.is_some_and(|b| now - b > c.segment_ms)
            // Relative offsets in the indexes are u32.
            || a.next_offset() + offsets - a.base() > u32::MAX as i64
            || a.index_full_for(batches))
    }

    /// Starts a new active segment at the log end; the old one is sealed (its fsync is left to
    /// the next sync, which also fsyncs the directory for the new files).
    fn roll(&self, st: &mut LogState) -> Result<(), StorageError> {
        let active = st.active()?;
        let new_base = active.next_offset();
        let new =
            ActiveSegment::create(&self.dir, new_base, st.config.segment_index_bytes, st.config.index_interval_bytes)?;
        let old = st.active.replace(new).expect("checked above");
        let (meta, files) = old.seal(&self.dir);
        st.sealed.insert(meta.base, meta);
        st.unsynced.extend(files);
        st.dir_dirty = true;
        Ok(())
    }

    /// Runs `f` on the segment with base offset `base` (active or sealed, opening the latter
    /// through the one-entry reader cache).
    fn with_segment<T>(
        &self,
        st: &LogState,
        base: i64,
        f: impl FnOnce(SegmentRef<'_>) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let active = st.active()?;
        if base == active.base() {
            return f(active.view());
        }
        let reader = {
            let mut cache = self.reader_cache.lock();
            match cache.as_ref() {
                Some(r) if r.base == base => r.clone(),
                _ => {
                    let seg =
                        st.sealed.get(&base).ok_or_else(|| StorageError::Corrupt(format!("no segment {base}")))?;
                    let r = Arc::new(SealedReader::open(
                        &self.dir,
                        seg,
                        st.next_base(base),
                        st.config.index_interval_bytes,
                    )?);
                    seg.max_ts.store(r.max_ts, Ordering::Relaxed);
                    *cache = Some(r.clone());
                    r
                }
            }
        };
        f(reader.view())
    }

    /// Base offset of the segment holding `offset` (which must be within the log).
    fn segment_for(st: &LogState, offset: i64) -> Result<i64, StorageError> {
        let active = st.active()?;
        if offset >= active.base() {
            return Ok(active.base());
        }
        st.sealed
            .range(..=offset)
            .next_back()
            .map(|(b, _)| *b)
            .ok_or_else(|| StorageError::Corrupt(format!("no segment holds offset {offset}")))
    }

    /// Whole batches starting with the one containing `offset`, up to `max_bytes` but always
    /// at least one whole batch if any (KIP-74), and only batches that end below `max_offset`
    /// (exclusive, e.g. the high watermark). Never crosses a segment boundary: a fetch that
    /// reaches the end of a segment returns less and the next fetch continues in the next one.
    /// `offset == log end` gives empty records; outside `[log start, log end]` is
    /// [`StorageError::OffsetOutOfRange`].
    pub fn read(&self, offset: i64, max_bytes: usize, max_offset: i64) -> Result<ReadResult, StorageError> {
        self.read_from(offset, max_bytes, max_offset, false)
    }

    /// Like [`PartitionLog::read`], but also serves offsets below the log start that are still
    /// in a segment. Replication needs it: DeleteRecords may move the log start into the
    /// middle of a Raft entry, whose records a lagging follower must still receive whole.
    pub fn read_retained(&self, offset: i64, max_bytes: usize, max_offset: i64) -> Result<ReadResult, StorageError> {
        self.read_from(offset, max_bytes, max_offset, true)
    }

    fn read_from(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        below_start: bool,
    ) -> Result<ReadResult, StorageError> {
        let st = self.state.read();
        let log_end = st.active()?.next_offset();
        let result = |records| ReadResult { records, log_start_offset: st.log_start, log_end_offset: log_end };
        let floor = match below_start {
            true => st.sealed.keys().next().copied().unwrap_or(st.active()?.base()),
            false => st.log_start,
        };
        if offset < floor || offset > log_end {
            return Err(StorageError::OffsetOutOfRange { requested: offset, log_start: st.log_start, log_end });
        }
        if offset == log_end || offset >= max_offset {
            return Ok(result(Bytes::new()));
        }
        let base = Self::segment_for(&st, offset)?;
        let records = self.with_segment(&st, base, |s| s.read(offset, max_bytes, max_offset))?;
        Ok(result(records))
    }

    /// First offset that is still readable.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start.load(Ordering::Acquire)
    }

    /// Offset the next appended record gets.
    pub fn log_end_offset(&self) -> i64 {
        self.log_end.load(Ordering::Acquire)
    }

    /// Every offset below this is fsynced.
    pub fn flushed_offset(&self) -> i64 {
        self.flushed.load(Ordering::Acquire)
    }

    /// Group commit: returns once every offset below `upto` (capped at the log end) is durable.
    /// Blocking (call it from `spawn_blocking`). If a sync is in flight, waits for it and
    /// re-checks; otherwise becomes the syncer for everything appended so far, so concurrent
    /// callers share one fdatasync. A failed fsync poisons the log.
    pub fn sync(&self, upto: i64) -> Result<(), StorageError> {
        loop {
            self.check_poisoned()?;
            let target = upto.min(self.log_end_offset());
            if self.flushed_offset() >= target {
                return Ok(());
            }
            let mut s = self.sync.lock();
            if s.in_flight {
                self.sync_done.wait(&mut s);
                continue;
            }
            s.in_flight = true;
            drop(s);
            let res = self.sync_all_appended();
            self.sync.lock().in_flight = false;
            self.sync_done.notify_all();
            res?;
        }
    }

    /// One round of group commit: fdatasync everything appended so far, then advance
    /// `flushed`. Holds no `state` lock while syncing.
    fn sync_all_appended(&self) -> Result<(), StorageError> {
        let (target, mut files, dir_dirty, truncations) = {
            let mut st = self.state.write();
            let active = st.active()?;
            let (target, log) = (active.next_offset(), active.log.clone());
            let mut files = std::mem::take(&mut st.unsynced);
            files.push(log);
            (target, files, std::mem::take(&mut st.dir_dirty), st.truncations)
        };
        let started = std::time::Instant::now();
        for f in files.drain(..) {
            if let Err(e) = f.sync_data() {
                self.poison("fdatasync", &e);
                return Err(e.into());
            }
        }
        if dir_dirty {
            if let Err(e) = fsync_dir(&self.dir) {
                self.poison("directory fsync", &e);
                return Err(e.into());
            }
        }
        crate::observe::sync_done(started.elapsed());
        let st = self.state.read();
        if st.truncations == truncations {
            self.flushed.fetch_max(target, Ordering::AcqRel);
        }
        self.last_flush_ms.store(now_ms(), Ordering::Release);
        Ok(())
    }

    /// True if an acks=all produce must wait for [`PartitionLog::sync`] before acknowledging
    /// under this topic's flush policy (`flush.messages <= 1`, Rill's default).
    pub fn sync_on_ack(&self) -> bool {
        self.state.read().config.flush_messages <= 1
    }

    /// Background flush per `flush.messages` / `flush.ms`; the broker calls it periodically.
    pub fn flush_if_due(&self, now_ms: i64) -> Result<(), StorageError> {
        let (flush_messages, flush_ms) = {
            let st = self.state.read();
            (st.config.flush_messages.max(1), st.config.flush_ms)
        };
        let end = self.log_end_offset();
        let unflushed = end - self.flushed_offset();
        if unflushed <= 0 {
            return Ok(());
        }
        let age = now_ms.saturating_sub(self.last_flush_ms.load(Ordering::Acquire));
        if unflushed >= flush_messages || age >= flush_ms {
            self.sync(end)?;
        }
        Ok(())
    }

    /// ListOffsets by timestamp at batch granularity: the first batch (at or after the log
    /// start) whose max timestamp is >= `ts`, as `(its base offset, its max timestamp)`
    /// (the base offset is raised to the log start if the batch straddles it). Records are not
    /// parsed, so this may return an offset a few records before Kafka's answer. `None` if no
    /// batch qualifies.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, StorageError> {
        let st = self.state.read();
        Ok(self.find_timestamp(&st, ts)?.map(|h| (h.base_offset.max(st.log_start), h.max_timestamp)))
    }

    fn find_timestamp(&self, st: &LogState, ts: i64) -> Result<Option<BatchHeader>, StorageError> {
        let log_start = st.log_start;
        for base in self.live_bases(st)? {
            if self.segment_max_ts(st, base)? < ts {
                continue;
            }
            if let Some(h) = self.with_segment(st, base, |s| s.find_timestamp(ts, log_start))? {
                return Ok(Some(h));
            }
        }
        Ok(None)
    }

    /// Bases of segments holding offsets at or above the log start, oldest first.
    fn live_bases(&self, st: &LogState) -> Result<Vec<i64>, StorageError> {
        let active = st.active()?;
        let mut bases: Vec<i64> = st.sealed.keys().copied().filter(|&b| st.next_base(b) > st.log_start).collect();
        if active.size() > 0 {
            bases.push(active.base());
        }
        Ok(bases)
    }

    fn segment_max_ts(&self, st: &LogState, base: i64) -> Result<i64, StorageError> {
        let active = st.active()?;
        if base == active.base() {
            return Ok(active.tracker.max_ts);
        }
        let seg = &st.sealed[&base];
        seg.max_timestamp(&self.dir, st.next_base(base), st.config.index_interval_bytes)
    }

    /// ListOffsets MAX_TIMESTAMP (-3) at batch granularity: `(last offset, max timestamp)` of
    /// the first batch holding the log's largest timestamp. Kafka answers with the offset of
    /// the record itself; without parsing records the batch's last offset is the closest
    /// honest answer. `None` for an empty log.
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>, StorageError> {
        let st = self.state.read();
        let mut max = None;
        for base in self.live_bases(&st)? {
            let ts = self.segment_max_ts(&st, base)?;
            if max.is_none_or(|m| ts > m) {
                max = Some(ts);
            }
        }
        let Some(max) = max else { return Ok(None) };
        Ok(self.find_timestamp(&st, max)?.map(|h| (h.last_offset(), h.max_timestamp)))
    }

    /// DeleteRecords: advances the log start offset to `offset` (which must be <= the log end),
    /// deletes sealed segments that now lie wholly below it, and persists the new log start
    /// (checkpoint file, atomically replaced) so it survives restarts. Returns the log start.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, StorageError> {
        self.check_poisoned()?;
        {
            let mut st = self.state.write();
            let log_end = st.active()?.next_offset();
            if offset > log_end || offset < 0 {
                return Err(StorageError::OffsetOutOfRange { requested: offset, log_start: st.log_start, log_end });
            }
            if offset <= st.log_start {
                return Ok(st.log_start);
            }
            st.log_start = offset;
            self.log_start.store(offset, Ordering::Release);
            let doomed: Vec<i64> = st.sealed.keys().copied().filter(|&b| st.next_base(b) <= offset).collect();
            self.delete_segments(&mut st, &doomed)?;
        }
        let _guard = self.checkpoint.lock();
        let log_start = self.log_start_offset();
        write_checkpoint(&self.dir, log_start)?;
        Ok(log_start)
    }

    /// Removes sealed segments (files and metadata) and raises the log start past them.
    fn delete_segments(&self, st: &mut LogState, bases: &[i64]) -> Result<(), StorageError> {
        if bases.is_empty() {
            return Ok(());
        }
        *self.reader_cache.lock() = None;
        for base in bases {
            st.sealed.remove(base);
            delete_segment_files(&self.dir, *base)?;
        }
        st.dir_dirty = true;
        let first = st.sealed.keys().next().copied().unwrap_or(st.active()?.base());
        st.log_start = st.log_start.max(first);
        self.log_start.store(st.log_start, Ordering::Release);
        Ok(())
    }

    /// Retention: deletes whole oldest sealed segments while their newest timestamp (or file
    /// mtime if they have none) is older than `retention.ms`, then while the log stays above
    /// `retention.bytes` without them. The active segment is never deleted. Returns how many
    /// segments were deleted.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize, StorageError> {
        let doomed = self.doomed_by_retention(now_ms)?;
        let mut st = self.state.write();
        // Only segments still present: a concurrent delete or truncate may have won.
        let doomed: Vec<i64> = doomed.into_iter().filter(|b| st.sealed.contains_key(b)).collect();
        self.delete_segments(&mut st, &doomed)?;
        Ok(doomed.len())
    }

    /// Where retention would start the log now: the base offset of the first segment
    /// [`PartitionLog::enforce_retention`] would keep, or `None` if it would delete nothing.
    /// A replicated log deletes through its Raft group instead, up to this offset.
    pub fn retention_point(&self, now_ms: i64) -> Result<Option<i64>, StorageError> {
        let doomed = self.doomed_by_retention(now_ms)?;
        let st = self.state.read();
        Ok(doomed.last().map(|b| st.next_base(*b)))
    }

    /// Sealed segments retention would delete, oldest first.
    fn doomed_by_retention(&self, now_ms: i64) -> Result<Vec<i64>, StorageError> {
        Ok({
            let st = self.state.read();
            let (retention_ms, retention_bytes) = (st.config.retention_ms, st.config.retention_bytes);
            let mut doomed = Vec::new();
            if retention_ms >= 0 {
                for (&base, seg) in &st.sealed {
                    let mut newest =
                        seg.max_timestamp(&self.dir, st.next_base(base), st.config.index_interval_bytes)?;
                    if newest < 0 {
                        newest = cleaner::mtime_ms(&segment_path(&self.dir, base, LOG_EXT))?;
                    }
                    if now_ms - newest <= retention_ms {
                        break;
                    }
                    doomed.push(base);
                }
            }
            if retention_bytes >= 0 {
                let mut excess = st.size_bytes() as i64 - retention_bytes;
                excess -= doomed.iter().map(|b| st.sealed[b].size as i64).sum::<i64>();
                for (&base, seg) in st.sealed.range(doomed.last().map_or(i64::MIN, |b| b + 1)..) {
                    if excess < seg.size as i64 {
                        break;
                    }
                    excess -= seg.size as i64;
                    doomed.push(base);
                }
            }
            doomed
        })
    }

    /// Drops everything at and after `offset` (Raft log conflicts). Batches are indivisible:
    /// if `offset` falls inside a batch, that whole batch goes and the new log end is its base.
    /// Truncating below the log start empties the log and restarts it at `offset`. The
    /// truncation is fsynced before returning.
    pub fn truncate_to(&self, offset: i64) -> Result<(), StorageError> {
        self.check_poisoned()?;
        let mut st = self.state.write();
        let (active_base, active_end) = {
            let active = st.active()?;
            (active.base(), active.next_offset())
        };
        if offset >= active_end {
            return Ok(());
        }
        *self.reader_cache.lock() = None;
        st.truncations += 1;
        st.cleaner.first_dirty = st.cleaner.first_dirty.min(offset);
        let (index_bytes, interval) = (st.config.segment_index_bytes, st.config.index_interval_bytes);
        if offset < st.log_start {
            // Nothing below `offset` is readable: start over there.
            return self.restart_at(st, offset);
        }
        if offset < active_base {
            // The target lies in a sealed segment: drop everything after it and make it active.
            let target = Self::segment_for(&st, offset)?;
            let later: Vec<i64> = st.sealed.range(target + 1..).map(|(b, _)| *b).chain([active_base]).collect();
            st.active = None;
            for base in later {
                st.sealed.remove(&base);
                delete_segment_files(&self.dir, base)?;
            }
            st.sealed.remove(&target);
            st.active = Some(ActiveSegment::open(&self.dir, target, index_bytes, interval, false, now_ms())?);
            st.dir_dirty = true;
        }
        let active = st.active_mut()?;
        let new_end = active.truncate_to(offset)?;
        let log = active.log.clone();
        self.log_end.store(new_end, Ordering::Release);
        self.flushed.fetch_min(new_end, Ordering::AcqRel);
        drop(st);
        if let Err(e) = log.sync_data() {
            self.poison("fdatasync after truncation", &e);
            return Err(e.into());
        }
        Ok(())
    }

    /// Empties the log and restarts it, empty, at `offset` (which may lie beyond the log end):
    /// a Raft follower installing a snapshot of a partition whose prefix the leader has
    /// already deleted. Durable on return.
    pub fn reset_to(&self, offset: i64) -> Result<(), StorageError> {
        self.check_poisoned()?;
        let st = self.state.write();
        *self.reader_cache.lock() = None;
        self.restart_at(st, offset)
    }

    fn restart_at(&self, mut st: parking_lot::RwLockWriteGuard<'_, LogState>, offset: i64) -> Result<(), StorageError> {
        let (index_bytes, interval) = (st.config.segment_index_bytes, st.config.index_interval_bytes);
        let active_base = st.active()?.base();
        let all: Vec<i64> = st.sealed.keys().copied().chain([active_base]).collect();
        st.truncations += 1;
        st.active = None;
        st.sealed.clear();
        for base in all {
            delete_segment_files(&self.dir, base)?;
        }
        st.active = Some(ActiveSegment::create(&self.dir, offset, index_bytes, interval)?);
        st.log_start = offset;
        self.log_start.store(offset, Ordering::Release);
        self.log_end.store(offset, Ordering::Release);
        // Nothing is unflushed in an empty log; below `offset` nothing exists.
        self.flushed.store(offset, Ordering::Release);
        drop(st);
        fsync_dir(&self.dir)?;
        let _guard = self.checkpoint.lock();
        write_checkpoint(&self.dir, offset)?;
        Ok(())
    }

    /// Compaction (`cleanup.policy=compact`, see the `cleaner` module): if the log is due for
    /// cleaning under `config`, compacts its sealed segments that lie wholly below `upto` (the
    /// caller's committed point, e.g. the high watermark), keeping the latest record of each
    /// key, and swaps each rewritten segment in crash-safely. Every batch keeps its offset
    /// range; batches that lose all their records stay as empty batches. Blocking and
    /// I/O-heavy: run it off the request path. Returns `None` when the log was not due (or
    /// another pass was running), else what the pass did. A pass that finds a segment deleted
    /// or truncated under it stops early; the next one starts over.
    pub fn clean(&self, upto: i64, config: &CleanerConfig, now_ms: i64) -> Result<Option<CleanSummary>, StorageError> {
        self.clean_until(upto, config, now_ms, SwapStep::Done)
    }

    /// [`PartitionLog::clean`], stopping each swap after `stop_after` (tests leave what a
    /// crash would).
    pub(crate) fn clean_until(
        &self,
        upto: i64,
        config: &CleanerConfig,
        now_ms: i64,
        stop_after: SwapStep,
    ) -> Result<Option<CleanSummary>, StorageError> {
        let Some(_cleaning) = self.cleaning.try_lock() else { return Ok(None) };
        self.check_poisoned()?;
        let (mut sources, checkpoint, truncations, interval, segment_bytes) = {
            let st = self.state.read();
            let Some(sources) = self.plan_cleaning(&st, upto, config, now_ms)? else { return Ok(None) };
            (sources, st.cleaner, st.truncations, st.config.index_interval_bytes, st.config.segment_bytes)
        };
        let (map, covered) = KeyMap::build(&self.dir, &sources, config.max_map_bytes)?;
        // Dirty segments past what the map covers wait for the next pass.
        let mut dirty_seen = 0;
        sources.retain(|s| {
            dirty_seen += usize::from(s.dirty);
            !s.dirty || dirty_seen <= covered
        });
        let cleaned_upto = sources.iter().rev().find(|s| s.dirty).map_or(checkpoint.first_dirty, |s| s.next_base);
        let mut summary = CleanSummary { cleaned_upto, ..CleanSummary::default() };
        let mut tombstone_expiry = i64::MAX;
        for group in merge_groups(&sources, segment_bytes) {
            let (first, last) = (group[0], group[group.len() - 1]);
            let mut members = Vec::with_capacity(group.len());
            let mut newest_mtime = 0;
            for src in &group {
                let mtime = cleaner::mtime_ms(&segment_path(&self.dir, src.base, LOG_EXT))?;
                newest_mtime = newest_mtime.max(mtime);
                let keep_tombstones = src.dirty || now_ms.saturating_sub(mtime) <= config.delete_retention_ms;
                members.push((*src, keep_tombstones));
            }
            // Cleaned at: now for dirty segments' first cleaning, carried over afterwards (a
            // group never mixes the two).
            let cleaned_at = if first.dirty { now_ms } else { newest_mtime };
            let r = cleaner::rewrite(&self.dir, &members, &map, interval, cleaner::system_time(cleaned_at))
                .inspect_err(|_| cleaner::discard(&self.dir, first.base))?;
            let group_bytes: u64 = group.iter().map(|s| s.size).sum();
            summary.segments_read += group.len();
            summary.bytes_before += group_bytes;
            summary.records_removed += r.records_removed;
            summary.tombstones_removed += r.tombstones_removed;
            if r.keeps_tombstones {
                tombstone_expiry = tombstone_expiry.min(cleaned_at.saturating_add(config.delete_retention_ms));
            }
            let Some(c) = r.cleaned else {
                summary.bytes_after += group_bytes;
                if first.dirty && r.keeps_tombstones {
                    // Not rewritten, but cleaned now: its tombstones' retention starts now.
                    let path = segment_path(&self.dir, first.base, LOG_EXT);
                    File::options().write(true).open(&path)?.set_modified(cleaner::system_time(now_ms))?;
                }
                continue;
            };
            let merged: Vec<i64> = group[1..].iter().map(|s| s.base).collect();
            {
                let mut st = self.state.write();
                let unchanged = st.truncations == truncations
                    && group.iter().all(|src| st.sealed.get(&src.base).is_some_and(|s| s.size == src.size))
                    && st.next_base(last.base) == last.next_base;
                if !unchanged {
                    drop(st);
                    cleaner::discard(&self.dir, first.base);
                    return Ok(Some(CleanSummary { cleaned_upto: checkpoint.first_dirty, ..summary }));
                }
                *self.reader_cache.lock() = None;
                if let Err(e) = cleaner::install(&self.dir, first.base, &merged, stop_after) {
                    // The files may be half swapped; reopening (recovery) sorts them out.
                    self.poison("installing a compacted segment", &e);
                    return Err(e.into());
                }
                if stop_after != SwapStep::Done {
                    return Ok(Some(summary));
                }
                for base in &merged {
                    st.sealed.remove(base);
                }
                st.sealed.insert(first.base, SealedSegment::new(first.base, c.size, c.max_ts));
            }
            fsync_dir(&self.dir)?;
            summary.segments_rewritten += group.len();
            summary.bytes_after += c.size;
        }
        let next = Checkpoint { first_dirty: cleaned_upto, tombstone_expiry_ms: tombstone_expiry };
        {
            let mut st = self.state.write();
            if st.truncations != truncations {
                return Ok(Some(summary));
            }
            st.cleaner = next;
        }
        next.store(&self.dir)?;
        Ok(Some(summary))
    }

    /// The sealed segments a cleaning pass reads, oldest first, or `None` if the log is not
    /// due: segments ending at or below `upto` and the active segment's base, stopping at the
    /// first dirty one holding records newer than `min.compaction.lag.ms`.
    fn plan_cleaning(
        &self,
        st: &LogState,
        upto: i64,
        config: &CleanerConfig,
        now_ms: i64,
    ) -> Result<Option<Vec<Source>>, StorageError> {
        let bound = upto.min(st.active()?.base());
        let first_dirty = st.cleaner.first_dirty;
        let newest_cleanable = now_ms.saturating_sub(config.min_compaction_lag_ms.max(0));
        let mut sources = Vec::new();
        for (&base, seg) in &st.sealed {
            let next_base = st.next_base(base);
            if next_base <= st.log_start {
                continue;
            }
            if next_base > bound {
                break;
            }
            let dirty = next_base > first_dirty;
            let max_ts = seg.max_timestamp(&self.dir, next_base, st.config.index_interval_bytes)?;
            if dirty && config.min_compaction_lag_ms > 0 && max_ts > newest_cleanable {
                break;
            }
            sources.push(Source { base, next_base, size: seg.size, dirty, max_ts });
        }
        let bytes = |dirty: bool| sources.iter().filter(|s| s.dirty == dirty).map(|s| s.size).sum::<u64>();
        let (dirty_bytes, clean_bytes) = (bytes(true), bytes(false));
        let ratio_due = dirty_bytes > 0
            && dirty_bytes as f64 / (dirty_bytes + clean_bytes) as f64 >= config.min_cleanable_dirty_ratio;
        let lag_due = sources
            .iter()
            .any(|s| s.dirty && s.max_ts >= 0 && now_ms.saturating_sub(s.max_ts) > config.max_compaction_lag_ms);
        let tombstones_due = clean_bytes > 0 && now_ms >= st.cleaner.tombstone_expiry_ms;
        Ok((ratio_due || lag_due || tombstones_due).then_some(sources))
    }

    /// Base offsets of the sealed segments and the active one, and the cleaner checkpoint.
    #[cfg(test)]
    pub(crate) fn layout(&self) -> (Vec<i64>, i64, Checkpoint) {
        let st = self.state.read();
        (st.sealed.keys().copied().collect(), st.active().expect("open").base(), st.cleaner)
    }

    /// Replaces the configuration; takes effect for subsequent operations (index preallocation
    /// for the next segment).
    pub fn update_config(&self, config: LogConfig) {
        self.state.write().config = config;
    }

    /// Total bytes of all segment log files.
    pub fn size_bytes(&self) -> u64 {
        self.state.read().size_bytes()
    }

    /// Number of segments, the active one included.
    pub fn segment_count(&self) -> usize {
        let st = self.state.read();
        st.sealed.len() + usize::from(st.active.is_some())
    }

    /// Clean shutdown: seals the active segment's indexes (trim + unmap), fsyncs everything,
    /// releases files and maps, and writes the clean-shutdown marker so the next open can skip
    /// recovery. Later calls other than getters fail with [`StorageError::Closed`].
    pub fn close(&self) -> Result<(), StorageError> {
        self.check_poisoned()?;
        let mut st = self.state.write();
        let Some(active) = st.active.take() else {
            return Ok(());
        };
        *self.reader_cache.lock() = None;
        let log_end = active.next_offset();
        let (meta, files) = active.seal(&self.dir);
        // The sealed metadata is kept so getters such as `size_bytes` still answer.
        st.sealed.insert(meta.base, meta);
        let mut files = std::mem::take(&mut st.unsynced).into_iter().chain(files).collect::<Vec<_>>();
        drop(st);
        for f in files.drain(..) {
            if let Err(e) = f.sync_all() {
                self.poison("fsync on close", &e);
                return Err(e.into());
            }
        }
        fsync_dir(&self.dir)?;
        self.flushed.fetch_max(log_end, Ordering::AcqRel);
        let marker = File::create(self.dir.join(CLEAN_MARKER))?;
        marker.sync_all()?;
        fsync_dir(&self.dir)?;
        Ok(())
    }
}
