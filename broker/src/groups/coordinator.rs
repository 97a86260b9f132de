//! The group coordinator: every group's state machine, its committed offsets, and their
//! durability in `__consumer_offsets`. This single node coordinates every group.
//!
//! Locks (all `parking_lot`, none held across an `.await`):
//! - `groups` maps group ids to entries; held only to look up, insert or remove an entry.
//! - each entry's mutex serialises one group: its state machine, its offsets and its appends
//!   to the log (so the log order of a group's records is the order of its changes). Lock
//!   order: an entry, then `groups` (never the reverse: look-ups drop `groups` first).
//!
//! An OffsetCommit is appended under the entry lock, fsynced outside it (group commit in the
//! log), and only then applied to the in-memory offsets and acknowledged. Each offset keeps
//! the log offset of its record, so concurrent commits apply in log order whichever fsync
//! returns first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use parking_lot::Mutex;
use rill_protocol::messages::ConsumerProtocolSubscription;
use rill_protocol::{Decodable, ResponseError};
use tokio::sync::oneshot;

use super::assignor::AssignorKind;
use super::consumer::{
    ConsumerGroup, ConsumerImage, ConsumerRecord, ConsumerSettings, HbError, HeartbeatRequest, HeartbeatResponse,
    TopicView,
};
use super::offsets_log::{GroupValue, OffsetValue, OffsetsLog, OffsetsRecord, StoredMember, OFFSETS_TOPIC};
use super::state::{Action, Group, GroupLimits, JoinRequest, JoinResult, Phase, Reply, SyncResult};
use crate::broker::now_ms;
use crate::config::{parse_num, BrokerConfig};
use crate::error::KafkaError;
use crate::topics::{Partition, Topics};

/// Answers a waiting JoinGroup/SyncGroup.
pub type Responder = oneshot::Sender<Reply>;

/// Committed offsets by topic: (topic, [(partition, offset if any)]).
pub type TopicOffsets = Vec<(String, Vec<(i32, Option<OffsetValue>)>)>;

/// A result per partition, by topic.
pub type TopicResults = Vec<(String, Vec<(i32, Result<(), ResponseError>)>)>;

/// A committed offset and the log offset of the record that holds it.
#[derive(Debug, Clone)]
pub struct Committed {
    pub value: OffsetValue,
    log_offset: i64,
}

struct GroupEntry {
    group: Group<Responder>,
    /// Set while the group is a consumer-protocol (KIP-848) group. A group is of one type at a
    /// time: an empty group of either type becomes the type of the first member to join.
    consumer: Option<ConsumerGroup>,
    offsets: BTreeMap<(String, i32), Committed>,
    /// Deleted (tombstoned) and detached from the map; holders of the Arc must look again.
    removed: bool,
    /// Held from taking a consumer group's changes until they are durable, so the group's
    /// writes reach the log in the order of its changes (compaction keeps the last per key)
    /// even where the append itself is asynchronous (Raft). A tokio lock: held across the
    /// write's `.await`.
    write_turn: Arc<tokio::sync::Mutex<()>>,
}

/// A group as metrics and the admin listener show it.
#[derive(Debug, Clone)]
pub struct GroupSnapshot {
    pub group: String,
    /// `classic` or `consumer` (KIP-848).
    pub kind: &'static str,
    pub state: &'static str,
    pub members: usize,
    /// Completed rebalances: the generation (classic) or the group epoch (consumer protocol).
    pub generation: i32,
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

/// Group settings from the broker config.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub limits: GroupLimits,
    /// `group.consumer.*`
    pub consumer: ConsumerSettings,
    /// `offsets.topic.num.partitions`
    pub partitions: i32,
    /// `offsets.retention.minutes`, in ms.
    pub retention_ms: i64,
    /// `offsets.retention.check.interval.ms`
    pub retention_check_interval_ms: u64,
    /// `offset.metadata.max.bytes` (Kafka's default; not configurable here).
    pub max_metadata_bytes: usize,
}

impl CoordinatorConfig {
    pub fn from_broker(c: &BrokerConfig) -> anyhow::Result<Self> {
        let get = |k: &str| c.value(k).unwrap_or_default();
        let limits = GroupLimits {
            min_session_timeout_ms: parse_num("group.min.session.timeout.ms", &get("group.min.session.timeout.ms"))?,
            max_session_timeout_ms: parse_num("group.max.session.timeout.ms", &get("group.max.session.timeout.ms"))?,
            initial_rebalance_delay_ms: parse_num(
                "group.initial.rebalance.delay.ms",
                &get("group.initial.rebalance.delay.ms"),
            )?,
        };
        let partitions: i32 = parse_num("offsets.topic.num.partitions", &get("offsets.topic.num.partitions"))?;
        anyhow::ensure!(partitions >= 1, "offsets.topic.num.partitions must be at least 1");
        let minutes: i64 = parse_num("offsets.retention.minutes", &get("offsets.retention.minutes"))?;
        let mut assignors = Vec::new();
        for name in get("group.consumer.assignors").split(',').filter(|n| !n.trim().is_empty()) {
            let kind = AssignorKind::parse(name)
                .ok_or_else(|| anyhow::anyhow!("group.consumer.assignors: unknown assignor {name:?}"))?;
            if !assignors.contains(&kind) {
                assignors.push(kind);
            }
        }
        anyhow::ensure!(!assignors.is_empty(), "group.consumer.assignors must name at least one assignor");
        let max_size: i64 = parse_num("group.consumer.max.size", &get("group.consumer.max.size"))?;
        let consumer = ConsumerSettings {
            heartbeat_interval_ms: parse_num(
                "group.consumer.heartbeat.interval.ms",
                &get("group.consumer.heartbeat.interval.ms"),
            )?,
            session_timeout_ms: parse_num(
                "group.consumer.session.timeout.ms",
                &get("group.consumer.session.timeout.ms"),
            )?,
            assignors,
            max_size: max_size.max(1) as usize,
        };
        Ok(CoordinatorConfig {
            limits,
            consumer,
            partitions,
            retention_ms: minutes.saturating_mul(60_000),
            retention_check_interval_ms: parse_num(
                "offsets.retention.check.interval.ms",
                &get("offsets.retention.check.interval.ms"),
            )?,
            max_metadata_bytes: 4096,
        })
    }
}

