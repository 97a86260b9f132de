//! Cluster mode: the metadata quorum and the partition replicas of this node.
//!
//! The nodes in `controller.quorum.voters` are the first voters of the metadata Raft group
//! (group 0), whose log is the `__cluster_metadata` partition: each record's value is one JSON
//! [`Command`]. Every other node is a learner of it. Every node applies the commands in log
//! order: it registers brokers and creates, changes and deletes topics, opening a Raft group
//! for each partition it hosts. Writes reach the metadata leader directly or forwarded over
//! the Raft transport. The voters change at run time by Raft membership changes on the
//! metadata leader ([`Cluster::change_voter`], AddRaftVoter/RemoveRaftVoter); being entries
//! of the log, they outlive restarts, and the configured voters only ever seed a new cluster.
//!
//! Placement: each partition has its own replica set, chosen when it is created
//! ([`Cluster::place`]: leaders and replicas spread evenly, racks alternate) and changed by
//! reassignment. A partition's first replica is its preferred leader: it alone initializes the
//! group, so it wins the first election; the others step in if it does not show up. Nodes
//! that hold no replica of a partition learn its leader from the leaders' announcements
//! ([`announce_leaders`]).
//!
//! Reassignment (AlterPartitionReassignments) is a metadata command that sets a partition's
//! target replicas. The partition's Raft leader carries it out ([`drive_reassignment`]): new
//! replicas join its group as learners and catch up, then one membership change makes the
//! target the voters, and a second metadata command records the new replica set, upon which
//! the nodes that left delete their copies.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::async_runtime::watch::WatchReceiver;
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
use crate::topics::{Assignment, Partition, Topic};

pub const METADATA_GROUP: u64 = 0;
pub const METADATA_DIR: &str = "__cluster_metadata-0";
/// Application RPC: propose a metadata command on the leader; answers its Raft index.
const RPC_PROPOSE: u8 = network::kind::APP;
/// Application RPC: `[group u64][to u64]`: the group's leader hands leadership to `to`.
const RPC_TRANSFER: u8 = network::kind::APP + 1;
/// Application RPC: is the metadata group initialized here? Answers `[1]` or `[0]`.
const RPC_INITIALIZED: u8 = network::kind::APP + 2;
/// Application RPC: `[node u64]` then `[group u64][term u64]`*: every partition group `node`
/// leads now, with its term.
const RPC_LEADERS: u8 = network::kind::APP + 3;
/// Application RPC: `[node u64][raft address]`: a node outside the voters asks the metadata
/// leader to add it as a learner of the metadata group (it then receives the metadata log).
const RPC_JOIN: u8 = network::kind::APP + 4;
/// Application RPC: `[add u8][node u64][timeout ms u64]`: the metadata leader makes a learner
/// a voter (add) or a voter a learner. Answers `[error code i16][message]`; fails (and the
/// caller tries the leader again) where the leader moved.
const RPC_VOTERS: u8 = network::kind::APP + 5;
/// Application RPC: the metadata leader answers its [`QuorumState`] as JSON.
const RPC_QUORUM: u8 = network::kind::APP + 6;
/// How often a node announces the groups it leads when nothing changed.
const ANNOUNCE_REFRESH: Duration = Duration::from_secs(5);
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a replica that failed to open is tried again.
const REOPEN_RETRY: Duration = Duration::from_secs(10);

/// A node as registered in the metadata: its Kafka listeners and rack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub id: i32,
    /// Advertised listeners: (name, host, port).
    pub listeners: Vec<(String, String, i32)>,
    pub rack: Option<String>,
    /// The node's Raft (inter-node) address.
    #[serde(default)]
    pub raft_addr: Option<String>,
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
        /// Replicas by partition. Empty in logs written before replica sets existed: then
        /// every voter holds every partition ([`Cluster::legacy_replicas`]).
        #[serde(default)]
        assignment: Vec<Vec<i32>>,
    },
    DeleteTopic {
        name: String,
        id: Uuid,
    },
    SetPartitions {
        name: String,
        id: Uuid,
        partitions: i32,
        /// Replicas of the new partitions (empty: legacy placement, as for `CreateTopic`).
        #[serde(default)]
        assignment: Vec<Vec<i32>>,
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
    /// AlterPartitionReassignments: move partition `partition` to `target` (`None` cancels
    /// an ongoing reassignment, moving it back to its current replicas).
    Reassign {
        name: String,
        id: Uuid,
        partition: i32,
        target: Option<Vec<i32>>,
    },
    /// UnregisterBroker: node `id` (not a voter, holding no replica) leaves the cluster.
    UnregisterBroker {
        id: i32,
    },
    /// The partition's Raft group now has `replicas` as its voters.
    ReassignDone {
        name: String,
        id: Uuid,
        partition: i32,
        replicas: Vec<i32>,
    },
    /// Changes nothing: once the proposer has applied it, its view of the metadata includes
    /// everything committed before it (a read barrier).
    Barrier,
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
    /// `controller.quorum.voters`: the first voters of the metadata group and their Raft
    /// addresses. The voters can change since (AddRaftVoter, RemoveRaftVoter); the current
    /// ones are the metadata group's membership in its Raft log ([`Cluster::voters`]).
    pub configured_voters: BTreeMap<i32, String>,
    /// This node's Raft address.
    my_addr: String,
    pub brokers: RwLock<BTreeMap<i32, BrokerInfo>>,
    raft_config: Arc<openraft::Config>,
    /// Raft index of the last metadata entry this node has applied.
    applied: watch::Sender<u64>,
    commands: parking_lot::Mutex<Option<mpsc::UnboundedReceiver<(u64, Bytes)>>>,
    /// Leaders of partition groups as their leaders announce them: group -> (leader, term).
    /// What this node knows of the partitions it holds no replica of.
    leaders: Arc<RwLock<HashMap<u64, (i32, u64)>>>,
    /// Nodes unregistered (and not registered again since), with when this node learned it.
    unregistered: parking_lot::Mutex<BTreeMap<i32, tokio::time::Instant>>,
    /// Partition groups whose reassignment this node is carrying out.
    reassigning: parking_lot::Mutex<HashSet<u64>>,
    /// Held while a replica directory is opened for a partition assigned here, and while a
    /// dropped one is checked and deleted, so the two never meet.
    replica_dirs: tokio::sync::Mutex<()>,
}

