//! The broker: shared state and the dispatch of each request to its handler.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rill_protocol::messages::{ProduceResponse, RequestKind, ResponseKind};
use rill_protocol::Request;

use crate::cluster::{Cluster, Command};
use crate::config::BrokerConfig;
use crate::error::KafkaError;
use crate::groups::GroupCoordinator;
use crate::handlers;
use crate::security::{self, Security};
use crate::topics::Topics;
use crate::topics::{Partition, Topic};

/// How a request is answered: now, or by a future that may run while the connection goes on
/// to its next request (only a produce waiting for its fsync does that).
// Built and matched once per request: boxing the common case would cost an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Reply {
    Now(Option<ResponseKind>),
    Later(Pin<Box<dyn Future<Output = Option<ResponseKind>> + Send>>),
}

/// What the handlers know about the connection a request came in on.
#[derive(Debug, Clone)]
pub struct ConnContext {
    pub listener: String,
    pub peer: std::net::SocketAddr,
    /// The client.id of the connection's first request, for its close log line.
    pub client_id: Arc<std::sync::OnceLock<String>>,
    /// Who the client authenticated as (`User:ANONYMOUS` when it did not).
    pub principal: String,
}

pub struct Broker {
    pub config: Arc<BrokerConfig>,
    pub topics: Topics,
    /// Consumer groups and their committed offsets (`__consumer_offsets`).
    pub groups: Arc<GroupCoordinator>,
    /// The metadata quorum and the Raft transport, when this node is part of a cluster.
    pub cluster: Option<Arc<Cluster>>,
    /// Listener protocols, users, ACLs.
    pub security: Arc<Security>,
}

impl Broker {
    /// Opens every partition (running crash recovery) and returns a broker ready to serve.
    pub fn open(config: BrokerConfig) -> anyhow::Result<Arc<Self>> {
        let config = Arc::new(config);
        let topics = Topics::open(config.clone())?;
        let groups = GroupCoordinator::open(&topics, &config)?;
        let security = Security::open(&config)?;
        Ok(Arc::new(Broker { config, topics, groups, cluster: None, security }))
    }

