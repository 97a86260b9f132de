//! Compaction: what survives, what offsets batches keep, and crashes during the swap.

use std::collections::BTreeMap;
use std::path::Path;

use rill_protocol::batch::{split_batches, BatchHeader, Compression};
use rill_protocol::records::{decode_batches, encode_batch, EncodeOptions, RecordIn, RecordOut};

use super::*;
use crate::{LogConfig, PartitionLog};

const NOW: i64 = 1_800_000_000_000;

fn config() -> LogConfig {
    LogConfig { segment_bytes: 1024, index_interval_bytes: 128, segment_index_bytes: 4096, ..LogConfig::default() }
}

fn cleaner(delete_retention_ms: i64) -> CleanerConfig {
    CleanerConfig { delete_retention_ms, min_cleanable_dirty_ratio: 0.0, ..CleanerConfig::default() }
}

/// Appends one batch of `(key, value)` records, all stamped `ts`.
fn append(log: &PartitionLog, records: &[(Option<&str>, Option<&str>)], ts: i64, compression: Compression) {
    let recs: Vec<RecordIn<'_>> = records
        .iter()
        .map(|(k, v)| RecordIn { key: k.map(str::as_bytes), value: v.map(str::as_bytes), headers: &[], timestamp: ts })
        .collect();
    let options =
        EncodeOptions { compression, producer_id: 9, producer_epoch: 1, base_sequence: 0, ..Default::default() };
    let mut b = encode_batch(&recs, &options);
    log.append(&mut b, 3, None).unwrap();
}

/// Every stored batch, in order, read through the public read path.
fn batches(log: &PartitionLog) -> Vec<(BatchHeader, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    while at < log.log_end_offset() {
        let r = log.read(at, 1 << 20, i64::MAX).unwrap();
        for b in split_batches(&r.records) {
            let (h, bytes) = b.unwrap();
            at = h.last_offset() + 1;
            out.push((h, bytes.to_vec()));
        }
    }
    out
}

fn records(log: &PartitionLog) -> Vec<RecordOut> {
    batches(log).iter().flat_map(|(_, b)| decode_batches(b).unwrap()).collect()
}

fn ranges(log: &PartitionLog) -> Vec<(i64, i64)> {
    batches(log).iter().map(|(h, _)| (h.base_offset, h.last_offset())).collect()
}

fn key_value(r: &RecordOut) -> (String, Option<String>) {
    let s = |b: &bytes::Bytes| String::from_utf8(b.to_vec()).unwrap();
    (r.key.as_ref().map(s).unwrap_or_default(), r.value.as_ref().map(s))
}

/// 300 updates of 5 keys, some batches of 3 records, then the active segment.
fn filled(dir: &Path, compression: Compression) -> PartitionLog {
    let log = PartitionLog::open(dir, config()).unwrap();
    for i in 0..100 {
        let (k1, k2, k3) = (format!("k{}", i % 5), format!("k{}", (i + 1) % 5), format!("k{}", (i + 2) % 5));
        let (v1, v2, v3) = (format!("v{i}a"), format!("v{i}b"), format!("v{i}c"));
        append(
            &log,
            &[(Some(&k1), Some(&v1)), (Some(&k2), Some(&v2)), (Some(&k3), Some(&v3))],
            NOW - 10_000,
            compression,
        );
    }
    log
}

