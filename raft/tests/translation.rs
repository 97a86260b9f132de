//! Kafka offsets against Raft indices: random sequences of blank, membership and data entries,
//! conflict truncations, purges and reopenings (crash recovery) of a real log on disk, checked
//! against a model. Data entries must get dense Kafka offsets; blank and membership entries
//! none; reads must return each entry's own records at its own offsets.

use std::collections::BTreeMap;

use bytes::Bytes;
use openraft::entry::RaftEntry;
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
use openraft::EntryPayload;
use proptest::prelude::*;
use rill_protocol::records::{decode_batches, encode_batch, EncodeOptions, RecordIn};
use rill_raft::log_store::LogStore;
use rill_raft::{Batches, Entry, LogId, Membership};
use rill_storage::LogConfig;

#[derive(Debug, Clone)]
enum Op {
    Blank,
    Membership,
    /// A data entry of this many records, in this many batches.
    Data(u8, u8),
    /// A new term (a leader change).
    NewTerm,
    /// Conflict: drop the last `n` entries.
    Truncate(u8),
    /// Forget entries up to `n` back from the end.
    Purge(u8),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Blank),
        1 => Just(Op::Membership),
        8 => (1u8..20, 1u8..4).prop_map(|(n, b)| Op::Data(n, b)),
        1 => Just(Op::NewTerm),
        2 => (0u8..6).prop_map(Op::Truncate),
        1 => (0u8..6).prop_map(Op::Purge),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Debug, Clone)]
struct ModelEntry {
    log_id: LogId,
    /// The record values of a data entry (empty for the others).
    values: Vec<String>,
    membership: bool,
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(openraft::impls::leader_id_adv::LeaderId { term, node_id: 1 }, index)
}

fn data_payload(values: &[String], batches: u8) -> Bytes {
    let per = values.len().div_ceil(batches as usize).max(1);
    let mut out = Vec::new();
    for chunk in values.chunks(per) {
        let recs: Vec<RecordIn<'_>> = chunk
            .iter()
            .map(|v| RecordIn { value: Some(v.as_bytes()), timestamp: 1_700_000_000_000, ..Default::default() })
            .collect();
        out.extend_from_slice(&encode_batch(&recs, &EncodeOptions::default()));
    }
    out.into()
}

fn check(rt: &tokio::runtime::Runtime, store: &mut LogStore, model: &[ModelEntry], purged: usize) {
    rt.block_on(async {
        let mut reader = store.get_log_reader().await;
        let live = &model[purged..];
        let Some(first) = live.first() else { return };
        let entries = reader.try_get_log_entries(first.log_id.index..).await.unwrap();
        assert_eq!(entries.len(), live.len(), "entries after purge point");
        // Kafka offset of the first live record: the data records before it, purged or not.
        let mut offset: i64 = model[..purged].iter().map(|m| m.values.len() as i64).sum();
        for (e, m) in entries.iter().zip(live) {
            assert_eq!(e.log_id, m.log_id);
            let meta = store.shared.with_index(|idx| idx.get(m.log_id.index).cloned()).expect("indexed");
            assert_eq!(meta.start, offset, "entry {} starts at the next Kafka offset", m.log_id.index);
            match &e.payload {
                EntryPayload::Normal(Batches(b)) => {
                    let recs = decode_batches(b).unwrap();
                    let got: Vec<(i64, String)> = recs
                        .iter()
                        .map(|r| (r.offset, String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap()))
                        .collect();
                    let want: Vec<(i64, String)> =
                        m.values.iter().enumerate().map(|(i, v)| (offset + i as i64, v.clone())).collect();
                    assert_eq!(got, want, "records of entry {}", m.log_id.index);
                    offset += m.values.len() as i64;
                }
                EntryPayload::Membership(_) => assert!(m.membership && m.values.is_empty()),
                EntryPayload::Blank => assert!(!m.membership && m.values.is_empty()),
            }
            assert_eq!(meta.end, offset);
            assert_eq!(store.shared.with_index(|idx| idx.end_offset_at(m.log_id.index)), Some(offset));
        }
        assert_eq!(store.shared.log.log_end_offset(), offset, "the segment log ends where the entries do");
        // Leader epochs: a term ends where the first entry of a later term starts.
        let mut starts = Vec::new();
        let mut at: i64 = model[..purged].iter().map(|m| m.values.len() as i64).sum();
        for m in live {
            starts.push((m.log_id.leader_id.term, at));
            at += m.values.len() as i64;
        }
        let mut ends: BTreeMap<u64, i64> = BTreeMap::new();
        for (i, (term, _)) in starts.iter().enumerate() {
            let end = starts[i + 1..].iter().find(|(t, _)| t > term).map_or(at, |(_, s)| *s);
            ends.insert(*term, end);
        }
        for (term, end) in ends {
            let (t, e) = store.shared.with_index(|idx| idx.epoch_end(term)).expect("epoch present");
            assert_eq!((t, e), (term, end), "end of epoch {term}");
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn kafka_offsets_follow_raft_entries(ops in proptest::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut store = rt.block_on(async { LogStore::open(dir.path(), LogConfig::default()).unwrap() });
        let mut model: Vec<ModelEntry> = Vec::new();
        let mut purged = 0usize;
        let mut term = 1u64;
        let mut serial = 0u64;
        for op in ops {
            let index = model.len() as u64;
            match op {
                Op::Blank | Op::Membership | Op::Data(..) => {
                    let id = log_id(term, index);
                    let (entry, m) = match op {
                        Op::Blank => (Entry::new_blank(id), ModelEntry { log_id: id, values: vec![], membership: false }),
                        Op::Membership => {
                            let mem = Membership::new_with_defaults(vec![[1u64, 2, 3].into()], []);
                            (Entry::new(id, EntryPayload::Membership(mem)), ModelEntry { log_id: id, values: vec![], membership: true })
                        }
                        Op::Data(n, b) => {
                            let values: Vec<String> = (0..n).map(|_| { serial += 1; format!("v{serial}") }).collect();
                            let payload = data_payload(&values, b);
                            (Entry::new(id, EntryPayload::Normal(Batches(payload))), ModelEntry { log_id: id, values, membership: false })
                        }
                        _ => unreachable!(),
                    };
                    rt.block_on(store.blocking_append([entry])).unwrap();
                    model.push(m);
                }
                Op::NewTerm => term += 1,
                Op::Truncate(n) => {
                    let keep = model.len().saturating_sub(n as usize).max(purged);
                    let last = keep.checked_sub(1).map(|i| model[i].log_id);
                    rt.block_on(store.truncate_after(last)).unwrap();
                    model.truncate(keep);
                }
                Op::Purge(n) => {
                    let upto = model.len().saturating_sub(n as usize + 1);
                    if upto >= purged && upto < model.len() {
                        rt.block_on(store.purge(model[upto].log_id)).unwrap();
                        purged = upto + 1;
                    }
                }
                Op::Reopen => {
                    // Close without a clean-shutdown marker is covered by the storage crate's
                    // crash tests; here: reopen and find every flushed entry again.
                    drop(store);
                    // Let the old flusher see its channel close and release the files.
                    rt.block_on(async { tokio::time::sleep(std::time::Duration::from_millis(5)).await });
                    store = rt.block_on(async { LogStore::open(dir.path(), LogConfig::default()).unwrap() });
                }
            }
            check(&rt, &mut store, &model, purged);
        }
    }
}
