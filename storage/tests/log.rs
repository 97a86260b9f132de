//! Integration tests of `PartitionLog` on real files.

mod common;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{batch, check_all, count_files, small_config, stamped, Model};
use proptest::prelude::*;
use rill_storage::{LogConfig, PartitionLog, StorageError};

/// Appends `n` batches of assorted sizes and record counts with increasing timestamps.
fn fill(log: &PartitionLog, model: &mut Model, n: usize) {
    for i in 0..n {
        let records = (i % 4) as i32 + 1;
        let payload = (i * 53) % 400 + 1;
        model.append(log, batch(records, 1_000 + model.batches.len() as i64 * 10, payload, i as u8), 3);
    }
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

#[test]
fn round_trip_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    let mut model = Model::default();
    fill(&log, &mut model, 300);
    assert!(log.segment_count() > 10, "segments: {}", log.segment_count());
    assert_eq!(count_files(dir.path(), "log"), log.segment_count());
    assert!(fs::read_dir(dir.path()).unwrap().any(|e| e.unwrap().file_name() == "00000000000000000000.log"));
    // Every offset, including ones in the middle of a batch, maps to its whole batch.
    for offset in 0..model.end() {
        let i = model.find(offset);
        let r = log.read(offset, 1, i64::MAX).unwrap();
        assert_eq!(&r.records[..], &model.batches[i].2[..], "offset {offset}");
        assert_eq!((r.log_start_offset, r.log_end_offset), (0, model.end()));
    }
    // Large reads return consecutive whole batches of one segment, within max_bytes.
    for offset in (0..model.end()).step_by(7) {
        let r = log.read(offset, 1500, i64::MAX).unwrap();
        let i = model.find(offset);
        let mut expect = Vec::new();
        for b in &model.batches[i..] {
            if expect.len() + b.2.len() > 1500.max(model.batches[i].2.len()) {
                break;
            }
            expect.extend_from_slice(&b.2);
            if r.records.len() == expect.len() {
                break;
            }
        }
        assert!(r.records.len() <= 1500.max(model.batches[i].2.len()));
        assert_eq!(&r.records[..], &expect[..r.records.len()]);
        assert!(!r.records.is_empty());
    }
    // Log size equals the bytes appended.
    let total: usize = model.batches.iter().map(|b| b.2.len()).sum();
    assert_eq!(log.size_bytes(), total as u64);
}

#[test]
fn read_limits_and_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert!(log.read(0, 100, i64::MAX).unwrap().records.is_empty());
    let mut model = Model::default();
    fill(&log, &mut model, 50);
    let end = model.end();
    assert!(log.read(end, 100, i64::MAX).unwrap().records.is_empty());
    assert!(matches!(
        log.read(end + 1, 100, i64::MAX),
        Err(StorageError::OffsetOutOfRange { requested, log_start: 0, log_end }) if requested == end + 1 && log_end == end
    ));
    assert!(matches!(log.read(-1, 100, i64::MAX), Err(StorageError::OffsetOutOfRange { .. })));
    // max_offset (high watermark): never return a batch reaching it.
    let (b0, l0, _) = model.batches[0].clone();
    let (b1, l1, _) = model.batches[1].clone();
    assert!(log.read(b0, 10_000, l0).unwrap().records.is_empty(), "batch crossing max_offset is withheld");
    let r = log.read(b0, 10_000, l1 + 1).unwrap();
    assert_eq!(&r.records[..], [model.batches[0].2.clone(), model.batches[1].2.clone()].concat());
    assert!(log.read(b1, 10_000, b1).unwrap().records.is_empty());
    // KIP-74: one whole batch even if it is larger than max_bytes.
    assert_eq!(&log.read(b1, 0, i64::MAX).unwrap().records[..], &model.batches[1].2[..]);
}

#[test]
fn reopen_after_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    {
        let log = PartitionLog::open(dir.path(), small_config()).unwrap();
        fill(&log, &mut model, 120);
        log.close().unwrap();
        assert!(matches!(log.append(&mut batch(1, 1, 10, 0), 0, None), Err(StorageError::Closed)));
    }
    // Index files are trimmed to their entries on close.
    for e in fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        let len = fs::metadata(&p).unwrap().len();
        match p.extension().and_then(|x| x.to_str()) {
            Some("index") => assert!(len % 8 == 0 && len < 1024, "{p:?} {len}"),
            Some("timeindex") => assert!(len % 12 == 0 && len < 1020, "{p:?} {len}"),
            _ => {}
        }
    }
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    check_all(&log, &model, 0);
    assert_eq!(log.flushed_offset(), model.end());
    fill(&log, &mut model, 40);
    check_all(&log, &model, 0);
    assert!(log.flushed_offset() < model.end());
    log.sync(i64::MAX).unwrap();
    assert_eq!(log.flushed_offset(), model.end());
}