#[test]
fn keeps_the_latest_record_per_key_and_every_offset_range() {
    for compression in Compression::ALL {
        let dir = tempfile::tempdir().unwrap();
        let log = filled(dir.path(), compression);
        let before_ranges = ranges(&log);
        let before = records(&log);
        let active_base = log.layout().1;
        let size_before = log.size_bytes();

        let s = log.clean(log.log_end_offset(), &cleaner(0), NOW).unwrap().expect("due");
        assert!(s.segments_rewritten > 0 && s.records_removed > 0, "{compression:?}: {s:?}");
        assert_eq!(s.cleaned_upto, active_base);
        assert!(log.size_bytes() < size_before);

        // Batches keep their offset ranges; empty ones stay.
        assert_eq!(ranges(&log), before_ranges, "{compression:?}");
        let after = records(&log);
        let offsets: Vec<i64> = after.iter().map(|r| r.offset).collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]));
        // Below the active segment: exactly the latest record of each key there; the active
        // segment is untouched.
        let latest: BTreeMap<_, _> = before.iter().map(|r| (key_value(r).0, r.offset)).collect();
        for r in &after {
            let original = before.iter().find(|b| b.offset == r.offset).unwrap();
            assert_eq!(r, original, "records are unchanged, at their offsets");
            if r.offset < active_base {
                let newer_below =
                    before.iter().any(|b| b.key == r.key && b.offset > r.offset && b.offset < active_base);
                assert!(!newer_below, "{compression:?}: superseded record at {} survived", r.offset);
            }
        }
        assert!(before.iter().filter(|r| r.offset >= active_base).all(|r| after.contains(r)));
        for (key, offset) in latest {
            assert!(after.iter().any(|r| r.offset == offset), "{compression:?}: latest of {key} is gone");
        }
        let empty = batches(&log).iter().filter(|(h, _)| h.records_count == 0).count();
        assert!(empty > 0, "{compression:?}: some batch lost all its records");
        for (h, _) in batches(&log) {
            assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence, h.partition_leader_epoch), (9, 1, 0, 3));
        }

        // Nothing left to do until more dirty data arrives.
        assert_eq!(log.clean(log.log_end_offset(), &cleaner(0), NOW).unwrap(), None);
        // A reopened log (clean or not) reads the same.
        let want = records(&log);
        log.close().unwrap();
        drop(log);
        let log = PartitionLog::open(dir.path(), config()).unwrap();
        assert_eq!(records(&log), want);
    }
}

/// A follower (or anything else appending the cleaned bytes) assigns the same offsets: from
/// `lastOffsetDelta`, not from the record count.
#[test]
fn cleaned_batches_append_to_the_same_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = filled(dir.path(), Compression::Zstd);
    log.clean(log.log_end_offset(), &cleaner(0), NOW).unwrap().expect("due");
    let other_dir = tempfile::tempdir().unwrap();
    let other = PartitionLog::open(other_dir.path(), config()).unwrap();
    for (h, bytes) in batches(&log) {
        let mut b = bytes.clone();
        let info = other.append(&mut b, 3, None).unwrap();
        assert_eq!((info.first_offset, info.last_offset), (h.base_offset, h.last_offset()));
    }
    assert_eq!(records(&other), records(&log));
}

#[test]
fn respects_the_bound_and_the_compaction_lag() {
    let dir = tempfile::tempdir().unwrap();
    let log = filled(dir.path(), Compression::None);
    let before = records(&log);
    // A bound inside the first segment: nothing is wholly below it.
    assert_eq!(log.clean(1, &cleaner(0), NOW).unwrap(), None);
    // Records 10 s old are within a 60 s lag.
    let lagging = CleanerConfig { min_compaction_lag_ms: 60_000, ..cleaner(0) };
    assert_eq!(log.clean(log.log_end_offset(), &lagging, NOW).unwrap(), None);
    // A dirty ratio not reached.
    let lazy = CleanerConfig { min_cleanable_dirty_ratio: 1.0, ..cleaner(0) };
    let bound = before[150].offset;
    let s = log.clean(bound, &lazy, NOW).unwrap().expect("all dirty: ratio 1");
    assert!(s.cleaned_upto <= bound);
    let after = records(&log);
    assert!(before.iter().filter(|r| r.offset >= s.cleaned_upto).all(|r| after.contains(r)), "above the bound");
    // Now the clean head outweighs what is dirty below the same bound.
    assert_eq!(log.clean(bound, &lazy, NOW).unwrap(), None);
}

