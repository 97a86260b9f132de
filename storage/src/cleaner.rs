//! Log compaction (`cleanup.policy=compact`): the pieces of a cleaning pass that work on files.
//! [`crate::PartitionLog::clean`] plans a pass under the log's lock and drives these.
//!
//! Kafka's rules, and where Rill differs:
//! * Only sealed segments that lie wholly below a caller-given bound (the high watermark) are
//!   touched, never the active segment. The log is split at the cleaner checkpoint into a
//!   clean head (already compacted) and a dirty tail; a pass runs when the dirty bytes are at
//!   least `min.cleanable.dirty.ratio` of both, when a dirty segment is older than
//!   `max.compaction.lag.ms`, or when a retained tombstone's `delete.retention.ms` has run out.
//!   Dirty segments whose newest timestamp is within `min.compaction.lag.ms` wait.
//! * A key map (key -> latest offset) is built over the dirty tail, then every segment is
//!   rewritten keeping a record unless the map holds a later offset for its key. Records
//!   without a key are dropped (Kafka's cleaner counts them invalid and drops them; the
//!   broker refuses them at produce time).
//! * Batches are never dropped and never change their offset range: a batch that loses
//!   records keeps its base offset, `lastOffsetDelta`, timestamps, producer fields and
//!   attributes; one that loses all of them stays as an empty batch. In cluster mode a Raft
//!   entry is located by its offset range, and the idempotent producer state is rebuilt from
//!   batch headers, so both must survive compaction unchanged.
//! * Control and transactional batches are copied unchanged and their keys are not mapped.
//! * A tombstone (null value) is kept while its segment was cleaned less than
//!   `delete.retention.ms` ago. "Cleaned at" is the segment file's mtime: a dirty segment's
//!   first cleaning sets it to now, later rewrites carry it over (Kafka's pre-KIP-534 rule,
//!   measured from the cleaning rather than from the previous clean segment).
//!
//! * Adjacent segments that held at most `segment.bytes` together before cleaning (all dirty
//!   or all clean) are merged into one, so emptied segments do not pile up (Kafka's
//!   `groupSegmentsBySize`).
//!
//! Crash safety: a rewritten segment is written as `<base>.{log,index,timeindex}.cleaned` and
//! fsynced; then, under the log's write lock, the index files are renamed to `.swap`, the log
//! file to `.log.swap` (the commit point), the segments merged into it are deleted, and all
//! three are renamed over the originals. Recovery completes a swap whose `.log.swap` exists (if
//! the segment itself still exists), deleting any segment based inside its offset range, and
//! deletes every other `.cleaned` / `.swap` file, which rolls back an uncommitted one.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rill_protocol::batch::BatchHeader;
use rill_protocol::records::retain_records;
use tracing::warn;

use crate::index::{OFFSET_ENTRY_LEN, TIME_ENTRY_LEN};
use crate::recovery::{fsync_dir, write_durably};
use crate::segment::{
    delete_segment_files, segment_path, ScanError, Scanner, Tracker, INDEX_EXT, LOG_EXT, TIME_INDEX_EXT,
};
use crate::StorageError;

/// Compaction settings of one log, named after the Kafka configs they mirror.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanerConfig {
    /// `delete.retention.ms`: how long a tombstone outlives the cleaning that first kept it.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: segments holding records newer than this are not cleaned.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a dirty segment whose newest record is older than this is
    /// cleaned whatever the dirty ratio (Kafka measures from the oldest record instead).
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: dirty bytes / (clean + dirty bytes) that starts a pass.
    pub min_cleanable_dirty_ratio: f64,
    /// `log.cleaner.dedupe.buffer.size`: about how many bytes the key map of one pass may use;
    /// dirty segments beyond it wait for the next pass (the first one is always taken).
    pub max_map_bytes: usize,
}

impl Default for CleanerConfig {
    /// Kafka's defaults.
    fn default() -> Self {
        CleanerConfig {
            delete_retention_ms: 24 * 60 * 60 * 1000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
            max_map_bytes: 128 << 20,
        }
    }
}

/// What one cleaning pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanSummary {
    /// Segments read (clean head and dirty tail).
    pub segments_read: usize,
    /// Segments replaced by a smaller copy.
    pub segments_rewritten: usize,
    /// Log bytes of the segments read, before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Records dropped: superseded, keyless, or expired tombstones.
    pub records_removed: u64,
    /// Of those, tombstones past `delete.retention.ms`.
    pub tombstones_removed: u64,
    /// The new cleaner checkpoint: everything below it is compacted.
    pub cleaned_upto: i64,
}

