//! One Raft group on this node: its log store, state machine and openraft handle.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Config, Instant as _, ServerState, SnapshotPolicy};
use rill_storage::LogConfig;

use crate::log_store::{LogStore, Shared};
use crate::network::{GroupNetwork, Peers};
use crate::state_machine::{ApplyHook, StateMachine};
use crate::{Appended, NodeId, Raft};

/// Timing of every group on a node.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing { heartbeat_ms: 500, election_min_ms: 1500, election_max_ms: 3000 }
    }
}

pub fn raft_config(timing: &Timing) -> Arc<Config> {
    let c = Config {
        cluster_name: "rill".into(),
        heartbeat_interval: timing.heartbeat_ms,
        election_timeout_min: timing.election_min_ms,
        election_timeout_max: timing.election_max_ms,
        // A partition's records are its state: a snapshot cannot carry them, so snapshots are
        // built only where retention or DeleteRecords cut the log (`Group::purge_to`).
        snapshot_policy: SnapshotPolicy::Never,
        // Bounds the bytes of one AppendEntries (entries are produce requests, up to ~1 MiB).
        max_payload_entries: 64,
        enable_pre_vote: Some(true),
        // A follower that lost its disk comes back with an empty log; by default openraft
        // takes such a reversion for a bug and stops replicating to it. Re-replicating is what
        // an operator replacing a disk wants (Kafka does the same).
        allow_log_reversion: Some(true),
        // openraft lets a restarted leader take its leadership back without an election.
        // Here that leader may come back with a stale commit index (the committed hint is
        // not fsynced), so a stale high watermark, and, after a power loss, without entries a
        // quorum of followers had committed while its own fsync was still in flight. An
        // election instead makes the longest log win and commits an entry of the new term
        // before the high watermark moves.
        enable_leader_restore: Some(false),
        ..Default::default()
    };
    Arc::new(c.validate().expect("valid raft config"))
}

/// Why a write was not committed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("raft group stopped: {0}")]
    Fatal(String),
}

#[derive(Clone)]
pub struct Group {
    pub id: u64,
    pub node_id: NodeId,
    pub raft: Raft,
    pub shared: Arc<Shared>,
    peers: Arc<Peers>,
}