#[test]
fn tombstones_outlive_their_first_cleaning_by_delete_retention() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config()).unwrap();
    let big = "x".repeat(300);
    append(&log, &[(Some("a"), Some(&big)), (Some("b"), Some(&big))], NOW, Compression::None);
    append(&log, &[(Some("a"), None), (None, Some("keyless"))], NOW, Compression::None);
    for i in 0..6 {
        append(&log, &[(Some("c"), Some(&format!("{i}{big}")))], NOW, Compression::None);
    }
    let tombstone_at = 2;
    let retention = 60_000;
    let s = log.clean(log.log_end_offset(), &cleaner(retention), NOW).unwrap().expect("due");
    assert_eq!(s.tombstones_removed, 0);
    let kept = records(&log);
    assert!(kept.iter().any(|r| r.offset == tombstone_at && r.value.is_none()), "tombstone kept");
    assert!(!kept.iter().any(|r| r.offset == 0), "value deleted by the tombstone is gone");
    assert!(!kept.iter().any(|r| r.key.is_none()), "keyless records are dropped");
    assert!(kept.iter().any(|r| r.offset == 1), "b stays");

    // Not yet: nothing dirty and the tombstone's retention runs.
    assert_eq!(log.clean(log.log_end_offset(), &cleaner(retention), NOW + retention - 1).unwrap(), None);
    let later = mtime_ms(&segment_path(dir.path(), 0, LOG_EXT)).unwrap() + retention + 1;
    let s = log.clean(log.log_end_offset(), &cleaner(retention), later.max(NOW + retention + 1)).unwrap().expect("due");
    assert_eq!(s.tombstones_removed, 1);
    let kept = records(&log);
    assert!(!kept.iter().any(|r| r.offset == tombstone_at));
    assert_eq!(ranges(&log)[1], (2, 3), "the batch stays, empty");
}

/// A pass that runs while readers read: they never fail and always see either version.
#[test]
fn concurrent_readers_see_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(filled(dir.path(), Compression::Lz4));
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            for _ in 0..30 {
                let all = records(&log);
                assert!(all.windows(2).all(|w| w[0].offset < w[1].offset));
            }
        })
    };
    log.clean(log.log_end_offset(), &cleaner(0), NOW).unwrap().expect("due");
    reader.join().unwrap();
}

/// A crash at each step of the swap: reopening gives the old log or the cleaned one, whole,
/// and no leftover files.
#[test]
fn a_crash_during_the_swap_recovers_to_either_version() {
    for (step, committed) in
        [(SwapStep::IndexesSwapped, false), (SwapStep::Committed, true), (SwapStep::IndexesInstalled, true)]
    {
        let dir = tempfile::tempdir().unwrap();
        let log = filled(dir.path(), Compression::Snappy);
        let before = records(&log);
        let cleaned = {
            let copy = tempfile::tempdir().unwrap();
            for e in std::fs::read_dir(dir.path()).unwrap() {
                let e = e.unwrap();
                std::fs::copy(e.path(), copy.path().join(e.file_name())).unwrap();
            }
            let other = PartitionLog::open(copy.path(), config()).unwrap();
            other.clean(other.log_end_offset(), &cleaner(0), NOW).unwrap().expect("due");
            records(&other)
        };
        log.clean_until(log.log_end_offset(), &cleaner(0), NOW, step).unwrap().expect("due");
        drop(log); // no close: an unclean shutdown
        let reopened = PartitionLog::open(dir.path(), config()).unwrap();
        let got = records(&reopened);
        // Only the first segment was swapped (the pass stops after one swap).
        let first_end = reopened.layout().0[1];
        let first = |rs: &[RecordOut]| rs.iter().filter(|r| r.offset < first_end).cloned().collect::<Vec<_>>();
        assert_ne!(first(&cleaned), first(&before), "the first segment is compacted");
        let want_first: Vec<_> =
            if committed { &cleaned } else { &before }.iter().filter(|r| r.offset < first_end).cloned().collect();
        let got_first: Vec<_> = got.iter().filter(|r| r.offset < first_end).cloned().collect();
        assert_eq!(got_first, want_first, "{step:?}");
        let got_rest: Vec<_> = got.iter().filter(|r| r.offset >= first_end).cloned().collect();
        let before_rest: Vec<_> = before.iter().filter(|r| r.offset >= first_end).cloned().collect();
        assert_eq!(got_rest, before_rest, "{step:?}: later segments untouched");
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            assert!(!name.ends_with(".cleaned") && !name.ends_with(".swap"), "{step:?}: leftover {name}");
        }
        // And the next pass finishes the job.
        reopened.clean(reopened.log_end_offset(), &cleaner(0), NOW).unwrap().expect("due");
        assert_eq!(records(&reopened), cleaned, "{step:?}");
    }
}