impl Cluster {
    /// Opens the metadata group and starts the Raft transport. Commands are applied once
    /// [`Cluster::run`] gets the broker.
    pub async fn start(config: &BrokerConfig) -> anyhow::Result<Arc<Cluster>> {
        let node_id = config.node_id;
        let my_addr = config.raft_address().ok_or_else(|| anyhow::anyhow!("no raft address for this node"))?;
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
        let leaders = Arc::new(RwLock::new(HashMap::new()));
        let app = app_handler(metadata.clone(), groups.clone(), leaders.clone(), peers.clone());
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
        if !config.is_voter() {
            tokio::spawn(join_as_learner(m, p, others, my_addr.clone()));
        } else {
            Self::spawn_initialize(m, p, others, members, wait, my_addr.clone());
        }
        let (applied, _) = watch::channel(0);
        Ok(Arc::new(Cluster {
            node_id,
            peers,
            groups,
            metadata,
            configured_voters: config.quorum_voters.clone(),
            my_addr,
            brokers: RwLock::new(BTreeMap::new()),
            raft_config,
            applied,
            commands: parking_lot::Mutex::new(Some(rx)),
            leaders,
            unregistered: parking_lot::Mutex::new(BTreeMap::new()),
            reassigning: parking_lot::Mutex::new(HashSet::new()),
            replica_dirs: tokio::sync::Mutex::new(()),
        }))
    }

    fn spawn_initialize(
        m: Group,
        p: Arc<Peers>,
        others: Vec<u64>,
        members: BTreeMap<u64, BasicNode>,
        wait: Duration,
        my_addr: String,
    ) {
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
                // A voter that lost its disk is replicated to as it is; one removed from the
                // voters (and the group) since has to be added back, as any other broker.
                ask_to_join(&m, &p, &others, &my_addr).await;
                tracing::info!("the metadata quorum exists elsewhere; waiting to be replicated to");
            }
        });
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
            raft_addr: Some(self.my_addr.clone()),
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
        tokio::spawn(announce_leaders(self.clone()));
        tokio::spawn(reassign_loop(broker.clone()));
        tokio::spawn(remove_unregistered(self.clone()));
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

    /// Whether this node has applied its whole metadata log and knows the metadata leader.
    /// False while the log is replayed at start-up, when old commands pass by as if new.
    fn metadata_applied(&self) -> bool {
        let m = self.metadata.raft.metrics().borrow_watched().clone();
        let applied = m.last_applied.map(|l| l.index);
        m.current_leader.is_some() && applied == m.last_log_index && *self.applied.borrow() >= applied.unwrap_or(0)
    }

    /// Where partitions were placed before replica sets existed (`__consumer_offsets`
    /// included, until it was placed like any topic): on every voter, rotated so preferred
    /// leaders spread. From the configured voters, never the current ones: replaying an old
    /// creation must give the replicas it gave when it was written.
    pub fn legacy_replicas(&self, partition: i32) -> Vec<i32> {
        let nodes: Vec<i32> = self.configured_voters.keys().copied().collect();
        let n = nodes.len();
        (0..n).map(|k| nodes[(partition as usize + k) % n]).collect()
    }

    /// Registered nodes, with their racks.
    pub fn nodes(&self) -> Vec<(i32, Option<String>)> {
        self.brokers.read().values().map(|b| (b.id, b.rack.clone())).collect()
    }

    pub fn is_node(&self, id: i32) -> bool {
        self.is_voter(id) || self.brokers.read().contains_key(&id)
    }

    /// The metadata quorum's voters now, as this node's metadata log has them.
    pub fn voters(&self) -> Vec<i32> {
        node_ids(&self.metadata.voters())
    }

    pub fn is_voter(&self, id: i32) -> bool {
        u64::try_from(id).is_ok_and(|n| self.metadata.voters().contains(&n))
    }

    /// A node's Raft address.
    pub fn raft_addr(&self, id: i32) -> Option<String> {
        self.configured_voters
            .get(&id)
            .cloned()
            .or_else(|| self.brokers.read().get(&id).and_then(|b| b.raft_addr.clone()))
    }

    /// AddRaftVoter (`add`) or RemoveRaftVoter of node `node`, carried out by the metadata
    /// leader (forwarded to it from here), waiting up to `timeout`. See [`change_voter_here`].
    pub async fn change_voter(&self, node: i32, add: bool, timeout: Duration) -> Result<(), KafkaError> {
        let n = u64::try_from(node).map_err(|_| KafkaError::InvalidRequest(format!("bad node id {node}")))?;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = String::from("no leader");
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(KafkaError::NotController(last));
            }
            let answer = match self.metadata.leader() {
                Some(l) if l == self.node_id as u64 => change_voter_here(&self.metadata, n, add, left).await,
                Some(l) => {
                    let mut body = vec![add as u8];
                    body.extend_from_slice(&n.to_be_bytes());
                    body.extend_from_slice(&(left.as_millis() as u64).to_be_bytes());
                    match self.peers.call(l, RPC_VOTERS, METADATA_GROUP, &body, left + Duration::from_secs(1)).await {
                        Ok(b) => Ok(decode_outcome(&b)),
                        Err(e) => Err(e.to_string()),
                    }
                }
                None => Err("no metadata leader".into()),
            };
            match answer {
                Ok(outcome) => return outcome,
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The metadata quorum as its leader sees it (asked of the leader from here).
    pub async fn quorum(&self) -> Result<QuorumState, KafkaError> {
        match self.metadata.leader() {
            Some(l) if l == self.node_id as u64 => {
                quorum_state(&self.metadata).ok_or_else(|| KafkaError::NotController("leadership changed".into()))
            }
            Some(l) => {
                let b = self
                    .peers
                    .call(l, RPC_QUORUM, METADATA_GROUP, &[], Duration::from_secs(5))
                    .await
                    .map_err(|e| KafkaError::NotController(e.to_string()))?;
                serde_json::from_slice(&b).map_err(|e| KafkaError::NotController(format!("bad answer: {e}")))
            }
            None => Err(KafkaError::NotController("no metadata leader".into())),
        }
    }

    /// Replicas for partitions `first..first + count` at replication factor `rf` (see
    /// [`place`]).
    pub fn place(&self, first: i32, count: i32, rf: i16) -> Result<Vec<Vec<i32>>, KafkaError> {
        place(&self.nodes(), first, count, rf)
    }

    /// The leader and leader epoch of partition `index` of `t`, if known: from the local
    /// replica's Raft group, else from the leader's announcements.
    pub fn leader_of(&self, t: &Topic, index: i32) -> Option<(i32, i32)> {
        let announced = || self.leaders.read().get(&partition_group(&t.id, index)).copied();
        match t.partitions.get(usize::try_from(index).ok()?)? {
            Some(p) => {
                let g = p.replica.as_ref()?;
                match g.leader() {
                    Some(l) => Some((l as i32, g.term() as i32)),
                    // A follower that has not heard from a new leader yet (just created, or
                    // an election in flight) trusts the leader's announcement of this term or
                    // a later one rather than answering LEADER_NOT_AVAILABLE.
                    None => announced().filter(|(_, term)| *term >= g.term()).map(|(l, term)| (l, term as i32)),
                }
            }
            None => announced().map(|(l, term)| (l, term as i32)),
        }
    }

    /// Opens this node's replica of partition `index` of topic `id`, whose replicas are
    /// `replicas`. `init`: the partition is being created now (not replayed, not added by a
    /// reassignment), so this node may start its group.
    #[allow(clippy::too_many_arguments)]
    async fn open_replica(
        &self,
        broker: &Broker,
        topic: &str,
        id: &Uuid,
        index: i32,
        log: LogConfig,
        replicas: &[i32],
        init: bool,
    ) -> anyhow::Result<Arc<Partition>> {
        let dir = broker.topics.partition_dir(topic, index);
        claim_dir(&dir, id)?;
        let gid = partition_group(id, index);
        let group =
            Group::open(self.node_id as u64, gid, &dir, log, self.peers.clone(), None, self.raft_config.clone())
                .await?;
        self.groups.insert(&group);
        let members: BTreeMap<u64, BasicNode> =
            replicas.iter().map(|r| (*r as u64, BasicNode { addr: self.raft_addr(*r).unwrap_or_default() })).collect();
        // Only a partition being created now is started here: its preferred replica at once,
        // the others after a while if the preferred one never reached them. A replayed
        // creation (a restart, or a node that lost its disk) belongs to a group that already
        // exists: the node waits to be replicated to and never starts a rival log.
        if init && !replicas.is_empty() {
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

    /// Closes this node's replica of a partition that moved away and deletes its data.
    /// Closes this node's replica of a partition no longer assigned to it. Its directory is
    /// deleted only once this node has applied its whole metadata log under a known leader and
    /// the partition is still not assigned here: while the log is replayed at start-up, every
    /// historical reassignment that once removed this node passes by, and deleting then (the
    /// replica re-created empty a few commands later) wiped every replica of partitions that
    /// had moved around when all nodes restarted at once (jepsen seed 2027: offsets reused).
    /// A partition assigned here again meanwhile reopens the same directory, its data intact.
    async fn drop_replica(self: &Arc<Self>, broker: &Arc<Broker>, p: &Partition, id: Uuid) {
        self.close_partition(p).await;
        p.appended.notify_waiters();
        tracing::info!(topic = %p.topic, partition = p.index, "replica moved away; closed");
        let (cluster, broker) = (self.clone(), broker.clone());
        let (dir, topic, index) = (p.dir.clone(), p.topic.clone(), p.index);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            while !cluster.metadata_applied() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let _guard = cluster.replica_dirs.lock().await;
            let here = broker.topics.get(&topic).is_some_and(|t| t.id == id && t.partition(index).is_ok());
            if here {
                tracing::info!(topic = %topic, partition = index, "replica assigned here again; its data is kept");
                return;
            }
            if dir_owner(&dir).is_some_and(|owner| owner != id) {
                return; // a topic created since under the same name has it now
            }
            // Rename first so a crash mid-removal cannot leave a half-deleted partition behind.
            let doomed = dir.with_file_name(format!("{topic}-{index}.{}-delete", Uuid::new_v4().simple()));
            match std::fs::rename(&dir, &doomed) {
                Ok(()) => {
                    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&doomed)).await;
                    tracing::info!(topic = %topic, partition = index, "moved-away replica deleted");
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "removing a moved replica failed"),
            }
        });
    }
}

