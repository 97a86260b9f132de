//! Opening a partition directory: leftover cleanup, clean-shutdown detection and crash
//! recovery.
//!
//! After a clean [`crate::PartitionLog::close`] a marker file says every index on disk matches
//! its log, so open only walks the tail of the active segment. Without the marker (kill -9,
//! power loss) the active segment is fully CRC-checked and truncated at the first torn or
//! corrupt batch, and every sealed segment gets a cheap structural check (its index tails and
//! its last interval of batches, CRC-checked, ending exactly where the next segment begins).
//! A sealed segment that fails becomes the new tail and everything after it is dropped, since
//! offsets must stay dense.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use tracing::{info, warn};

use crate::cleaner::complete_swaps;
use crate::index::{OffsetEntries, TimeEntries, OFFSET_ENTRY_LEN, TIME_ENTRY_LEN};
use crate::segment::{
    delete_segment_files, rebuild, segment_path, write_file, ActiveSegment, ScanError, Scanner, SealedSegment,
    INDEX_EXT, LOG_EXT, TIME_INDEX_EXT, UNKNOWN_TS,
};
use crate::{LogConfig, StorageError};

/// Written by a clean close, removed (durably) by open.
pub(crate) const CLEAN_MARKER: &str = ".clean-shutdown";
/// The persisted log start offset (DeleteRecords), a decimal number.
pub(crate) const LOG_START_CHECKPOINT: &str = "log-start-offset.checkpoint";
/// Suffixes of files left behind by interrupted deletes, compactions or checkpoint writes.
const LEFTOVER_SUFFIXES: [&str; 4] = [".deleted", ".cleaned", ".swap", ".tmp"];

/// What open found.
pub(crate) struct Recovered {
    pub sealed: BTreeMap<i64, SealedSegment>,
    pub active: ActiveSegment,
    pub checkpoint: Option<i64>,
}

/// Fsyncs a directory so that created, renamed and removed entries survive power loss.
pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Atomically replaces the log start checkpoint: write a temp file, fsync, rename, fsync dir.
pub(crate) fn write_checkpoint(dir: &Path, log_start: i64) -> io::Result<()> {
    write_durably(dir, LOG_START_CHECKPOINT, &format!("{log_start}\n"))
}

/// Atomically and durably replaces the small file `dir/name` with `contents`.
pub(crate) fn write_durably(dir: &Path, name: &str, contents: &str) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    fsync_dir(dir)
}

fn read_checkpoint(dir: &Path) -> io::Result<Option<i64>> {
    match fs::read_to_string(dir.join(LOG_START_CHECKPOINT)) {
        Ok(s) => match s.trim().parse() {
            Ok(v) => Ok(Some(v)),
            Err(_) => {
                warn!(dir = %dir.display(), "unreadable log start checkpoint; ignoring it");
                Ok(None)
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Parses `<20 digits>.<ext>` into the base offset and extension.
fn parse_segment_name(name: &str) -> Option<(i64, &str)> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, ext))
}

/// Opens (creating if absent) the partition directory and recovers it.
pub(crate) fn recover(dir: &Path, config: &LogConfig, now_ms: i64) -> Result<Recovered, StorageError> {
    fs::create_dir_all(dir)?;
    let (index_bytes, interval) = (config.segment_index_bytes, config.index_interval_bytes);
    let mut bases = Vec::new();
    let mut index_files = Vec::new();
    // A compaction swap that reached its commit point is finished; every other leftover of
    // one (`.cleaned`, uncommitted `.swap`) is deleted below, which rolls it back.
    complete_swaps(dir)?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if LEFTOVER_SUFFIXES.iter().any(|s| name.ends_with(s)) {
            warn!(dir = %dir.display(), file = name, "removing leftover file");
            fs::remove_file(entry.path())?;
            continue;
        }
        match parse_segment_name(name) {
            Some((base, LOG_EXT)) => bases.push(base),
            Some((base, INDEX_EXT | TIME_INDEX_EXT)) => index_files.push((base, entry.path())),
            _ => {}
        }
    }
    bases.sort_unstable();
    let known: HashSet<i64> = bases.iter().copied().collect();
    for (base, path) in index_files {
        if !known.contains(&base) {
            warn!(path = %path.display(), "removing index file without a log file");
            fs::remove_file(path)?;
        }
    }

    let marker = dir.join(CLEAN_MARKER);
    let clean = marker.exists();
    if clean {
        // Durably forget the marker before anything is written, so a crash from here on is
        // seen as unclean.
        fs::remove_file(&marker)?;
        fsync_dir(dir)?;
    }
    let checkpoint = read_checkpoint(dir)?;

    let Some(&last) = bases.last() else {
        let active = ActiveSegment::create(dir, checkpoint.unwrap_or(0).max(0), index_bytes, interval)?;
        fsync_dir(dir)?;
        return Ok(Recovered { sealed: BTreeMap::new(), active, checkpoint });
    };

    let mut sealed = BTreeMap::new();
    let mut tail = last;
    if clean {
        for &base in &bases[..bases.len() - 1] {
            let size = fs::metadata(segment_path(dir, base, LOG_EXT))?.len();
            sealed.insert(base, SealedSegment::new(base, size, UNKNOWN_TS));
        }
    } else {
        info!(dir = %dir.display(), segments = bases.len(), "no clean shutdown marker; recovering");
        for (i, pair) in bases.windows(2).enumerate() {
            let (base, next_base) = (pair[0], pair[1]);
            if check_sealed(dir, base, next_base, interval)? {
                let size = fs::metadata(segment_path(dir, base, LOG_EXT))?.len();
                sealed.insert(base, SealedSegment::new(base, size, UNKNOWN_TS));
            } else {
                warn!(dir = %dir.display(), base, dropped_segments = bases.len() - i - 1, "sealed segment is damaged; it becomes the tail");
                for &later in &bases[i + 1..] {
                    delete_segment_files(dir, later)?;
                }
                tail = base;
                break;
            }
        }
    }
    let active = ActiveSegment::open(dir, tail, index_bytes, interval, !clean, now_ms)?;
    if !clean {
        // What survived recovery may have come from the page cache only: make it durable
        // before reporting it as flushed.
        active.log.sync_all()?;
        fsync_dir(dir)?;
    }
    Ok(Recovered { sealed, active, checkpoint })
}