#[test]
fn reopen_without_close_recovers_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    {
        let log = PartitionLog::open(dir.path(), small_config()).unwrap();
        fill(&log, &mut model, 120);
        log.sync(i64::MAX).unwrap();
        // Dropped without close: indexes left preallocated and untrimmed.
    }
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    check_all(&log, &model, 0);
    assert_eq!(log.flushed_offset(), model.end());
}

#[test]
fn retention_by_size_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    let mut model = Model::default();
    fill(&log, &mut model, 200); // timestamps 1000..3000
    let segments = log.segment_count();
    // Unlimited retention deletes nothing.
    log.update_config(LogConfig { retention_ms: -1, ..small_config() });
    assert_eq!(log.enforce_retention(i64::MAX / 2).unwrap(), 0);
    // Time: everything older than 2000 at now=2500 with 500ms retention.
    log.update_config(LogConfig { retention_ms: 500, ..small_config() });
    let deleted = log.enforce_retention(2500).unwrap();
    assert!(deleted > 0 && deleted < segments);
    let start = log.log_start_offset();
    assert!(start > 0);
    // Only data older than now - retention went.
    let ts_of = |b: &[u8]| i64::from_be_bytes(b[35..43].try_into().unwrap());
    assert!(ts_of(&model.batches[model.find(start - 1)].2) <= 2000);
    assert!(matches!(log.read(start - 1, 1, i64::MAX), Err(StorageError::OffsetOutOfRange { .. })));
    check_all(&log, &model, start);
    // Size: keep at most ~2 segments worth.
    log.update_config(LogConfig { retention_ms: -1, retention_bytes: 8192, ..small_config() });
    log.enforce_retention(0).unwrap();
    assert!(log.size_bytes() <= 8192 + 4096, "size {}", log.size_bytes());
    assert!(log.size_bytes() > 4096 || log.segment_count() == 1);
    check_all(&log, &model, log.log_start_offset());
    assert_eq!(count_files(dir.path(), "log"), log.segment_count());
    assert_eq!(count_files(dir.path(), "index"), log.segment_count());
    // Everything but the active segment can go; the active one never.
    log.update_config(LogConfig { retention_ms: 0, ..small_config() });
    log.enforce_retention(i64::MAX / 2).unwrap();
    assert_eq!(log.segment_count(), 1);
    check_all(&log, &model, log.log_start_offset());
}

#[test]
fn delete_records_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    let start;
    {
        let log = PartitionLog::open(dir.path(), small_config()).unwrap();
        fill(&log, &mut model, 150);
        let before = log.segment_count();
        start = model.batches[90].0 + 1; // inside a batch
        assert_eq!(log.delete_records_before(start).unwrap(), start);
        assert!(log.segment_count() < before);
        assert_eq!(log.log_start_offset(), start);
        assert!(matches!(log.read(start - 1, 1, i64::MAX), Err(StorageError::OffsetOutOfRange { .. })));
        // The batch straddling the start is served whole.
        assert_eq!(&log.read(start, 1, i64::MAX).unwrap().records[..], &model.batches[90].2[..]);
        assert_eq!(log.delete_records_before(5).unwrap(), start, "never moves backwards");
        assert!(log.delete_records_before(model.end() + 1).is_err());
        log.sync(i64::MAX).unwrap();
        // No close: the checkpoint alone must carry the log start.
    }
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.log_start_offset(), start);
    check_all(&log, &model, start);
    // Deleting up to the end leaves an empty but usable log.
    let end = log.log_end_offset();
    log.delete_records_before(end).unwrap();
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (end, end));
    assert!(log.read(end, 100, i64::MAX).unwrap().records.is_empty());
}

