//! Cluster mode: the metadata quorum and the partition replicas of this node.
//!
//! Every node in `controller.quorum.voters` is a voter of the metadata Raft group (group 0),
//! whose log is the `__cluster_metadata` partition: each record's value is one JSON
//! [`Command`]. Every node applies the commands in log order: it registers brokers and
//! creates, changes and deletes topics, opening a Raft group for each partition it hosts.
//! Writes reach the metadata leader directly or forwarded over the Raft transport.
//!
//! Placement: every partition has every node as a replica (the replication factor is the
//! cluster size). Each partition's first replica, rotated by partition index, is its
//! preferred leader: it alone initializes the group, so it wins the first election and
//! leaders spread evenly; the others step in if it does not show up.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::BasicNode;
use parking_lot::RwLock;
use rill_protocol::records::{decode_batches, encode_batch, EncodeOptions, RecordIn};
use rill_raft::group::{raft_config, Group, Timing, WriteError};
use rill_raft::network::{self, AppHandler, Groups, Peers};
use rill_storage::LogConfig;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, Notify};
use uuid::Uuid;

use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::error::KafkaError;
use crate::producer_state::ProducerStates;
use crate::topic_config::TopicSettings;
use crate::topics::{Partition, Topic};

pub const METADATA_GROUP: u64 = 0;
pub const METADATA_DIR: &str = "__cluster_metadata-0";
/// Application RPC: propose a metadata command on the leader; answers its Raft index.
const RPC_PROPOSE: u8 = network::kind::APP;
/// Application RPC: `[group u64][to u64]`: the group's leader hands leadership to `to`.
const RPC_TRANSFER: u8 = network::kind::APP + 1;
/// Application RPC: is the metadata group initialized here? Answers `[1]` or `[0]`.
const RPC_INITIALIZED: u8 = network::kind::APP + 2;
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(15);

/// A node as registered in the metadata: its Kafka listeners and rack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub id: i32,
    /// Advertised listeners: (name, host, port).
    pub listeners: Vec<(String, String, i32)>,
    pub rack: Option<String>,
}

impl BrokerInfo {
    /// The address for clients that came in on `listener` (or the first one).
    pub fn endpoint(&self, listener: &str) -> (String, i32) {
        let l = self.listeners.iter().find(|l| l.0 == listener).or(self.listeners.first());
        l.map(|l| (l.1.clone(), l.2)).unwrap_or_default()
    }
}

/// One metadata change. Applied identically, in log order, by every node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    RegisterBroker(BrokerInfo),
    CreateTopic {
        name: String,
        id: Uuid,
        partitions: i32,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
        id: Uuid,
    },
    SetPartitions {
        name: String,
        id: Uuid,
        partitions: i32,
    },
    SetConfigs {
        name: String,
        id: Uuid,
        configs: BTreeMap<String, String>,
    },
    /// Users and ACLs (every node authenticates and authorizes from the same state).
    Security(crate::security::SecurityChange),
    /// DeleteRecords: every replica moves the partition's log start to `offset`.
    DeleteRecords {
        name: String,
        id: Uuid,
        partition: i32,
        offset: i64,
    },
}

impl Command {
    fn to_batch(&self) -> Bytes {
        let value = serde_json::to_vec(self).expect("commands serialize");
        let now = crate::broker::now_ms();
        encode_batch(
            &[RecordIn { value: Some(&value), timestamp: now, ..Default::default() }],
            &EncodeOptions::default(),
        )
        .freeze()
    }

    fn from_batches(bytes: &[u8]) -> Vec<Command> {
        match decode_batches(bytes) {
            Ok(records) => records
                .into_iter()
                .filter_map(|r| match serde_json::from_slice(r.value.as_deref()?) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::error!(error = %e, "undecodable metadata command skipped");
                        None
                    }
                })
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "undecodable metadata batch skipped");
                Vec::new()
            }
        }
    }
}

