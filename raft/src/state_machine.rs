//! The state machine of a Raft group: what is applied, hence the Kafka high watermark.
//!
//! A partition's "state" is its log itself, so applying an entry only moves the high
//! watermark to the entry's Kafka end offset and answers the proposer with the offsets it got.
//! The metadata group adds an `on_apply` hook that decodes the entry's records as commands.

use std::io;
use std::io::Cursor;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend};
use serde::{Deserialize, Serialize};

use crate::entry_index::{EntryKind, EntryMeta};
use crate::log_store::Shared;
use crate::{Appended, LogId, SnapshotMeta, StoredMembership, TypeConfig};

/// Called with each applied data entry's log id and records (the metadata quorum's commands).
pub type ApplyHook = Arc<dyn Fn(&LogId, &Bytes) + Send + Sync>;

pub type SnapshotData = Cursor<Vec<u8>>;
type Snap = openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotData>;

#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    high_watermark: i64,
}

pub struct StateMachine {
    shared: Arc<Shared>,
    applied: Option<LogId>,
    membership: StoredMembership,
    current: Option<(SnapshotMeta, Vec<u8>)>,
    on_apply: Option<ApplyHook>,
}

impl StateMachine {
    /// A state machine over `shared`. Without a hook nothing but the log holds state, so what
    /// was committed before a restart counts as applied (no re-reading the whole log at start);
    /// with a hook every entry is re-applied from the start to rebuild the hook's state.
    pub fn new(shared: Arc<Shared>, on_apply: Option<ApplyHook>) -> Self {
        let mut sm =
            StateMachine { shared, applied: None, membership: StoredMembership::default(), current: None, on_apply };
        if sm.on_apply.is_none() {
            sm.resume_from_committed();
        }
        sm
    }

    fn resume_from_committed(&mut self) {
        let Some(committed) = self.shared.committed() else { return };
        let found = self.shared.with_index(|idx| {
            let end = idx.end_offset_at(committed.index)?;
            let first = idx.first_index().unwrap_or(committed.index + 1);
            let membership = (first..=committed.index).rev().find_map(|i| match idx.get(i) {
                Some(EntryMeta { log_id, kind: EntryKind::Membership(m), .. }) => Some((*log_id, m.clone())),
                _ => None,
            });
            Some((end, membership))
        });
        // An index that no longer holds the committed entry (cut by crash recovery) means the
        // hint is stale: replay instead.
        if let Some((end, membership)) = found {
            self.applied = Some(committed);
            if let Some((id, m)) = membership {
                self.membership = StoredMembership::new(Some(id), m);
            }
            self.shared.set_high_watermark(end);
        }
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let log_id = entry.log_id;
            let (start, end) = self
                .shared
                .with_index(|idx| idx.get(log_id.index).map(|m| (m.start, m.end)))
                .unwrap_or((-1, self.shared.high_watermark()));
            let resp = match entry.payload {
                EntryPayload::Normal(batches) => {
                    if let Some(hook) = &self.on_apply {
                        hook(&log_id, &batches.0);
                    }
                    Appended { base_offset: start, end_offset: end }
                }
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(log_id), m);
                    Appended { base_offset: -1, end_offset: end }
                }
                EntryPayload::Blank => Appended { base_offset: -1, end_offset: end },
            };
            self.applied = Some(log_id);
            self.shared.set_high_watermark(end);
            if let Some(r) = responder {
                r.send(resp);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            applied: self.applied,
            membership: self.membership.clone(),
            high_watermark: self.shared.high_watermark(),
            built: None,
        }
    }

    async fn try_create_snapshot_builder(&mut self, _force: bool) -> Option<Self::SnapshotBuilder> {
        let mut b = self.get_snapshot_builder().await;
        let snap = b.build_snapshot().await.ok()?;
        let data = snap.snapshot.into_inner();
        self.current = Some((snap.meta.clone(), data.clone()));
        b.built = Some((snap.meta, data));
        Some(b)
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: SnapshotData) -> Result<(), io::Error> {
        let body: SnapshotBody = postcard::from_bytes(snapshot.get_ref()).map_err(io::Error::other)?;
        if let Some(last) = meta.last_log_id {
            self.shared.reset_index(EntryMeta {
                log_id: last,
                kind: EntryKind::Blank,
                start: body.high_watermark,
                end: body.high_watermark,
            })?;
        }
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.shared.set_high_watermark(body.high_watermark);
        self.current = Some((meta.clone(), snapshot.into_inner()));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snap>, io::Error> {
        Ok(self
            .current
            .as_ref()
            .map(|(meta, data)| Snapshot { meta: meta.clone(), snapshot: Cursor::new(data.clone()) }))
    }
}

pub struct SnapshotBuilder {
    applied: Option<LogId>,
    membership: StoredMembership,
    high_watermark: i64,
    built: Option<(SnapshotMeta, Vec<u8>)>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snap, io::Error> {
        if let Some((meta, data)) = &self.built {
            return Ok(Snapshot { meta: meta.clone(), snapshot: Cursor::new(data.clone()) });
        }
        let data =
            postcard::to_stdvec(&SnapshotBody { high_watermark: self.high_watermark }).map_err(io::Error::other)?;
        let meta = SnapshotMeta { last_log_id: self.applied, last_membership: self.membership.clone() };
        Ok(Snapshot { meta, snapshot: Cursor::new(data) })
    }
}
