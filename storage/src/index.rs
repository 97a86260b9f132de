//! Sparse offset and time indexes (Kafka `.index` / `.timeindex` layout, big endian).
//!
//! * Offset index entry (8 bytes): `(relative offset u32, file position u32)` of a batch start.
//! * Time index entry (12 bytes): `(timestamp i64, relative offset u32)`, meaning "every batch
//!   *before* this relative offset has a max timestamp <= timestamp" (and it is the exact max).
//!   When a segment is sealed a final entry `(segment max timestamp, end relative offset)` is
//!   added, so the last entry of a sealed time index is the segment's largest timestamp.
//!
//! Entries are never written for file position 0 (the segment start is the implicit floor),
//! so every real entry has a relative offset > 0. That is what lets us find the true end of a
//! preallocated, zero-filled file after a crash: the first all-zero entry ends it, and anything
//! non-zero after that marks the file as garbage (it is then rebuilt from the log).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use memmap2::{Mmap, MmapMut};

/// Bytes per offset index entry.
pub(crate) const OFFSET_ENTRY_LEN: usize = 8;
/// Bytes per time index entry.
pub(crate) const TIME_ENTRY_LEN: usize = 12;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Smallest `i` in `0..n` for which `pred(i)` is false, given `pred` is true on a prefix.
fn partition_point(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Read-only view of valid offset index entries.
#[derive(Clone, Copy)]
pub(crate) struct OffsetEntries<'a>(pub &'a [u8]);

impl<'a> OffsetEntries<'a> {
    pub fn len(&self) -> usize {
        self.0.len() / OFFSET_ENTRY_LEN
    }
    /// `(relative offset, position)` of entry `i`.
    pub fn get(&self, i: usize) -> (u32, u32) {
        let at = i * OFFSET_ENTRY_LEN;
        (u32_at(self.0, at), u32_at(self.0, at + 4))
    }
    pub fn last(&self) -> Option<(u32, u32)> {
        self.len().checked_sub(1).map(|i| self.get(i))
    }
    /// The last entry whose relative offset is <= `rel`.
    pub fn floor_offset(&self, rel: u64) -> Option<(u32, u32)> {
        let i = partition_point(self.len(), |i| self.get(i).0 as u64 <= rel);
        i.checked_sub(1).map(|i| self.get(i))
    }
    /// The last entry whose position is <= `pos`.
    pub fn floor_position(&self, pos: u64) -> Option<(u32, u32)> {
        let i = partition_point(self.len(), |i| self.get(i).1 as u64 <= pos);
        i.checked_sub(1).map(|i| self.get(i))
    }
}

/// Read-only view of valid time index entries.
#[derive(Clone, Copy)]
pub(crate) struct TimeEntries<'a>(pub &'a [u8]);

impl<'a> TimeEntries<'a> {
    pub fn len(&self) -> usize {
        self.0.len() / TIME_ENTRY_LEN
    }
    /// `(timestamp, relative offset)` of entry `i`.
    pub fn get(&self, i: usize) -> (i64, u32) {
        let at = i * TIME_ENTRY_LEN;
        (i64_at(self.0, at), u32_at(self.0, at + 8))
    }
    pub fn last(&self) -> Option<(i64, u32)> {
        self.len().checked_sub(1).map(|i| self.get(i))
    }
    /// The last entry with timestamp < `ts`: every batch before its offset is older than `ts`,
    /// so a search for `ts` may start there.
    pub fn last_below(&self, ts: i64) -> Option<(i64, u32)> {
        let i = partition_point(self.len(), |i| self.get(i).0 < ts);
        i.checked_sub(1).map(|i| self.get(i))
    }
}

/// Encodes one offset index entry.
pub(crate) fn offset_entry(rel: u32, pos: u32) -> [u8; OFFSET_ENTRY_LEN] {
    let mut e = [0u8; OFFSET_ENTRY_LEN];
    e[..4].copy_from_slice(&rel.to_be_bytes());
    e[4..].copy_from_slice(&pos.to_be_bytes());
    e
}

/// Encodes one time index entry.
pub(crate) fn time_entry(ts: i64, rel: u32) -> [u8; TIME_ENTRY_LEN] {
    let mut e = [0u8; TIME_ENTRY_LEN];
    e[..8].copy_from_slice(&ts.to_be_bytes());
    e[8..].copy_from_slice(&rel.to_be_bytes());
    e
}

