//! Compaction under Raft: a Raft entry is located by its Kafka offset range, so a compacted
//! partition log must still give back every entry at its offsets, and a lagging follower that
//! receives compacted entries must append them at the same offsets.

use bytes::Bytes;
use openraft::entry::RaftEntry;
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
use openraft::EntryPayload;
use rill_protocol::batch::split_batches;
use rill_protocol::records::{decode_batches, encode_batch, EncodeOptions, RecordIn};
use rill_raft::log_store::LogStore;
use rill_raft::{Batches, Entry, LogId};
use rill_storage::{CleanerConfig, LogConfig};

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(openraft::impls::leader_id_adv::LeaderId { term, node_id: 1 }, index)
}

fn config() -> LogConfig {
    LogConfig { segment_bytes: 512, index_interval_bytes: 64, segment_index_bytes: 4096, ..LogConfig::default() }
}

/// Entry `i`: `1 + i % 3` batches of two records over keys k0..k2.
fn payload(i: usize) -> Bytes {
    let mut out = Vec::new();
    for b in 0..1 + i % 3 {
        let values = [format!("{i}-{b}-x"), format!("{i}-{b}-y")];
        let keys = [format!("k{}", (i + b) % 3), format!("k{}", (i + b + 1) % 3)];
        let recs: Vec<RecordIn<'_>> = (0..2)
            .map(|j| RecordIn {
                key: Some(keys[j].as_bytes()),
                value: Some(values[j].as_bytes()),
                timestamp: 1_700_000_000_000,
                ..Default::default()
            })
            .collect();
        out.extend_from_slice(&encode_batch(&recs, &EncodeOptions::default()));
    }
    out.into()
}

fn ranges(store: &LogStore, n: u64) -> Vec<(i64, i64)> {
    (0..n).map(|i| store.shared.with_index(|idx| idx.get(i).map(|m| (m.start, m.end)).expect("indexed"))).collect()
}

#[test]
fn compacted_entries_keep_their_offsets_on_leader_and_follower() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut leader = rt.block_on(async { LogStore::open(dir.path(), config()).unwrap() });
    let n = 30;
    for i in 0..n {
        let e = Entry::new(log_id(1, i as u64), EntryPayload::Normal(Batches(payload(i))));
        rt.block_on(leader.blocking_append([e])).unwrap();
    }
    let before_ranges = ranges(&leader, n as u64);
    let before: Vec<_> = rt.block_on(async {
        let mut r = leader.get_log_reader().await;
        r.try_get_log_entries(0..n as u64).await.unwrap()
    });

    let log = leader.shared.log.clone();
    let cleaner = CleanerConfig { min_cleanable_dirty_ratio: 0.0, ..CleanerConfig::default() };
    let s = log.clean(log.log_end_offset(), &cleaner, 1_700_000_000_000).unwrap().expect("due");
    assert!(s.records_removed > 0, "{s:?}");

    let after: Vec<_> = rt.block_on(async {
        let mut r = leader.get_log_reader().await;
        r.try_get_log_entries(0..n as u64).await.unwrap()
    });
    assert_eq!(after.len(), n);
    let mut emptied = 0;
    for ((a, b), (start, end)) in after.iter().zip(&before).zip(&before_ranges) {
        let (EntryPayload::Normal(Batches(a)), EntryPayload::Normal(Batches(b))) = (&a.payload, &b.payload) else {
            panic!("data entries")
        };
        let headers: Vec<_> = split_batches(a).map(|r| r.unwrap().0).collect();
        assert_eq!(headers.first().unwrap().base_offset, *start);
        assert_eq!(headers.last().unwrap().last_offset() + 1, *end);
        emptied += headers.iter().filter(|h| h.records_count == 0).count();
        let (kept, all) = (decode_batches(a).unwrap(), decode_batches(b).unwrap());
        assert!(kept.iter().all(|r| all.contains(r)), "surviving records are unchanged, at their offsets");
    }
    assert!(emptied > 0);

    // A follower far behind receives the compacted entries and lands on the same offsets.
    let follower_dir = tempfile::tempdir().unwrap();
    let mut follower = rt.block_on(async { LogStore::open(follower_dir.path(), config()).unwrap() });
    rt.block_on(follower.blocking_append(after.clone())).unwrap();
    assert_eq!(ranges(&follower, n as u64), before_ranges);
    assert_eq!(follower.shared.log.log_end_offset(), log.log_end_offset());

    // And the compacted leader reopens with its entry index and segments agreeing.
    drop(leader);
    rt.block_on(async { tokio::time::sleep(std::time::Duration::from_millis(5)).await });
    let leader = rt.block_on(async { LogStore::open(dir.path(), config()).unwrap() });
    assert_eq!(ranges(&leader, n as u64), before_ranges);
}