/// Name of the file holding the cleaner checkpoint.
pub(crate) const CLEANER_CHECKPOINT: &str = "cleaner-offset.checkpoint";

/// The cleaner's persisted progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// First offset not yet compacted (a segment boundary).
    pub first_dirty: i64,
    /// When the oldest retained tombstone may go (`i64::MAX`: none known).
    pub tombstone_expiry_ms: i64,
}

impl Checkpoint {
    pub const NONE: Checkpoint = Checkpoint { first_dirty: 0, tombstone_expiry_ms: i64::MAX };

    /// Reads the checkpoint; a missing or unreadable one means nothing is known to be clean.
    pub fn load(dir: &Path) -> io::Result<Checkpoint> {
        let text = match fs::read_to_string(dir.join(CLEANER_CHECKPOINT)) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Checkpoint::NONE),
            Err(e) => return Err(e),
        };
        let mut fields = text.split_whitespace().map(str::parse::<i64>);
        match (fields.next(), fields.next()) {
            (Some(Ok(first_dirty)), Some(Ok(tombstone_expiry_ms))) => {
                Ok(Checkpoint { first_dirty, tombstone_expiry_ms })
            }
            _ => {
                warn!(dir = %dir.display(), "unreadable cleaner checkpoint; the whole log counts as dirty");
                Ok(Checkpoint::NONE)
            }
        }
    }

    pub fn store(&self, dir: &Path) -> io::Result<()> {
        write_durably(dir, CLEANER_CHECKPOINT, &format!("{} {}\n", self.first_dirty, self.tombstone_expiry_ms))
    }
}

/// One sealed segment a pass reads. Its file is opened when read: a segment deleted meanwhile
/// fails the pass, and one truncated or replaced meanwhile is caught before its rewrite is
/// installed (see [`crate::PartitionLog::clean`]).
pub(crate) struct Source {
    pub base: i64,
    pub next_base: i64,
    pub size: u64,
    /// Past the cleaner checkpoint: its keys go into the map and its tombstones stay.
    pub dirty: bool,
    /// Newest batch timestamp (-1 if none).
    pub max_ts: i64,
}

/// Key -> offset of its latest record in the dirty tail.
pub(crate) struct KeyMap {
    latest: HashMap<Vec<u8>, i64>,
    bytes: usize,
}

/// Rough heap cost of one map entry besides its key bytes.
const MAP_ENTRY_OVERHEAD: usize = 48;

impl KeyMap {
    /// Maps the keys of dirty `sources` in order until about `max_bytes` are used (always
    /// finishing the segment it is in, and always taking the first). Returns the map and how
    /// many dirty sources it covers.
    pub fn build(dir: &Path, sources: &[Source], max_bytes: usize) -> Result<(KeyMap, usize), StorageError> {
        let mut map = KeyMap { latest: HashMap::new(), bytes: 0 };
        let mut scratch = Vec::new();
        let mut covered = 0;
        for src in sources.iter().filter(|s| s.dirty) {
            if covered > 0 && map.bytes > max_bytes {
                break;
            }
            for_each_batch(dir, src, |batch, h| {
                if h.is_control() || h.is_transactional() {
                    return Ok(());
                }
                rill_protocol::records::for_each_record(batch, &mut scratch, |r| {
                    if let Some(key) = r.key {
                        let offset = h.base_offset + i64::from(r.offset_delta);
                        if map.latest.insert(key.to_vec(), offset).is_none() {
                            map.bytes += key.len() + MAP_ENTRY_OVERHEAD;
                        }
                    }
                })?;
                Ok(())
            })?;
            covered += 1;
        }
        Ok((map, covered))
    }

    /// True if `key` has a record after `offset`.
    fn superseded(&self, key: &[u8], offset: i64) -> bool {
        self.latest.get(key).is_some_and(|&latest| latest > offset)
    }
}

/// Calls `f` with every whole batch of a source segment, in order.
fn for_each_batch(
    dir: &Path,
    src: &Source,
    mut f: impl FnMut(&[u8], &BatchHeader) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    let file = File::open(segment_path(dir, src.base, LOG_EXT))?;
    let mut scan = Scanner::new(&file, 0, src.size, 1 << 20);
    while let Some((h, batch)) = scan.next_whole_batch().map_err(|e| corrupt(src.base, e))? {
        f(batch, &h)?;
    }
    Ok(())
}

fn corrupt(base: i64, e: ScanError) -> StorageError {
    match e {
        ScanError::Io(e) => StorageError::Io(e),
        ScanError::Invalid { pos, reason } => {
            StorageError::Corrupt(format!("segment {base} at position {pos}, while cleaning: {reason}"))
        }
    }
}