/// Counts the valid offset entries at the start of `bytes` (a whole index file, possibly
/// preallocated). Valid entries have strictly increasing relative offsets (> 0, and < `span`
/// when known) and strictly increasing positions (< `log_size`). Returns `None` if anything
/// but zeros follows them: the file is garbage and must be rebuilt.
pub(crate) fn validate_offsets(bytes: &[u8], log_size: u64, span: Option<u64>) -> Option<usize> {
    let mut n = 0;
    let (mut prev_rel, mut prev_pos) = (0u32, 0u32);
    while (n + 1) * OFFSET_ENTRY_LEN <= bytes.len() {
        let (rel, pos) = OffsetEntries(bytes).get(n);
        if rel == 0 {
            break;
        }
        let in_range = (pos as u64) < log_size && span.is_none_or(|s| (rel as u64) < s);
        if rel <= prev_rel || pos <= prev_pos || !in_range {
            return None;
        }
        (prev_rel, prev_pos) = (rel, pos);
        n += 1;
    }
    all_zero(&bytes[n * OFFSET_ENTRY_LEN..]).then_some(n)
}

/// Counts the valid time entries at the start of `bytes`, as [`validate_offsets`]: relative
/// offsets strictly increase (> 0, <= `span` when known), timestamps never decrease.
pub(crate) fn validate_times(bytes: &[u8], span: Option<u64>) -> Option<usize> {
    let mut n = 0;
    let (mut prev_ts, mut prev_rel) = (i64::MIN, 0u32);
    while (n + 1) * TIME_ENTRY_LEN <= bytes.len() {
        let (ts, rel) = TimeEntries(bytes).get(n);
        if rel == 0 {
            break;
        }
        if rel <= prev_rel || ts < prev_ts || span.is_some_and(|s| rel as u64 > s) {
            return None;
        }
        (prev_ts, prev_rel) = (ts, rel);
        n += 1;
    }
    all_zero(&bytes[n * TIME_ENTRY_LEN..]).then_some(n)
}

fn all_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// A writable, preallocated, memory-mapped index of the active segment.
pub(crate) struct MutIndex {
    mmap: MmapMut,
    entry_len: usize,
    entries: usize,
    capacity: usize,
    /// Bytes the file held before it was grown to its preallocated size: only these can hold
    /// entries. Validation reads just these, so reopening thousands of partitions does not
    /// fault in every preallocated (all-zero) index page.
    existing: usize,
}

impl MutIndex {
    /// Opens (creating if needed) `path`, grows it to `prealloc_bytes` and maps it. Existing
    /// content is kept but not trusted: `entries` is 0 until the caller [`MutIndex::adopt`]s a
    /// validated count.
    pub fn open(path: &Path, entry_len: usize, prealloc_bytes: u32) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        let len = file.metadata()?.len();
        // At least two entries: the time index always keeps one slot for the sealing entry.
        let capacity = (prealloc_bytes as usize / entry_len).max(2);
        let want = ((capacity * entry_len) as u64).max(len.next_multiple_of(entry_len as u64));
        if want != len {
            file.set_len(want)?;
        }
        // SAFETY: the file is private to this partition directory and only this process writes
        // it; it is never truncated while mapped (see `seal`).
        let mmap = unsafe { MmapMut::map_mut(&file)? };
        no_readahead(&mmap);
        let capacity = mmap.len() / entry_len;
        let existing = (len as usize).min(mmap.len());
        Ok(MutIndex { mmap, entry_len, entries: 0, capacity, existing })
    }

    /// Opens `path` emptied (all zeros, preallocated).
    pub fn create(path: &Path, entry_len: usize, prealloc_bytes: u32) -> io::Result<Self> {
        OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
        Self::open(path, entry_len, prealloc_bytes)
    }

    /// The bytes the file held when opened (for validation); the preallocated growth beyond
    /// them is zeros by construction.
    pub fn existing_bytes(&self) -> &[u8] {
        &self.mmap[..self.existing]
    }
    /// The bytes of the valid entries.
    pub fn bytes(&self) -> &[u8] {
        &self.mmap[..self.entries * self.entry_len]
    }
    /// Accepts the first `n` entries found by validation as valid.
    pub fn adopt(&mut self, n: usize) {
        self.entries = n.min(self.capacity);
    }
    /// Free entry slots.
    pub fn free(&self) -> usize {
        self.capacity - self.entries
    }
    /// Appends an entry; the caller checks [`MutIndex::free`] first.
    pub fn push(&mut self, entry: &[u8]) {
        debug_assert_eq!(entry.len(), self.entry_len);
        let at = self.entries * self.entry_len;
        self.mmap[at..at + self.entry_len].copy_from_slice(entry);
        self.entries += 1;
    }
    /// Keeps the first `n` entries and zeroes the rest, preserving the zero-tail invariant.
    pub fn truncate(&mut self, n: usize) {
        if n < self.entries {
            self.mmap[n * self.entry_len..self.entries * self.entry_len].fill(0);
            self.entries = n;
        }
    }
    /// Forgets all entries and makes the whole file zeros again. Done by truncating and
    /// re-growing the file (unmapped meanwhile), not by writing zeros: after a crash every
    /// partition's active indexes are cleared, and writing megabytes of zeros per partition
    /// made recovery of 10,000 partitions take minutes and gigabytes of dirty pages.
    pub fn clear(&mut self, path: &Path) -> io::Result<()> {
        let len = self.mmap.len() as u64;
        // Unmap before shrinking: touching a mapped page past EOF is SIGBUS.
        self.mmap = MmapMut::map_anon(1)?;
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        file.set_len(0)?;
        file.set_len(len)?;
        // SAFETY: as in `open`.
        self.mmap = unsafe { MmapMut::map_mut(&file)? };
        no_readahead(&self.mmap);
        self.entries = 0;
        self.existing = 0;
        Ok(())
    }
    /// Unmaps and trims the file to the used size; returns the file so it can be fsynced later.
    pub fn seal(self, path: &Path) -> io::Result<File> {
        let used = (self.entries * self.entry_len) as u64;
        // Unmap before shrinking: touching a mapped page past EOF is SIGBUS.
        drop(self.mmap);
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(used)?;
        Ok(file)
    }
}