#[test]
fn truncate_to_within_and_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    let mut model = Model::default();
    fill(&log, &mut model, 200);
    // Inside the active segment, in the middle of a batch: the whole batch goes.
    let (b, l, _) = model.batches[195].clone();
    assert!(l > b || model.batches[196].1 > model.batches[196].0);
    log.truncate_to(b + (l - b) / 2 + if l > b { 1 } else { 0 }).unwrap();
    let expect_end = if l > b { b } else { b + 1 };
    model.truncate(expect_end);
    check_all(&log, &model, 0);
    // Into an older segment.
    let segments = log.segment_count();
    let target = model.batches[40].0;
    log.truncate_to(target).unwrap();
    model.truncate(target);
    assert!(log.segment_count() < segments);
    assert_eq!(count_files(dir.path(), "log"), log.segment_count());
    check_all(&log, &model, 0);
    assert!(log.flushed_offset() <= target);
    // Appends continue densely, max timestamp reflects only what is left.
    fill(&log, &mut model, 30);
    check_all(&log, &model, 0);
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    check_all(&log, &model, 0);
    // Below the log start: restart the log there.
    log.delete_records_before(model.batches[20].0).unwrap();
    log.truncate_to(5).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (5, 5));
    let mut b = batch(2, 1, 10, 1);
    assert_eq!(log.append(&mut b, 0, None).unwrap().first_offset, 5);
    drop(log);
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (5, 7));
}

#[test]
fn timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.offset_for_timestamp(0).unwrap(), None);
    assert_eq!(log.max_timestamp().unwrap(), None);
    let mut model = Model::default();
    // Timestamps 1000, 1010, ... with one late outlier.
    fill(&log, &mut model, 150);
    let mut b = batch(3, 999_999, 20, 9);
    let info = log.append(&mut b, 3, None).unwrap();
    model.batches.push((info.first_offset, info.last_offset, b));
    fill(&log, &mut model, 30);
    let ts_of = |b: &[u8]| i64::from_be_bytes(b[35..43].try_into().unwrap());
    // Reference answer: the first batch whose max timestamp is >= target.
    let expect = |target: i64| model.batches.iter().find(|b| ts_of(&b.2) >= target).map(|b| (b.0, ts_of(&b.2)));
    let check = |log: &PartitionLog| {
        for (base, _, bytes) in &model.batches {
            let ts = ts_of(bytes);
            for target in [ts, ts - 5, ts + 1] {
                assert_eq!(log.offset_for_timestamp(target).unwrap(), expect(target), "target {target} (batch {base})");
            }
        }
        assert_eq!(log.offset_for_timestamp(1_000_000).unwrap(), None);
        assert_eq!(log.offset_for_timestamp(500_000).unwrap(), Some((model.batches[150].0, 999_999)));
        assert_eq!(log.max_timestamp().unwrap(), Some((model.batches[150].1, 999_999)));
    };
    check(&log);
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    check(&log);
    // LogAppendTime stamping.
    let mut b = batch(2, 5, 10, 1);
    let info = log.append(&mut b, 4, Some(2_000_000)).unwrap();
    assert_eq!(info.log_append_time, 2_000_000);
    assert_eq!(log.max_timestamp().unwrap(), Some((info.last_offset, 2_000_000)));
    let stored = log.read(info.first_offset, 1, i64::MAX).unwrap().records;
    assert_eq!(&stored[..], &b[..]);
    rill_protocol::batch::validate(&stored).unwrap();
}

#[test]
fn rolls_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), LogConfig { segment_ms: 0, ..LogConfig::default() }).unwrap();
    let mut model = Model::default();
    for _ in 0..3 {
        model.append(&log, batch(1, 1, 10, 0), 0);
        std::thread::sleep(std::time::Duration::from_millis(3));
    }
    assert_eq!(log.segment_count(), 3);
    check_all(&log, &model, 0);
}

#[test]
fn rejects_partial_batches() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    let mut b = batch(1, 1, 10, 0);
    b.pop();
    assert!(log.append(&mut b, 0, None).is_err());
    assert!(log.append(&mut [], 0, None).is_err());
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn group_commit_from_many_threads() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(PartitionLog::open(dir.path(), small_config()).unwrap());
    assert!(log.sync_on_ack());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    let mut b = batch(1, i, 50, t as u8);
                    let info = log.append(&mut b, 0, None).unwrap();
                    log.sync(info.last_offset + 1).unwrap();
                    assert!(log.flushed_offset() > info.last_offset);
                    let r = log.read(info.first_offset, 1, i64::MAX).unwrap();
                    assert_eq!(&r.records[..], &b[..]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(log.log_end_offset(), 400);
    assert_eq!(log.flushed_offset(), 400);
}

#[test]
fn flush_if_due_honours_flush_messages() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), LogConfig { flush_messages: 10, ..small_config() }).unwrap();
    assert!(!log.sync_on_ack());
    let mut model = Model::default();
    for _ in 0..5 {
        model.append(&log, batch(1, 1, 10, 0), 0);
    }
    log.flush_if_due(0).unwrap();
    assert_eq!(log.flushed_offset(), 0);
    for _ in 0..5 {
        model.append(&log, batch(1, 1, 10, 0), 0);
    }
    log.flush_if_due(0).unwrap();
    assert_eq!(log.flushed_offset(), 10);
}