/// Kafka's name for the file in a partition directory that names the topic id it belongs to.
const PARTITION_METADATA: &str = "partition.metadata";

/// The topic id a partition directory belongs to, if it says (directories made before the
/// file existed do not).
fn dir_owner(dir: &std::path::Path) -> Option<Uuid> {
    let text = std::fs::read_to_string(dir.join(PARTITION_METADATA)).ok()?;
    text.lines().find_map(|l| l.strip_prefix("topic_id:")).and_then(|v| Uuid::parse_str(v.trim()).ok())
}

/// Makes sure partition directory `dir` belongs to topic `id`, marking a new one as its own.
/// Directories are named after the topic, not its id. A node replaying its metadata log
/// passes the creation (and the deletion) of every earlier topic of the same name: opening
/// the directory then would hand a later topic's records to the earlier one, and applying the
/// deletion would delete them (every replica of a re-created topic was wiped when all nodes
/// restarted at once). Refused here, the replica stays closed and the deletion passes it by.
fn claim_dir(dir: &std::path::Path, id: &Uuid) -> anyhow::Result<()> {
    if let Some(owner) = dir_owner(dir) {
        anyhow::ensure!(owner == *id, "{} holds topic id {owner}, not {id}", dir.display());
        return Ok(());
    }
    if dir.exists() {
        return Ok(()); // made before partition.metadata existed: as it always was
    }
    std::fs::create_dir_all(dir)?;
    // Not fsynced (creating 1,000 partitions would wait for 1,000 more fsyncs): a file lost or
    // torn by a power cut reads as no file, and the directory is opened as it always was.
    std::fs::write(dir.join(PARTITION_METADATA), format!("version: 0\ntopic_id: {id}\n"))?;
    Ok(())
}