/// A segment rewritten into `.cleaned` files, fsynced and ready to swap in.
pub(crate) struct Cleaned {
    pub size: u64,
    pub max_ts: i64,
}

/// What rewriting one segment found.
#[derive(Default)]
pub(crate) struct Rewrite {
    /// `None` when no record went, so the segment stays as it is.
    pub cleaned: Option<Cleaned>,
    pub records_removed: u64,
    pub tombstones_removed: u64,
    /// Some tombstone was kept.
    pub keeps_tombstones: bool,
}

/// Path of a segment file with a suffix (`.cleaned`, `.swap`) after its extension.
fn suffixed(dir: &Path, base: i64, ext: &str, suffix: &str) -> PathBuf {
    let mut p = segment_path(dir, base, ext).into_os_string();
    p.push(suffix);
    PathBuf::from(p)
}

const CLEANED: &str = ".cleaned";
const SWAP: &str = ".swap";

/// Rewrites a run of adjacent segments into one segment of `.cleaned` files (fsynced) at
/// the first one's base, keeping each record unless `map` has a later one for its key, it
/// has no key, or it is a tombstone of a segment whose flag (beside it in `group`) is false.
/// `mtime` becomes the new log file's modification time. A single segment that loses no
/// record is left alone (`cleaned` is `None`); several are always merged.
pub(crate) fn rewrite(
    dir: &Path,
    group: &[(&Source, bool)],
    map: &KeyMap,
    interval: u32,
    mtime: SystemTime,
) -> Result<Rewrite, StorageError> {
    let mut out = Rewrite::default();
    let base = group[0].0.base;
    let log_path = suffixed(dir, base, LOG_EXT, CLEANED);
    let file = OpenOptions::new().write(true).create(true).truncate(true).open(&log_path)?;
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    let mut tracker = Tracker::new(base);
    let (mut offsets, mut times) = (Vec::new(), Vec::new());
    let mut scratch = Vec::new();
    let mut changed = group.len() > 1;
    for &(src, keep_tombstones) in group {
        rewrite_into(dir, src, map, keep_tombstones, &mut out, &mut changed, &mut scratch, |bytes, h| {
            let e = tracker.track(tracker.size, h, interval);
            offsets.extend(e.offset.iter().flatten());
            times.extend(e.time.iter().flatten());
            writer.write_all(bytes)?;
            Ok(())
        })?;
    }
    if !changed {
        drop(writer);
        fs::remove_file(&log_path)?;
        return Ok(out);
    }
    times.extend(tracker.sealing_time_entry().iter().flatten());
    debug_assert_eq!(offsets.len() % OFFSET_ENTRY_LEN, 0);
    debug_assert_eq!(times.len() % TIME_ENTRY_LEN, 0);
    let file = writer.into_inner().map_err(|e| e.into_error())?;
    file.set_modified(mtime)?;
    file.sync_all()?;
    for (ext, data) in [(INDEX_EXT, &offsets), (TIME_INDEX_EXT, &times)] {
        let mut f =
            OpenOptions::new().write(true).create(true).truncate(true).open(suffixed(dir, base, ext, CLEANED))?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    out.cleaned = Some(Cleaned { size: tracker.size, max_ts: tracker.max_ts });
    Ok(out)
}

/// Filters the batches of one source segment, handing each (rewritten or not) with its
/// header to `emit`, in order.
#[allow(clippy::too_many_arguments)]
fn rewrite_into(
    dir: &Path,
    src: &Source,
    map: &KeyMap,
    keep_tombstones: bool,
    out: &mut Rewrite,
    changed: &mut bool,
    scratch: &mut Vec<u8>,
    mut emit: impl FnMut(&[u8], &BatchHeader) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    for_each_batch(dir, src, |batch, h| {
        let rewritten = if h.is_control() || h.is_transactional() {
            None
        } else {
            retain_records(batch, scratch, |r| {
                let keep = match r.key {
                    None => false,
                    Some(key) if map.superseded(key, h.base_offset + i64::from(r.offset_delta)) => false,
                    Some(_) if r.value.is_none() => {
                        if !keep_tombstones {
                            out.tombstones_removed += 1;
                        }
                        out.keeps_tombstones |= keep_tombstones;
                        keep_tombstones
                    }
                    Some(_) => true,
                };
                out.records_removed += u64::from(!keep);
                keep
            })?
        };
        *changed |= rewritten.is_some();
        let bytes = rewritten.as_deref().unwrap_or(batch);
        emit(bytes, &BatchHeader::parse(bytes)?)
    })
}

/// How far [`install`] gets; tests stop it early to leave what a crash would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SwapStep {
    /// Index files renamed to `.swap`, the log still `.cleaned`: not committed.
    IndexesSwapped,
    /// `.log.swap` exists: committed, recovery completes it.
    Committed,
    /// Index files in place, `.log.swap` not yet renamed.
    IndexesInstalled,
    Done,
}