// ---- crash recovery ----

/// Builds a closed-uncleanly log of `n` batches in `dir` and returns its model.
fn build(dir: &Path, n: usize) -> Model {
    let log = PartitionLog::open(dir, small_config()).unwrap();
    let mut model = Model::default();
    fill(&log, &mut model, n);
    log.sync(i64::MAX).unwrap();
    model
}

/// The model cut after the last batch that fits entirely in `bytes` of the last segment
/// starting at `seg_base`.
fn expected_after_cut(model: &Model, seg_base: i64, bytes: usize) -> Model {
    let mut m = model.clone();
    let mut used = 0;
    m.batches.retain(|b| {
        if b.0 < seg_base {
            return true;
        }
        used += b.2.len();
        used <= bytes
    });
    m
}

fn base_of(path: &Path) -> i64 {
    path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

#[test]
fn recovery_truncates_torn_tail_at_every_cut() {
    let src = tempfile::tempdir().unwrap();
    let model = build(src.path(), 60);
    let logs = segment_files(src.path());
    let last = logs.last().unwrap().clone();
    let len = fs::metadata(&last).unwrap().len();
    let seg_base = base_of(&last);
    let mut cuts: Vec<u64> = (0..len).step_by(13).collect();
    cuts.extend([0, 1, 12, 60, 61, 62, len - 1]);
    for cut in cuts {
        let dir = tempfile::tempdir().unwrap();
        for e in fs::read_dir(src.path()).unwrap() {
            let p = e.unwrap().path();
            fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
        }
        let f = OpenOptions::new().write(true).open(dir.path().join(last.file_name().unwrap())).unwrap();
        f.set_len(cut).unwrap();
        let log = PartitionLog::open(dir.path(), small_config()).unwrap();
        let expect = expected_after_cut(&model, seg_base, cut as usize);
        check_all(&log, &expect, 0);
        // Appends continue densely after recovery.
        let mut m = expect.clone();
        m.append(&log, batch(2, 7, 30, 1), 9);
        check_all(&log, &m, 0);
    }
}

#[test]
fn recovery_truncates_at_corrupt_byte() {
    let dir = tempfile::tempdir().unwrap();
    let model = build(dir.path(), 60);
    let last = segment_files(dir.path()).last().unwrap().clone();
    let len = fs::metadata(&last).unwrap().len();
    let (lb, _, bytes) = model.batches.last().unwrap().clone();
    // Flip a byte in the records of the last batch (covered by the CRC).
    let f = OpenOptions::new().write(true).open(&last).unwrap();
    f.write_all_at(&[0xAA ^ bytes[bytes.len() - 3]], len - 3).unwrap();
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    let mut expect = model.clone();
    expect.truncate(lb);
    check_all(&log, &expect, 0);
    assert_eq!(log.log_end_offset(), lb);
}

#[test]
fn corrupt_sealed_segment_becomes_tail() {
    let dir = tempfile::tempdir().unwrap();
    let model = build(dir.path(), 100);
    let logs = segment_files(dir.path());
    let victim = &logs[logs.len() - 3];
    let next_base = base_of(&logs[logs.len() - 2]);
    let len = fs::metadata(victim).unwrap().len();
    // Corrupt the last batch of the victim segment.
    let f = OpenOptions::new().write(true).open(victim).unwrap();
    f.write_all_at(&[0x55, 0x55], len - 2).unwrap();
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    let i = model.find(next_base - 1);
    let mut expect = model.clone();
    expect.truncate(model.batches[i].0);
    check_all(&log, &expect, 0);
    assert_eq!(count_files(dir.path(), "log"), logs.len() - 2);
}

#[test]
fn garbage_indexes_are_rebuilt() {
    for clean in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut model = Model::default();
        {
            let log = PartitionLog::open(dir.path(), small_config()).unwrap();
            fill(&log, &mut model, 120);
            if clean {
                log.close().unwrap();
            } else {
                log.sync(i64::MAX).unwrap();
            }
        }
        let mut seed = 12345u64;
        for e in fs::read_dir(dir.path()).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "index" || x == "timeindex") {
                let len = fs::metadata(&p).unwrap().len().max(24) as usize;
                let garbage: Vec<u8> = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        (seed >> 33) as u8
                    })
                    .collect();
                fs::write(&p, garbage).unwrap();
            }
        }
        let log = PartitionLog::open(dir.path(), small_config()).unwrap();
        check_all(&log, &model, 0);
        for b in model.batches.iter().step_by(5) {
            let ts = i64::from_be_bytes(b.2[35..43].try_into().unwrap());
            assert_eq!(log.offset_for_timestamp(ts).unwrap(), Some((b.0, ts)));
        }
        // Also with indexes deleted outright.
        log.close().unwrap();
        for e in fs::read_dir(dir.path()).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "index" || x == "timeindex") {
                fs::remove_file(p).unwrap();
            }
        }
        let log = PartitionLog::open(dir.path(), small_config()).unwrap();
        check_all(&log, &model, 0);
    }
}

