//! The bytes of one file that were written but not yet made durable: disjoint, non-adjacent
//! extents keyed by file offset. A read merges them over the backing file; an fsync writes
//! them to it; a power loss drops them.

use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Included, Unbounded};

/// Non-overlapping, non-touching byte ranges (touching ones are merged so an append stream
/// stays one growing buffer instead of one entry per `write`).
#[derive(Debug, Default)]
pub(crate) struct Extents {
    map: BTreeMap<u64, Vec<u8>>,
    bytes: u64,
}

impl Extents {
    /// Bytes held (the sum of the extents' lengths; overwrites of held bytes do not add).
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// One past the last held byte, 0 when empty: a write past the backing file's end extends
    /// the file's logical size to here.
    pub(crate) fn end(&self) -> u64 {
        self.map.iter().next_back().map_or(0, |(&start, data)| start + data.len() as u64)
    }

    /// Records `data` at `offset`, over whatever was held there.
    pub(crate) fn write(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        // Every extent that overlaps or touches [offset, end] is merged into one.
        let mut touching: Vec<u64> = Vec::new();
        if let Some((&start, held)) = self.map.range(..=offset).next_back() {
            if start + held.len() as u64 >= offset {
                touching.push(start);
            }
        }
        touching.extend(self.map.range((Excluded(offset), Included(end))).map(|(&start, _)| start));

        let first = touching.first().copied().filter(|&start| start <= offset);
        let merged_start = first.unwrap_or(offset);
        // Reusing the first extent's buffer makes an append cost the appended bytes only.
        let mut buf = first.and_then(|start| self.take(start)).unwrap_or_default();
        for start in touching.into_iter().filter(|&start| Some(start) != first) {
            if let Some(held) = self.take(start) {
                place(&mut buf, (start - merged_start) as usize, &held);
            }
        }
        place(&mut buf, (offset - merged_start) as usize, data);
        self.bytes += buf.len() as u64;
        self.map.insert(merged_start, buf);
    }

    /// Drops every held byte at or past `len` (the file was truncated to `len`).
    pub(crate) fn truncate(&mut self, len: u64) {
        let gone: Vec<u64> = self.map.range(len..).map(|(&start, _)| start).collect();
        for start in gone {
            self.take(start);
        }
        if let Some((&start, held)) = self.map.range_mut(..len).next_back() {
            if start + held.len() as u64 > len {
                let keep = (len - start) as usize;
                self.bytes -= (held.len() - keep) as u64;
                held.truncate(keep);
            }
        }
    }

    /// Copies the held bytes that fall in `[offset, offset + buf.len())` over `buf`.
    pub(crate) fn overlay_onto(&self, offset: u64, buf: &mut [u8]) {
        let end = offset + buf.len() as u64;
        let before = self.map.range((Unbounded, Included(offset))).next_back();
        let inside = self.map.range((Excluded(offset), Excluded(end)));
        for (&start, held) in before.into_iter().chain(inside) {
            let from = start.max(offset);
            let to = (start + held.len() as u64).min(end);
            if from < to {
                buf[(from - offset) as usize..(to - offset) as usize]
                    .copy_from_slice(&held[(from - start) as usize..(to - start) as usize]);
            }
        }
    }

    /// The extents in offset order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.map.iter().map(|(&start, held)| (start, held.as_slice()))
    }

    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }

    fn take(&mut self, start: u64) -> Option<Vec<u8>> {
        let held = self.map.remove(&start)?;
        self.bytes -= held.len() as u64;
        Some(held)
    }
}

/// Copies `data` into `buf` at `at`, growing `buf` (the gap, if any, is zeros; callers only
/// place ranges that touch what `buf` already covers, so no gap is ever visible).
fn place(buf: &mut Vec<u8>, at: usize, data: &[u8]) {
    if buf.len() < at + data.len() {
        buf.resize(at + data.len(), 0);
    }
    buf[at..at + data.len()].copy_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::Extents;

    /// A plain byte array with a "held" mask: the model the extents must agree with.
    struct Model {
        bytes: Vec<u8>,
        held: Vec<bool>,
    }

    impl Model {
        fn write(&mut self, offset: usize, data: &[u8]) {
            let end = offset + data.len();
            if self.bytes.len() < end {
                self.bytes.resize(end, 0);
                self.held.resize(end, false);
            }
            self.bytes[offset..end].copy_from_slice(data);
            self.held[offset..end].iter_mut().for_each(|h| *h = true);
        }
        fn truncate(&mut self, len: usize) {
            self.bytes.truncate(len);
            self.held.truncate(len);
        }
    }

    fn check(ext: &Extents, model: &Model) {
        let len = model.bytes.len();
        let mut seen = vec![0xEEu8; len + 8];
        ext.overlay_onto(0, &mut seen);
        for (i, ((&got, &byte), &held)) in seen.iter().zip(&model.bytes).zip(&model.held).enumerate() {
            assert_eq!(got, if held { byte } else { 0xEE }, "byte {i}");
        }
        assert!(seen[len..].iter().all(|&b| b == 0xEE));
        assert_eq!(ext.bytes(), model.held.iter().filter(|&&h| h).count() as u64);
        let end = model.held.iter().rposition(|&h| h).map_or(0, |i| i + 1);
        assert_eq!(ext.end(), end as u64);
        // Extents never touch, so each one is maximal.
        let mut last_end = None;
        for (start, data) in ext.iter() {
            assert!(!data.is_empty());
            if let Some(e) = last_end {
                assert!(start > e, "extents at {e} and {start} touch");
            }
            last_end = Some(start + data.len() as u64);
        }
    }

    #[test]
    fn matches_a_byte_array_model() {
        // A small deterministic generator (no extra dev-dependency) over offsets in 0..300.
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..200 {
            let mut ext = Extents::default();
            let mut model = Model { bytes: Vec::new(), held: Vec::new() };
            for step in 0..40u8 {
                if next(8) == 0 {
                    let len = next(300) as usize;
                    ext.truncate(len as u64);
                    model.truncate(len);
                } else {
                    let offset = next(300) as usize;
                    let data = vec![step.wrapping_add(1); next(40) as usize];
                    ext.write(offset as u64, &data);
                    model.write(offset, &data);
                }
                check(&ext, &model);
            }
        }
    }

    #[test]
    fn appends_stay_one_extent() {
        let mut ext = Extents::default();
        for i in 0..100u64 {
            ext.write(i * 10, &[i as u8; 10]);
        }
        assert_eq!(ext.iter().count(), 1);
        assert_eq!(ext.bytes(), 1000);
        let mut window = [0u8; 4];
        ext.overlay_onto(998, &mut window);
        assert_eq!(window, [99, 99, 0, 0]);
    }
}
