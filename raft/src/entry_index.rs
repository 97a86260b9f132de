//! The entry index: Raft log ids and Kafka offsets side by side.
//!
//! Record batches are written once, to the partition's segment files. Raft also needs to know,
//! for every entry, its log id and kind, and blank and membership entries carry no records, so
//! they take no Kafka offset: Kafka offsets stay dense while Raft indices have gaps in Kafka
//! terms. This file keeps one small record per entry: its log id, its kind (with the
//! membership config for membership entries) and the Kafka offsets `[start, end)` it covers.
//! With it, Raft index to Kafka offset is a lookup by position, and Kafka offset to Raft
//! index (or to leader epoch) a binary search.
//!
//! File format: a sequence of `[len u32][crc32c u32][postcard Record]`. A torn or corrupt
//! tail (a crash mid-write) is cut off at open. Purging rewrites the file with a `Purged`
//! record first, through a rename, so the prefix disappears atomically.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{LogId, Membership};

pub const INDEX_FILE: &str = "raft-entries.idx";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    Blank,
    Membership(Membership),
    /// Record batches, stored in the segment files at Kafka offsets `[start, end)`.
    Data,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryMeta {
    pub log_id: LogId,
    pub kind: EntryKind,
    /// First Kafka offset of the entry's records (for entries without records: where the next
    /// records will go).
    pub start: i64,
    /// One past the last Kafka offset of the entry's records (`start` if it has none).
    pub end: i64,
}

#[derive(Serialize, Deserialize)]
enum Record {
    Entry(EntryMeta),
    /// Everything up to and including this entry was purged.
    Purged(EntryMeta),
}

/// The file is opened for each write and sync, not held open: a node hosting 10,000 replicas
/// would otherwise need a second descriptor for each (the segment holds the first), and ran
/// out of them (`Too many open files` under a 20,000 limit), killing groups whose vote write
/// failed. An open costs a microsecond or two against the write and fsync it comes with.
pub struct EntryIndex {
    path: PathBuf,
    metas: VecDeque<EntryMeta>,
    /// File position of each meta's record (same order as `metas`).
    positions: VecDeque<u64>,
    file_len: u64,
    purged: Option<EntryMeta>,
    buf: Vec<u8>,
}

fn encode_record(rec: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; 8]);
    let body = postcard::to_extend(rec, std::mem::take(out)).expect("postcard encodes into a Vec");
    *out = body;
    let len = (out.len() - start - 8) as u32;
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