/// The Raft group id of a partition: stable across nodes, derived from the topic id.
pub fn partition_group(topic_id: &Uuid, partition: i32) -> u64 {
    let b = topic_id.as_bytes();
    let hi = u64::from_be_bytes(b[..8].try_into().unwrap()) ^ u64::from_be_bytes(b[8..].try_into().unwrap());
    // Group 0 is the metadata group.
    (hi.wrapping_add(partition as u64)).max(1)
}

pub struct Cluster {
    pub node_id: i32,
    pub peers: Arc<Peers>,
    pub groups: Groups,
    pub metadata: Group,
    /// Raft addresses of the voters (every node of the cluster).
    pub voters: BTreeMap<i32, String>,
    pub brokers: RwLock<BTreeMap<i32, BrokerInfo>>,
    raft_config: Arc<openraft::Config>,
    /// Raft index of the last metadata entry this node has applied.
    applied: watch::Sender<u64>,
    commands: parking_lot::Mutex<Option<mpsc::UnboundedReceiver<(u64, Bytes)>>>,
}

impl Cluster {
    /// Opens the metadata group and starts the Raft transport. Commands are applied once
    /// [`Cluster::run`] gets the broker.
    pub async fn start(config: &BrokerConfig) -> anyhow::Result<Arc<Cluster>> {
        let node_id = config.node_id;
        let my_addr = config.quorum_voters[&node_id].clone();
        let peers = Peers::new(node_id as u64);
        for (id, addr) in &config.quorum_voters {
            peers.set_addr(*id as u64, addr.clone());
        }
        let timing = Timing {
            heartbeat_ms: crate::config::parse_num(
                "rill.raft.heartbeat.interval.ms",
                &config.value("rill.raft.heartbeat.interval.ms").unwrap_or_default(),
            )?,
            election_min_ms: crate::config::parse_num(
                "rill.raft.election.timeout.ms",
                &config.value("rill.raft.election.timeout.ms").unwrap_or_default(),
            )?,
            election_max_ms: 0,
        };
        let timing = Timing { election_max_ms: timing.election_min_ms * 2, ..timing };
        anyhow::ensure!(
            timing.heartbeat_ms * 2 < timing.election_min_ms,
            "rill.raft.heartbeat.interval.ms must be under half of rill.raft.election.timeout.ms"
        );
        let raft_config = raft_config(&timing);
        let (tx, rx) = mpsc::unbounded_channel();
        let hook: rill_raft::state_machine::ApplyHook = Arc::new(move |log_id, bytes: &Bytes| {
            let _ = tx.send((log_id.index, bytes.clone()));
        });
        let dir = config.log_dirs[0].join(METADATA_DIR);
        let metadata = Group::open(
            node_id as u64,
            METADATA_GROUP,
            &dir,
            LogConfig::default(),
            peers.clone(),
            Some(hook),
            raft_config.clone(),
        )
        .await?;
        let groups = Groups::default();
        groups.insert(&metadata);
        let listener = tokio::net::TcpListener::bind(&my_addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot bind the raft listener {my_addr}: {e}"))?;
        tracing::info!(addr = %my_addr, "raft listener");
        let app = app_handler(metadata.clone(), groups.clone());
        tokio::spawn(network::serve(listener, node_id as u64, groups.clone(), app, peers.liveness.clone()));
        if config.value("rill.raft.quiesce.enable").as_deref() != Some("false") {
            tokio::spawn(rill_raft::quiesce::run(peers.clone(), groups.clone(), timing));
        }
        let members: BTreeMap<u64, BasicNode> =
            config.quorum_voters.iter().map(|(id, a)| (*id as u64, BasicNode { addr: a.clone() })).collect();
        // A node without a metadata log proposes the first membership only when no other
        // voter has one: then the cluster is new. A node that lost its disk must not start a
        // rival log (its empty vote could also split a term); it waits to be replicated to.
        let (m, p, wait) = (metadata.clone(), peers.clone(), Duration::from_millis(timing.election_max_ms));
        let others: Vec<u64> =
            config.quorum_voters.keys().map(|v| *v as u64).filter(|v| *v != node_id as u64).collect();
        tokio::spawn(async move {
            loop {
                if m.raft.is_initialized().await.unwrap_or(true) {
                    return;
                }
                tokio::time::sleep(wait).await;
                if m.raft.is_initialized().await.unwrap_or(true) {
                    return;
                }
                let mut someone_has_it = false;
                for v in &others {
                    if let Ok(b) = p.call(*v, RPC_INITIALIZED, METADATA_GROUP, &[], Duration::from_secs(1)).await {
                        someone_has_it |= b.first() == Some(&1);
                    }
                }
                if !someone_has_it {
                    if let Err(e) = m.initialize(members).await {
                        tracing::error!(error = %e, "initializing the metadata quorum failed");
                    }
                    return;
                }
                tracing::info!("the metadata quorum exists elsewhere; waiting to be replicated to");
            }
        });
        let (applied, _) = watch::channel(0);
        Ok(Arc::new(Cluster {
            node_id,
            peers,
            groups,
            metadata,
            voters: config.quorum_voters.clone(),
            brokers: RwLock::new(BTreeMap::new()),
            raft_config,
            applied,
            commands: parking_lot::Mutex::new(Some(rx)),
        }))
    }

    /// Applies metadata commands for `broker` and keeps this node registered. Call once.
    pub fn run(self: &Arc<Self>, broker: &Arc<Broker>) {
        let rx = self.commands.lock().take().expect("Cluster::run called twice");
        tokio::spawn(apply_loop(broker.clone(), rx));
        let me = BrokerInfo {
            id: self.node_id,
            listeners: broker
                .config
                .advertised_listeners
                .iter()
                .map(|l| (l.name.clone(), l.host.clone(), l.port as i32))
                .collect(),
            rack: broker.config.rack.clone(),
        };
        let cluster = self.clone();
        tokio::spawn(async move {
            loop {
                match cluster.propose_and_wait(&Command::RegisterBroker(me.clone())).await {
                    Ok(()) => break,
                    Err(e) => tracing::info!(error = %e, "registering with the metadata quorum; retrying"),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            tracing::info!(node = cluster.node_id, "registered with the metadata quorum");
        });
        tokio::spawn(ensure_offsets_topic(broker.clone()));
        tokio::spawn(rebalance_leaders(broker.clone()));
    }

    /// Asks `leader` (which leads `group`) to hand leadership to `to`.
    pub async fn transfer_leader(&self, leader: i32, group: u64, to: i32) -> Result<(), String> {
        if leader == self.node_id {
            let g = self.groups.group(group).ok_or("no such group here")?;
            return g.transfer_leader(to as u64).await.map_err(|e| e.to_string());
        }
        let mut body = Vec::with_capacity(16);
        body.extend_from_slice(&group.to_be_bytes());
        body.extend_from_slice(&(to as u64).to_be_bytes());
        self.peers
            .call(leader as u64, RPC_TRANSFER, group, &body, Duration::from_secs(5))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    pub fn is_metadata_leader(&self) -> bool {
        self.metadata.is_leader()
    }

    pub fn metadata_leader(&self) -> Option<i32> {
        self.metadata.leader().map(|l| l as i32)
    }

    /// Proposes `cmd` to the metadata quorum (forwarding to its leader) and returns its index.
    pub async fn propose(&self, cmd: &Command) -> Result<u64, KafkaError> {
        let batch = cmd.to_batch();
        let deadline = tokio::time::Instant::now() + PROPOSE_TIMEOUT;
        let mut last = String::from("no leader");
        while tokio::time::Instant::now() < deadline {
            let leader = self.metadata.leader();
            if leader == Some(self.node_id as u64) {
                match self.metadata.write_indexed(batch.clone()).await {
                    Ok((index, _)) => return Ok(index),
                    Err(e) => last = e.to_string(),
                }
            } else if let Some(l) = leader {
                match self.peers.call(l, RPC_PROPOSE, METADATA_GROUP, &batch, Duration::from_secs(5)).await {
                    Ok(b) if b.len() == 8 => return Ok(u64::from_be_bytes(b[..8].try_into().unwrap())),
                    Ok(_) => last = "bad answer from the metadata leader".into(),
                    Err(e) => last = e.to_string(),
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(KafkaError::NotController(last))
    }

    /// Waits until this node has applied metadata entry `index`.
    pub async fn wait_applied(&self, index: u64) -> Result<(), KafkaError> {
        let mut rx = self.applied.subscribe();
        let ok = tokio::time::timeout(PROPOSE_TIMEOUT, async { rx.wait_for(|a| *a >= index).await.is_ok() }).await;
        match ok {
            Ok(true) => Ok(()),
            _ => Err(KafkaError::NotController(format!("metadata entry {index} not applied here in time"))),
        }
    }

    pub async fn propose_and_wait(&self, cmd: &Command) -> Result<(), KafkaError> {
        let index = self.propose(cmd).await?;
        self.wait_applied(index).await
    }

    /// Replicas of every partition: every node, rotated so preferred leaders spread.
    pub fn replicas(&self, partition: i32) -> Vec<i32> {
        let nodes: Vec<i32> = self.voters.keys().copied().collect();
        let n = nodes.len();
        (0..n).map(|k| nodes[(partition as usize + k) % n]).collect()
    }

    /// Opens this node's replica of partition `index` of topic `id`.
    async fn open_replica(
        &self,
        broker: &Broker,
        topic: &str,
        id: &Uuid,
        index: i32,
        log: LogConfig,
        fresh: bool,
    ) -> anyhow::Result<Arc<Partition>> {
        let dir = broker.topics.partition_dir(topic, index);
        let gid = partition_group(id, index);
        let group =
            Group::open(self.node_id as u64, gid, &dir, log, self.peers.clone(), None, self.raft_config.clone())
                .await?;
        self.groups.insert(&group);
        let replicas = self.replicas(index);
        let members: BTreeMap<u64, BasicNode> =
            replicas.iter().map(|r| (*r as u64, BasicNode { addr: self.voters[r].clone() })).collect();
        // Only a partition being created now is started here: its preferred replica at once,
        // the others after a while if the preferred one never reached them. A replayed
        // creation (a restart, or a node that lost its disk) belongs to a group that already
        // exists: the node waits to be replicated to and never starts a rival log.
        if fresh {
            let first = replicas[0] == self.node_id;
            let g = group.clone();
            tokio::spawn(async move {
                if !first {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                if let Err(e) = g.initialize(members).await {
                    tracing::warn!(group = g.id, error = %e, "initializing a partition group failed");
                }
            });
        }
        let partition = Arc::new(Partition {
            topic: topic.to_string(),
            index,
            dir,
            log: group.shared.log.clone(),
            replica: Some(group.clone()),
            appended: Notify::new(),
            producers: parking_lot::Mutex::new(ProducerStates::default()),
            producers_term: std::sync::atomic::AtomicU64::new(0),
            stats: Default::default(),
            delete_floor: std::sync::atomic::AtomicI64::new(-1),
        });
        // Long-polling fetches wait on `appended`: wake them when the high watermark moves,
        // and forget producer state when leadership changes (it is not replicated yet).
        let p = Arc::downgrade(&partition);
        let mut hw = group.shared.watch_high_watermark();
        tokio::spawn(async move {
            while hw.changed().await.is_ok() {
                match p.upgrade() {
                    Some(p) => p.appended.notify_waiters(),
                    None => break,
                }
            }
        });
        Ok(partition)
    }

    async fn close_partition(&self, p: &Partition) {
        if let Some(g) = &p.replica {
            self.groups.remove(g.id);
            g.shutdown().await;
        }
    }
}

fn app_handler(metadata: Group, groups: Groups) -> AppHandler {
    Arc::new(move |kind, _group, body| {
        let (metadata, groups) = (metadata.clone(), groups.clone());
        Box::pin(async move {
            match kind {
                RPC_PROPOSE => match metadata.write_indexed(body).await {
                    Ok((index, _)) => Ok(index.to_be_bytes().to_vec()),
                    Err(WriteError::NotLeader { leader }) => {
                        Err(format!("not the metadata leader (leader {leader:?})"))
                    }
                    Err(e) => Err(e.to_string()),
                },
                RPC_INITIALIZED => Ok(vec![metadata.raft.is_initialized().await.unwrap_or(false) as u8]),
                RPC_TRANSFER if body.len() == 16 => {
                    let group = u64::from_be_bytes(body[..8].try_into().unwrap());
                    let to = u64::from_be_bytes(body[8..].try_into().unwrap());
                    let g = groups.group(group).ok_or_else(|| format!("no group {group} here"))?;
                    g.transfer_leader(to).await.map_err(|e| e.to_string())?;
                    Ok(Vec::new())
                }
                other => Err(format!("unknown application rpc {other}")),
            }
        })
    })
}

async fn apply_loop(broker: Arc<Broker>, mut rx: mpsc::UnboundedReceiver<(u64, Bytes)>) {
    let cluster = broker.cluster.clone().expect("cluster mode");
    while let Some((index, bytes)) = rx.recv().await {
        // Commands proposed moments ago are being applied live; older ones are a replay.
        let fresh = rill_protocol::batch::BatchHeader::parse(&bytes)
            .is_ok_and(|h| crate::broker::now_ms() - h.max_timestamp < 10_000);
        for cmd in Command::from_batches(&bytes) {
            if let Err(e) = apply(&broker, &cluster, cmd, fresh).await {
                tracing::error!(index, error = %e, "applying a metadata command failed");
            }
        }
        cluster.applied.send_replace(index);
    }
}

async fn apply(broker: &Arc<Broker>, cluster: &Cluster, cmd: Command, fresh: bool) -> anyhow::Result<()> {
    match cmd {
        Command::RegisterBroker(info) => {
            tracing::info!(node = info.id, "broker registered");
            cluster.brokers.write().insert(info.id, info);
        }
        Command::CreateTopic { name, id, partitions, configs } => {
            if broker.topics.get(&name).is_some() {
                return Ok(()); // first creation wins
            }
            let settings = TopicSettings::resolve(&configs, &broker.config);
            let mut parts = Vec::with_capacity(partitions as usize);
            for i in 0..partitions {
                parts.push(cluster.open_replica(broker, &name, &id, i, settings.log.clone(), fresh).await?);
            }
            broker.topics.install(Topic { name: name.clone(), id, configs, settings, partitions: parts.clone() })?;
            if name == crate::groups::OFFSETS_TOPIC {
                broker.groups.attach(parts);
            }
            tracing::info!(topic = %name, partitions, "created topic");
        }
        Command::DeleteTopic { name, id } => {
            let Some(t) = broker.topics.get(&name).filter(|t| t.id == id) else { return Ok(()) };
            for p in &t.partitions {
                cluster.close_partition(p).await;
            }
            broker.topics.delete(&name)?;
        }
        Command::SetPartitions { name, id, partitions } => {
            let Some(t) = broker.topics.get(&name).filter(|t| t.id == id) else { return Ok(()) };
            let mut parts = t.partitions.clone();
            for i in parts.len() as i32..partitions {
                parts.push(cluster.open_replica(broker, &name, &id, i, t.settings.log.clone(), fresh).await?);
            }
            broker.topics.install(Topic {
                name: t.name.clone(),
                id,
                configs: t.configs.clone(),
                settings: t.settings.clone(),
                partitions: parts,
            })?;
        }
        Command::SetConfigs { name, id, configs } => {
            if broker.topics.get(&name).is_some_and(|t| t.id == id) {
                broker.topics.set_configs(&name, configs)?;
            }
        }
        // Replayed from the log's start after a restart: re-adding and re-deleting in order
        // ends in the same state the node had.
        Command::Security(change) => broker.security.apply_change(change)?,
        Command::DeleteRecords { name, id, partition, offset } => {
            let Some(t) = broker.topics.get(&name).filter(|t| t.id == id) else { return Ok(()) };
            if let Ok(p) = t.partition(partition) {
                p.delete_floor.fetch_max(offset, std::sync::atomic::Ordering::AcqRel);
                // Carried out beside the apply loop (it waits for a snapshot and a purge), or
                // by a retention pass once this replica has replicated up to `offset`. A
                // replayed command finds the records gone already.
                tokio::spawn(async move { delete_prefix(&p, offset).await });
            }
        }
    }
    Ok(())
}

/// The metadata leader creates `__consumer_offsets` once every node has registered.
async fn ensure_offsets_topic(broker: Arc<Broker>) {
    let cluster = broker.cluster.clone().expect("cluster mode");
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if broker.topics.get(crate::groups::OFFSETS_TOPIC).is_some() {
            return;
        }
        let all_registered = {
            let b = cluster.brokers.read();
            cluster.voters.keys().all(|v| b.contains_key(v))
        };
        if !cluster.is_metadata_leader() || !all_registered {
            continue;
        }
        let mut configs = BTreeMap::new();
        configs.insert("cleanup.policy".to_string(), "compact".to_string());
        configs.insert("segment.bytes".to_string(), "104857600".to_string());
        let cmd = Command::CreateTopic {
            name: crate::groups::OFFSETS_TOPIC.to_string(),
            id: Uuid::new_v4(),
            partitions: broker.groups.config().partitions,
            configs,
        };
        if let Err(e) = cluster.propose_and_wait(&cmd).await {
            tracing::warn!(error = %e, "creating {} failed; retrying", crate::groups::OFFSETS_TOPIC);
        }
    }
}

/// `auto.leader.rebalance.enable`: every `leader.imbalance.check.interval.seconds`, a leader
/// that is not its partition's preferred replica hands leadership back to it once the
/// preferred replica has caught up (after a restart, leaders would otherwise pile up on the
/// nodes that stayed up).
async fn rebalance_leaders(broker: Arc<Broker>) {
    let cluster = broker.cluster.clone().expect("cluster mode");
    let get = |k: &str| broker.config.value(k).unwrap_or_default();
    if get("auto.leader.rebalance.enable") != "true" {
        return;
    }
    let secs: u64 = get("leader.imbalance.check.interval.seconds").parse().unwrap_or(300).max(1);
    loop {
        tokio::time::sleep(Duration::from_secs(secs)).await;
        for t in broker.topics.list() {
            for p in &t.partitions {
                let Some(g) = &p.replica else { continue };
                let preferred = cluster.replicas(p.index)[0];
                if g.is_leader() && preferred != cluster.node_id && g.caught_up(preferred as u64) {
                    tracing::info!(topic = %p.topic, partition = p.index, to = preferred, "handing leadership back to the preferred replica");
                    let _ = g.transfer_leader(preferred as u64).await;
                }
            }
        }
    }
}

/// Deletes this replica's records below `offset` as far as it holds them: the Raft log is
/// purged to the last whole entry below (see `Group::purge_to`), then the log start moves
/// to `offset` itself, which may fall inside the next entry, as in Kafka. Returns the log
/// start offset.
pub async fn delete_prefix(p: &Partition, offset: i64) -> Result<i64, KafkaError> {
    let Some(g) = &p.replica else { return Ok(p.log.log_start_offset()) };
    let offset = offset.min(p.high_watermark());
    if offset <= p.log.log_start_offset() {
        return Ok(p.log.log_start_offset());
    }
    let purged_end = || g.shared.with_index(|idx| idx.purged().map_or(i64::MIN, |m| m.end));
    let purged = g.purge_to(offset).await.map_err(|e| {
        tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "purging the log prefix failed");
        KafkaError::RequestTimedOut
    })?;
    if let Some(cut) = purged {
        // openraft purges on its own schedule (a leader waits while replication reads the
        // prefix). Segments must not go before it has: replication may still read them.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while purged_end() < cut && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Only segments wholly below `offset` go, and every entry in them is purged by now;
    // otherwise the next retention pass finishes the job.
    if purged_end() >= g.shared.with_index(|idx| idx.entry_of_offset(offset).map_or(offset, |m| m.start))
        && offset <= p.log.log_end_offset()
    {
        p.log.delete_records_before(offset)?;
    }
    Ok(p.log.log_start_offset())
}

/// Node ids as Kafka shows them.
pub fn node_ids(set: &BTreeSet<u64>) -> Vec<i32> {
    set.iter().map(|n| *n as i32).collect()
}