    /// Starts a broker: [`Broker::open`] on a single node; in a cluster (when
    /// `controller.quorum.voters` is set) joins the metadata quorum first, and topics appear
    /// as the metadata log is applied.
    pub async fn start(config: BrokerConfig) -> anyhow::Result<Arc<Self>> {
        if !config.is_cluster() {
            return Self::open(config);
        }
        let cluster = Cluster::start(&config).await?;
        let config = Arc::new(config);
        let topics = Topics::open(config.clone())?;
        let groups = GroupCoordinator::open_cluster(&config)?;
        let security = Security::open(&config)?;
        let broker = Arc::new(Broker { config, topics, groups, cluster: Some(cluster.clone()), security });
        cluster.run(&broker);
        Ok(broker)
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// Whether `id` names a node of this cluster (this node on a single node).
    pub fn is_node(&self, id: i32) -> bool {
        match &self.cluster {
            Some(c) => c.is_node(id),
            None => id == self.node_id(),
        }
    }

    /// The replication factor of a topic created without one: `default.replication.factor`
    /// when set; in a cluster otherwise 3 (or every node of a smaller cluster), because an
    /// event bus that replicates nothing by default loses data on the first dead disk.
    pub fn default_replication_factor(&self) -> i16 {
        match &self.cluster {
            Some(c) if !self.config.raw.contains_key("default.replication.factor") => {
                c.nodes().len().clamp(1, 3) as i16
            }
            _ => self.config.default_replication_factor,
        }
    }

    /// Creates a topic: locally on a single node; in a cluster through the metadata quorum,
    /// with the replicas given (`assignment`, by partition) or placed at replication factor
    /// `rf`. Admin operations are rare, so in a cluster the handler's worker thread waits for
    /// the quorum (`block_in_place`) rather than making every admin handler async.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        rf: i16,
        assignment: Vec<Vec<i32>>,
        configs: std::collections::BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, KafkaError> {
        let Some(c) = &self.cluster else { return self.topics.create(name, partitions, configs) };
        if self.topics.get(name).is_some() {
            return Err(KafkaError::TopicAlreadyExists(name.to_string()));
        }
        let assignment = if assignment.is_empty() { c.place(0, partitions, rf)? } else { assignment };
        let id = uuid::Uuid::new_v4();
        let cmd = Command::CreateTopic { name: name.to_string(), id, partitions, configs, assignment };
        block_on(c.propose_and_wait(&cmd))?;
        match self.topics.get(name) {
            Some(t) if t.id == id => Ok(t),
            Some(_) => Err(KafkaError::TopicAlreadyExists(name.to_string())),
            None => Err(KafkaError::NotController("the topic was not created".into())),
        }
    }

    pub fn delete_topic(&self, name: &str, id: uuid::Uuid) -> Result<(), KafkaError> {
        let Some(c) = &self.cluster else { return self.topics.delete(name).map(|_| ()) };
        block_on(c.propose_and_wait(&Command::DeleteTopic { name: name.to_string(), id }))
    }

    /// Raises a topic's partition count; in a cluster the new partitions get `assignment` or,
    /// when it is empty, replicas placed at the replication factor of the topic's partition 0.
    pub fn add_partitions(&self, name: &str, count: i32, assignment: Vec<Vec<i32>>) -> Result<(), KafkaError> {
        let Some(c) = &self.cluster else { return self.topics.add_partitions(name, count) };
        let t = self.topics.get(name).ok_or(KafkaError::UnknownTopicOrPartition)?;
        let current = t.partitions.len() as i32;
        if count <= current {
            return Err(KafkaError::InvalidPartitions(format!(
                "Topic currently has {current} partitions, which is higher than the requested {count}."
            )));
        }
        let assignment = if assignment.is_empty() {
            let rf = t.assignment_of(0).replicas.len().max(1) as i16;
            c.place(current, count - current, rf)?
        } else {
            assignment
        };
        let cmd = Command::SetPartitions { name: name.to_string(), id: t.id, partitions: count, assignment };
        block_on(c.propose_and_wait(&cmd))
    }

    pub fn set_topic_configs(
        &self,
        name: &str,
        configs: std::collections::BTreeMap<String, String>,
    ) -> Result<(), KafkaError> {
        let Some(c) = &self.cluster else { return self.topics.set_configs(name, configs) };
        let t = self.topics.get(name).ok_or(KafkaError::UnknownTopicOrPartition)?;
        block_on(c.propose_and_wait(&Command::SetConfigs { name: name.to_string(), id: t.id, configs }))
    }

    /// DeleteRecords on a replicated partition: every replica learns the new log start from
    /// the metadata log; this node carries it out before answering.
    pub fn delete_records_replicated(&self, t: &Topic, p: &Partition, offset: i64) -> Result<i64, KafkaError> {
        let Some(c) = &self.cluster else { return Ok(p.log.delete_records_before(offset)?) };
        let cmd = Command::DeleteRecords { name: t.name.clone(), id: t.id, partition: p.index, offset };
        block_on(c.propose_and_wait(&cmd))?;
        block_on(crate::cluster::delete_prefix(p, offset))
    }

    /// Users and ACLs: on a single node changed here; in a cluster through the metadata quorum,
    /// returning once this node has applied the change.
    fn change_security(&self, change: security::SecurityChange) -> Result<(), String> {
        match &self.cluster {
            None => self.security.apply_change(change).map_err(|e| e.to_string()),
            Some(c) => block_on(c.propose_and_wait(&Command::Security(change))).map_err(|e| e.to_string()),
        }
    }

    /// Serves one request of a connection. Requests of a connection are applied one at a time
    /// in arrival order, as Kafka does; a produce's fsync wait is the exception, deferred so
    /// that a producer's in-flight requests share one group commit.
    pub async fn serve(self: &Arc<Self>, req: Request, ctx: &ConnContext) -> Reply {
        let version = req.version();
        match req.body {
            RequestKind::Produce(r) => {
                let started = handlers::produce::start(self, r, version).await;
                let (broker, listener) = (self.clone(), ctx.listener.clone());
                let hinted = move |mut r: ProduceResponse| {
                    handlers::leader_hints::produce(&broker, &mut r, version, &listener);
                    r.into()
                };
                if started.is_done() {
                    Reply::Now(started.finish().await.map(hinted))
                } else {
                    Reply::Later(Box::pin(async move { started.finish().await.map(hinted) }))
                }
            }
            body => Reply::Now(self.handle(Request { body, ..req }, ctx).await),
        }
    }

    /// Handles one request. `None` means no response is sent (a produce with acks=0).
    pub async fn handle(self: &Arc<Self>, req: Request, ctx: &ConnContext) -> Option<ResponseKind> {
        let version = req.version();
        let api_key = req.api_key;
        let resp = match req.body {
            RequestKind::ApiVersions(r) => handlers::api_versions::handle(r, version).into(),
            RequestKind::Metadata(r) => handlers::metadata::handle(self, r, version, ctx).await.into(),
            RequestKind::Produce(r) => return handlers::produce::handle(self, r, version).await.map(Into::into),
            RequestKind::Fetch(r) => {
                let mut resp = handlers::fetch::handle(self, r, version).await;
                handlers::leader_hints::fetch(self, &mut resp, version, &ctx.listener);
                resp.into()
            }
            RequestKind::ListOffsets(r) => handlers::list_offsets::handle(self, r, version).into(),
            RequestKind::OffsetForLeaderEpoch(r) => handlers::list_offsets::offset_for_leader_epoch(self, r).into(),
            RequestKind::CreateTopics(r) => handlers::topics::create(self, r, version).into(),
            RequestKind::DeleteTopics(r) => handlers::topics::delete(self, r, version).into(),
            RequestKind::CreatePartitions(r) => handlers::topics::create_partitions(self, r).into(),
            RequestKind::DescribeTopicPartitions(r) => handlers::metadata::describe_topic_partitions(self, r).into(),
            RequestKind::DescribeConfigs(r) => handlers::configs::describe(self, r, version).into(),
            RequestKind::AlterConfigs(r) => handlers::configs::alter(self, r).into(),
            RequestKind::IncrementalAlterConfigs(r) => handlers::configs::incremental_alter(self, r).into(),
            RequestKind::DescribeCluster(r) => handlers::metadata::describe_cluster(self, r, ctx).into(),
            RequestKind::ElectLeaders(r) => handlers::elect::handle(self, r, version).await.into(),
            RequestKind::AlterPartitionReassignments(r) => handlers::reassign::alter(self, r, version).into(),
            RequestKind::ListPartitionReassignments(r) => handlers::reassign::list(self, r).into(),
            RequestKind::UnregisterBroker(r) => handlers::reassign::unregister(self, r).into(),
            RequestKind::DescribeQuorum(r) => handlers::quorum::describe(self, r).await.into(),
            RequestKind::AddRaftVoter(r) => handlers::quorum::add_voter(self, r).await.into(),
            RequestKind::RemoveRaftVoter(r) => handlers::quorum::remove_voter(self, r).await.into(),
            RequestKind::DeleteRecords(r) => handlers::records::delete_records(self, r).into(),
            RequestKind::DescribeLogDirs(r) => handlers::records::describe_log_dirs(self, r).into(),
            RequestKind::InitProducerId(r) => handlers::produce::init_producer_id(self, r).into(),
            RequestKind::FindCoordinator(r) => handlers::groups::find_coordinator(self, r, version, ctx).into(),
            RequestKind::JoinGroup(r) => {
                handlers::groups::join_group(self, r, version, req.header.client_id.as_deref(), ctx).await.into()
            }
            RequestKind::SyncGroup(r) => handlers::groups::sync_group(self, r, version).await.into(),
            RequestKind::Heartbeat(r) => handlers::groups::heartbeat(self, r).into(),
            RequestKind::LeaveGroup(r) => handlers::groups::leave_group(self, r, version).into(),
            RequestKind::OffsetCommit(r) => handlers::groups::offset_commit(self, r, version).await.into(),
            RequestKind::OffsetFetch(r) => handlers::groups::offset_fetch(self, r, version).into(),
            RequestKind::DescribeGroups(r) => handlers::groups::describe_groups(self, r, version).into(),
            RequestKind::ListGroups(r) => handlers::groups::list_groups(self, r, version).into(),
            RequestKind::DeleteGroups(r) => handlers::groups::delete_groups(self, r).into(),
            RequestKind::OffsetDelete(r) => handlers::groups::offset_delete(self, r).into(),
            RequestKind::ConsumerGroupHeartbeat(r) => {
                handlers::groups::consumer_group_heartbeat(self, r, version, req.header.client_id.as_deref(), ctx)
                    .await
                    .into()
            }
            RequestKind::ConsumerGroupDescribe(r) => handlers::groups::consumer_group_describe(self, r).into(),
            RequestKind::CreateAcls(r) => {
                security::admin::create_acls(&self.security, &|c| self.change_security(c), r).into()
            }
            RequestKind::DescribeAcls(r) => security::admin::describe_acls(&self.security, r).into(),
            RequestKind::DeleteAcls(r) => {
                security::admin::delete_acls(&self.security, &|c| self.change_security(c), r).into()
            }
            RequestKind::DescribeUserScramCredentials(r) => security::admin::describe_scram(&self.security, r).into(),
            RequestKind::AlterUserScramCredentials(r) => {
                security::admin::alter_scram(&self.security, &|c| self.change_security(c), r).into()
            }
            RequestKind::DescribeClientQuotas(_) => security::admin::describe_client_quotas().into(),
            _ => {
                // decode_request only lets through what api_versions advertises, so this is a
                // table/dispatch mismatch: answer nothing rather than something wrong.
                tracing::error!(api = ?api_key, "advertised API has no handler");
                return None;
            }
        };
        Some(resp)
    }

    /// Background upkeep: flush per flush.ms/flush.messages, retention, and (in a task of its
    /// own) the log cleaner. Runs until the broker is dropped.
    pub async fn run_maintenance(self: Arc<Self>) {
        let retention_every = Duration::from_millis(self.config.log_retention_check_interval_ms.max(100));
        let mut flush_tick = tokio::time::interval(Duration::from_millis(500));
        let mut retention_tick = tokio::time::interval(retention_every);
        tokio::spawn(self.groups.clone().run_expiry());
        if self.config.log_cleaner_enable {
            tokio::spawn(self.clone().run_cleaner());
        }
        loop {
            tokio::select! {
                _ = flush_tick.tick() => {
                    let broker = self.clone();
                    let _ = tokio::task::spawn_blocking(move || broker.flush_due()).await;
                }
                _ = retention_tick.tick() => {
                    let broker = self.clone();
                    let replicated = tokio::task::spawn_blocking(move || broker.enforce_retention()).await;
                    for (p, offset) in replicated.unwrap_or_default() {
                        match crate::cluster::delete_prefix(&p, offset).await {
                            Ok(start) => tracing::debug!(topic = %p.topic, partition = p.index, log_start = start, "retention"),
                            Err(e) => tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "retention failed"),
                        }
                    }
                }
            }
        }
    }

