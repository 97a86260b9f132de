//! The topic catalogue of a single node: topics, their IDs, partition counts and config
//! overrides, persisted in `__rill_topics.json` in the first log directory, plus the open
//! partition logs.
//!
//! The catalogue is copy-on-write: readers clone an `Arc<Topic>` and never wait for a
//! writer; writers (create, delete, alter) serialise on one mutex and persist the whole file
//! atomically before publishing the change.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rill_storage::PartitionLog;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::error::KafkaError;
use crate::producer_state::ProducerStates;
use crate::topic_config::TopicSettings;

const CATALOGUE_FILE: &str = "__rill_topics.json";
const META_FILE: &str = "meta.properties";
/// Producer ids are handed out in blocks so the catalogue is not rewritten for every producer.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// One partition: its log, the producers writing to it, and a signal for waiting fetches.
pub struct Partition {
    pub topic: String,
    pub index: i32,
    pub dir: PathBuf,
    pub log: Arc<PartitionLog>,
    /// In a cluster: the partition's Raft group (whose log is `log`). `None` on a single node.
    pub replica: Option<rill_raft::group::Group>,
    /// Woken on every append (on a cluster: every high watermark move) so long-polling
    /// fetches can answer early.
    pub appended: Notify,
    /// Held across the idempotence check and the append so both see the same log end.
    pub producers: Mutex<ProducerStates>,
    /// Cluster mode: the term `producers` was built in. Producer state is not replicated yet,
    /// so a new leader starts it afresh.
    pub producers_term: std::sync::atomic::AtomicU64,
    /// Bytes and records in and out since start, for metrics.
    pub stats: crate::metrics::PartitionStats,
    /// Cluster mode: the log start DeleteRecords asked for (-1: none). Every node learns it
    /// from the metadata log and moves its replica's log start there once it holds it.
    pub delete_floor: std::sync::atomic::AtomicI64,
}

impl Partition {
    /// Kafka's high watermark: what consumers may read. On a single node every append is
    /// visible at once; in a cluster, what a quorum has committed.
    pub fn high_watermark(&self) -> i64 {
        match &self.replica {
            Some(g) => g.shared.high_watermark(),
            None => self.log.log_end_offset(),
        }
    }

    /// The leader epoch: the Raft term in a cluster.
    pub fn leader_epoch(&self) -> i32 {
        match &self.replica {
            Some(g) => g.term() as i32,
            None => crate::handlers::metadata::LEADER_EPOCH,
        }
    }

    /// Produce and fetch are served by the leader only.
    pub fn check_leader(&self) -> Result<(), KafkaError> {
        match &self.replica {
            Some(g) if !g.is_leader() => {
                Err(if g.leader().is_some() { KafkaError::NotLeaderOrFollower } else { KafkaError::LeaderNotAvailable })
            }
            _ => Ok(()),
        }
    }

    /// KIP-320: a client that knows a newer epoch than ours is ahead of us (retriable); one
    /// that knows an older epoch is behind (must refresh metadata). -1 means "no epoch known".
    pub fn check_epoch(&self, current_leader_epoch: i32) -> Result<(), rill_protocol::ResponseError> {
        let epoch = self.leader_epoch();
        if current_leader_epoch < 0 || current_leader_epoch == epoch {
            Ok(())
        } else if current_leader_epoch > epoch {
            Err(rill_protocol::ResponseError::UnknownLeaderEpoch)
        } else {
            Err(rill_protocol::ResponseError::FencedLeaderEpoch)
        }
    }
}

/// A topic as readers see it; replaced wholesale on change.
pub struct Topic {
    pub name: String,
    pub id: Uuid,
    pub configs: BTreeMap<String, String>,
    pub settings: TopicSettings,
    /// By partition index; `None` where this node holds no replica (cluster mode).
    pub partitions: Vec<Option<Arc<Partition>>>,
    /// Cluster mode: each partition's replica set, by partition index. Empty on a single node.
    pub assignment: Vec<Assignment>,
}

impl Topic {
    /// The same topic with other replicas open here and another assignment (cluster mode).
    pub fn with_replicas(&self, partitions: Vec<Option<Arc<Partition>>>, assignment: Vec<Assignment>) -> Topic {
        Topic {
            name: self.name.clone(),
            id: self.id,
            configs: self.configs.clone(),
            settings: self.settings.clone(),
            partitions,
            assignment,
        }
    }
}