/// An active index is appended to one entry at a time, into a preallocated sparse file. With
/// the default advice a page fault reads ahead: the kernel zero-filled up to megabytes of the
/// file's holes for each entry's page, and with a hundred busy partitions that memset took a
/// quarter of the CPU and cut produce throughput tenfold. (A hint: errors are ignored.)
fn no_readahead(mmap: &MmapMut) {
    let _ = mmap.advise(memmap2::Advice::Random);
}

/// Maps a whole index file read-only (`None` for an empty or missing file: nothing to map).
pub(crate) fn map_read_only(path: &Path) -> io::Result<Option<Mmap>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if file.metadata()?.len() == 0 {
        return Ok(None);
    }
    // SAFETY: sealed index files are only replaced (rebuilt) while no reader holds a map, under
    // the log's reader-cache lock; they are never truncated in place while mapped.
    Ok(Some(unsafe { Mmap::map(&file)? }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_lookups() {
        let mut b = Vec::new();
        for (r, p) in [(3u32, 100u32), (7, 200), (12, 300)] {
            b.extend_from_slice(&offset_entry(r, p));
        }
        let e = OffsetEntries(&b);
        assert_eq!(e.floor_offset(2), None);
        assert_eq!(e.floor_offset(3), Some((3, 100)));
        assert_eq!(e.floor_offset(11), Some((7, 200)));
        assert_eq!(e.floor_offset(99), Some((12, 300)));
        assert_eq!(e.floor_position(99), None);
        assert_eq!(e.floor_position(250), Some((7, 200)));
        assert_eq!(validate_offsets(&b, 301, None), Some(3));
        assert_eq!(validate_offsets(&b, 300, None), None);
        b.extend_from_slice(&[0; 16]);
        assert_eq!(validate_offsets(&b, 301, Some(13)), Some(3));
        b.push(1);
        assert_eq!(validate_offsets(&b, 301, None), None);
    }

    #[test]
    fn time_lookups() {
        let mut b = Vec::new();
        for (t, r) in [(10i64, 3u32), (10, 7), (20, 12)] {
            b.extend_from_slice(&time_entry(t, r));
        }
        let e = TimeEntries(&b);
        assert_eq!(e.last_below(10), None);
        assert_eq!(e.last_below(11), Some((10, 7)));
        assert_eq!(e.last_below(21), Some((20, 12)));
        assert_eq!(validate_times(&b, Some(12)), Some(3));
        assert_eq!(validate_times(&b, Some(11)), None);
    }
}