#[test]
fn the_checkpoint_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = filled(dir.path(), Compression::None);
    let s = log.clean(log.log_end_offset(), &cleaner(0), NOW).unwrap().expect("due");
    drop(log);
    let log = PartitionLog::open(dir.path(), config()).unwrap();
    assert_eq!(log.layout().2.first_dirty, s.cleaned_upto);
    assert_eq!(log.clean(log.log_end_offset(), &cleaner(0), NOW).unwrap(), None);
}

/// Emptied segments merge on a later pass: fewer segments, same batches and records; a crash
/// at each step of a merging swap recovers to either version.
#[test]
fn later_passes_merge_small_cleaned_segments() {
    for step in [None, Some(SwapStep::IndexesSwapped), Some(SwapStep::Committed), Some(SwapStep::IndexesInstalled)] {
        let dir = tempfile::tempdir().unwrap();
        let log = filled(dir.path(), Compression::Gzip);
        log.clean(log.log_end_offset(), &cleaner(0), NOW).unwrap().expect("due");
        // Groups are sized by what segments held before cleaning (as in Kafka): let a few fit.
        let roomy = LogConfig { segment_bytes: 2048, ..config() };
        log.update_config(roomy.clone());
        // New dirty data makes the log due again.
        for i in 0..20 {
            append(
                &log,
                &[(Some("k9"), Some(&format!("late{i}-{}", "y".repeat(60))))],
                NOW - 10_000,
                Compression::None,
            );
        }
        let (segments, _, _) = log.layout();
        let (want_ranges, before) = (ranges(&log), records(&log));
        let merged = {
            let copy = tempfile::tempdir().unwrap();
            for e in std::fs::read_dir(dir.path()).unwrap() {
                let e = e.unwrap();
                std::fs::copy(e.path(), copy.path().join(e.file_name())).unwrap();
            }
            let other = PartitionLog::open(copy.path(), roomy.clone()).unwrap();
            let s = other.clean(other.log_end_offset(), &cleaner(0), NOW).unwrap().expect("due");
            assert!(other.layout().0.len() < segments.len(), "{s:?}");
            assert_eq!(ranges(&other), want_ranges);
            records(&other)
        };
        match step {
            None => {
                log.clean(log.log_end_offset(), &cleaner(0), NOW).unwrap().expect("due");
                assert_eq!(records(&log), merged);
                continue;
            }
            Some(step) => {
                log.clean_until(log.log_end_offset(), &cleaner(0), NOW, step).unwrap().expect("due");
            }
        }
        drop(log);
        let reopened = PartitionLog::open(dir.path(), roomy.clone()).unwrap();
        assert_eq!(ranges(&reopened), want_ranges, "{step:?}");
        let got = records(&reopened);
        let first_group_end = reopened.layout().0.get(1).copied().unwrap_or(i64::MAX);
        let upto = |rs: &[RecordOut]| rs.iter().filter(|r| r.offset < first_group_end).cloned().collect::<Vec<_>>();
        if step == Some(SwapStep::IndexesSwapped) {
            assert_eq!(reopened.layout().0, segments, "rolled back");
            assert_eq!(got, before);
        } else {
            assert!(reopened.layout().0.len() < segments.len(), "{step:?}: the merge completed");
            assert_eq!(upto(&got), upto(&merged), "{step:?}");
        }
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            assert!(!name.ends_with(".cleaned") && !name.ends_with(".swap"), "{step:?}: leftover {name}");
        }
        reopened.clean(reopened.log_end_offset(), &cleaner(0), NOW).unwrap();
        assert_eq!(records(&reopened), merged, "{step:?}");
    }
}