    fn flush_due(&self) {
        let now = now_ms();
        for t in self.topics.list() {
            for p in t.hosted() {
                if let Err(e) = p.log.flush_if_due(now) {
                    tracing::error!(topic = %p.topic, partition = p.index, error = %e, "background flush failed");
                }
            }
        }
    }

    /// The log cleaner, like Kafka's single cleaner thread: one compaction pass at a time on a
    /// blocking thread, each on one partition (so a pass never holds up the others' upkeep
    /// and request handling only ever waits for the renames of a swap), taking compacted
    /// partitions round-robin. Sleeps `log.cleaner.backoff.ms` when none was due.
    async fn run_cleaner(self: Arc<Self>) {
        let backoff = Duration::from_millis(self.config.log_cleaner_backoff_ms.max(10));
        let mut next = 0;
        loop {
            let broker = self.clone();
            match tokio::task::spawn_blocking(move || broker.clean_one(next)).await {
                Ok(Some(after)) => next = after,
                _ => tokio::time::sleep(backoff).await,
            }
        }
    }

    /// Runs one cleaning pass on the first due partition of a compacted topic, starting at
    /// position `from` of the round-robin order. Returns the position after it, or `None` if
    /// no partition was due. Only committed data is compacted: a replicated partition up to
    /// its high watermark (each replica compacts on its own, as in Kafka).
    fn clean_one(&self, from: usize) -> Option<usize> {
        let topics = self.topics.list();
        let partitions: Vec<_> =
            topics.iter().filter(|t| t.settings.compact).flat_map(|t| t.hosted().map(move |p| (t, p))).collect();
        for i in 0..partitions.len() {
            let at = (from + i) % partitions.len();
            let (t, p) = partitions[at];
            match p.log.clean(p.high_watermark(), &t.settings.cleaner, now_ms()) {
                Ok(None) => {}
                Ok(Some(s)) => {
                    let freed = s.bytes_before.saturating_sub(s.bytes_after);
                    crate::metrics::observe_cleaning(s.bytes_before, freed);
                    tracing::info!(
                        topic = %p.topic, partition = p.index, segments = s.segments_read,
                        rewritten = s.segments_rewritten, bytes_freed = freed,
                        records_removed = s.records_removed, cleaned_upto = s.cleaned_upto,
                        "log cleaner compacted"
                    );
                    return Some(at + 1);
                }
                Err(e) => {
                    tracing::error!(topic = %p.topic, partition = p.index, error = %e, "log cleaner failed")
                }
            }
        }
        None
    }