/// Cluster mode: who holds a partition, and while it is being reassigned, who will.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The replicas; the first is the preferred leader.
    pub replicas: Vec<i32>,
    /// The replicas an ongoing reassignment moves the partition to.
    pub target: Option<Vec<i32>>,
}

impl Assignment {
    /// Every node that holds or is about to hold the partition, in Kafka's order during a
    /// reassignment: the target replicas first, then the ones being removed.
    pub fn all_replicas(&self) -> Vec<i32> {
        let mut all = self.target.clone().unwrap_or_default();
        for r in &self.replicas {
            if !all.contains(r) {
                all.push(*r);
            }
        }
        all
    }

    pub fn adding(&self) -> Vec<i32> {
        self.target.iter().flatten().filter(|r| !self.replicas.contains(r)).copied().collect()
    }

    pub fn removing(&self) -> Vec<i32> {
        match &self.target {
            Some(t) => self.replicas.iter().filter(|r| !t.contains(r)).copied().collect(),
            None => Vec::new(),
        }
    }
}

#[derive(Serialize, Deserialize, Default)]
struct Catalogue {
    topics: Vec<TopicRecord>,
    #[serde(default)]
    next_producer_id_block: i64,
}

#[derive(Serialize, Deserialize, Clone)]
struct TopicRecord {
    name: String,
    id: Uuid,
    partitions: i32,
    configs: BTreeMap<String, String>,
}

#[derive(Default)]
struct Index {
    by_name: HashMap<String, Arc<Topic>>,
    by_id: HashMap<Uuid, Arc<Topic>>,
}

struct ProducerIds {
    next: i64,
    block_end: i64,
}

pub struct Topics {
    config: Arc<BrokerConfig>,
    cluster_id: String,
    index: RwLock<Index>,
    /// Serialises catalogue changes and their persistence.
    writer: Mutex<()>,
    producer_ids: Mutex<ProducerIds>,
}

/// Kafka's topic name rules.
pub fn validate_topic_name(name: &str) -> Result<(), KafkaError> {
    if name.is_empty() {
        return Err(KafkaError::InvalidTopic("Topic name is illegal, it can't be empty".into()));
    }
    if name == "." || name == ".." {
        return Err(KafkaError::InvalidTopic("Topic name cannot be \".\" or \"..\"".into()));
    }
    if name.len() > 249 {
        return Err(KafkaError::InvalidTopic(format!(
            "Topic name is illegal, it can't be longer than 249 characters, topic name: {name}"
        )));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return Err(KafkaError::InvalidTopic(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        )));
    }
    Ok(())
}

fn io_err(e: std::io::Error) -> KafkaError {
    KafkaError::Storage(rill_storage::StorageError::from(e))
}

/// Writes a file atomically: temp file, fsync, rename, fsync of the directory.
pub(crate) fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