pub struct GroupCoordinator {
    config: CoordinatorConfig,
    log: OffsetsLog,
    groups: Mutex<HashMap<String, Arc<Mutex<GroupEntry>>>>,
    /// In a cluster: the `__consumer_offsets` partitions this node leads and has loaded, with
    /// the term it loaded them in. `None` on a single node, which coordinates every group.
    loaded: Option<Mutex<HashMap<usize, u64>>>,
    /// Cluster mode: how many offsets partitions have a watcher (see [`GroupCoordinator::attach`]).
    watched: Mutex<usize>,
}

impl GroupCoordinator {
    /// Opens (creating on first start) `__consumer_offsets` and loads every group and offset
    /// from it. Runs before the broker serves anything.
    pub fn open(topics: &Topics, broker_config: &BrokerConfig) -> anyhow::Result<Arc<Self>> {
        let config = CoordinatorConfig::from_broker(broker_config)?;
        let topic = match topics.get(OFFSETS_TOPIC) {
            Some(t) => t,
            None => {
                let mut configs = BTreeMap::new();
                // Never delete by time or size: latest-wins records must survive, and the log
                // cleaner bounds the log.
                configs.insert("cleanup.policy".to_string(), "compact".to_string());
                configs.insert("segment.bytes".to_string(), "104857600".to_string());
                topics
                    .create(OFFSETS_TOPIC, config.partitions, configs)
                    .map_err(|e| anyhow::anyhow!("cannot create {OFFSETS_TOPIC}: {e}"))?
            }
        };
        let coordinator = GroupCoordinator {
            config,
            log: OffsetsLog::new(topic.partitions.clone()),
            groups: Mutex::new(HashMap::new()),
            loaded: None,
            watched: Mutex::new(0),
        };
        let started = std::time::Instant::now();
        let mut loaded: HashMap<String, GroupEntry> = HashMap::new();
        let mut records = 0;
        for p in coordinator.log.partitions() {
            records += coordinator.load_partition(&p, &mut loaded)?;
        }
        tracing::info!(
            groups = loaded.len(),
            records,
            ms = started.elapsed().as_millis() as u64,
            "loaded consumer groups from {OFFSETS_TOPIC}"
        );
        *coordinator.groups.lock() = loaded.into_iter().map(|(k, v)| (k, Arc::new(Mutex::new(v)))).collect();
        let coordinator = Arc::new(coordinator);
        let ids: Vec<String> = coordinator.groups.lock().keys().cloned().collect();
        coordinator.schedule_restored(&ids);
        Ok(coordinator)
    }

    /// Restored consumer groups' members expire if they do not come back within a session.
    fn schedule_restored(self: &Arc<Self>, ids: &[String]) {
        for id in ids {
            let Some(entry) = self.get(id) else { continue };
            let at = entry.lock().consumer.as_mut().and_then(|c| c.wake_needed());
            if let Some(at) = at {
                self.schedule_consumer_tick(id, at);
            }
        }
    }