/// Kafka-style placement over `nodes` (id, rack): nodes in rack-alternating order; partition
/// `p`'s leader is the `p`-th of them (so leaders spread evenly) and its followers the next
/// ones in that order, skipping nodes whose rack already holds a replica until every rack
/// does (so replicas span racks when `broker.rack` is set).
pub fn place(nodes: &[(i32, Option<String>)], first: i32, count: i32, rf: i16) -> Result<Vec<Vec<i32>>, KafkaError> {
    let n = nodes.len();
    if rf <= 0 {
        return Err(KafkaError::InvalidReplicationFactor("Replication factor must be larger than 0.".into()));
    }
    if rf as usize > n {
        return Err(KafkaError::InvalidReplicationFactor(format!(
            "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {n} broker(s) are registered."
        )));
    }
    let mut by_rack: BTreeMap<Option<&str>, Vec<i32>> = BTreeMap::new();
    for (id, rack) in nodes {
        by_rack.entry(rack.as_deref()).or_default().push(*id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
    }
    let mut order: Vec<(i32, Option<&str>)> = Vec::with_capacity(n);
    for k in 0..n {
        for (rack, ids) in &by_rack {
            if let Some(id) = ids.get(k) {
                order.push((*id, *rack));
            }
        }
    }
    let racks = by_rack.len();
    Ok((first..first + count)
        .map(|p| {
            let start = p as usize % n;
            let mut replicas = vec![order[start].0];
            let mut used: BTreeSet<Option<&str>> = BTreeSet::from([order[start].1]);
            while replicas.len() < rf as usize {
                let candidates = (1..n).map(|k| order[(start + k) % n]).filter(|(id, _)| !replicas.contains(id));
                let pick = candidates
                    .clone()
                    .find(|(_, rack)| used.len() >= racks || !used.contains(rack))
                    .or_else(|| candidates.clone().next());
                let Some((id, rack)) = pick else { break };
                replicas.push(id);
                used.insert(rack);
                if used.len() >= racks {
                    used.clear();
                    used.insert(rack);
                }
            }
            replicas
        })
        .collect())
}

fn app_handler(
    metadata: Group,
    groups: Groups,
    leaders: Arc<RwLock<HashMap<u64, (i32, u64)>>>,
    peers: Arc<Peers>,
) -> AppHandler {
    Arc::new(move |kind, _group, body| {
        let (metadata, groups, leaders, peers) = (metadata.clone(), groups.clone(), leaders.clone(), peers.clone());
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
                RPC_LEADERS => {
                    tracing::trace!(
                        from = body.get(..8).map(|b| u64::from_be_bytes(b.try_into().unwrap())),
                        groups = body.len().saturating_sub(8) / 16,
                        "leader announcement"
                    );
                    record_leaders(&leaders, &body)?;
                    Ok(Vec::new())
                }
                RPC_JOIN if body.len() > 8 => {
                    // Joining nodes ask the voters they were configured with, which need not
                    // be the leader, nor even voters any more: members pass the request on.
                    match metadata.leader() {
                        Some(l) if l == metadata.node_id => {}
                        Some(l) if metadata.raft.is_initialized().await.unwrap_or(false) => {
                            peers
                                .call(l, RPC_JOIN, METADATA_GROUP, &body, Duration::from_secs(5))
                                .await
                                .map_err(|e| e.to_string())?;
                            return Ok(Vec::new());
                        }
                        _ => return Err("not the metadata leader".into()),
                    }
                    let node = u64::from_be_bytes(body[..8].try_into().unwrap());
                    let addr = String::from_utf8(body[8..].to_vec()).map_err(|_| "bad address".to_string())?;
                    if metadata.voters().contains(&node) {
                        return Err(format!("node {node} is a voter"));
                    }
                    tracing::info!(node, addr = %addr, "adding a broker to the metadata group as a learner");
                    metadata.raft.add_learner(node, BasicNode { addr }, false).await.map_err(|e| e.to_string())?;
                    Ok(Vec::new())
                }
                RPC_VOTERS if body.len() == 17 => {
                    let node = u64::from_be_bytes(body[1..9].try_into().unwrap());
                    let timeout = Duration::from_millis(u64::from_be_bytes(body[9..].try_into().unwrap()));
                    let outcome = change_voter_here(&metadata, node, body[0] == 1, timeout).await?;
                    Ok(encode_outcome(&outcome))
                }
                RPC_QUORUM => {
                    let q = quorum_state(&metadata).ok_or("not the metadata leader")?;
                    serde_json::to_vec(&q).map_err(|e| e.to_string())
                }
                other => Err(format!("unknown application rpc {other}")),
            }
        })
    })
}

async fn apply_loop(broker: Arc<Broker>, mut rx: mpsc::UnboundedReceiver<(u64, Bytes)>) {
    let cluster = broker.cluster.clone().expect("cluster mode");
    let mut retry = tokio::time::interval(REOPEN_RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Retried here, not in a task of its own: this loop is the only writer of topics.
        let next = tokio::select! {
            next = rx.recv() => next,
            _ = retry.tick() => {
                reopen_missing(&broker, &cluster).await;
                continue;
            }
        };
        let Some((index, bytes)) = next else { return };
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
            if let Some(addr) = info.raft_addr.clone().filter(|_| info.id != cluster.node_id) {
                cluster.peers.set_addr(info.id as u64, addr.clone());
                // A node that joined again just as the removal of its unregistered former self
                // from the metadata group went through (see UnregisterBroker) registers
                // without being in the group: the leader adds it back.
                let n = info.id as u64;
                let member = cluster
                    .metadata
                    .raft
                    .metrics()
                    .borrow_watched()
                    .membership_config
                    .membership()
                    .get_node(&n)
                    .is_some();
                if fresh && cluster.is_metadata_leader() && !member {
                    tracing::info!(node = info.id, "a registered broker is not in the metadata group; adding it again");
                    let m = cluster.metadata.clone();
                    tokio::spawn(async move {
                        if let Err(e) = m.raft.add_learner(n, BasicNode { addr }, false).await {
                            tracing::warn!(node = n, error = %e, "adding the broker to the metadata group failed");
                        }
                    });
                }
            }
            cluster.unregistered.lock().remove(&info.id);
            cluster.brokers.write().insert(info.id, info);
        }
        Command::CreateTopic { name, id, partitions, configs, assignment } => {
            if broker.topics.get(&name).is_some() {
                return Ok(()); // first creation wins
            }
            let settings = TopicSettings::resolve(&configs, &broker.config);
            let assignment = assignment_or_legacy(cluster, 0, partitions, assignment);
            let mut parts = Vec::with_capacity(partitions as usize);
            for (i, a) in assignment.iter().enumerate() {
                parts.push(if a.replicas.contains(&cluster.node_id) {
                    let log = settings.log.clone();
                    let opened = cluster.open_replica(broker, &name, &id, i as i32, log, &a.replicas, fresh).await;
                    opened_or_logged(&name, i as i32, opened)
                } else {
                    None
                });
            }
            install(broker, Topic { name: name.clone(), id, configs, settings, partitions: parts, assignment })?;
            tracing::info!(topic = %name, partitions, "created topic");
        }
        Command::DeleteTopic { name, id } => {
            let Some(t) = broker.topics.get(&name).filter(|t| t.id == id) else { return Ok(()) };
            for p in t.hosted() {
                cluster.close_partition(p).await;
            }
            broker.topics.delete(&name)?;
        }
        Command::SetPartitions { name, id, partitions, assignment } => {
            let Some(t) = broker.topics.get(&name).filter(|t| t.id == id) else { return Ok(()) };
            let current = t.partitions.len() as i32;
            if partitions <= current {
                return Ok(());
            }
            let mut parts = t.partitions.clone();
            let mut all = t.assignment.clone();
            for (k, a) in
                assignment_or_legacy(cluster, current, partitions - current, assignment).into_iter().enumerate()
            {
                let i = current + k as i32;
                parts.push(if a.replicas.contains(&cluster.node_id) {
                    let log = t.settings.log.clone();
                    opened_or_logged(
                        &name,
                        i,
                        cluster.open_replica(broker, &name, &id, i, log, &a.replicas, fresh).await,
                    )
                } else {
                    None
                });
                all.push(a);
            }
            install(broker, t.with_replicas(parts, all))?;
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
        Command::Reassign { name, id, partition, target } => {
            let Some(t) = broker.topics.get(&name).filter(|t| t.id == id) else { return Ok(()) };
            let Some(mut a) = t.assignment.get(partition as usize).cloned() else { return Ok(()) };
            // Cancelling moves the partition back to the replicas it had.
            a.target = Some(target.unwrap_or_else(|| a.replicas.clone()));
            set_assignment(broker, cluster, &t, partition, a).await?;
        }
        Command::UnregisterBroker { id } => {
            cluster.brokers.write().remove(&id);
            tracing::info!(node = id, "broker unregistered");
            if id == cluster.node_id {
                tracing::warn!("this node was unregistered from the cluster; it can be shut down");
            }
            // It no longer needs the metadata log either: the metadata leader removes it from
            // the group (see `remove_unregistered`).
            cluster.unregistered.lock().insert(id, tokio::time::Instant::now());
        }
        Command::Barrier => {}
        Command::ReassignDone { name, id, partition, replicas } => {
            let Some(t) = broker.topics.get(&name).filter(|t| t.id == id) else { return Ok(()) };
            let Some(mut a) = t.assignment.get(partition as usize).cloned() else { return Ok(()) };
            // Only the move still pending finishes. A former leader of the partition that
            // finished an older move can record it late, after a newer move (moving the
            // partition back, say) was done: applied, it would put the replicas the partition
            // has left back into the metadata (jepsen seed 2027: partition 5 reverted).
            if a.target.as_ref() != Some(&replicas) {
                tracing::info!(topic = %name, partition, replicas = ?replicas, "a stale reassignment completion; ignored");
                return Ok(());
            }
            a.target = None;
            a.replicas = replicas;
            set_assignment(broker, cluster, &t, partition, a).await?;
        }
    }
    Ok(())
}