/// Swaps a rewritten segment in: index files to `.swap`, log file to `.swap` (the commit
/// point), the segments merged into it (`merged`, after `base`) deleted, then all three over
/// the originals, log last. The caller holds the log's write lock and fsyncs the directory
/// afterwards.
pub(crate) fn install(dir: &Path, base: i64, merged: &[i64], stop_after: SwapStep) -> io::Result<()> {
    for ext in [INDEX_EXT, TIME_INDEX_EXT] {
        fs::rename(suffixed(dir, base, ext, CLEANED), suffixed(dir, base, ext, SWAP))?;
    }
    if stop_after == SwapStep::IndexesSwapped {
        return Ok(());
    }
    fs::rename(suffixed(dir, base, LOG_EXT, CLEANED), suffixed(dir, base, LOG_EXT, SWAP))?;
    if stop_after == SwapStep::Committed {
        return Ok(());
    }
    for &m in merged {
        delete_segment_files(dir, m)?;
    }
    for ext in [INDEX_EXT, TIME_INDEX_EXT] {
        fs::rename(suffixed(dir, base, ext, SWAP), segment_path(dir, base, ext))?;
    }
    if stop_after == SwapStep::IndexesInstalled {
        return Ok(());
    }
    fs::rename(suffixed(dir, base, LOG_EXT, SWAP), segment_path(dir, base, LOG_EXT))
}

/// Removes the `.cleaned` files of a rewrite that will not be installed.
pub(crate) fn discard(dir: &Path, base: i64) {
    for ext in [LOG_EXT, INDEX_EXT, TIME_INDEX_EXT] {
        let _ = fs::remove_file(suffixed(dir, base, ext, CLEANED));
    }
}

/// Recovery: completes every committed swap (a `.log.swap` whose segment still exists) so
/// that the generic leftover sweep that follows only deletes uncommitted files. A `.log.swap`
/// of a segment that was deleted meanwhile (retention, truncation) is left to that sweep.
pub(crate) fn complete_swaps(dir: &Path) -> io::Result<()> {
    let mut completed = false;
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(&format!(".{LOG_EXT}{SWAP}"))) else {
            continue;
        };
        let Ok(base) = stem.parse::<i64>() else { continue };
        if stem.len() != 20 || !segment_path(dir, base, LOG_EXT).exists() {
            continue;
        }
        warn!(dir = %dir.display(), base, "completing an interrupted compaction swap");
        // Segments merged into it (based inside its offset range) go first.
        let end = swap_end(dir, base)?;
        for other in segment_bases(dir)? {
            if other > base && other < end {
                delete_segment_files(dir, other)?;
            }
        }
        for ext in [INDEX_EXT, TIME_INDEX_EXT] {
            let swap = suffixed(dir, base, ext, SWAP);
            if swap.exists() {
                fs::rename(swap, segment_path(dir, base, ext))?;
            }
        }
        fs::rename(suffixed(dir, base, LOG_EXT, SWAP), segment_path(dir, base, LOG_EXT))?;
        completed = true;
    }
    if completed {
        fsync_dir(dir)?;
    }
    Ok(())
}

/// The offset after the last batch of a `.log.swap` file.
fn swap_end(dir: &Path, base: i64) -> io::Result<i64> {
    let file = File::open(suffixed(dir, base, LOG_EXT, SWAP))?;
    let mut scan = Scanner::new(&file, 0, file.metadata()?.len(), 1 << 20);
    let mut end = base;
    while let Some((_, h)) = scan.next_batch(false).map_err(|e| match e {
        ScanError::Io(e) => e,
        ScanError::Invalid { reason, .. } => io::Error::other(format!("committed swap of {base}: {reason}")),
    })? {
        end = h.last_offset() + 1;
    }
    Ok(end)
}

/// Base offsets of the `.log` files in `dir`.
fn segment_bases(dir: &Path) -> io::Result<Vec<i64>> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(&format!(".{LOG_EXT}"))) else { continue };
        if let (20, Ok(b)) = (stem.len(), stem.parse::<i64>()) {
            bases.push(b);
        }
    }
    Ok(bases)
}

/// A file's modification time in ms since the epoch.
pub(crate) fn mtime_ms(path: &Path) -> io::Result<i64> {
    Ok(fs::metadata(path)?.modified()?.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64))
}

pub(crate) fn system_time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

#[cfg(test)]
mod tests;