/// Structural check of a sealed segment after an unclean shutdown. Returns false if its data
/// is damaged (torn, corrupt, or not ending where `next_base` begins). Damaged indexes over
/// intact data are rebuilt here.
fn check_sealed(dir: &Path, base: i64, next_base: i64, interval: u32) -> Result<bool, StorageError> {
    let file = File::open(segment_path(dir, base, LOG_EXT))?;
    let size = file.metadata()?.len();
    if size == 0 {
        return Ok(false);
    }
    let span = (next_base - base) as u64;
    if let Some(start) = quick_index_tail(dir, base, size, span)? {
        if tail_is_intact(&file, base, start, size, next_base)? {
            return Ok(true);
        }
    }
    // Indexes or tail look wrong: verify the whole segment and rebuild its indexes.
    let mut r = rebuild(&file, base, size, interval, true)?;
    if r.invalid.is_some() || r.tracker.next_offset != next_base {
        return Ok(false);
    }
    warn!(dir = %dir.display(), base, "rebuilt indexes of a sealed segment");
    r.times.extend(r.tracker.sealing_time_entry().iter().flatten());
    write_file(&segment_path(dir, base, INDEX_EXT), &r.offsets)?;
    write_file(&segment_path(dir, base, TIME_INDEX_EXT), &r.times)?;
    Ok(true)
}

/// Reads only the last entry of each index. Returns the position to verify the log from (the
/// last offset index entry) when both look like trimmed, sealed indexes.
fn quick_index_tail(dir: &Path, base: i64, size: u64, span: u64) -> io::Result<Option<u64>> {
    let last_entry = |ext: &str, len: usize| -> io::Result<Option<Option<Vec<u8>>>> {
        let f = match File::open(segment_path(dir, base, ext)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let flen = f.metadata()?.len();
        if flen % len as u64 != 0 {
            return Ok(None);
        }
        if flen == 0 {
            return Ok(Some(None));
        }
        let mut b = vec![0; len];
        f.read_exact_at(&mut b, flen - len as u64)?;
        Ok(Some(Some(b)))
    };
    let Some(off) = last_entry(INDEX_EXT, OFFSET_ENTRY_LEN)? else {
        return Ok(None);
    };
    let Some(Some(time)) = last_entry(TIME_INDEX_EXT, TIME_ENTRY_LEN)? else {
        return Ok(None);
    };
    if TimeEntries(&time).get(0).1 as u64 != span {
        return Ok(None);
    }
    match off {
        None => Ok(Some(0)),
        Some(e) => {
            let (rel, pos) = OffsetEntries(&e).get(0);
            let ok = rel > 0 && (rel as u64) < span && (pos as u64) < size;
            Ok(ok.then_some(pos as u64))
        }
    }
}

/// CRC-checks the batches from `start` to the end of the file and checks that they are dense
/// and end exactly at `next_base`.
fn tail_is_intact(file: &File, base: i64, start: u64, size: u64, next_base: i64) -> io::Result<bool> {
    let mut scan = Scanner::new(file, start, size, 1 << 20);
    let mut expected: Option<i64> = (start == 0).then_some(base);
    let mut last = None;
    loop {
        match scan.next_batch(true) {
            Ok(None) => break,
            Ok(Some((_, h))) => {
                if expected.is_some_and(|e| e != h.base_offset) || h.base_offset < base {
                    return Ok(false);
                }
                expected = Some(h.last_offset() + 1);
                last = Some(h.last_offset());
            }
            Err(ScanError::Invalid { .. }) => return Ok(false),
            Err(ScanError::Io(e)) => return Err(e),
        }
    }
    Ok(last.is_some_and(|l| l + 1 == next_base))
}