#[test]
fn odd_directory_contents() {
    // Empty directory that does not exist yet.
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("topic-0");
    let log = PartitionLog::open(&dir, small_config()).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset(), log.segment_count()), (0, 0, 1));
    drop(log);
    // Zero-length log, leftovers, orphan index.
    fs::write(dir.join("00000000000000000000.log"), b"").unwrap();
    fs::write(dir.join("00000000000000000500.log.deleted"), b"junk").unwrap();
    fs::write(dir.join("00000000000000000600.log.swap"), b"junk").unwrap();
    fs::write(dir.join("00000000000000000700.index.cleaned"), b"junk").unwrap();
    fs::write(dir.join("00000000000000000900.index"), b"junk").unwrap();
    let log = PartitionLog::open(&dir, small_config()).unwrap();
    assert_eq!(log.log_end_offset(), 0);
    let names: Vec<String> =
        fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(names.iter().all(|n| n.starts_with("00000000000000000000.") || n.starts_with('.')), "{names:?}");
    let mut m = Model::default();
    fill(&log, &mut m, 5);
    check_all(&log, &m, 0);
}

#[test]
fn stamps_offsets_and_epoch_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    let mut two = [batch(3, 10, 5, 1), batch(2, 20, 7, 2)].concat();
    let info = log.append(&mut two, 42, None).unwrap();
    assert_eq!((info.first_offset, info.last_offset, info.log_append_time), (0, 4, -1));
    let expect = [stamped(batch(3, 10, 5, 1), 0, 42), stamped(batch(2, 20, 7, 2), 3, 42)].concat();
    assert_eq!(two, expect);
    assert_eq!(&log.read(0, 1 << 20, i64::MAX).unwrap().records[..], &expect[..]);
    assert_eq!(&log.read(4, 1, i64::MAX).unwrap().records[..], &expect[66..]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_appends_and_reads(
        sizes in prop::collection::vec((1i32..6, 0usize..700, 1usize..4), 1..60),
        reads in prop::collection::vec((0.0f64..1.0, 0usize..3000), 1..30),
        segment_bytes in 300u64..5000,
        interval in 0u32..600,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { segment_bytes, index_interval_bytes: interval, segment_index_bytes: 64, ..LogConfig::default() };
        let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        let mut model = Model::default();
        for (i, (records, payload, batches)) in sizes.iter().enumerate() {
            let parts: Vec<Vec<u8>> = (0..*batches).map(|k| batch(*records, (i * 3 + k) as i64, *payload, (i + k) as u8)).collect();
            let mut all = parts.concat();
            let info = log.append(&mut all, 1, None).unwrap();
            let mut base = info.first_offset;
            for p in parts {
                model.batches.push((base, base + *records as i64 - 1, stamped(p, base, 1)));
                base += *records as i64;
            }
            prop_assert_eq!(info.last_offset + 1, model.end());
        }
        let check = |log: &PartitionLog| -> Result<(), TestCaseError> {
            for (frac, max_bytes) in &reads {
                let offset = (frac * model.end() as f64) as i64;
                let r = log.read(offset, *max_bytes, i64::MAX).unwrap();
                let i = model.find(offset);
                // A prefix of whole consecutive batches starting at the one holding `offset`.
                let mut expect = Vec::new();
                for b in &model.batches[i..] {
                    if expect.len() >= r.records.len() { break; }
                    expect.extend_from_slice(&b.2);
                }
                prop_assert_eq!(&r.records[..], &expect[..]);
                prop_assert!(r.records.len() <= (*max_bytes).max(model.batches[i].2.len()));
                prop_assert!(!r.records.is_empty());
            }
            check_all(log, &model, 0);
            Ok(())
        };
        check(&log)?;
        log.close().unwrap();
        let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        check(&log)?;
        drop(log);
        let log = PartitionLog::open(dir.path(), config).unwrap();
        check(&log)?;
    }
}