/// The replicas of `count` new partitions from `first`, from a command (or, for commands
/// written before replica sets existed, the legacy placement).
fn assignment_or_legacy(cluster: &Cluster, first: i32, count: i32, given: Vec<Vec<i32>>) -> Vec<Assignment> {
    (0..count)
        .map(|k| {
            let replicas = given.get(k as usize).cloned().unwrap_or_else(|| cluster.legacy_replicas(first + k));
            Assignment { replicas, target: None }
        })
        .collect()
}

/// Publishes partition `index`'s new assignment, opening this node's replica if it now
/// holds or is about to hold one, and dropping it if it no longer does.
async fn set_assignment(
    broker: &Arc<Broker>,
    cluster: &Cluster,
    t: &Topic,
    index: i32,
    a: Assignment,
) -> anyhow::Result<()> {
    let me = cluster.node_id;
    let keep = a.replicas.contains(&me) || a.target.as_ref().is_some_and(|t| t.contains(&me));
    let mut parts = t.partitions.clone();
    let slot = &mut parts[index as usize];
    let mut dropped = None;
    match (slot.is_some(), keep) {
        // A new replica waits to be replicated to: the partition's leader adds it.
        (false, true) => {
            let log = t.settings.log.clone();
            let _guard = cluster.replica_dirs.lock().await;
            let opened = cluster.open_replica(broker, &t.name, &t.id, index, log, &[], false).await;
            *slot = opened_or_logged(&t.name, index, opened);
        }
        (true, false) => dropped = slot.take(),
        _ => {}
    }
    let mut assignment = t.assignment.clone();
    assignment[index as usize] = a;
    install(broker, t.with_replicas(parts, assignment))?;
    if let (Some(p), Some(c)) = (dropped, broker.cluster.clone()) {
        c.drop_replica(broker, &p, t.id).await;
    }
    Ok(())
}

/// Publishes `t`. The group coordinator follows this node's replicas of
/// `__consumer_offsets`: groups are coordinated wherever their partition's leader is.
fn install(broker: &Broker, t: Topic) -> Result<(), KafkaError> {
    let offsets = (t.name == crate::groups::OFFSETS_TOPIC).then(|| t.partitions.clone());
    broker.topics.install(t)?;
    if let Some(parts) = offsets {
        broker.groups.attach(parts);
    }
    Ok(())
}

/// A replica that failed to open (a damaged directory, say) is logged and left closed, to be
/// retried by [`reopen_missing`]. Failing the metadata command instead would leave this node's
/// view of the topic behind the rest of the cluster's for good.
fn opened_or_logged(topic: &str, index: i32, opened: anyhow::Result<Arc<Partition>>) -> Option<Arc<Partition>> {
    opened
        .inspect_err(
            |e| tracing::warn!(topic, partition = index, error = %e, "opening a replica failed; retrying later"),
        )
        .ok()
}

/// Opens the replicas assigned to this node that are not open (see [`opened_or_logged`]).
async fn reopen_missing(broker: &Arc<Broker>, cluster: &Cluster) {
    let me = cluster.node_id;
    for t in broker.topics.list() {
        let missing: Vec<i32> = t
            .assignment
            .iter()
            .zip(&t.partitions)
            .enumerate()
            .filter(|(_, (a, p))| p.is_none() && a.all_replicas().contains(&me))
            .map(|(i, _)| i as i32)
            .collect();
        if missing.is_empty() {
            continue;
        }
        let _guard = cluster.replica_dirs.lock().await;
        let mut parts = t.partitions.clone();
        let mut opened = false;
        for i in missing {
            let log = t.settings.log.clone();
            if let Ok(p) = cluster.open_replica(broker, &t.name, &t.id, i, log, &[], false).await {
                tracing::info!(topic = %t.name, partition = i, "replica opened on retry");
                parts[i as usize] = Some(p);
                opened = true;
            }
        }
        if opened {
            if let Err(e) = install(broker, t.with_replicas(parts, t.assignment.clone())) {
                tracing::warn!(topic = %t.name, error = %e, "installing reopened replicas failed");
            }
        }
    }
}

