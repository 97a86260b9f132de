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
use crate::log_store::{Shared, SnapshotPoint};
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
        let found = self.shared.with_index(|idx| idx.end_offset_at(committed.index));
        // An index that no longer holds the committed entry (cut by crash recovery) means the
        // hint is stale: replay instead.
        if let Some(end) = found {
            self.applied = Some(committed);
            // Falls back to the snapshot's membership when the membership entry was purged.
            self.membership = self.shared.membership_at(committed.index);
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

    /// A partition snapshot is built where the broker asked to cut the log (retention,
    /// DeleteRecords: see `Group::purge_to`), never at the applied point, so that a follower
    /// installing it starts its log where the leader's log now starts and receives every
    /// record above it. Without a requested cut (openraft's own tests) it is the applied point.
    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        match self.shared.take_cut() {
            Some(cut) => SnapshotBuilder {
                applied: Some(cut.log_id),
                membership: self.shared.membership_at(cut.log_id.index),
                high_watermark: cut.end,
                built: None,
            },
            None => SnapshotBuilder {
                applied: self.applied,
                membership: self.membership.clone(),
                high_watermark: self.shared.high_watermark(),
                built: None,
            },
        }
    }

    async fn try_create_snapshot_builder(&mut self, _force: bool) -> Option<Self::SnapshotBuilder> {
        let mut b = self.get_snapshot_builder().await;
        let snap = b.build_snapshot().await.ok()?;
        // Durable before openraft may purge the log up to it.
        let point = SnapshotPoint { meta: snap.meta.clone(), high_watermark: b.high_watermark };
        if let Err(e) = self.shared.save_snapshot(point) {
            tracing::error!(error = %e, "saving a snapshot failed; not building it");
            return None;
        }
        let data = snap.snapshot.into_inner();
        self.current = Some((snap.meta.clone(), data.clone()));
        b.built = Some((snap.meta, data));
        Some(b)
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: SnapshotData) -> Result<(), io::Error> {
        let body: SnapshotBody = postcard::from_bytes(snapshot.get_ref()).map_err(io::Error::other)?;
        if let Some(last) = meta.last_log_id {
            // A log that holds the snapshot's last entry (a restart restoring its own snapshot,
            // or a follower only slightly behind) keeps its records; openraft purges the
            // prefix next. Any other log restarts, empty, where the snapshot ends.
            if !self.shared.holds(&last) {
                self.shared.reset_to(EntryMeta {
                    log_id: last,
                    kind: EntryKind::Blank,
                    start: body.high_watermark,
                    end: body.high_watermark,
                })?;
            }
            self.shared.save_snapshot(SnapshotPoint { meta: meta.clone(), high_watermark: body.high_watermark })?;
        }
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.shared.set_high_watermark(body.high_watermark);
        self.current = Some((meta.clone(), snapshot.into_inner()));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snap>, io::Error> {
        if self.current.is_none() {
            // After a restart: the snapshot the log was purged to.
            if let Some(p) = self.shared.snapshot() {
                let data = postcard::to_stdvec(&SnapshotBody { high_watermark: p.high_watermark })
                    .map_err(io::Error::other)?;
                self.current = Some((p.meta, data));
            }
        }
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