    /// Retention on single-node logs. Replicated logs delete through their Raft group
    /// ([`crate::cluster::delete_prefix`]): returned are those that have something to delete,
    /// with the offset their log should start at (retention, or a DeleteRecords not yet
    /// carried out here).
    fn enforce_retention(&self) -> Vec<(Arc<Partition>, i64)> {
        let now = now_ms();
        let mut replicated = Vec::new();
        for t in self.topics.list() {
            let by_policy = t.settings.cleanup_policy.contains("delete");
            for p in t.hosted() {
                if p.replica.is_some() {
                    let floor = p.delete_floor.load(std::sync::atomic::Ordering::Acquire);
                    let point = match by_policy {
                        true => p.log.retention_point(now).unwrap_or_else(|e| {
                            tracing::error!(topic = %p.topic, partition = p.index, error = %e, "retention failed");
                            None
                        }),
                        false => None,
                    };
                    let target = point.unwrap_or(-1).max(floor);
                    if target > p.log.log_start_offset() {
                        replicated.push((p.clone(), target));
                    }
                    continue;
                }
                if !by_policy {
                    continue;
                }
                match p.log.enforce_retention(now) {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(topic = %p.topic, partition = p.index, segments = n, "retention deleted segments")
                    }
                    Err(e) => {
                        tracing::error!(topic = %p.topic, partition = p.index, error = %e, "retention failed")
                    }
                }
            }
        }
        replicated
    }
}

/// Runs an admin future to completion from synchronous handler code on a multi-threaded
/// runtime (see [`Broker::create_topic`]).
pub(crate) fn block_on<T>(f: impl Future<Output = T>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