/// A node outside `controller.quorum.voters`: until the metadata log reaches it, asks the
/// voters (the leader answers) to add it as a learner of the metadata group.
async fn join_as_learner(metadata: Group, peers: Arc<Peers>, voters: Vec<u64>, my_addr: String) {
    loop {
        if metadata.raft.is_initialized().await.unwrap_or(false) {
            tracing::info!("receiving the metadata log");
            return;
        }
        if !ask_to_join(&metadata, &peers, &voters, &my_addr).await {
            tracing::info!("joining the cluster: no metadata leader answered yet; retrying");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Asks `voters` to add this node to the metadata group as a learner (any member forwards
/// the request to the leader). Whether one of them took it.
async fn ask_to_join(metadata: &Group, peers: &Peers, voters: &[u64], my_addr: &str) -> bool {
    let mut body = metadata.node_id.to_be_bytes().to_vec();
    body.extend_from_slice(my_addr.as_bytes());
    for v in voters {
        if peers.call(*v, RPC_JOIN, METADATA_GROUP, &body, Duration::from_secs(5)).await.is_ok() {
            return true;
        }
    }
    false
}

/// The metadata quorum as its leader reports it (DescribeQuorum). Offsets are Raft indexes
/// of the metadata log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuorumState {
    pub leader: i32,
    pub term: u64,
    /// The last committed index.
    pub high_watermark: i64,
    /// Voters and learners (brokers outside the quorum): (node, last index the leader knows
    /// it holds, -1 if none yet).
    pub voters: Vec<(i32, i64)>,
    pub observers: Vec<(i32, i64)>,
}

/// The metadata group's [`QuorumState`], if this node leads it.
fn quorum_state(metadata: &Group) -> Option<QuorumState> {
    let m = metadata.raft.metrics().borrow_watched().clone();
    if m.current_leader != Some(metadata.node_id) {
        return None;
    }
    let index = |l: Option<u64>| l.map_or(-1, |i| i as i64);
    let end_of = |n: u64| {
        if n == metadata.node_id {
            return index(m.last_log_index);
        }
        index(m.replication.as_ref().and_then(|r| r.get(&n).cloned().flatten()).map(|l| l.index))
    };
    let membership = m.membership_config.membership();
    Some(QuorumState {
        leader: metadata.node_id as i32,
        term: m.current_term,
        high_watermark: index(m.cluster_committed.map(|l| l.index)),
        voters: membership.voter_ids().map(|n| (n as i32, end_of(n))).collect(),
        observers: membership.learner_ids().map(|n| (n as i32, end_of(n))).collect(),
    })
}

/// On the metadata leader: makes learner `node` a voter (`add`), once it has caught up with
/// the log, or voter `node` a learner. The change is a Raft membership entry, so every node,
/// restarted or not, takes the voters from its log, never from `controller.quorum.voters`
/// again. `Err` means try the leader again (this node does not lead, or handed leadership
/// over to remove itself); `Ok` holds the answer.
async fn change_voter_here(
    metadata: &Group,
    node: u64,
    add: bool,
    timeout: Duration,
) -> Result<Result<(), KafkaError>, String> {
    if !metadata.is_leader() {
        return Err("not the metadata leader".into());
    }
    let membership = metadata.raft.metrics().borrow_watched().membership_config.membership().clone();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let change = if add {
        if voters.contains(&node) {
            return Ok(Err(KafkaError::DuplicateVoter(format!("node {node} is already a voter"))));
        }
        if membership.get_node(&node).is_none() {
            return Ok(Err(KafkaError::InvalidRequest(format!(
                "node {node} is not a broker of this cluster: start it (with controller.quorum.voters and rill.raft.address) first"
            ))));
        }
        // A voter that is far behind would hold up every commit until it caught up.
        let deadline = tokio::time::Instant::now() + timeout;
        while !metadata.caught_up(node) {
            if tokio::time::Instant::now() >= deadline {
                return Ok(Err(KafkaError::RequestTimedOut));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        openraft::ChangeMembers::AddVoterIds(BTreeSet::from([node]))
    } else {
        if !voters.contains(&node) {
            return Ok(Err(KafkaError::VoterNotFound(format!("node {node} is not a voter"))));
        }
        if voters.len() == 1 {
            return Ok(Err(KafkaError::InvalidRequest(format!(
                "node {node} is the last voter of the metadata quorum"
            ))));
        }
        if node == metadata.node_id {
            // The leader leaving the voters hands leadership to a voter that stays, which
            // then makes the change: otherwise the quorum has no leader for an election.
            let Some(to) = voters.iter().copied().find(|v| *v != node && metadata.caught_up(*v)) else {
                return Err("no other voter has caught up to take leadership".into());
            };
            tracing::info!(to, "leaving the metadata quorum's voters; handing leadership over");
            metadata.transfer_leader(to).await.map_err(|e| e.to_string())?;
            return Err(format!("leadership handed to node {to}"));
        }
        openraft::ChangeMembers::RemoveVoters(BTreeSet::from([node]))
    };
    tracing::info!(node, add, "changing the metadata quorum's voters");
    // `retain`: a voter removed stays a learner, so it keeps receiving the metadata log and
    // serving as a broker until it is unregistered.
    match metadata.raft.change_membership(change, true).await {
        Ok(_) => Ok(Ok(())),
        Err(e) => Ok(Err(KafkaError::NotController(e.to_string()))),
    }
}

/// `[error code i16][message]`: the answer to a forwarded voter change.
fn encode_outcome(outcome: &Result<(), KafkaError>) -> Vec<u8> {
    let (code, message) = match outcome {
        Ok(()) => (0, String::new()),
        Err(e) => (e.code(), e.to_string()),
    };
    let mut out = code.to_be_bytes().to_vec();
    out.extend_from_slice(message.as_bytes());
    out
}

fn decode_outcome(b: &[u8]) -> Result<(), KafkaError> {
    let Some(code) = b.get(..2).map(|c| i16::from_be_bytes([c[0], c[1]])) else {
        return Err(KafkaError::NotController("bad answer from the metadata leader".into()));
    };
    match rill_protocol::ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(e) => Err(KafkaError::Forwarded(e, String::from_utf8_lossy(&b[2..]).into_owned())),
    }
}

/// Stores a peer's announcement of the groups it leads (see [`announce_leaders`]).
fn record_leaders(dir: &RwLock<HashMap<u64, (i32, u64)>>, body: &[u8]) -> Result<(), String> {
    if body.len() < 8 || !(body.len() - 8).is_multiple_of(16) {
        return Err("malformed leader announcement".into());
    }
    let node = u64::from_be_bytes(body[..8].try_into().unwrap()) as i32;
    let led: HashMap<u64, u64> = body[8..]
        .chunks_exact(16)
        .map(|c| (u64::from_be_bytes(c[..8].try_into().unwrap()), u64::from_be_bytes(c[8..].try_into().unwrap())))
        .collect();
    let mut dir = dir.write();
    // The announcement is complete: groups `node` no longer leads are forgotten.
    dir.retain(|g, (l, _)| *l != node || led.contains_key(g));
    for (g, term) in led {
        if dir.get(&g).is_none_or(|(_, t)| *t <= term) {
            dir.insert(g, (node, term));
        }
    }
    Ok(())
}

/// Tells every other node which partition groups this node leads, whenever that changes and
/// every few seconds, so that nodes without a replica of a partition can name its leader in
/// Metadata and send clients there.
async fn announce_leaders(cluster: Arc<Cluster>) {
    let mut last: Vec<(u64, u64)> = Vec::new();
    let mut last_peers: Vec<i32> = Vec::new();
    let mut sent = tokio::time::Instant::now() - ANNOUNCE_REFRESH;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let mut led: Vec<(u64, u64)> = cluster
            .groups
            .groups()
            .iter()
            .filter(|g| g.id != METADATA_GROUP && g.is_leader())
            .map(|g| (g.id, g.term()))
            .collect();
        led.sort_unstable();
        let peers: Vec<i32> = cluster.nodes().into_iter().map(|n| n.0).filter(|n| *n != cluster.node_id).collect();
        // A node that just joined hears at once, not at the next refresh.
        if led == last && peers == last_peers && sent.elapsed() < ANNOUNCE_REFRESH {
            continue;
        }
        let mut body = Vec::with_capacity(8 + 16 * led.len());
        body.extend_from_slice(&(cluster.node_id as u64).to_be_bytes());
        for (g, term) in &led {
            body.extend_from_slice(&g.to_be_bytes());
            body.extend_from_slice(&term.to_be_bytes());
        }
        let body = Bytes::from(body);
        tracing::trace!(?led, ?peers, "announcing the groups this node leads");
        for peer in peers.iter().copied() {
            let (c, b) = (cluster.clone(), body.clone());
            tokio::spawn(async move {
                if let Err(e) = c.peers.call(peer as u64, RPC_LEADERS, METADATA_GROUP, &b, Duration::from_secs(2)).await
                {
                    tracing::debug!(peer, error = %e, "leader announcement failed");
                }
            });
        }
        last = led;
        last_peers = peers;
        sent = tokio::time::Instant::now();
    }
}

/// Every second: each partition with a reassignment pending whose Raft group this node leads
/// is carried out here (a leader that changes hands mid-way leaves it to the next leader).
async fn reassign_loop(broker: Arc<Broker>) {
    let cluster = broker.cluster.clone().expect("cluster mode");
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        // While the metadata log is replayed, every historical move is pending for a moment.
        if !cluster.metadata_applied() {
            continue;
        }
        for t in broker.topics.list() {
            for (i, a) in t.assignment.iter().enumerate() {
                let Some(target) = a.target.clone() else { continue };
                let Some(Some(p)) = t.partitions.get(i) else { continue };
                let Some(g) = p.replica.clone() else { continue };
                if !g.is_leader() || !cluster.reassigning.lock().insert(g.id) {
                    continue;
                }
                let (b, c, name, id) = (broker.clone(), cluster.clone(), t.name.clone(), t.id);
                tokio::spawn(async move {
                    if let Err(e) = drive_reassignment(&b, &c, &g, &name, id, i as i32, &target).await {
                        tracing::warn!(topic = %name, partition = i, error = %e, "reassignment step failed; retrying");
                    }
                    c.reassigning.lock().remove(&g.id);
                });
            }
        }
    }
}

/// On the partition's leader: makes `target` the voters of the group, then records it.
async fn drive_reassignment(
    broker: &Broker,
    cluster: &Cluster,
    g: &Group,
    topic: &str,
    id: Uuid,
    partition: i32,
    target: &[i32],
) -> Result<(), String> {
    // The move must still be the pending one in the committed metadata, not only in this
    // node's view of it, which may lag: a node that had just restarted, replaying its metadata
    // log, once carried out a move undone minutes before, making a wiped node a voter of the
    // partition (jepsen seed 2027).
    cluster.propose_and_wait(&Command::Barrier).await.map_err(|e| e.to_string())?;
    let pending = broker
        .topics
        .get(topic)
        .filter(|t| t.id == id)
        .and_then(|t| t.assignment.get(partition as usize).and_then(|a| a.target.clone()));
    if pending.as_deref() != Some(target) {
        return Ok(());
    }
    g.wake().await;
    let want: BTreeSet<u64> = target.iter().map(|r| *r as u64).collect();
    let voters = g.voters();
    if voters != want {
        let members = g.raft.metrics().borrow_watched().membership_config.membership().clone();
        for node in target {
            let n = *node as u64;
            if !voters.contains(&n) && (members.get_node(&n).is_none() || !g.caught_up(n)) {
                let addr = cluster.raft_addr(*node).ok_or_else(|| format!("no address for node {node}"))?;
                tracing::info!(topic, partition, node, "adding a replica; catching it up");
                // Returns once the new replica has caught up with the leader's log.
                tokio::time::timeout(Duration::from_secs(600), g.raft.add_learner(n, BasicNode { addr }, true))
                    .await
                    .map_err(|_| format!("node {node} did not catch up in time"))?
                    .map_err(|e| e.to_string())?;
            }
        }
        let me = cluster.node_id as u64;
        if !want.contains(&me) {
            // The leader is leaving: it first makes the target voters beside itself, then hands
            // leadership to the target's first replica, which finishes the move. Leaving at
            // once would leave the group without a leader for an election timeout.
            let mut interim = want.clone();
            interim.insert(me);
            if voters != interim {
                g.raft.change_membership(interim, false).await.map_err(|e| e.to_string())?;
            }
            let to = target[0] as u64;
            tracing::info!(topic, partition, to, "leaving the replica set; handing leadership over");
            return g.transfer_leader(to).await.map_err(|e| e.to_string());
        }
        tracing::info!(topic, partition, replicas = ?target, "changing the replica set");
        g.raft.change_membership(want.clone(), false).await.map_err(|e| e.to_string())?;
    }
    // Learners added for a move that a newer one overrode before it finished are not in the
    // target: the leader would go on replicating to them.
    let members = g.raft.metrics().borrow_watched().membership_config.membership().clone();
    let strays: BTreeSet<u64> = members.nodes().map(|(n, _)| *n).filter(|n| !want.contains(n)).collect();
    if !strays.is_empty() {
        tracing::info!(topic, partition, learners = ?strays, "removing learners outside the replica set");
        g.raft
            .change_membership(openraft::ChangeMembers::RemoveNodes(strays), false)
            .await
            .map_err(|e| e.to_string())?;
    }
    let cmd = Command::ReassignDone { name: topic.to_string(), id, partition, replicas: target.to_vec() };
    cluster.propose_and_wait(&cmd).await.map_err(|e| e.to_string())?;
    tracing::info!(topic, partition, replicas = ?target, "reassignment done");
    Ok(())
}

/// How long an unregistered node stays in the metadata group: it first has to learn that
/// its unregistration committed (the request may be waiting on that node).
const UNREGISTERED_GRACE: Duration = Duration::from_secs(5);

/// On the metadata leader, every second: unregistered nodes leave the metadata group (they no
/// longer need its log, and the leader would go on replicating to them). A sweep rather than
/// a task per unregistration, so that a leader elected after the one that applied it, or one
/// restarted meanwhile, removes the node all the same.
async fn remove_unregistered(cluster: Arc<Cluster>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !cluster.is_metadata_leader() || !cluster.metadata_applied() {
            continue;
        }
        let due: Vec<i32> = cluster
            .unregistered
            .lock()
            .iter()
            .filter(|(_, at)| at.elapsed() >= UNREGISTERED_GRACE)
            .map(|(id, _)| *id)
            .collect();
        let membership = cluster.metadata.raft.metrics().borrow_watched().membership_config.membership().clone();
        for id in due {
            let n = id as u64;
            // A voter is removed from the voters first (RemoveRaftVoter; unregistering one is
            // refused). A node that came back under the same id (restarted, perhaps with an
            // empty disk) registered again and left `unregistered`: removing it would cut that
            // new incarnation off the metadata log for good (it would keep its registration
            // and replicas but never hear of a later command).
            let back = !cluster.unregistered.lock().contains_key(&id);
            if back || membership.get_node(&n).is_none() || membership.voter_ids().any(|v| v == n) {
                continue;
            }
            tracing::info!(node = id, "removing an unregistered node from the metadata group");
            let gone = openraft::ChangeMembers::RemoveNodes(BTreeSet::from([n]));
            if let Err(e) = cluster.metadata.raft.change_membership(gone, false).await {
                tracing::warn!(node = id, error = %e, "removing the node from the metadata group failed");
            }
        }
    }
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
            cluster.configured_voters.keys().all(|v| b.contains_key(v))
        };
        if !cluster.is_metadata_leader() || !all_registered {
            continue;
        }
        // Placed like any topic, over the registered nodes, and written into the command:
        // the partitions can then be moved like any other (the voters may change later).
        let rf = cluster.configured_voters.len().min(i16::MAX as usize) as i16;
        let assignment = match cluster.place(0, broker.groups.config().partitions, rf) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "placing {} failed; retrying", crate::groups::OFFSETS_TOPIC);
                continue;
            }
        };
        let mut configs = BTreeMap::new();
        configs.insert("cleanup.policy".to_string(), "compact".to_string());
        configs.insert("segment.bytes".to_string(), "104857600".to_string());
        let cmd = Command::CreateTopic {
            name: crate::groups::OFFSETS_TOPIC.to_string(),
            id: Uuid::new_v4(),
            partitions: broker.groups.config().partitions,
            configs,
            assignment,
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
            for p in t.hosted() {
                let Some(g) = &p.replica else { continue };
                let Some(&preferred) = t.assignment_of(p.index).replicas.first() else { continue };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn count_by<T: Ord + Clone>(items: impl Iterator<Item = T>) -> BTreeMap<T, usize> {
        let mut m = BTreeMap::new();
        for i in items {
            *m.entry(i).or_insert(0) += 1;
        }
        m
    }

    #[test]
    fn placement_spreads_leaders_and_replicas() {
        let nodes: Vec<(i32, Option<String>)> = (1..=4).map(|i| (i, None)).collect();
        let placed = place(&nodes, 0, 8, 3).unwrap();
        for r in &placed {
            assert_eq!(r.len(), 3);
            assert_eq!(r.iter().collect::<BTreeSet<_>>().len(), 3, "no node twice: {r:?}");
        }
        assert!(count_by(placed.iter().map(|r| r[0])).values().all(|n| *n == 2), "{placed:?}");
        assert!(count_by(placed.iter().flatten().copied()).values().all(|n| *n == 6), "{placed:?}");
        // New partitions continue the rotation.
        assert_eq!(place(&nodes, 8, 1, 3).unwrap()[0], placed[0]);
    }

    #[test]
    fn placement_spans_racks() {
        let rack = |r: &str| Some(r.to_string());
        let nodes =
            vec![(1, rack("a")), (2, rack("a")), (3, rack("b")), (4, rack("b")), (5, rack("c")), (6, rack("c"))];
        let racks: BTreeMap<i32, Option<String>> = nodes.iter().cloned().collect();
        for rf in [2, 3] {
            for r in place(&nodes, 0, 12, rf).unwrap() {
                let used: BTreeSet<_> = r.iter().map(|n| racks[n].clone()).collect();
                assert_eq!(used.len(), rf as usize, "replicas {r:?} share a rack");
            }
        }
        // More replicas than racks: every rack is used before any is used twice.
        for r in place(&nodes, 0, 6, 4).unwrap() {
            assert_eq!(r.iter().map(|n| racks[n].clone()).collect::<BTreeSet<_>>().len(), 3, "{r:?}");
        }
    }

    #[test]
    fn placement_refuses_impossible_factors() {
        let nodes: Vec<(i32, Option<String>)> = (1..=3).map(|i| (i, None)).collect();
        assert!(matches!(place(&nodes, 0, 1, 4), Err(KafkaError::InvalidReplicationFactor(_))));
        assert!(matches!(place(&nodes, 0, 1, 0), Err(KafkaError::InvalidReplicationFactor(_))));
    }

    #[test]
    fn forwarded_voter_changes_keep_their_kafka_error() {
        assert!(decode_outcome(&encode_outcome(&Ok(()))).is_ok());
        let e = decode_outcome(&encode_outcome(&Err(KafkaError::VoterNotFound("node 3 is not a voter".into()))));
        let e = e.unwrap_err();
        assert_eq!(e.response_error(), rill_protocol::ResponseError::VoterNotFound);
        assert_eq!(e.to_string(), "node 3 is not a voter");
        let e = decode_outcome(&encode_outcome(&Err(KafkaError::RequestTimedOut))).unwrap_err();
        assert_eq!(e.code(), rill_protocol::ResponseError::RequestTimedOut.code());
        // A truncated answer is not taken for success.
        assert!(decode_outcome(&[0]).is_err());
    }

    #[test]
    fn leader_announcements_replace_what_a_node_said_before() {
        let dir = RwLock::new(HashMap::new());
        let msg = |node: u64, led: &[(u64, u64)]| {
            let mut b = node.to_be_bytes().to_vec();
            for (g, t) in led {
                b.extend_from_slice(&g.to_be_bytes());
                b.extend_from_slice(&t.to_be_bytes());
            }
            b
        };
        record_leaders(&dir, &msg(1, &[(10, 3), (11, 1)])).unwrap();
        record_leaders(&dir, &msg(2, &[(12, 2)])).unwrap();
        // Node 2 won group 10 in a later term; node 1 has not yet said it lost it.
        record_leaders(&dir, &msg(2, &[(10, 4), (12, 2)])).unwrap();
        assert_eq!(dir.read().get(&10), Some(&(2, 4)));
        // A stale claim (older term) does not win back the group.
        record_leaders(&dir, &msg(1, &[(10, 3), (11, 1)])).unwrap();
        assert_eq!(dir.read().get(&10), Some(&(2, 4)));
        // Node 1 no longer leads group 11.
        record_leaders(&dir, &msg(1, &[])).unwrap();
        assert_eq!(dir.read().get(&11), None);
        assert_eq!(dir.read().get(&12), Some(&(2, 2)));
        assert!(record_leaders(&dir, &[1, 2, 3]).is_err());
    }
}