impl Group {
    /// Opens (or creates) group `id`'s log in `dir` and starts its Raft node.
    pub async fn open(
        node_id: NodeId,
        id: u64,
        dir: &Path,
        log_config: LogConfig,
        peers: Arc<Peers>,
        on_apply: Option<ApplyHook>,
        config: Arc<Config>,
    ) -> io::Result<Group> {
        // Recovery reads the log's tail, seconds on a slow disk: off the async workers, which
        // run every group's heartbeats and elections (a node replaying its metadata log opens
        // its replicas one after another).
        let path = dir.to_path_buf();
        let store = tokio::task::spawn_blocking(move || LogStore::open(&path, log_config))
            .await
            .map_err(io::Error::other)??;
        let shared = store.shared.clone();
        // The metadata group (the one with a hook) always ticks: it is one group, and every
        // node needs it live.
        shared.quiet.allowed.store(on_apply.is_none(), std::sync::atomic::Ordering::Release);
        shared.apply_reads_records.store(on_apply.is_some(), std::sync::atomic::Ordering::Release);
        let sm = StateMachine::new(shared.clone(), on_apply);
        let network = GroupNetwork { group: id, peers: peers.clone() };
        let raft = Raft::new(node_id, config, network, store, sm).await.map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Group { id, node_id, raft, shared, peers })
    }

    /// Makes `members` the first membership if this group has never had one. Every member may
    /// call it: openraft accepts the same initial membership on each, and the log decides.
    pub async fn initialize(&self, members: BTreeMap<NodeId, BasicNode>) -> io::Result<()> {
        if self.raft.is_initialized().await.map_err(|e| io::Error::other(e.to_string()))? {
            return Ok(());
        }
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            // Someone else's initialization reached us first.
            Err(RaftError::APIError(_)) => Ok(()),
            Err(e) => Err(io::Error::other(e.to_string())),
        }
    }

    /// Proposes record batches; returns once they are committed (and applied) with the Kafka
    /// offsets they got.
    pub async fn write(&self, batches: Bytes) -> Result<Appended, WriteError> {
        self.write_indexed(batches).await.map(|(_, a)| a)
    }

    /// Like [`Group::write`], also returning the entry's Raft index.
    pub async fn write_indexed(&self, batches: Bytes) -> Result<(u64, Appended), WriteError> {
        self.wake().await;
        match self.raft.client_write(crate::Batches(batches)).await {
            Ok(resp) => Ok((resp.log_id.index, resp.data)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(WriteError::NotLeader { leader: f.leader_id })
            }
            Err(e) => Err(WriteError::Fatal(e.to_string())),
        }
    }

    /// Queues record batches for replication and returns at once (so a connection's produce
    /// requests enter the log in arrival order); the returned future resolves when they are
    /// committed.
    pub async fn submit(
        &self,
        batches: Bytes,
    ) -> Result<impl std::future::Future<Output = Result<Appended, WriteError>> + Send + 'static, WriteError> {
        self.wake().await;
        let (responder, rx) = openraft::impls::ProgressResponder::complete_only();
        self.raft
            .client_write_ff(crate::Batches(batches), Some(responder))
            .await
            .map_err(|e| WriteError::Fatal(e.to_string()))?;
        Ok(async move {
            match rx.await {
                Ok(Ok(resp)) => Ok(resp.data),
                Ok(Err(ClientWriteError::ForwardToLeader(f))) => Err(WriteError::NotLeader { leader: f.leader_id }),
                Ok(Err(e)) => Err(WriteError::Fatal(e.to_string())),
                Err(_) => Err(WriteError::Fatal("raft group stopped".into())),
            }
        })
    }

    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        m.state == ServerState::Leader && m.current_leader == Some(self.node_id)
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow_watched().current_leader
    }

    /// The Raft term, which is the Kafka leader epoch.
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow_watched().current_term
    }

    /// Voters of the current membership.
    pub fn voters(&self) -> BTreeSet<NodeId> {
        self.raft.metrics().borrow_watched().membership_config.membership().voter_ids().collect()
    }

    /// On the leader: the voters that acknowledged the leader within `max_lag` and whose log
    /// is within a few entries of the leader's (Kafka's in-sync replicas, with
    /// `replica.lag.time.max.ms`). Elsewhere: all voters (only the leader knows).
    pub fn in_sync(&self, max_lag: Duration) -> BTreeSet<NodeId> {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        let voters: BTreeSet<NodeId> = m.membership_config.membership().voter_ids().collect();
        let (Some(repl), Some(last)) = (m.replication.as_ref(), m.last_log_index) else { return voters };
        const LAG: u64 = 1000;
        // A quiesced group sends no Raft heartbeats: its followers' node heartbeats count.
        let quiet = self.shared.quiet.is_quiesced();
        let acked_lately = |v: &NodeId| {
            if quiet {
                return self.peers.liveness.acked_within(*v, max_lag);
            }
            m.heartbeat.as_ref().and_then(|h| h.get(v)).and_then(|t| t.as_ref()).is_some_and(|t| t.elapsed() <= max_lag)
        };
        voters
            .into_iter()
            .filter(|v| {
                *v == self.node_id
                    || (acked_lately(v)
                        && repl.get(v).is_some_and(|matched| matched.as_ref().is_some_and(|l| l.index + LAG >= last)))
            })
            .collect()
    }

    /// Asks the leader (this node) to hand leadership to `to`; ignored elsewhere.
    pub async fn transfer_leader(&self, to: NodeId) -> Result<(), WriteError> {
        self.wake().await;
        self.raft.trigger().transfer_leader(to).await.map_err(|e| WriteError::Fatal(e.to_string()))
    }

    /// On the leader: whether `node`'s log matches the leader's up to the last entry.
    pub fn caught_up(&self, node: NodeId) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        let (Some(repl), Some(last)) = (m.replication.as_ref(), m.last_log_index) else { return false };
        repl.get(&node).is_some_and(|matched| matched.as_ref().is_some_and(|l| l.index >= last))
    }

    /// Removes the log's prefix below Kafka offset `offset` on this replica (retention,
    /// DeleteRecords), as far as whole applied entries allow: builds a snapshot at the last
    /// entry ending at or below both `offset` and the high watermark and has openraft purge
    /// up to it, which deletes those records (see `LogStore::purge`). Followers that still
    /// need the purged entries get the snapshot and restart their logs where it ends.
    /// Returns the Kafka offset the Raft log now starts at, or `None` if nothing was purged.
    /// Each replica does this on its own, as each Kafka replica applies retention itself.
    pub async fn purge_to(&self, offset: i64) -> Result<Option<i64>, WriteError> {
        let applied = self.raft.metrics().borrow_watched().last_applied;
        let Some(applied) = applied else { return Ok(None) };
        let target = offset.min(self.shared.high_watermark());
        let cut = self.shared.with_index(|idx| {
            let purged = idx.purged().map(|p| p.log_id.index);
            idx.last_ending_by(target, applied.index).filter(|m| purged.is_none_or(|p| m.log_id.index > p)).cloned()
        });
        let Some(cut) = cut else { return Ok(None) };
        let fatal = |e: openraft::error::Fatal<crate::TypeConfig>| WriteError::Fatal(e.to_string());
        self.shared.request_cut(cut.clone());
        self.raft.trigger().snapshot().await.map_err(fatal)?;
        let built = self
            .raft
            .wait(Some(Duration::from_secs(10)))
            .metrics(|m| m.snapshot.is_some_and(|s| s.index >= cut.log_id.index), "snapshot at the cut")
            .await;
        if built.is_err() {
            return Err(WriteError::Fatal(format!("no snapshot at {} in time", cut.log_id)));
        }
        self.raft.trigger().purge_log(cut.log_id.index).await.map_err(fatal)?;
        Ok(Some(cut.end))
    }

    /// Resumes the group's ticker if it was quiesced (see `quiesce`): before a write or a
    /// leadership transfer.
    pub async fn wake(&self) {
        if !self.shared.quiet.is_quiesced() {
            return;
        }
        let since = <openraft::type_config::alias::InstantOf<crate::TypeConfig> as openraft::Instant>::now();
        crate::quiesce::resume(self).await;
        if self.is_leader() {
            // openraft refuses writes from a leader that heard from no quorum within its lease
            // (an isolated leader must not accept them); a quiet group heard from nobody. The
            // heartbeat `resume` sent renews the lease: wait for its answers.
            let lease = Duration::from_millis(self.raft.config().election_timeout_max);
            let _ = self
                .raft
                .wait(Some(lease))
                .metrics(|m| m.last_quorum_acked.as_ref().is_some_and(|t| **t >= since), "quorum ack after waking")
                .await;
        }
    }

    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
        let _ = self.shared.log.close();
    }

    /// Waits until this group has some leader (or the timeout passes).
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<NodeId> {
        let mut rx = self.raft.metrics();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(l) = rx.borrow_watched().current_leader {
                return Some(l);
            }
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                return None;
            }
        }
    }
}