impl Topics {
    /// Loads the catalogue and opens (recovering) every partition log.
    pub fn open(config: Arc<BrokerConfig>) -> anyhow::Result<Self> {
        for dir in &config.log_dirs {
            std::fs::create_dir_all(dir)?;
        }
        let first = &config.log_dirs[0];
        let cluster_id = load_or_create_meta(first, &config)?;
        let catalogue: Catalogue = match std::fs::read(first.join(CATALOGUE_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Catalogue::default(),
            Err(e) => return Err(e.into()),
        };
        // Ids of the last block may have been handed out before a crash: start after it.
        let next = catalogue.next_producer_id_block;
        let topics = Topics {
            config,
            cluster_id,
            index: RwLock::new(Index::default()),
            writer: Mutex::new(()),
            producer_ids: Mutex::new(ProducerIds { next, block_end: next }),
        };
        let mut index = Index::default();
        // In a cluster the topics come from the metadata log; the file only mirrors them.
        let local_topics = if topics.config.is_cluster() { &[][..] } else { &catalogue.topics[..] };
        for rec in local_topics {
            let topic = Arc::new(topics.build_topic(rec, &[], Vec::new())?);
            index.by_id.insert(topic.id, topic.clone());
            index.by_name.insert(topic.name.clone(), topic);
        }
        *topics.index.write() = index;
        Ok(topics)
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.index.read().by_name.get(name).cloned()
    }

    pub fn get_by_id(&self, id: &Uuid) -> Option<Arc<Topic>> {
        self.index.read().by_id.get(id).cloned()
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Result<Arc<Partition>, KafkaError> {
        let t = self.get(topic).ok_or(KafkaError::UnknownTopicOrPartition)?;
        t.partition(partition)
    }

    /// All topics, sorted by name.
    pub fn list(&self) -> Vec<Arc<Topic>> {
        let mut v: Vec<_> = self.index.read().by_name.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub(crate) fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        let name = format!("{topic}-{partition}");
        for dir in &self.config.log_dirs {
            let p = dir.join(&name);
            if p.exists() {
                return p;
            }
        }
        // New partitions are spread over the log directories.
        let n = self.config.log_dirs.len();
        let slot = (topic.bytes().map(|b| b as usize).sum::<usize>() + partition as usize) % n;
        self.config.log_dirs[slot].join(name)
    }

    /// Builds a topic, reusing already-open partitions (so their logs stay open).
    fn build_topic(
        &self,
        rec: &TopicRecord,
        existing: &[Option<Arc<Partition>>],
        assignment: Vec<Assignment>,
    ) -> anyhow::Result<Topic> {
        let settings = TopicSettings::resolve(&rec.configs, &self.config);
        let mut partitions = Vec::with_capacity(rec.partitions as usize);
        for p in existing.iter().take(rec.partitions.max(0) as usize) {
            if let Some(p) = p {
                p.log.update_config(settings.log.clone());
            }
            partitions.push(p.clone());
        }
        let new: Vec<(i32, PathBuf)> =
            (partitions.len() as i32..rec.partitions).map(|i| (i, self.partition_dir(&rec.name, i))).collect();
        for ((i, dir), log) in new.iter().cloned().zip(open_logs(&new, &settings.log)?) {
            partitions.push(Some(Arc::new(Partition {
                topic: rec.name.clone(),
                index: i,
                dir,
                log,
                replica: None,
                appended: Notify::new(),
                producers: Mutex::new(ProducerStates::default()),
                producers_term: std::sync::atomic::AtomicU64::new(0),
                stats: Default::default(),
                delete_floor: std::sync::atomic::AtomicI64::new(-1),
            })));
        }
        Ok(Topic { name: rec.name.clone(), id: rec.id, configs: rec.configs.clone(), settings, partitions, assignment })
    }

    fn persist(&self, index: &Index, next_producer_id_block: i64) -> Result<(), KafkaError> {
        let mut topics: Vec<TopicRecord> = index
            .by_name
            .values()
            .map(|t| TopicRecord {
                name: t.name.clone(),
                id: t.id,
                partitions: t.partitions.len() as i32,
                configs: t.configs.clone(),
            })
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        let cat = Catalogue { topics, next_producer_id_block };
        let bytes = serde_json::to_vec_pretty(&cat).map_err(|e| KafkaError::InvalidRequest(e.to_string()))?;
        write_atomically(&self.config.log_dirs[0].join(CATALOGUE_FILE), &bytes).map_err(io_err)
    }

    fn producer_block(&self) -> i64 {
        self.producer_ids.lock().block_end
    }

    /// Creates a topic. The caller has validated name, partitions and configs.
    pub fn create(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, KafkaError> {
        let _w = self.writer.lock();
        if self.get(name).is_some() {
            return Err(KafkaError::TopicAlreadyExists(name.to_string()));
        }
        // Kafka refuses names that collide once '.' and '_' are treated alike (metric names).
        let norm = |s: &str| s.replace('.', "_");
        if let Some(other) = self.index.read().by_name.keys().find(|k| norm(k) == norm(name)) {
            return Err(KafkaError::InvalidTopic(format!("Topic '{name}' collides with existing topic: {other}")));
        }
        let rec = TopicRecord { name: name.to_string(), id: Uuid::new_v4(), partitions, configs };
        let topic =
            Arc::new(self.build_topic(&rec, &[], Vec::new()).map_err(|e| KafkaError::InvalidRequest(e.to_string()))?);
        let mut next = clone_index(&self.index.read());
        next.by_id.insert(topic.id, topic.clone());
        next.by_name.insert(name.to_string(), topic.clone());
        self.persist(&next, self.producer_block())?;
        *self.index.write() = next;
        tracing::info!(topic = name, partitions, id = %topic.id, "created topic");
        Ok(topic)
    }

    /// Deletes a topic: it disappears from the catalogue first, then its directories are removed.
    pub fn delete(&self, name: &str) -> Result<Uuid, KafkaError> {
        let _w = self.writer.lock();
        let topic = self.get(name).ok_or(KafkaError::UnknownTopicOrPartition)?;
        let mut next = clone_index(&self.index.read());
        next.by_name.remove(name);
        next.by_id.remove(&topic.id);
        self.persist(&next, self.producer_block())?;
        *self.index.write() = next;
        for p in topic.hosted() {
            let _ = p.log.close();
            // Rename first so a crash mid-removal cannot resurrect a half-deleted partition.
            let doomed = p.dir.with_file_name(format!("{}-{}.{}-delete", p.topic, p.index, topic.id.simple()));
            if std::fs::rename(&p.dir, &doomed).is_ok() {
                std::thread::spawn(move || {
                    let _ = std::fs::remove_dir_all(&doomed);
                });
            }
            p.appended.notify_waiters();
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(topic.id)
    }

    /// Raises a topic's partition count.
    pub fn add_partitions(&self, name: &str, count: i32) -> Result<(), KafkaError> {
        let _w = self.writer.lock();
        let topic = self.get(name).ok_or(KafkaError::UnknownTopicOrPartition)?;
        let current = topic.partitions.len() as i32;
        if count <= current {
            return Err(KafkaError::InvalidPartitions(format!(
                "Topic currently has {current} partitions, which is higher than the requested {count}."
            )));
        }
        let rec =
            TopicRecord { name: topic.name.clone(), id: topic.id, partitions: count, configs: topic.configs.clone() };
        self.replace(rec, &topic)
    }

    /// Replaces a topic's config overrides (validated by the caller).
    pub fn set_configs(&self, name: &str, configs: BTreeMap<String, String>) -> Result<(), KafkaError> {
        let _w = self.writer.lock();
        let topic = self.get(name).ok_or(KafkaError::UnknownTopicOrPartition)?;
        let rec =
            TopicRecord { name: topic.name.clone(), id: topic.id, partitions: topic.partitions.len() as i32, configs };
        self.replace(rec, &topic)
    }

    fn replace(&self, rec: TopicRecord, old: &Topic) -> Result<(), KafkaError> {
        let topic = self
            .build_topic(&rec, &old.partitions, old.assignment.clone())
            .map_err(|e| KafkaError::InvalidRequest(e.to_string()))?;
        let topic = Arc::new(topic);
        let mut next = clone_index(&self.index.read());
        next.by_id.insert(topic.id, topic.clone());
        next.by_name.insert(topic.name.clone(), topic);
        self.persist(&next, self.producer_block())?;
        *self.index.write() = next;
        Ok(())
    }

    /// Publishes a topic built elsewhere (cluster mode: from a metadata command), replacing
    /// any topic of the same name.
    pub fn install(&self, topic: Topic) -> Result<(), KafkaError> {
        let _w = self.writer.lock();
        let topic = Arc::new(topic);
        let mut next = clone_index(&self.index.read());
        if let Some(old) = next.by_name.insert(topic.name.clone(), topic.clone()) {
            next.by_id.remove(&old.id);
        }
        next.by_id.insert(topic.id, topic);
        self.persist(&next, self.producer_block())?;
        *self.index.write() = next;
        Ok(())
    }

    /// A fresh producer id for an idempotent producer. Ids are reserved a block at a time in
    /// the catalogue, so ids are never reused across restarts. In a cluster each node draws
    /// from its own range (node id in the high bits), so no coordination is needed.
    pub fn allocate_producer_id(&self) -> Result<i64, KafkaError> {
        let id = self.allocate_local_producer_id()?;
        Ok(if self.config.is_cluster() { ((self.config.node_id as i64) << 40) | id } else { id })
    }

    fn allocate_local_producer_id(&self) -> Result<i64, KafkaError> {
        let mut ids = self.producer_ids.lock();
        if ids.next >= ids.block_end {
            let _w = self.writer.lock();
            let end = ids.block_end + PRODUCER_ID_BLOCK;
            self.persist(&self.index.read(), end)?;
            ids.block_end = end;
        }
        let id = ids.next;
        ids.next += 1;
        Ok(id)
    }

    /// Flushes and closes every log (clean shutdown).
    pub fn close_all(&self) {
        for t in self.list() {
            for p in t.hosted() {
                if let Err(e) = p.log.close() {
                    tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "closing log failed");
                }
            }
        }
    }
}

fn clone_index(i: &Index) -> Index {
    Index { by_name: i.by_name.clone(), by_id: i.by_id.clone() }
}

impl Topic {
    /// This node's replica of partition `index`. A partition held only by other nodes answers
    /// NOT_LEADER_OR_FOLLOWER, as a Kafka broker that is not one of its replicas does.
    pub fn partition(&self, index: i32) -> Result<Arc<Partition>, KafkaError> {
        match usize::try_from(index).ok().and_then(|i| self.partitions.get(i)) {
            Some(Some(p)) => Ok(p.clone()),
            Some(None) => Err(KafkaError::NotLeaderOrFollower),
            None => Err(KafkaError::UnknownTopicOrPartition),
        }
    }

    /// The partitions this node holds a replica of.
    pub fn hosted(&self) -> impl Iterator<Item = &Arc<Partition>> {
        self.partitions.iter().flatten()
    }

    pub fn has_partition(&self, index: i32) -> bool {
        index >= 0 && (index as usize) < self.partitions.len()
    }

    /// Cluster mode: partition `index`'s replicas and reassignment (default on a single node).
    pub fn assignment_of(&self, index: i32) -> Assignment {
        usize::try_from(index).ok().and_then(|i| self.assignment.get(i)).cloned().unwrap_or_default()
    }
}

/// Reads `meta.properties` (cluster.id, node.id), creating it on first start. A log dir
/// written by another node is refused rather than silently reused.
fn load_or_create_meta(dir: &Path, config: &BrokerConfig) -> anyhow::Result<String> {
    let path = dir.join(META_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut cluster = None;
            let mut node = None;
            for line in text.lines() {
                if let Some((k, v)) = line.split_once('=') {
                    match k.trim() {
                        "cluster.id" => cluster = Some(v.trim().to_string()),
                        "node.id" => node = v.trim().parse::<i32>().ok(),
                        _ => {}
                    }
                }
            }
            if let Some(n) = node {
                anyhow::ensure!(
                    n == config.node_id,
                    "{} belongs to node.id {n}, but this broker is node.id {}",
                    path.display(),
                    config.node_id
                );
            }
            let cluster = cluster.ok_or_else(|| anyhow::anyhow!("{} has no cluster.id", path.display()))?;
            if let Some(want) = &config.cluster_id {
                anyhow::ensure!(*want == cluster, "{} has cluster.id {cluster}, config says {want}", path.display());
            }
            Ok(cluster)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let cluster = config.cluster_id.clone().unwrap_or_else(|| {
                if config.is_cluster() {
                    // Every node must report the same id without talking first: derive it
                    // from the voter list they share.
                    cluster_id_from(&format!("{:?}", config.quorum_voters))
                } else {
                    new_cluster_id()
                }
            });
            let text = format!("version=1\ncluster.id={cluster}\nnode.id={}\n", config.node_id);
            write_atomically(&path, text.as_bytes())?;
            Ok(cluster)
        }
        Err(e) => Err(e.into()),
    }
}

/// Kafka cluster ids are 16 random bytes in URL-safe base64 without padding (22 chars).
fn new_cluster_id() -> String {
    encode_cluster_id(u128::from_be_bytes(Uuid::new_v4().into_bytes()))
}

/// A cluster id derived from `seed` (FNV-1a, twice with different offsets).
fn cluster_id_from(seed: &str) -> String {
    let fnv = |basis: u64| seed.bytes().fold(basis, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    encode_cluster_id(((fnv(0xcbf2_9ce4_8422_2325) as u128) << 64) | fnv(0x6c62_272e_07bb_0142) as u128)
}

fn encode_cluster_id(mut bits: u128) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(22);
    for _ in 0..22 {
        out.push(ALPHABET[(bits >> 122) as usize & 63] as char);
        bits <<= 6;
    }
    out
}

/// Opens (creating or recovering) the logs in `dirs` on a few threads: each open is a handful
/// of file creations and fsyncs, so a topic of thousands of partitions (or a restart with
/// them) waits on the disk in parallel instead of one partition after another.
fn open_logs(dirs: &[(i32, PathBuf)], config: &rill_storage::LogConfig) -> anyhow::Result<Vec<Arc<PartitionLog>>> {
    const THREADS: usize = 8;
    if dirs.len() < 2 {
        return dirs.iter().map(|(_, d)| Ok(Arc::new(PartitionLog::open(d, config.clone())?))).collect();
    }
    let chunk = dirs.len().div_ceil(THREADS);
    std::thread::scope(|scope| {
        let handles: Vec<_> = dirs
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(_, d)| PartitionLog::open(d, config.clone()).map(Arc::new))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut logs = Vec::with_capacity(dirs.len());
        for h in handles {
            logs.extend(h.join().map_err(|_| anyhow::anyhow!("opening partition logs panicked"))??);
        }
        Ok(logs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders.v1_x-y").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("bad name").is_err());
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
    }

    #[test]
    fn cluster_id_shape() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
    }
}