    /// Cluster mode: a coordinator without groups until `__consumer_offsets` exists (see
    /// [`GroupCoordinator::attach`]); then it coordinates the groups of the partitions it leads.
    pub fn open_cluster(broker_config: &BrokerConfig) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(GroupCoordinator {
            config: CoordinatorConfig::from_broker(broker_config)?,
            log: OffsetsLog::new(Vec::new()),
            groups: Mutex::new(HashMap::new()),
            loaded: Some(Mutex::new(HashMap::new())),
            watched: Mutex::new(0),
        }))
    }

    /// Cluster mode: coordinates on this node's replicas of `__consumer_offsets`' partitions
    /// (by partition index, `None` where it holds none). Called again whenever a partition
    /// moves to or away from this node. A watcher per partition loads its groups when this
    /// node becomes its leader and drops them when it stops being the leader or the replica
    /// leaves, so the groups follow their partition's leader wherever it moves.
    pub fn attach(self: &Arc<Self>, partitions: Vec<Option<Arc<Partition>>>) {
        let n = partitions.len();
        self.log.attach(partitions);
        let first = std::mem::replace(&mut *self.watched.lock(), n).min(n);
        for k in first..n {
            let me = Arc::downgrade(self);
            tokio::spawn(async move {
                let mut last: Option<Arc<Partition>> = None;
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let Some(me) = me.upgrade() else { return };
                    let loaded_term = me.loaded.as_ref().and_then(|l| l.lock().get(&k).copied());
                    let current = me.log.slot(k);
                    // A replica opened anew (moved away and back) starts from scratch.
                    if current.as_ref().map(Arc::as_ptr) != last.as_ref().map(Arc::as_ptr) {
                        if loaded_term.is_some() {
                            me.unload(k);
                        }
                        last = current;
                        continue;
                    }
                    let Some(p) = &current else { continue };
                    let Some(g) = &p.replica else { continue };
                    if g.is_leader() {
                        let term = g.term();
                        // Load once the new term's first entry is committed: then the high
                        // watermark covers everything earlier leaders wrote.
                        if loaded_term != Some(term) && p.high_watermark() >= p.log.log_end_offset() {
                            if let Err(e) = me.load_as_leader(k, p, term) {
                                tracing::error!(partition = k, error = %e, "loading consumer groups failed");
                            }
                        }
                    } else if loaded_term.is_some() {
                        me.unload(k);
                    }
                }
            });
        }
    }

    fn load_as_leader(self: &Arc<Self>, k: usize, p: &Partition, term: u64) -> anyhow::Result<()> {
        let mut fresh = HashMap::new();
        let records = self.load_partition(p, &mut fresh)?;
        let n = self.log.count();
        let mut groups = self.groups.lock();
        groups.retain(|id, _| super::offsets_log::partition_for(id, n) != k);
        let count = fresh.len();
        let ids: Vec<String> = fresh.keys().cloned().collect();
        groups.extend(fresh.into_iter().map(|(k, v)| (k, Arc::new(Mutex::new(v)))));
        drop(groups);
        self.schedule_restored(&ids);
        if let Some(l) = &self.loaded {
            l.lock().insert(k, term);
        }
        tracing::info!(partition = k, term, groups = count, records, "now coordinating {OFFSETS_TOPIC} partition");
        Ok(())
    }

    fn unload(&self, k: usize) {
        if let Some(l) = &self.loaded {
            l.lock().remove(&k);
        }
        let n = self.log.count();
        let mut groups = self.groups.lock();
        let gone: Vec<String> =
            groups.keys().filter(|id| super::offsets_log::partition_for(id, n) == k).cloned().collect();
        for id in gone {
            if let Some(e) = groups.remove(&id) {
                e.lock().removed = true;
            }
        }
        tracing::info!(partition = k, "no longer coordinating {OFFSETS_TOPIC} partition");
    }

    /// Whether this node coordinates `group` now: always on a single node; in a cluster when
    /// it leads the group's offsets partition and has loaded it.
    pub fn check_coordinator(&self, group: &str) -> Result<(), ResponseError> {
        let Some(loaded) = &self.loaded else { return Ok(()) };
        if self.log.count() == 0 {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        // No replica here: the group's partition lives on other nodes.
        let Some(p) = self.log.partition_of(group) else { return Err(ResponseError::NotCoordinator) };
        let k = p.index as usize;
        match &p.replica {
            Some(g) if g.is_leader() => {
                if loaded.lock().get(&k) == Some(&g.term()) {
                    Ok(())
                } else {
                    Err(ResponseError::CoordinatorLoadInProgress)
                }
            }
            _ => Err(ResponseError::NotCoordinator),
        }
    }

    /// The node coordinating `group`: this one on a single node; in a cluster the leader of
    /// the group's offsets partition, if any.
    pub fn coordinator_of(&self, group: &str, me: i32) -> Option<i32> {
        if self.loaded.is_none() {
            return Some(me);
        }
        let p = self.log.partition_of(group)?;
        p.replica.as_ref()?.leader().map(|l| l as i32)
    }

    fn is_cluster(&self) -> bool {
        self.loaded.is_some()
    }

    /// Replays one offsets partition into `loaded`.
    fn load_partition(&self, p: &Partition, loaded: &mut HashMap<String, GroupEntry>) -> anyhow::Result<usize> {
        let now = now_ms();
        // A consumer group's records are gathered whole before it is rebuilt: its member,
        // assignment and epoch records may come in any order.
        let mut images: HashMap<String, ConsumerImage> = HashMap::new();
        let n = OffsetsLog::replay_partition(p, |log_offset, rec| {
            let group = rec.group().to_string();
            match rec {
                OffsetsRecord::Offset { topic, partition, value, .. } => match value {
                    Some(value) => {
                        let e = loaded.entry(group.clone()).or_insert_with(|| self.new_entry(&group, now));
                        e.offsets.insert((topic, partition), Committed { value, log_offset });
                    }
                    None => {
                        if let Some(e) = loaded.get_mut(&group) {
                            e.offsets.remove(&(topic, partition));
                        }
                    }
                },
                OffsetsRecord::Group { value: Some(v), .. } => {
                    let e = loaded.entry(group.clone()).or_insert_with(|| self.new_entry(&group, now));
                    // Members are not restored: live clients get UNKNOWN_MEMBER_ID and rejoin.
                    e.group.generation = v.generation;
                    e.group.protocol_type = Some(v.protocol_type).filter(|p| !p.is_empty());
                    e.group.state_timestamp = if v.state_timestamp > 0 { v.state_timestamp } else { now };
                }
                OffsetsRecord::Group { value: None, .. } => {
                    loaded.remove(&group);
                    images.remove(&group);
                }
                OffsetsRecord::Consumer { rec, .. } => images.entry(group).or_default().apply(rec),
            }
        })?;
        for (group, image) in images {
            if !image.is_live() {
                continue;
            }
            let e = loaded.entry(group.clone()).or_insert_with(|| self.new_entry(&group, now));
            e.consumer = Some(ConsumerGroup::restore(&group, self.config.consumer.clone(), image, now));
        }
        Ok(n)
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    fn new_entry(&self, id: &str, now: i64) -> GroupEntry {
        GroupEntry {
            group: Group::new(id, self.config.limits, now),
            consumer: None,
            offsets: BTreeMap::new(),
            removed: false,
            write_turn: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    fn get(&self, id: &str) -> Option<Arc<Mutex<GroupEntry>>> {
        self.groups.lock().get(id).cloned()
    }

    fn get_or_create(&self, id: &str) -> Arc<Mutex<GroupEntry>> {
        let mut groups = self.groups.lock();
        groups.entry(id.to_string()).or_insert_with(|| Arc::new(Mutex::new(self.new_entry(id, now_ms())))).clone()
    }

    /// Runs `f` on a live group (created if `create`), then the actions it produced.
    fn with_group<R>(
        self: &Arc<Self>,
        id: &str,
        create: bool,
        mut f: impl FnMut(&mut Group<Responder>, i64) -> R,
    ) -> Option<R> {
        // A group removed between the look-up and the lock is looked up again.
        for _ in 0..3 {
            let entry = if create { self.get_or_create(id) } else { self.get(id)? };
            let mut e = entry.lock();
            if e.removed {
                continue;
            }
            let r = f(&mut e.group, now_ms());
            let actions = e.group.take_actions();
            self.run_actions(&mut e, actions);
            return Some(r);
        }
        None
    }

    fn run_actions(self: &Arc<Self>, e: &mut GroupEntry, actions: Vec<Action<Responder>>) {
        for a in actions {
            match a {
                Action::Reply(t, r) => {
                    let _ = t.send(r); // the requester may have gone away
                }
                Action::WakeAt(at) => {
                    let Ok(rt) = tokio::runtime::Handle::try_current() else { continue };
                    let me = Arc::clone(self);
                    let id = e.group.id.clone();
                    let wait = Duration::from_millis((at - now_ms()).max(0) as u64);
                    rt.spawn(async move {
                        tokio::time::sleep(wait).await;
                        me.with_group(&id, false, |g, now| g.tick(now));
                    });
                }
                Action::StoreGroup => {
                    let rec = OffsetsRecord::Group { group: e.group.id.clone(), value: Some(group_value(&e.group)) };
                    self.append_in_background(&e.group.id, &[rec]);
                }
            }
        }
    }

    /// Appends records whose durability nobody waits for (group metadata, tombstones).
    fn append_in_background(&self, group: &str, records: &[OffsetsRecord]) {
        if self.is_cluster() {
            let Some(p) = self.log.partition_of(group) else { return };
            let (group, records) = (group.to_string(), records.to_vec());
            tokio::spawn(async move {
                if let Err(e) = OffsetsLog::write_replicated(&p, &records, now_ms()).await {
                    tracing::warn!(group, error = %e, "cannot write to {OFFSETS_TOPIC}");
                }
            });
            return;
        }
        match self.log.append(group, records, now_ms()) {
            Ok(a) => {
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn_blocking(move || {
                        if let Err(e) = a.partition.log.sync(a.sync_upto) {
                            tracing::error!(error = %e, "fsync of {OFFSETS_TOPIC} failed");
                        }
                    });
                }
            }
            Err(e) => tracing::error!(group, error = %e, "cannot write to {OFFSETS_TOPIC}"),
        }
    }

    // --------------------------------------------------------------------------------------
    // Group membership
    // --------------------------------------------------------------------------------------

    pub async fn join(self: &Arc<Self>, group_id: &str, req: JoinRequest) -> JoinResult {
        let member_id = req.member_id.clone();
        if let Some(entry) = self.get(group_id) {
            let mut e = entry.lock();
            match &e.consumer {
                // Kafka would take the classic member into the consumer group (online
                // migration); Rill does not mix protocols in one group.
                Some(c) if !c.is_empty() => {
                    return JoinResult::error(ResponseError::InconsistentGroupProtocol, &member_id)
                }
                // An empty consumer group becomes a classic one; its consumer records go.
                Some(_) => {
                    let tombstones = e.consumer.take().map(|mut c| c.take_tombstones()).unwrap_or_default();
                    let records = consumer_records(group_id, tombstones);
                    self.append_in_background(group_id, &records);
                }
                None => {}
            }
        }
        let (tx, rx) = oneshot::channel();
        let mut slot = Some((req, tx));
        let ran = self.with_group(group_id, true, |g, now| {
            if let Some((req, tx)) = slot.take() {
                g.join(req, tx, now)
            }
        });
        if ran.is_none() {
            return JoinResult::error(ResponseError::CoordinatorNotAvailable, &member_id);
        }
        match rx.await {
            Ok(Reply::Join(r)) => r,
            _ => JoinResult::error(ResponseError::UnknownMemberId, &member_id),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn sync(
        self: &Arc<Self>,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncResult {
        let (tx, rx) = oneshot::channel();
        let mut slot = Some((assignments, tx));
        let ran = self.with_group(group_id, false, |g, now| {
            if let Some((a, tx)) = slot.take() {
                g.sync(generation, member_id, instance_id, protocol_type, protocol_name, a, tx, now)
            }
        });
        if ran.is_none() {
            return SyncResult::error(ResponseError::UnknownMemberId);
        }
        match rx.await {
            Ok(Reply::Sync(r)) => r,
            _ => SyncResult::error(ResponseError::UnknownMemberId),
        }
    }

    pub fn heartbeat(
        self: &Arc<Self>,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        self.with_group(group_id, false, |g, now| g.heartbeat(generation, member_id, instance_id, now))
            .unwrap_or(Err(ResponseError::UnknownMemberId))
    }

    /// LeaveGroup of each (member id, group.instance.id).
    pub fn leave(
        self: &Arc<Self>,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Vec<Result<(), ResponseError>> {
        self.with_group(group_id, false, |g, now| {
            members.iter().map(|(m, i)| g.leave(m, i.as_deref(), now)).collect::<Vec<_>>()
        })
        .unwrap_or_else(|| members.iter().map(|_| Err(ResponseError::UnknownMemberId)).collect())
    }

    // --------------------------------------------------------------------------------------
    // The consumer group protocol (KIP-848)
    // --------------------------------------------------------------------------------------

    /// ConsumerGroupHeartbeat. `topics` resolves subscribed topic names. Answers once what the
    /// heartbeat changed is durable, so an epoch or assignment a member was given survives a
    /// coordinator crash.
    pub async fn consumer_heartbeat(
        self: &Arc<Self>,
        group_id: &str,
        req: HeartbeatRequest,
        topics: &(dyn TopicView + Sync),
    ) -> Result<HeartbeatResponse, HbError> {
        let (entry, r) = self.consumer_heartbeat_in_memory(group_id, req, topics)?;
        self.persist_consumer(group_id, &entry).await.map_err(|e| (e, None))?;
        r
    }

    /// Writes what changed in a consumer group since its last write (nothing for a plain
    /// heartbeat) and waits until it is durable.
    async fn persist_consumer(&self, group_id: &str, entry: &Arc<Mutex<GroupEntry>>) -> Result<(), ResponseError> {
        let turn = entry.lock().write_turn.clone();
        let _turn = turn.lock().await;
        let records = {
            let mut e = entry.lock();
            if e.removed {
                return Ok(());
            }
            let Some(c) = e.consumer.as_mut() else { return Ok(()) };
            consumer_records(group_id, c.take_changes())
        };
        if records.is_empty() {
            return Ok(());
        }
        let r = self.write_durably(group_id, &records).await;
        if r.is_err() {
            if let Some(c) = entry.lock().consumer.as_mut() {
                c.persist_failed();
            }
        }
        r
    }

    /// Appends records and waits for them to be durable: fsynced on a single node, committed
    /// by a quorum in a cluster.
    async fn write_durably(&self, group_id: &str, records: &[OffsetsRecord]) -> Result<(), ResponseError> {
        let now = now_ms();
        if self.is_cluster() {
            return self.log.append_replicated(group_id, records, now).await.map(|_| ()).map_err(|e| match e {
                KafkaError::NotLeaderOrFollower | KafkaError::LeaderNotAvailable => ResponseError::NotCoordinator,
                other => {
                    tracing::error!(group = group_id, error = %other, "writing consumer group state failed");
                    ResponseError::CoordinatorNotAvailable
                }
            });
        }
        let appended = self.log.append(group_id, records, now).map_err(|e| {
            tracing::error!(group = group_id, error = %e, "writing consumer group state failed");
            ResponseError::CoordinatorNotAvailable
        })?;
        let p = appended.partition.clone();
        let upto = appended.sync_upto;
        match tokio::task::spawn_blocking(move || p.log.sync(upto)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::error!(group = group_id, error = %e, "fsync of consumer group state failed");
                Err(ResponseError::CoordinatorNotAvailable)
            }
            Err(_) => Err(ResponseError::CoordinatorNotAvailable),
        }
    }

    /// The state machine part of a ConsumerGroupHeartbeat; returns the group's entry for the
    /// write that follows.
    #[allow(clippy::type_complexity)]
    fn consumer_heartbeat_in_memory(
        self: &Arc<Self>,
        group_id: &str,
        req: HeartbeatRequest,
        topics: &dyn TopicView,
    ) -> Result<(Arc<Mutex<GroupEntry>>, Result<HeartbeatResponse, HbError>), HbError> {
        let joining = req.member_epoch == 0;
        for _ in 0..3 {
            // Only a join creates a group. Other heartbeats to a group that is not there get
            // UNKNOWN_MEMBER_ID, so the member rejoins: Kafka says GROUP_ID_NOT_FOUND, which its
            // clients treat as fatal, and members of a group written by a Rill that did not
            // store consumer groups yet would otherwise fail after the upgrade.
            let entry = if joining { Some(self.get_or_create(group_id)) } else { self.get(group_id) };
            let Some(entry) = entry else {
                return Err((ResponseError::UnknownMemberId, Some(format!("Group {group_id} has no such member"))));
            };
            let mut e = entry.lock();
            if e.removed {
                continue;
            }
            let now = now_ms();
            if e.consumer.is_none() {
                if !e.group.has_no_members() || e.group.phase != Phase::Empty {
                    // Kafka's answer when it does not upgrade a classic group in place (online
                    // migration, which Rill does not implement); the reason goes to the log.
                    tracing::info!(
                        group = group_id,
                        "cannot upgrade classic group to consumer group: online migration is not supported"
                    );
                    return Err((
                        ResponseError::GroupIdNotFound,
                        Some(format!("Group {group_id} is not a consumer group")),
                    ));
                }
                if !joining {
                    return Err((ResponseError::UnknownMemberId, Some(format!("Group {group_id} has no such member"))));
                }
                e.consumer = Some(ConsumerGroup::new(group_id, self.config.consumer.clone(), now));
            }
            let c = e.consumer.as_mut().expect("set above");
            let r = c.heartbeat(req, topics, now);
            if let Some(at) = c.wake_needed() {
                self.schedule_consumer_tick(group_id, at);
            }
            drop(e);
            return Ok((entry, r));
        }
        Err((ResponseError::CoordinatorNotAvailable, None))
    }

    fn schedule_consumer_tick(self: &Arc<Self>, group_id: &str, at: i64) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let me = Arc::clone(self);
        let id = group_id.to_string();
        let wait = Duration::from_millis((at - now_ms()).max(0) as u64);
        rt.spawn(async move {
            tokio::time::sleep(wait).await;
            let Some(entry) = me.get(&id) else { return };
            {
                let mut e = entry.lock();
                if e.removed {
                    return;
                }
                let Some(c) = e.consumer.as_mut() else { return };
                let gone = c.tick(now_ms());
                if !gone.is_empty() {
                    tracing::info!(group = %id, members = ?gone, "consumer group members expired");
                }
                if let Some(at) = c.wake_needed() {
                    me.schedule_consumer_tick(&id, at);
                }
            }
            if let Err(e) = me.persist_consumer(&id, &entry).await {
                tracing::warn!(group = %id, error = ?e, "cannot write consumer group state");
            }
        });
    }

    /// Runs `f` on a consumer group. `Err(true)`: the group exists but is a classic group.
    pub fn with_consumer_group<R>(&self, group_id: &str, f: impl FnOnce(&ConsumerGroup) -> R) -> Result<R, bool> {
        let entry = self.get(group_id).ok_or(false)?;
        let e = entry.lock();
        if e.removed {
            return Err(false);
        }
        match &e.consumer {
            Some(c) => Ok(f(c)),
            None => Err(true),
        }
    }

    /// OffsetFetch's member check for consumer groups (classic groups are not checked).
    pub fn validate_fetch(
        &self,
        group_id: &str,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> Result<(), ResponseError> {
        match self.with_consumer_group(group_id, |c| c.validate_fetch(member_id, member_epoch)) {
            Ok(r) => r,
            Err(_) => Ok(()),
        }
    }

    // --------------------------------------------------------------------------------------
    // Offsets
    // --------------------------------------------------------------------------------------

    /// Commits offsets (already checked by the caller: known partitions, metadata size).
    /// Returns once they are durable, with one result per offset.
    pub async fn commit(
        self: &Arc<Self>,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        offsets: Vec<(String, i32, OffsetValue)>,
    ) -> Result<(), ResponseError> {
        if let Some(entry) = self.get(group_id) {
            if let Some(c) = &entry.lock().consumer {
                c.validate_commit(member_id, generation)?;
                if offsets.is_empty() {
                    return Ok(());
                }
            }
        }
        if offsets.is_empty() {
            // Still validate membership, as Kafka does.
            return match self.get(group_id) {
                None if generation >= 0 => Err(ResponseError::IllegalGeneration),
                None => Ok(()),
                Some(_) => self
                    .with_group(group_id, false, |g, now| g.validate_commit(generation, member_id, instance_id, now))
                    .unwrap_or(Err(ResponseError::CoordinatorNotAvailable)),
            };
        }
        // A group that does not exist is created for simple (generation < 0) commits only.
        if self.get(group_id).is_none() && generation >= 0 {
            return Err(ResponseError::IllegalGeneration);
        }
        let entry = self.get_or_create(group_id);
        let now = now_ms();
        let records: Vec<OffsetsRecord> = offsets
            .iter()
            .map(|(t, p, v)| OffsetsRecord::Offset {
                group: group_id.to_string(),
                topic: t.clone(),
                partition: *p,
                value: Some(v.clone()),
            })
            .collect();
        let validate = |e: &mut GroupEntry| -> Result<(), ResponseError> {
            if e.removed {
                return Err(ResponseError::CoordinatorNotAvailable);
            }
            match &e.consumer {
                Some(c) => c.validate_commit(member_id, generation),
                None => e.group.validate_commit(generation, member_id, instance_id, now),
            }
        };
        let first_offset = if self.is_cluster() {
            validate(&mut entry.lock())?;
            // Committed once a quorum of the offsets partition's replicas has it.
            self.log.append_replicated(group_id, &records, now).await.map_err(|e| match e {
                KafkaError::NotLeaderOrFollower | KafkaError::LeaderNotAvailable => ResponseError::NotCoordinator,
                other => {
                    tracing::error!(group = group_id, error = %other, "offset commit failed");
                    ResponseError::KafkaStorageError
                }
            })?
        } else {
            let appended = {
                let mut e = entry.lock();
                validate(&mut e)?;
                self.log.append(group_id, &records, now).map_err(|e| {
                    tracing::error!(group = group_id, error = %e, "offset commit append failed");
                    ResponseError::KafkaStorageError
                })?
            };
            let p = appended.partition.clone();
            let upto = appended.sync_upto;
            match tokio::task::spawn_blocking(move || p.log.sync(upto)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(group = group_id, error = %e, "offset commit fsync failed");
                    return Err(ResponseError::KafkaStorageError);
                }
                Err(_) => return Err(ResponseError::KafkaStorageError),
            }
            appended.first_offset
        };
        let mut e = entry.lock();
        if !e.removed {
            for (i, (t, p, v)) in offsets.into_iter().enumerate() {
                let log_offset = first_offset + i as i64;
                let slot = e.offsets.entry((t, p)).or_insert(Committed { value: v.clone(), log_offset });
                if slot.log_offset <= log_offset {
                    *slot = Committed { value: v, log_offset };
                }
            }
        }
        Ok(())
    }

    /// Committed offsets of a group: of the given topics and partitions, or all of them.
    pub fn fetch(&self, group_id: &str, wanted: Option<&[(String, Vec<i32>)]>) -> TopicOffsets {
        let entry = self.get(group_id);
        let e = entry.as_ref().map(|e| e.lock());
        let offsets = e.as_ref().filter(|e| !e.removed).map(|e| &e.offsets);
        match wanted {
            Some(list) => list
                .iter()
                .map(|(t, parts)| {
                    let got = parts
                        .iter()
                        .map(|p| (*p, offsets.and_then(|o| o.get(&(t.clone(), *p))).map(|c| c.value.clone())))
                        .collect();
                    (t.clone(), got)
                })
                .collect(),
            None => {
                let mut out: TopicOffsets = Vec::new();
                for ((t, p), c) in offsets.into_iter().flatten() {
                    match out.last_mut() {
                        Some((last, v)) if last == t => v.push((*p, Some(c.value.clone()))),
                        _ => out.push((t.clone(), vec![(*p, Some(c.value.clone()))])),
                    }
                }
                out
            }
        }
    }

    // --------------------------------------------------------------------------------------
    // Administration
    // --------------------------------------------------------------------------------------

    /// `None` if the group does not exist.
    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let entry = self.get(group_id)?;
        let e = entry.lock();
        if e.removed {
            return None;
        }
        let g = &e.group;
        let stable = g.phase == Phase::Stable;
        let protocol = g.protocol.clone().unwrap_or_default();
        let members = g
            .members
            .values()
            .map(|m| MemberDescription {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: if stable { m.metadata(&protocol).cloned().unwrap_or_default() } else { Bytes::new() },
                assignment: if stable { m.assignment.clone() } else { Bytes::new() },
            })
            .collect();
        Some(GroupDescription {
            state: g.phase.name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if stable { protocol } else { String::new() },
            members,
        })
    }

    /// (group id, protocol type, state, group type) of every group, sorted by id.
    pub fn list(&self) -> Vec<(String, String, &'static str, &'static str)> {
        let entries: Vec<_> = self.groups.lock().values().cloned().collect();
        let mut out: Vec<_> = entries
            .iter()
            .filter_map(|entry| {
                let e = entry.lock();
                if e.removed {
                    return None;
                }
                Some(match &e.consumer {
                    Some(c) => (e.group.id.clone(), "consumer".to_string(), c.state().name(), "consumer"),
                    None => (
                        e.group.id.clone(),
                        e.group.protocol_type.clone().unwrap_or_default(),
                        e.group.phase.name(),
                        "classic",
                    ),
                })
            })
            .collect();
        out.sort();
        out
    }

    /// Every group's state, size and rebalance count, for metrics and the admin listener.
    pub fn snapshots(&self) -> Vec<GroupSnapshot> {
        let entries: Vec<_> = self.groups.lock().values().cloned().collect();
        let mut out: Vec<_> = entries
            .iter()
            .filter_map(|entry| {
                let e = entry.lock();
                if e.removed {
                    return None;
                }
                Some(match &e.consumer {
                    Some(c) => GroupSnapshot {
                        group: e.group.id.clone(),
                        kind: "consumer",
                        state: c.state().name(),
                        members: c.members.len(),
                        generation: c.group_epoch,
                    },
                    None => GroupSnapshot {
                        group: e.group.id.clone(),
                        kind: "classic",
                        state: e.group.phase.name(),
                        members: e.group.members.len(),
                        generation: e.group.generation,
                    },
                })
            })
            .collect();
        out.sort_by(|a, b| a.group.cmp(&b.group));
        out
    }

    /// DeleteGroups of one group: only an empty group can go; its offsets go with it.
    pub fn delete_group(&self, group_id: &str) -> Result<(), ResponseError> {
        let entry = self.get(group_id).ok_or(ResponseError::GroupIdNotFound)?;
        let mut e = entry.lock();
        if e.removed {
            return Err(ResponseError::GroupIdNotFound);
        }
        if !e.group.has_no_members()
            || e.group.phase != Phase::Empty
            || e.consumer.as_ref().is_some_and(|c| !c.is_empty())
        {
            return Err(ResponseError::NonEmptyGroup);
        }
        self.remove_group(&mut e);
        Ok(())
    }

    /// Tombstones a group and all its offsets, and forgets it. Caller holds the entry lock.
    fn remove_group(&self, e: &mut GroupEntry) {
        let id = e.group.id.clone();
        let mut records: Vec<OffsetsRecord> = e
            .offsets
            .keys()
            .map(|(t, p)| OffsetsRecord::Offset { group: id.clone(), topic: t.clone(), partition: *p, value: None })
            .collect();
        if let Some(c) = e.consumer.as_mut() {
            records.extend(consumer_records(&id, c.take_tombstones()));
        }
        records.push(OffsetsRecord::Group { group: id.clone(), value: None });
        self.append_in_background(&id, &records);
        e.offsets.clear();
        e.group.mark_dead();
        e.removed = true;
        self.groups.lock().remove(&id);
    }

    /// OffsetDelete: forgets committed offsets, except of topics the group's consumers are
    /// subscribed to (GROUP_SUBSCRIBED_TO_TOPIC).
    pub fn delete_offsets(&self, group_id: &str, topics: &[(String, Vec<i32>)]) -> Result<TopicResults, ResponseError> {
        let entry = self.get(group_id).ok_or(ResponseError::GroupIdNotFound)?;
        let mut e = entry.lock();
        if e.removed {
            return Err(ResponseError::GroupIdNotFound);
        }
        if e.group.phase != Phase::Empty && e.group.protocol_type.as_deref() != Some("consumer") {
            // Kafka: offsets of a non-consumer group with members cannot be deleted.
            return Err(ResponseError::NonEmptyGroup);
        }
        let subscribed = match &e.consumer {
            Some(c) => c.subscribed_topics().into_iter().collect(),
            None => subscribed_topics(&e.group),
        };
        let mut records = Vec::new();
        let mut out = Vec::new();
        for (t, parts) in topics {
            let mut res = Vec::new();
            for p in parts {
                if subscribed.contains(t) {
                    res.push((*p, Err(ResponseError::GroupSubscribedToTopic)));
                    continue;
                }
                if e.offsets.remove(&(t.clone(), *p)).is_some() {
                    records.push(OffsetsRecord::Offset {
                        group: group_id.to_string(),
                        topic: t.clone(),
                        partition: *p,
                        value: None,
                    });
                }
                res.push((*p, Ok(())));
            }
            out.push((t.clone(), res));
        }
        if !records.is_empty() {
            self.append_in_background(group_id, &records);
        }
        Ok(out)
    }

    /// Periodically expires offsets of empty groups (`offsets.retention.minutes`) and drops
    /// empty groups that have nothing left. Runs until the broker goes away.
    pub async fn run_expiry(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(self.config.retention_check_interval_ms.max(100)));
        tick.tick().await;
        loop {
            tick.tick().await;
            self.expire_offsets(now_ms());
        }
    }

    /// One round of offset expiry.
    pub fn expire_offsets(&self, now: i64) {
        let entries: Vec<_> = self.groups.lock().values().cloned().collect();
        let retention = self.config.retention_ms;
        for entry in entries {
            let mut e = entry.lock();
            if e.removed
                || e.group.phase != Phase::Empty
                || !e.group.has_no_members()
                || e.consumer.as_ref().is_some_and(|c| !c.is_empty())
            {
                continue;
            }
            let empty_since = e.consumer.as_ref().map_or(e.group.state_timestamp, |c| c.state_timestamp);
            let id = e.group.id.clone();
            if e.offsets.is_empty() {
                // Nothing to keep; the grace period spares a group whose first commit is in flight.
                if now - empty_since >= 60_000 {
                    self.remove_group(&mut e);
                }
                continue;
            }
            // Offsets of a group that used group management expire together, counted from
            // when it became empty; those of simple consumers one by one from their commit.
            let managed = e.group.protocol_type.is_some() || e.consumer.is_some();
            let group_expired = empty_since.saturating_add(retention) <= now;
            let expired: Vec<(String, i32)> =
                e.offsets
                    .iter()
                    .filter(|(_, c)| {
                        if managed {
                            group_expired
                        } else {
                            c.value.commit_timestamp.saturating_add(retention) <= now
                        }
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
            if !expired.is_empty() && expired.len() < e.offsets.len() {
                let records: Vec<_> = expired
                    .iter()
                    .map(|(t, p)| OffsetsRecord::Offset {
                        group: id.clone(),
                        topic: t.clone(),
                        partition: *p,
                        value: None,
                    })
                    .collect();
                for k in &expired {
                    e.offsets.remove(k);
                }
                self.append_in_background(&id, &records);
                tracing::info!(group = %id, offsets = expired.len(), "expired committed offsets");
            } else if expired.len() == e.offsets.len() {
                if !expired.is_empty() {
                    tracing::info!(group = %id, offsets = expired.len(), "expired group and its offsets");
                }
                self.remove_group(&mut e);
            }
        }
    }
}

fn consumer_records(group: &str, recs: Vec<ConsumerRecord>) -> Vec<OffsetsRecord> {
    recs.into_iter().map(|rec| OffsetsRecord::Consumer { group: group.to_string(), rec }).collect()
}

/// What the group looks like in `__consumer_offsets`.
fn group_value(g: &Group<Responder>) -> GroupValue {
    let protocol = g.protocol.clone().unwrap_or_default();
    GroupValue {
        protocol_type: g.protocol_type.clone().unwrap_or_default(),
        generation: g.generation,
        protocol: g.protocol.clone(),
        leader: g.leader.clone(),
        state_timestamp: g.state_timestamp,
        members: g
            .members
            .values()
            .map(|m| StoredMember {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms: m.session_timeout_ms,
                subscription: m.metadata(&protocol).cloned().unwrap_or_default(),
                assignment: m.assignment.clone(),
            })
            .collect(),
    }
}

/// Topics the members of a "consumer" group subscribe to (from ConsumerProtocolSubscription).
fn subscribed_topics(g: &Group<Responder>) -> HashSet<String> {
    let mut out = HashSet::new();
    if g.protocol_type.as_deref() != Some("consumer") || g.phase == Phase::Empty {
        return out;
    }
    let Some(protocol) = &g.protocol else { return out };
    for m in g.members.values() {
        let Some(mut md) = m.metadata(protocol).cloned() else { continue };
        if md.remaining() < 2 {
            continue;
        }
        // Newer versions are supersets: read them as the newest we know, as Kafka does.
        let version = md.get_i16().clamp(0, 3);
        if let Ok(sub) = ConsumerProtocolSubscription::decode(&mut md, version) {
            out.extend(sub.topics.iter().map(|t| t.to_string()));
        }
    }
    out
}