impl EntryIndex {
    /// Opens (creating if absent) the index in `dir`, dropping a torn or corrupt tail and any
    /// records that break the run of consecutive indices.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let path = dir.join(INDEX_FILE);
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        let data = std::fs::read(&path)?;
        let mut idx = EntryIndex {
            path,
            metas: VecDeque::new(),
            positions: VecDeque::new(),
            file_len: 0,
            purged: None,
            buf: Vec::new(),
        };
        let mut at = 0usize;
        while at + 8 <= data.len() {
            let len = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
            let crc = u32::from_be_bytes(data[at + 4..at + 8].try_into().unwrap());
            let Some(body) = data.get(at + 8..at + 8 + len) else { break };
            if crc32c::crc32c(body) != crc {
                break;
            }
            let Ok(rec) = postcard::from_bytes::<Record>(body) else { break };
            match rec {
                Record::Purged(m) if idx.metas.is_empty() && idx.purged.is_none() => idx.purged = Some(m),
                Record::Entry(m) if idx.follows(&m) => {
                    idx.positions.push_back(at as u64);
                    idx.metas.push_back(m);
                }
                _ => break,
            }
            at += 8 + len;
        }
        idx.file_len = at as u64;
        if (at as u64) < data.len() as u64 {
            tracing::warn!(path = %idx.path.display(), kept = at, len = data.len(), "entry index: cutting a torn tail");
            file.set_len(at as u64)?;
            file.sync_data()?;
        }
        Ok(idx)
    }

    /// Whether `m` may come next: consecutive index, Kafka offsets continuing.
    fn follows(&self, m: &EntryMeta) -> bool {
        let prev = self.metas.back().or(self.purged.as_ref());
        let ok_offsets = m.start <= m.end && (m.kind == EntryKind::Data || m.start == m.end);
        match prev {
            None => ok_offsets,
            Some(p) => ok_offsets && m.log_id.index == p.log_id.index + 1 && m.start == p.end,
        }
    }

    pub fn purged(&self) -> Option<&EntryMeta> {
        self.purged.as_ref()
    }

    pub fn last(&self) -> Option<&EntryMeta> {
        self.metas.back().or(self.purged.as_ref())
    }

    pub fn first_index(&self) -> Option<u64> {
        self.metas.front().map(|m| m.log_id.index)
    }

    pub fn len(&self) -> usize {
        self.metas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.metas.is_empty()
    }

    /// Where the next entry's records go, if anything was ever logged.
    pub fn next_offset(&self) -> Option<i64> {
        self.last().map(|m| m.end)
    }

    pub fn get(&self, index: u64) -> Option<&EntryMeta> {
        let first = self.first_index()?;
        if index < first {
            return None;
        }
        self.metas.get((index - first) as usize)
    }

    /// The metas with indices in `[start, end)`, clipped to what is present.
    pub fn range(&self, start: u64, end: u64) -> impl Iterator<Item = &EntryMeta> {
        let first = self.first_index().unwrap_or(0);
        let lo = start.saturating_sub(first) as usize;
        let hi = (end.saturating_sub(first) as usize).min(self.metas.len());
        self.metas.range(lo.min(hi)..hi)
    }

    /// Kafka end offset of everything up to and including Raft index `index` (the high
    /// watermark once `index` is committed). `None` if `index` is neither present nor the
    /// last purged entry.
    pub fn end_offset_at(&self, index: u64) -> Option<i64> {
        if let Some(m) = self.get(index) {
            return Some(m.end);
        }
        self.purged.as_ref().filter(|p| p.log_id.index == index).map(|p| p.end)
    }

    /// The last entry at or before Raft index `upto` whose records end at or below Kafka
    /// offset `offset` (where a prefix of the log can be cut). Both ends and indexes only
    /// grow along the index, so this is two binary searches.
    pub fn last_ending_by(&self, offset: i64, upto: u64) -> Option<&EntryMeta> {
        let by_offset = self.metas.partition_point(|m| m.end <= offset);
        let by_index = self.metas.partition_point(|m| m.log_id.index <= upto);
        self.metas.get(by_offset.min(by_index).checked_sub(1)?)
    }

    /// The entry holding Kafka offset `offset`, if present.
    pub fn entry_of_offset(&self, offset: i64) -> Option<&EntryMeta> {
        let i = self.metas.partition_point(|m| m.end <= offset);
        self.metas.get(i).filter(|m| m.start <= offset && offset < m.end)
    }

    /// Kafka's end offset for leader epoch `epoch` (OffsetForLeaderEpoch): the largest epoch
    /// not above `epoch` that has entries, and the start offset of the first entry of a later
    /// epoch (or the end of the log). `None` if every present entry is of a later epoch.
    pub fn epoch_end(&self, epoch: u64) -> Option<(u64, i64)> {
        let i = self.metas.partition_point(|m| m.log_id.leader_id.term <= epoch);
        if i == 0 {
            return self.purged.as_ref().filter(|p| p.log_id.leader_id.term <= epoch).map(|p| {
                let next = self.metas.front().map_or(p.end, |m| m.start);
                (p.log_id.leader_id.term, next)
            });
        }
        let found = self.metas[i - 1].log_id.leader_id.term;
        let end = self.metas.get(i).map_or(self.metas[i - 1].end, |m| m.start);
        Some((found, end))
    }

    /// Appends a record for `meta` (written, not synced).
    pub fn push(&mut self, meta: EntryMeta) -> io::Result<()> {
        if !self.follows(&meta) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("entry {:?} does not follow {:?}", meta.log_id, self.last().map(|m| &m.log_id)),
            ));
        }
        self.buf.clear();
        let rec = Record::Entry(meta);
        encode_record(&rec, &mut self.buf);
        self.writable()?.write_all_at(&self.buf, self.file_len)?;
        let Record::Entry(meta) = rec else { unreachable!() };
        self.positions.push_back(self.file_len);
        self.file_len += self.buf.len() as u64;
        self.metas.push_back(meta);
        Ok(())
    }

    fn writable(&self) -> io::Result<File> {
        OpenOptions::new().write(true).open(&self.path)
    }

    /// A handle to fsync the index with, outside any lock held on the index (an fsync
    /// through any descriptor of the file writes back what every descriptor wrote).
    pub fn sync_handle(&self) -> io::Result<File> {
        File::open(&self.path)
    }

    /// Drops the entries whose records do not all lie below `log_end` (crash recovery).
    pub fn drop_beyond(&mut self, log_end: i64) -> io::Result<()> {
        let keep = self.metas.partition_point(|m| m.end <= log_end);
        if keep < self.metas.len() {
            let index = self.metas[keep].log_id.index;
            tracing::warn!(path = %self.path.display(), from = index, "entry index: dropping entries past the log end");
            self.truncate_after(if keep == 0 { None } else { Some(index - 1) })?;
        }
        Ok(())
    }

    /// Drops every entry after `index` (all of them for `None`). Returns the Kafka offset the
    /// log must be truncated to, if any entry was dropped. Synced before returning.
    pub fn truncate_after(&mut self, index: Option<u64>) -> io::Result<Option<i64>> {
        let keep = match (index, self.first_index()) {
            (_, None) => return Ok(None),
            (None, Some(_)) => 0,
            (Some(i), Some(first)) if i < first => 0,
            (Some(i), Some(first)) => ((i - first + 1) as usize).min(self.metas.len()),
        };
        if keep == self.metas.len() {
            return Ok(None);
        }
        let cut_offset = self.metas[keep].start;
        let cut_pos = self.positions[keep];
        self.metas.truncate(keep);
        self.positions.truncate(keep);
        let file = self.writable()?;
        file.set_len(cut_pos)?;
        file.sync_data()?;
        self.file_len = cut_pos;
        Ok(Some(cut_offset))
    }

    /// Forgets every entry up to and including `upto`, rewriting the file atomically. `upto`
    /// may lie past the last entry (openraft then expects an empty log that continues after it).
    pub fn purge_upto(&mut self, upto: LogId) -> io::Result<()> {
        if self.purged.as_ref().is_some_and(|p| p.log_id.index >= upto.index) {
            return Ok(());
        }
        let n = self.metas.partition_point(|m| m.log_id.index <= upto.index);
        let purged = match n.checked_sub(1).map(|i| &self.metas[i]) {
            Some(m) if m.log_id == upto => m.clone(),
            _ => {
                let at = self.metas.get(n.saturating_sub(1)).map(|m| m.end).or(self.next_offset()).unwrap_or(0);
                EntryMeta { log_id: upto, kind: EntryKind::Blank, start: at, end: at }
            }
        };
        self.metas.drain(..n);
        if self.metas.front().is_some_and(|m| m.log_id.index != upto.index + 1 || m.start != purged.end) {
            // What is left does not continue the purged prefix: it cannot be kept.
            self.metas.clear();
        }
        let mut out = Vec::new();
        encode_record(&Record::Purged(purged.clone()), &mut out);
        for m in &self.metas {
            encode_record(&Record::Entry(m.clone()), &mut out);
        }
        let tmp = self.path.with_extension("idx.tmp");
        std::fs::write(&tmp, &out)?;
        File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        // Reload the kept metas from what was written (cheap: the prefix is gone).
        let reopened = EntryIndex::open(self.path.parent().unwrap_or(Path::new(".")))?;
        *self = reopened;
        debug_assert_eq!(self.purged.as_ref(), Some(&purged));
        Ok(())
    }

    /// Resets to "empty, purged up to `meta`" (a follower installing a snapshot).
    pub fn reset_to(&mut self, meta: EntryMeta) -> io::Result<()> {
        let mut out = Vec::new();
        encode_record(&Record::Purged(meta), &mut out);
        let tmp = self.path.with_extension("idx.tmp");
        std::fs::write(&tmp, &out)?;
        File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        *self = EntryIndex::open(self.path.parent().unwrap_or(Path::new(".")))?;
        Ok(())
    }
}
