//! One segment: a `.log` file of whole v2 batches plus its two sparse indexes.
//!
//! The active (newest) segment keeps its log file open and its indexes mapped; sealed segments
//! are described by a few bytes of metadata and opened on demand through [`SealedReader`].

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use memmap2::Mmap;
use rill_protocol::batch::{validate_stored, BatchHeader, BATCH_HEADER_LEN};
use tracing::warn;

use crate::index::{
    map_read_only, offset_entry, time_entry, validate_offsets, validate_times, MutIndex, OffsetEntries, TimeEntries,
    OFFSET_ENTRY_LEN, TIME_ENTRY_LEN,
};
use crate::StorageError;

/// Extension of segment data files.
pub(crate) const LOG_EXT: &str = "log";
/// Extension of offset index files.
pub(crate) const INDEX_EXT: &str = "index";
/// Extension of time index files.
pub(crate) const TIME_INDEX_EXT: &str = "timeindex";
/// Kafka's "no timestamp".
pub(crate) const NO_TIMESTAMP: i64 = -1;

/// `dir/<20-digit base offset>.<ext>`, the Kafka naming.
pub(crate) fn segment_path(dir: &Path, base: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base:020}.{ext}"))
}

/// Removes the three files of a segment; a missing file is not an error.
pub(crate) fn delete_segment_files(dir: &Path, base: i64) -> io::Result<()> {
    for ext in [LOG_EXT, INDEX_EXT, TIME_INDEX_EXT] {
        match fs::remove_file(segment_path(dir, base, ext)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Why a scan stopped before the end of its range.
pub(crate) enum ScanError {
    Io(io::Error),
    /// Torn or corrupt data starting at `pos`.
    Invalid {
        pos: u64,
        reason: String,
    },
}

impl From<io::Error> for ScanError {
    fn from(e: io::Error) -> Self {
        ScanError::Io(e)
    }
}

impl From<ScanError> for StorageError {
    fn from(e: ScanError) -> Self {
        match e {
            ScanError::Io(e) => StorageError::Io(e),
            ScanError::Invalid { pos, reason } => StorageError::Corrupt(format!("at position {pos}: {reason}")),
        }
    }
}

/// Walks batch headers of a log file between two positions with few, chunked preads. Only
/// headers are read unless a scan verifies CRCs (recovery).
pub(crate) struct Scanner<'f> {
    file: &'f File,
    pos: u64,
    end: u64,
    chunk: usize,
    buf: Vec<u8>,
    buf_pos: u64,
}

impl<'f> Scanner<'f> {
    pub fn new(file: &'f File, start: u64, end: u64, chunk: usize) -> Self {
        Scanner { file, pos: start, end, chunk, buf: Vec::new(), buf_pos: 0 }
    }

    fn fill(&mut self, pos: u64, n: usize) -> io::Result<&[u8]> {
        let have = self.buf_pos <= pos && pos + n as u64 <= self.buf_pos + self.buf.len() as u64;
        if !have {
            let len = (n.max(self.chunk) as u64).min(self.end - pos) as usize;
            self.buf.resize(len, 0);
            self.file.read_exact_at(&mut self.buf, pos)?;
            self.buf_pos = pos;
        }
        let at = (pos - self.buf_pos) as usize;
        Ok(&self.buf[at..at + n])
    }

    /// The next batch as `(position, header)`; `Ok(None)` exactly at the end. With `verify`,
    /// the whole batch is validated (length, CRC32C, record count) as well.
    pub fn next_batch(&mut self, verify: bool) -> Result<Option<(u64, BatchHeader)>, ScanError> {
        let pos = self.pos;
        if pos >= self.end {
            return Ok(None);
        }
        let invalid = |reason: String| ScanError::Invalid { pos, reason };
        if self.end - pos < BATCH_HEADER_LEN as u64 {
            return Err(invalid(format!("{} trailing bytes, less than a batch header", self.end - pos)));
        }
        let header = BatchHeader::parse(self.fill(pos, BATCH_HEADER_LEN)?).map_err(|e| invalid(e.to_string()))?;
        let len = header.total_len() as u64;
        if pos + len > self.end {
            return Err(invalid(format!("batch of {len} bytes runs past the end at {}", self.end)));
        }
        if header.last_offset_delta < 0 {
            return Err(invalid(format!("negative lastOffsetDelta {}", header.last_offset_delta)));
        }
        if verify {
            let batch = self.fill(pos, len as usize)?;
            // Compaction leaves batches with fewer records than offsets: the stored rules.
            validate_stored(batch).map_err(|e| invalid(e.to_string()))?;
        }
        self.pos = pos + len;
        Ok(Some((pos, header)))
    }
}

impl Scanner<'_> {
    /// The next batch with its bytes (CRC-checked as a stored batch), for the log cleaner.
    pub fn next_whole_batch(&mut self) -> Result<Option<(BatchHeader, &[u8])>, ScanError> {
        let Some((pos, h)) = self.next_batch(false)? else { return Ok(None) };
        let batch = self.fill(pos, h.total_len())?;
        validate_stored(batch).map_err(|e| ScanError::Invalid { pos, reason: e.to_string() })?;
        Ok(Some((h, batch)))
    }
}

/// Running state of index building: decides where entries go, for both live appends and
/// rebuilds, so the two can never disagree.
#[derive(Debug, Clone)]
pub(crate) struct Tracker {
    pub base: i64,
    /// Bytes of log appended since the last offset index entry.
    pub bytes_since_index: u64,
    /// Largest batch max timestamp in the segment so far.
    pub max_ts: i64,
    /// Offset the next batch gets.
    pub next_offset: i64,
    /// Log file size.
    pub size: u64,
    /// Relative offset of the last time index entry (0 = none).
    pub last_time_rel: u32,
}

/// Index entries produced by one tracked batch.
#[derive(Default)]
pub(crate) struct NewEntries {
    pub offset: Option<[u8; OFFSET_ENTRY_LEN]>,
    pub time: Option<[u8; TIME_ENTRY_LEN]>,
}

impl Tracker {
    pub fn new(base: i64) -> Self {
        Tracker { base, bytes_since_index: 0, max_ts: NO_TIMESTAMP, next_offset: base, size: 0, last_time_rel: 0 }
    }

    /// Accounts for a batch written at `pos` and returns the index entries it earns: one every
    /// `interval` bytes, never at position 0, and the time entry records the max timestamp of
    /// everything before the batch.
    pub fn track(&mut self, pos: u64, h: &BatchHeader, interval: u32) -> NewEntries {
        let mut out = NewEntries::default();
        let rel = h.base_offset - self.base;
        if pos > 0 && self.bytes_since_index > interval as u64 && pos <= u32::MAX as u64 && rel <= u32::MAX as i64 {
            let rel = rel as u32;
            out.offset = Some(offset_entry(rel, pos as u32));
            if rel > self.last_time_rel {
                out.time = Some(time_entry(self.max_ts, rel));
                self.last_time_rel = rel;
            }
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += h.total_len() as u64;
        self.max_ts = self.max_ts.max(h.max_timestamp);
        self.next_offset = h.last_offset() + 1;
        self.size = pos + h.total_len() as u64;
        out
    }

    /// The entry that seals a segment's time index: its max timestamp and end offset.
    pub fn sealing_time_entry(&mut self) -> Option<[u8; TIME_ENTRY_LEN]> {
        let rel = self.next_offset - self.base;
        if rel > self.last_time_rel as i64 && rel <= u32::MAX as i64 {
            self.last_time_rel = rel as u32;
            Some(time_entry(self.max_ts, rel as u32))
        } else {
            None
        }
    }
}

/// Result of scanning a whole segment: what survives and its rebuilt indexes.
pub(crate) struct Rebuilt {
    pub tracker: Tracker,
    pub offsets: Vec<u8>,
    pub times: Vec<u8>,
    /// Max timestamp of the first batch, for `segment.ms`.
    pub first_ts: Option<i64>,
    /// Set when the scan stopped early at torn or corrupt data.
    pub invalid: Option<(u64, String)>,
}

/// Scans a segment from the start, requiring dense offsets from `base`, and builds its indexes.
/// With `verify` every batch's CRC is checked (recovery); the scan stops at the first bad batch.
pub(crate) fn rebuild(file: &File, base: i64, size: u64, interval: u32, verify: bool) -> io::Result<Rebuilt> {
    let mut r =
        Rebuilt { tracker: Tracker::new(base), offsets: Vec::new(), times: Vec::new(), first_ts: None, invalid: None };
    let mut scan = Scanner::new(file, 0, size, 1 << 20);
    loop {
        match scan.next_batch(verify) {
            Ok(None) => break,
            Ok(Some((pos, h))) => {
                if h.base_offset != r.tracker.next_offset {
                    let reason =
                        format!("batch base offset {} where {} was expected", h.base_offset, r.tracker.next_offset);
                    r.invalid = Some((pos, reason));
                    break;
                }
                r.first_ts.get_or_insert(h.max_timestamp);
                let e = r.tracker.track(pos, &h, interval);
                r.offsets.extend(e.offset.iter().flatten());
                r.times.extend(e.time.iter().flatten());
            }
            Err(ScanError::Io(e)) => return Err(e),
            Err(ScanError::Invalid { pos, reason }) => {
                r.invalid = Some((pos, reason));
                break;
            }
        }
    }
    Ok(r)
}

/// A borrowed, read-only view of any segment, active or sealed: the read algorithms.
pub(crate) struct SegmentRef<'a> {
    pub base: i64,
    pub file: &'a File,
    pub size: u64,
    pub offsets: OffsetEntries<'a>,
    pub times: TimeEntries<'a>,
    /// Scan chunk for header walks: about one index interval.
    pub chunk: usize,
}

impl SegmentRef<'_> {
    fn rel(&self, offset: i64) -> u64 {
        (offset - self.base).max(0) as u64
    }

    /// Position and header of the batch containing `offset`, if this segment has it. Starts at
    /// the index floor and walks headers; a floor that does not point at a plausible batch
    /// (damaged index) falls back to a scan from the segment start.
    pub fn find_batch(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>, StorageError> {
        let floor = self.offsets.floor_offset(self.rel(offset)).map_or(0, |(_, p)| p as u64);
        match self.find_from(floor, offset) {
            Ok(found) => Ok(found),
            Err(ScanError::Invalid { .. }) if floor > 0 => {
                warn!(base = self.base, "offset index points at no batch; scanning the segment");
                Ok(self.find_from(0, offset)?)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn find_from(&self, from: u64, offset: i64) -> Result<Option<(u64, BatchHeader)>, ScanError> {
        let mut scan = Scanner::new(self.file, from, self.size, self.chunk);
        let mut first = true;
        while let Some((pos, h)) = scan.next_batch(false)? {
            if first && h.base_offset > offset && from > 0 {
                return Err(ScanError::Invalid { pos, reason: "index floor past target".into() });
            }
            first = false;
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
        }
        Ok(None)
    }

    /// Whole batches from the one containing `offset`: at most `max_bytes` unless the first
    /// batch alone is larger (KIP-74), and only batches whose last offset is below `max_offset`.
    pub fn read(&self, offset: i64, max_bytes: usize, max_offset: i64) -> Result<Bytes, StorageError> {
        let Some((start, first)) = self.find_batch(offset)? else {
            return Err(StorageError::Corrupt(format!("offset {offset} missing from segment {}", self.base)));
        };
        if first.last_offset() >= max_offset {
            return Ok(Bytes::new());
        }
        let byte_limit = (start + (max_bytes as u64).max(first.total_len() as u64)).min(self.size);
        // Every batch before both index floors below is known to fit both limits, so only the
        // stretch after the nearer floor needs a header walk.
        let mut from = self.offsets.floor_position(byte_limit).map_or(0, |(_, p)| p as u64).max(start);
        if max_offset < i64::MAX {
            let by_offset = self.offsets.floor_offset(self.rel(max_offset)).map_or(0, |(_, p)| p as u64);
            from = from.min(by_offset.max(start));
        }
        let mut end = from;
        let mut scan = Scanner::new(self.file, from, self.size, self.chunk);
        while let Some((pos, h)) = scan.next_batch(false)? {
            if pos + h.total_len() as u64 > byte_limit || h.last_offset() >= max_offset {
                break;
            }
            end = pos + h.total_len() as u64;
        }
        Ok(read_uninit(self.file, start, (end - start) as usize)?.freeze())
    }

    /// The first batch with last offset >= `min_offset` whose max timestamp is >= `ts`, as
    /// `(header)`; the time index gives a starting point, then headers are walked.
    pub fn find_timestamp(&self, ts: i64, min_offset: i64) -> Result<Option<BatchHeader>, StorageError> {
        let from_rel = self.times.last_below(ts).map_or(0, |(_, r)| r as u64).max(self.rel(min_offset));
        let from = self.offsets.floor_offset(from_rel).map_or(0, |(_, p)| p as u64);
        let mut scan = Scanner::new(self.file, from, self.size, self.chunk);
        while let Some((_, h)) = scan.next_batch(false)? {
            if h.last_offset() >= min_offset && h.max_timestamp >= ts {
                return Ok(Some(h));
            }
        }
        Ok(None)
    }
}

/// Metadata of a sealed segment; its files are opened only when read.
#[derive(Debug)]
pub(crate) struct SealedSegment {
    pub base: i64,
    pub size: u64,
    /// Largest timestamp, loaded lazily ([`UNKNOWN_TS`] until then).
    pub max_ts: AtomicI64,
}

/// Marker for a sealed segment's max timestamp not loaded yet.
pub(crate) const UNKNOWN_TS: i64 = i64::MIN;

impl SealedSegment {
    pub fn new(base: i64, size: u64, max_ts: i64) -> Self {
        SealedSegment { base, size, max_ts: AtomicI64::new(max_ts) }
    }

    /// The segment's largest timestamp: cached, else the sealing entry of its time index read
    /// with one pread (no mapping), else from a full [`SealedReader`].
    pub fn max_timestamp(&self, dir: &Path, next_base: i64, interval: u32) -> Result<i64, StorageError> {
        let cached = self.max_ts.load(Ordering::Relaxed);
        if cached != UNKNOWN_TS {
            return Ok(cached);
        }
        let ts = match read_sealing_entry(dir, self.base, next_base)? {
            Some(ts) => ts,
            None => SealedReader::open(dir, self, next_base, interval)?.max_ts,
        };
        self.max_ts.store(ts, Ordering::Relaxed);
        Ok(ts)
    }
}

/// The last time index entry of a sealed segment if it is the sealing entry.
fn read_sealing_entry(dir: &Path, base: i64, next_base: i64) -> io::Result<Option<i64>> {
    let file = match File::open(segment_path(dir, base, TIME_INDEX_EXT)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len == 0 || len % TIME_ENTRY_LEN as u64 != 0 {
        return Ok(None);
    }
    let mut e = [0u8; TIME_ENTRY_LEN];
    file.read_exact_at(&mut e, len - TIME_ENTRY_LEN as u64)?;
    let (ts, rel) = TimeEntries(&e).get(0);
    Ok((rel as i64 == next_base - base).then_some(ts))
}

/// An opened sealed segment: log file plus read-only index maps. Held briefly by readers and
/// cached one at a time per log so a catching-up consumer does not remap on every fetch.
pub(crate) struct SealedReader {
    pub base: i64,
    file: File,
    size: u64,
    offsets: Option<Mmap>,
    offsets_len: usize,
    times: Option<Mmap>,
    times_len: usize,
    pub max_ts: i64,
    chunk: usize,
}

impl SealedReader {
    /// Opens a sealed segment, validating its indexes and rebuilding them from the log if they
    /// are damaged (a crash while sealing, or disk garbage).
    pub fn open(dir: &Path, seg: &SealedSegment, next_base: i64, interval: u32) -> Result<Self, StorageError> {
        let file = File::open(segment_path(dir, seg.base, LOG_EXT))?;
        let size = file.metadata()?.len();
        let span = (next_base - seg.base) as u64;
        let (index_path, time_path) =
            (segment_path(dir, seg.base, INDEX_EXT), segment_path(dir, seg.base, TIME_INDEX_EXT));
        let mut offsets = map_read_only(&index_path)?;
        let mut times = map_read_only(&time_path)?;
        let mut offsets_len = validate_offsets(map_bytes(&offsets), size, Some(span));
        let mut times_len = validate_times(map_bytes(&times), Some(span));
        let sealed_ok = times_len.is_some_and(|n| n > 0 && TimeEntries(map_bytes(&times)).get(n - 1).1 as u64 == span);
        if offsets_len.is_none() || !sealed_ok {
            warn!(dir = %dir.display(), base = seg.base, "damaged index files of a sealed segment; rebuilding");
            // Unmap before rewriting the files.
            drop((offsets.take(), times.take()));
            let mut r = rebuild(&file, seg.base, size, interval, false)?;
            if let Some((pos, reason)) = r.invalid {
                return Err(StorageError::Corrupt(format!("sealed segment {} at {pos}: {reason}", seg.base)));
            }
            r.times.extend(r.tracker.sealing_time_entry().iter().flatten());
            write_file(&index_path, &r.offsets)?;
            write_file(&time_path, &r.times)?;
            offsets = map_read_only(&index_path)?;
            times = map_read_only(&time_path)?;
            offsets_len = Some(r.offsets.len() / OFFSET_ENTRY_LEN);
            times_len = Some(r.times.len() / TIME_ENTRY_LEN);
        }
        let times_n = times_len.unwrap_or(0);
        let max_ts = if times_n > 0 { TimeEntries(map_bytes(&times)).get(times_n - 1).0 } else { NO_TIMESTAMP };
        Ok(SealedReader {
            base: seg.base,
            file,
            size,
            offsets,
            offsets_len: offsets_len.unwrap_or(0) * OFFSET_ENTRY_LEN,
            times,
            times_len: times_n * TIME_ENTRY_LEN,
            max_ts,
            chunk: chunk_for(interval),
        })
    }

    pub fn view(&self) -> SegmentRef<'_> {
        SegmentRef {
            base: self.base,
            file: &self.file,
            size: self.size,
            offsets: OffsetEntries(&map_bytes(&self.offsets)[..self.offsets_len]),
            times: TimeEntries(&map_bytes(&self.times)[..self.times_len]),
            chunk: self.chunk,
        }
    }
}

fn map_bytes(m: &Option<Mmap>) -> &[u8] {
    m.as_deref().unwrap_or(&[])
}

/// Header walks read about one index interval at a time.
pub(crate) fn chunk_for(interval: u32) -> usize {
    (interval as usize).clamp(4096, 64 << 10)
}

/// Replaces `path` with `data` via a temp file and rename, so that a map of the old file held
/// elsewhere keeps its (old, intact) inode instead of seeing the file shrink under it.
pub(crate) fn write_file(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
    f.write_all_at(data, 0)?;
    fs::rename(&tmp, path)
}

/// Files of a freshly sealed segment that still need an fsync.
pub(crate) type UnsyncedFiles = Vec<Arc<File>>;

/// The segment being appended to: log file open, indexes mapped.
pub(crate) struct ActiveSegment {
    pub log: Arc<File>,
    pub offset_index: MutIndex,
    pub time_index: MutIndex,
    pub tracker: Tracker,
    /// Basis for `segment.ms`: wall clock of the first append (or first batch timestamp after
    /// a restart); `None` while empty.
    pub roll_basis_ms: Option<i64>,
    pub chunk: usize,
}

impl ActiveSegment {
    pub fn base(&self) -> i64 {
        self.tracker.base
    }
    pub fn size(&self) -> u64 {
        self.tracker.size
    }
    pub fn next_offset(&self) -> i64 {
        self.tracker.next_offset
    }

    pub fn view(&self) -> SegmentRef<'_> {
        SegmentRef {
            base: self.base(),
            file: &self.log,
            size: self.size(),
            offsets: OffsetEntries(self.offset_index.bytes()),
            times: TimeEntries(self.time_index.bytes()),
            chunk: self.chunk,
        }
    }

    /// Creates a new, empty segment at `base` (files truncated if they exist).
    pub fn create(dir: &Path, base: i64, index_bytes: u32, interval: u32) -> io::Result<Self> {
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(segment_path(dir, base, LOG_EXT))?;
        Ok(ActiveSegment {
            log: Arc::new(log),
            offset_index: MutIndex::create(&segment_path(dir, base, INDEX_EXT), OFFSET_ENTRY_LEN, index_bytes)?,
            time_index: MutIndex::create(&segment_path(dir, base, TIME_INDEX_EXT), TIME_ENTRY_LEN, index_bytes)?,
            tracker: Tracker::new(base),
            roll_basis_ms: None,
            chunk: chunk_for(interval),
        })
    }

    /// Opens an existing segment as the active one. With `recover` (unclean shutdown) every
    /// batch is CRC-checked and the file is truncated at the first torn or corrupt one; without,
    /// the indexes are trusted if they validate and only the tail after them is walked.
    pub fn open(
        dir: &Path,
        base: i64,
        index_bytes: u32,
        interval: u32,
        recover: bool,
        now_ms: i64,
    ) -> Result<Self, StorageError> {
        let log = OpenOptions::new().read(true).write(true).open(segment_path(dir, base, LOG_EXT))?;
        let size = log.metadata()?.len();
        let mut seg = ActiveSegment {
            log: Arc::new(log),
            offset_index: MutIndex::open(&segment_path(dir, base, INDEX_EXT), OFFSET_ENTRY_LEN, index_bytes)?,
            time_index: MutIndex::open(&segment_path(dir, base, TIME_INDEX_EXT), TIME_ENTRY_LEN, index_bytes)?,
            tracker: Tracker::new(base),
            roll_basis_ms: None,
            chunk: chunk_for(interval),
        };
        if !recover {
            if seg.load_trusted(size, now_ms)? {
                return Ok(seg);
            }
            warn!(dir = %dir.display(), base, "active segment indexes do not match its log; recovering");
        }
        let r = rebuild(&seg.log, base, size, interval, true)?;
        if let Some((pos, reason)) = &r.invalid {
            warn!(dir = %dir.display(), base, pos, reason = %reason, dropped = size - pos, "truncating torn or corrupt log tail");
            seg.log.set_len(*pos)?;
        }
        // Old entries are not trusted: wipe the whole preallocated map, then refill it.
        seg.offset_index.clear(&segment_path(dir, base, INDEX_EXT))?;
        seg.time_index.clear(&segment_path(dir, base, TIME_INDEX_EXT))?;
        for e in r.offsets.chunks(OFFSET_ENTRY_LEN) {
            if seg.offset_index.free() > 0 {
                seg.offset_index.push(e);
            }
        }
        for e in r.times.chunks(TIME_ENTRY_LEN) {
            if seg.time_index.free() > 1 {
                seg.time_index.push(e);
            }
        }
        seg.tracker = r.tracker;
        seg.roll_basis_ms = r.first_ts.map(|ts| basis(ts, now_ms));
        Ok(seg)
    }

    /// Trusts validated indexes and walks only the log tail after the last entries. Returns
    /// false when anything does not line up (the caller then recovers the segment).
    fn load_trusted(&mut self, size: u64, now_ms: i64) -> Result<bool, StorageError> {
        let Some(n_off) = validate_offsets(self.offset_index.existing_bytes(), size, None) else {
            return Ok(false);
        };
        let Some(n_time) = validate_times(self.time_index.existing_bytes(), None) else {
            return Ok(false);
        };
        self.offset_index.adopt(n_off);
        self.time_index.adopt(n_time);
        let base = self.base();
        let (ts, time_rel) = TimeEntries(self.time_index.bytes()).last().unwrap_or((NO_TIMESTAMP, 0));
        let offsets = OffsetEntries(self.offset_index.bytes());
        let from = offsets.floor_offset(time_rel as u64).map_or(0, |(_, p)| p as u64);
        let last_entry_pos = offsets.last().map_or(0, |(_, p)| p as u64);
        let mut t =
            Tracker { base, bytes_since_index: 0, max_ts: ts, next_offset: base, size: from, last_time_rel: time_rel };
        let mut scan = Scanner::new(&self.log, from, size, 1 << 20);
        loop {
            match scan.next_batch(false) {
                Ok(None) => break,
                Ok(Some((pos, h))) => {
                    if (from == 0 && pos == 0 && h.base_offset != base) || h.base_offset < t.next_offset {
                        return Ok(false);
                    }
                    if h.base_offset - base >= time_rel as i64 {
                        t.max_ts = t.max_ts.max(h.max_timestamp);
                    }
                    t.next_offset = h.last_offset() + 1;
                    t.size = pos + h.total_len() as u64;
                }
                Err(ScanError::Invalid { .. }) => return Ok(false),
                Err(ScanError::Io(e)) => return Err(e.into()),
            }
        }
        if t.next_offset - base < time_rel as i64 {
            return Ok(false);
        }
        t.bytes_since_index = size - last_entry_pos;
        self.tracker = t;
        if size > 0 {
            let mut first = Scanner::new(&self.log, 0, size, BATCH_HEADER_LEN);
            if let Ok(Some((_, h))) = first.next_batch(false) {
                self.roll_basis_ms = Some(basis(h.max_timestamp, now_ms));
            }
        }
        Ok(true)
    }

    /// Records index entries for a batch just written at `pos`.
    pub fn track(&mut self, pos: u64, h: &BatchHeader, interval: u32) {
        let e = self.tracker.track(pos, h, interval);
        if let Some(o) = e.offset {
            if self.offset_index.free() > 0 {
                self.offset_index.push(&o);
            }
        }
        if let Some(t) = e.time {
            // One slot stays free for the sealing entry.
            if self.time_index.free() > 1 {
                self.time_index.push(&t);
            }
        }
    }

    /// True if `batches` more batches might not find index slots.
    pub fn index_full_for(&self, batches: usize) -> bool {
        self.offset_index.free() < batches || self.time_index.free() < batches + 1
    }

    /// Cuts the segment back so that it ends before the batch containing `offset`. Returns the
    /// new next offset (the base of that batch). The caller fsyncs.
    pub fn truncate_to(&mut self, offset: i64) -> Result<i64, StorageError> {
        let Some((pos, h)) = self.view().find_batch(offset)? else {
            return Ok(self.next_offset());
        };
        let base = self.base();
        let rel = (h.base_offset - base) as u64;
        self.log.set_len(pos)?;
        let offsets = OffsetEntries(self.offset_index.bytes());
        let keep_off = (0..offsets.len()).take_while(|&i| (offsets.get(i).0 as u64) < rel).count();
        self.offset_index.truncate(keep_off);
        let times = TimeEntries(self.time_index.bytes());
        let keep_time = (0..times.len()).take_while(|&i| (times.get(i).1 as u64) <= rel).count();
        self.time_index.truncate(keep_time);
        // Recompute the tracker from the last surviving entries plus a short header walk.
        let (ts, time_rel) = TimeEntries(self.time_index.bytes()).last().unwrap_or((NO_TIMESTAMP, 0));
        let last_entry_pos = OffsetEntries(self.offset_index.bytes()).last().map_or(0, |(_, p)| p as u64);
        let from = OffsetEntries(self.offset_index.bytes()).floor_offset(time_rel as u64).map_or(0, |(_, p)| p as u64);
        let mut max_ts = ts;
        let mut scan = Scanner::new(&self.log, from, pos, self.chunk);
        while let Some((_, b)) = scan.next_batch(false)? {
            if b.base_offset - base >= time_rel as i64 {
                max_ts = max_ts.max(b.max_timestamp);
            }
        }
        self.tracker = Tracker {
            base,
            bytes_since_index: pos - last_entry_pos.min(pos),
            max_ts,
            next_offset: h.base_offset,
            size: pos,
            last_time_rel: time_rel,
        };
        if pos == 0 {
            self.roll_basis_ms = None;
        }
        Ok(h.base_offset)
    }

    /// Seals the segment: adds the sealing time entry, trims both index files and unmaps
    /// them. Returns the metadata and the files that still need an fsync.
    pub fn seal(mut self, dir: &Path) -> (SealedSegment, UnsyncedFiles) {
        let base = self.base();
        if let Some(e) = self.tracker.sealing_time_entry() {
            if self.time_index.free() > 0 {
                self.time_index.push(&e);
            }
        }
        let mut files = vec![self.log.clone()];
        for (index, ext) in [(self.offset_index, INDEX_EXT), (self.time_index, TIME_INDEX_EXT)] {
            // A failed trim only leaves a zero tail, which validation accepts.
            match index.seal(&segment_path(dir, base, ext)) {
                Ok(f) => files.push(Arc::new(f)),
                Err(e) => {
                    warn!(dir = %dir.display(), base, error = %e, "could not trim index file")
                }
            }
        }
        (SealedSegment::new(base, self.tracker.size, self.tracker.max_ts), files)
    }
}

/// Roll basis from a first batch timestamp: never in the future, and "now" if absent.
fn basis(first_ts: i64, now_ms: i64) -> i64 {
    if first_ts < 0 {
        now_ms
    } else {
        first_ts.min(now_ms)
    }
}

/// Reads `len` bytes at `pos` into a fresh buffer without zero-filling it first: on the fetch
/// path the memset cost as much as the copy out of the page cache.
fn read_uninit(file: &File, pos: u64, len: usize) -> io::Result<BytesMut> {
    use std::os::fd::AsRawFd;
    let mut buf = BytesMut::with_capacity(len);
    let mut done = 0;
    while done < len {
        // SAFETY: the destination lies within the buffer's capacity (done < len <= capacity);
        // pread writes at most `len - done` bytes there and the length is only raised over
        // bytes pread reported as written.
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                buf.as_mut_ptr().add(done).cast(),
                len - done,
                (pos + done as u64) as libc::off_t,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "segment shorter than its index says"));
        }
        done += n as usize;
        // SAFETY: the first `done` bytes were written by pread.
        unsafe { buf.set_len(done) };
    }
    Ok(buf)
}
