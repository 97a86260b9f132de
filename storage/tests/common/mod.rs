//! Test helpers: build valid v2 batches without a record encoder (storage never parses records).
#![allow(dead_code)]

use std::path::Path;

use rill_protocol::batch::stamp_offset_and_epoch;
use rill_storage::{LogConfig, PartitionLog};

/// A valid v2 batch of `records` fake records with `payload` bytes of filler after the header.
pub fn batch(records: i32, max_ts: i64, payload: usize, fill: u8) -> Vec<u8> {
    let len = 61 + payload;
    let mut b = vec![fill; len];
    b[0..8].copy_from_slice(&0i64.to_be_bytes());
    b[8..12].copy_from_slice(&((len - 12) as i32).to_be_bytes());
    b[12..16].copy_from_slice(&(-1i32).to_be_bytes());
    b[16] = 2;
    b[21..23].copy_from_slice(&0i16.to_be_bytes());
    b[23..27].copy_from_slice(&(records - 1).to_be_bytes());
    b[27..35].copy_from_slice(&max_ts.to_be_bytes());
    b[35..43].copy_from_slice(&max_ts.to_be_bytes());
    b[43..51].copy_from_slice(&(-1i64).to_be_bytes());
    b[51..53].copy_from_slice(&(-1i16).to_be_bytes());
    b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    b[57..61].copy_from_slice(&records.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// What a stored batch should look like: `b` stamped with its offset and epoch.
pub fn stamped(mut b: Vec<u8>, base: i64, epoch: i32) -> Vec<u8> {
    stamp_offset_and_epoch(&mut b, base, epoch);
    b
}

/// A config with small segments and indexes so tests cross many boundaries.
pub fn small_config() -> LogConfig {
    LogConfig { segment_bytes: 4096, index_interval_bytes: 256, segment_index_bytes: 1024, ..LogConfig::default() }
}

/// A model of what was appended: (base offset, last offset, stored bytes).
#[derive(Default, Clone)]
pub struct Model {
    pub batches: Vec<(i64, i64, Vec<u8>)>,
}

impl Model {
    /// Appends `b` to `log` and records it.
    pub fn append(&mut self, log: &PartitionLog, b: Vec<u8>, epoch: i32) {
        let mut bytes = b.clone();
        let info = log.append(&mut bytes, epoch, None).expect("append");
        assert_eq!(info.first_offset, self.end());
        self.batches.push((info.first_offset, info.last_offset, stamped(b, info.first_offset, epoch)));
    }
    pub fn end(&self) -> i64 {
        self.batches.last().map_or(0, |b| b.1 + 1)
    }
    /// Index of the batch containing `offset`.
    pub fn find(&self, offset: i64) -> usize {
        self.batches.iter().position(|b| b.0 <= offset && offset <= b.1).expect("offset in model")
    }
    pub fn truncate(&mut self, end: i64) {
        self.batches.retain(|b| b.1 < end);
    }
}

/// Reads every batch one by one (max_bytes = 1) from `from` and checks it against the model.
pub fn check_all(log: &PartitionLog, model: &Model, from: i64) {
    assert_eq!(log.log_end_offset(), model.end(), "log end");
    let mut offset = from;
    while offset < model.end() {
        let i = model.find(offset);
        let r = log.read(offset, 1, i64::MAX).expect("read");
        assert_eq!(&r.records[..], &model.batches[i].2[..], "batch at offset {offset}");
        offset = model.batches[i].1 + 1;
    }
}

/// Number of files with `ext` in `dir`.
pub fn count_files(dir: &Path, ext: &str) -> usize {
    std::fs::read_dir(dir).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == ext)).count()
}
