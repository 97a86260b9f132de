//! The admin subcommands: topics, configs, cluster, groups, produce and consume.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use rill_protocol::batch::Compression;
use rill_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use rill_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use rill_protocol::messages::delete_topics_request::DeleteTopicState;
use rill_protocol::messages::describe_configs_request::DescribeConfigsResource;
use rill_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use rill_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use rill_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use rill_protocol::messages::metadata_request::MetadataRequestTopic;
use rill_protocol::messages::metadata_response::MetadataResponseTopic;
use rill_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use rill_protocol::messages::*;
use rill_protocol::records::{encode_batch, EncodeOptions, RecordIn};
use rill_protocol::{ResponseError, StrBytes};
use serde_json::{json, Value};

use crate::client::{check, Pool};
use crate::output::{ids, print_json, Table};

/// A mistake on the command line found after parsing (exit status 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for UsageError {}

pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

#[derive(Args, Clone)]
pub struct Conn {
    /// Broker(s) to connect to, host:port[,host:port...]. Default: bootstrap.servers of
    /// --command-config, else $RILL_BOOTSTRAP_SERVER, else the profile's bootstrap_server, else
    /// 127.0.0.1:9092.
    #[arg(long, short = 'b', global = true, value_name = "HOST:PORT")]
    pub bootstrap_server: Option<String>,
    /// Kafka client properties file, as for Kafka's tools: bootstrap.servers, client.id,
    /// request.timeout.ms (security.protocol must be PLAINTEXT).
    #[arg(long, global = true, value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
    /// Connection profile: [profile.NAME] in $RILL_CONFIG or ~/.config/rill/config.toml
    /// (keys bootstrap_server, client_id, request_timeout_ms; [profile.default] is used when
    /// none is named). Default: $RILL_PROFILE.
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
pub enum TopicCmd {
    /// Create a topic.
    ///
    /// Example: rill topic create orders --partitions 6 --config retention.ms=86400000
    Create {
        name: String,
        /// Partition count (default: the broker's num.partitions).
        #[arg(long, short = 'p')]
        partitions: Option<i32>,
        /// Replication factor (default: the broker's default.replication.factor).
        #[arg(long, short = 'r')]
        replication_factor: Option<i16>,
        /// Topic config, e.g. --config cleanup.policy=compact (repeatable).
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Succeed if the topic already exists.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// List topics.
    List {
        /// Include internal topics (__consumer_offsets, ...).
        #[arg(long)]
        all: bool,
    },
    /// Describe a topic: partitions, leaders, replicas, ISR, offsets, sizes, configs.
    Describe { name: String },
    /// Delete a topic.
    Delete {
        name: String,
        /// Succeed if the topic does not exist.
        #[arg(long)]
        if_exists: bool,
    },
    /// Increase a topic's partition count.
    ///
    /// Example: rill topic add-partitions orders --count 12
    AddPartitions {
        name: String,
        /// The new total partition count.
        #[arg(long)]
        count: i32,
    },
    /// Set or delete topic configs.
    ///
    /// Example: rill topic alter-config orders --set retention.ms=3600000 --delete cleanup.policy
    AlterConfig {
        name: String,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        #[arg(long = "delete", value_name = "KEY")]
        deletes: Vec<String>,
    },
    /// Move partitions to other brokers (AlterPartitionReassignments), or cancel a move.
    ///
    /// Give --partition and --replicas in pairs (repeatable); the first replica is the
    /// preferred leader. --wait polls until the partitions have their new replicas.
    ///
    /// Examples:
    ///   rill topic reassign orders --partition 0 --replicas 1,2,4 --wait 120
    ///   rill topic reassign orders --partition 0 --replicas 4,1,2 --partition 1 --replicas 2,4,3
    ///   rill topic reassign orders --partition 0 --cancel
    #[command(verbatim_doc_comment)]
    Reassign {
        name: String,
        /// Partition to move (repeatable, paired in order with --replicas).
        #[arg(long = "partition", short = 'p', value_name = "N", required = true)]
        partitions: Vec<i32>,
        /// Its new replicas, broker ids such as 1,2,4 (repeatable).
        #[arg(long = "replicas", short = 'r', value_name = "IDS", conflicts_with = "cancel")]
        replicas: Vec<String>,
        /// Cancel the reassignment in progress of these partitions (they go back to the
        /// replicas they had).
        #[arg(long)]
        cancel: bool,
        /// Wait up to SECS seconds for the move to finish (exit 1 if it does not).
        #[arg(long, value_name = "SECS")]
        wait: Option<u64>,
    },
    /// List partition reassignments in progress (ListPartitionReassignments).
    Reassignments {
        /// Only this topic's partitions.
        name: Option<String>,
    },
}

#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct Resource {
    /// A topic's configs.
    #[arg(long)]
    topic: Option<String>,
    /// A broker's configs (by node id).
    #[arg(long)]
    broker: Option<i32>,
}

impl Resource {
    fn kind_name(&self) -> (i8, String) {
        match (&self.topic, self.broker) {
            (Some(t), _) => (2, t.clone()),
            (None, Some(b)) => (4, b.to_string()),
            (None, None) => unreachable!("clap requires one"),
        }
    }
}

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Show configs of a topic or broker.
    ///
    /// Example: rill config get --topic orders
    Get {
        #[command(flatten)]
        resource: Resource,
        /// Only these keys (repeatable).
        #[arg(long = "key", short = 'k')]
        keys: Vec<String>,
    },
    /// Set configs (IncrementalAlterConfigs).
    ///
    /// Example: rill config set --topic orders retention.ms=3600000
    Set {
        #[command(flatten)]
        resource: Resource,
        #[arg(value_name = "KEY=VALUE", required = true)]
        pairs: Vec<String>,
    },
    /// Delete configs, reverting them to their defaults.
    Delete {
        #[command(flatten)]
        resource: Resource,
        #[arg(value_name = "KEY", required = true)]
        keys: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum ClusterCmd {
    /// Cluster id, controller and brokers.
    Info,
    /// Check that every broker answers ApiVersions and every partition has a leader.
    ///
    /// Exit status 0 when healthy, 1 when not (under-replicated partitions are reported but
    /// don't fail the check).
    Health {
        /// Also ask these brokers' admin listeners (`admin.listener`, e.g. 127.0.0.1:9644) for
        /// /health/ready: storage recovered, metadata loaded, partitions led or followed.
        /// Repeat for several brokers.
        #[arg(long = "admin", value_name = "HOST:PORT")]
        admin: Vec<String>,
    },
    /// Remove a broker that holds no replicas from the cluster (UnregisterBroker).
    ///
    /// Move its partitions away first (rill topic reassign); then stop it.
    Unregister {
        /// The broker's node id.
        #[arg(long)]
        id: i32,
    },
    /// Make a broker a voter of the metadata quorum (AddRaftVoter).
    ///
    /// The broker must be running and registered; it becomes a voter once it has caught up
    /// with the metadata log. The change lives in the metadata log: nodes keep it across
    /// restarts whatever their controller.quorum.voters says.
    AddVoter {
        /// The broker's node id.
        #[arg(long)]
        id: i32,
    },
    /// Make a voter of the metadata quorum a plain broker again (RemoveRaftVoter).
    ///
    /// It keeps serving as a broker until it is unregistered (rill cluster unregister). The
    /// last voter cannot be removed.
    RemoveVoter {
        /// The voter's node id.
        #[arg(long)]
        id: i32,
    },
}

#[derive(Subcommand)]
pub enum GroupCmd {
    /// List consumer groups.
    List,
    /// Describe a group: state, members, committed offsets, lag and each partition's owner.
    Describe { group: String },
    /// Reset a group's committed offsets (the group must have no active members).
    ///
    /// Prints the plan without changing anything unless --execute is given.
    ///
    /// Examples:
    ///   rill group reset-offsets billing --topic orders --to-earliest
    ///   rill group reset-offsets billing --topic orders:0,1 --shift-by -100 --execute
    ///   rill group reset-offsets billing --all-topics --to-datetime 2026-01-31T12:00:00Z --execute
    #[command(verbatim_doc_comment)]
    ResetOffsets(ResetArgs),
    /// Delete a group and its committed offsets (the group must have no active members).
    Delete { group: String },
    /// Delete a group's committed offsets of some topics (not consumed by active members).
    ///
    /// Example: rill group delete-offsets billing --topic orders
    DeleteOffsets {
        group: String,
        /// Topic, optionally with partitions: orders or orders:0,2 (repeatable).
        #[arg(long, required = true, value_name = "TOPIC[:P,...]")]
        topic: Vec<String>,
    },
}

#[derive(Args)]
pub struct ResetArgs {
    pub group: String,
    /// Topic, optionally with partitions: orders or orders:0,2 (repeatable).
    #[arg(long, value_name = "TOPIC[:P,...]", required_unless_present = "all_topics")]
    pub topic: Vec<String>,
    /// Every topic the group has committed offsets for.
    #[arg(long, conflicts_with = "topic")]
    pub all_topics: bool,
    #[command(flatten)]
    pub spec: ResetSpec,
    /// Commit the new offsets. Without it only the plan is printed.
    #[arg(long)]
    pub execute: bool,
    /// Only print the plan (the default; accepted for kafka-consumer-groups scripts).
    #[arg(long, conflicts_with = "execute")]
    pub dry_run: bool,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct ResetSpec {
    /// To each partition's log start offset.
    #[arg(long)]
    pub to_earliest: bool,
    /// To each partition's log end offset.
    #[arg(long)]
    pub to_latest: bool,
    /// To the committed offset (partitions without one: the log end offset).
    #[arg(long)]
    pub to_current: bool,
    /// To this offset (clamped to the log's range).
    #[arg(long, value_name = "N")]
    pub to_offset: Option<i64>,
    /// To the first offset at or after this time: YYYY-MM-DDTHH:MM:SS[.sss][Z|+HH:MM]
    /// (local time without a zone), or @EPOCH_MS.
    #[arg(long, value_name = "ISO8601")]
    pub to_datetime: Option<String>,
    /// Move the committed offset by N (negative: back), clamped to the log's range.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub shift_by: Option<i64>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Acks {
    All,
    #[value(name = "1")]
    One,
    #[value(name = "0")]
    Zero,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

#[derive(Args)]
pub struct ProduceArgs {
    topic: String,
    /// Split each line at the first occurrence of this string into key and value.
    #[arg(long, short = 'K')]
    key_separator: Option<String>,
    /// Produce to this partition (default: murmur2 of the key, or round-robin without keys).
    #[arg(long, short = 'p')]
    partition: Option<i32>,
    #[arg(long, value_enum, default_value_t = Acks::All)]
    acks: Acks,
    #[arg(long, short = 'z', value_enum, default_value_t = Codec::None)]
    compression: Codec,
    /// Header added to every record, e.g. --header source=cli (repeatable).
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE")]
    headers: Vec<String>,
    /// Records per produce batch.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
}

pub(crate) fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

pub(crate) fn tn(v: &str) -> TopicName {
    TopicName(s(v))
}

pub(crate) fn kv(pair: &str) -> anyhow::Result<(String, String)> {
    match pair.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(usage(format!("expected KEY=VALUE, got {pair:?}"))),
    }
}

pub(crate) async fn connect(conn: &Conn) -> anyhow::Result<Pool> {
    let settings = crate::settings::resolve(conn)?;
    Pool::connect(&settings.bootstrap, &settings.opts).await
}

// ------------------------------------------------------------------------------------------
// Metadata
// ------------------------------------------------------------------------------------------

pub(crate) async fn metadata(pool: &mut Pool, topics: Option<&[&str]>) -> anyhow::Result<MetadataResponse> {
    let req = MetadataRequest::default().with_allow_auto_topic_creation(false).with_topics(
        topics.map(|ts| ts.iter().map(|t| MetadataRequestTopic::default().with_name(Some(tn(t)))).collect()),
    );
    let resp = pool.main().send(&req).await?;
    for b in &resp.brokers {
        pool.nodes.insert(b.node_id.0, format!("{}:{}", b.host, b.port));
    }
    Ok(resp)
}

/// Metadata of one existing topic (fails with UNKNOWN_TOPIC_OR_PARTITION otherwise).
pub(crate) async fn topic_metadata(pool: &mut Pool, name: &str) -> anyhow::Result<MetadataResponseTopic> {
    let resp = metadata(pool, Some(&[name])).await?;
    let t = resp.topics.into_iter().next().ok_or_else(|| anyhow!("no metadata for topic {name}"))?;
    check(t.error_code, None, format!("topic {name}"))?;
    Ok(t)
}

async fn wait_for_topic(pool: &mut Pool, name: &str, partitions: Option<i32>) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let resp = metadata(pool, Some(&[name])).await?;
        if let Some(t) = resp.topics.first() {
            let ok = t.error_code == 0
                && !t.partitions.is_empty()
                && partitions.is_none_or(|n| t.partitions.len() as i32 >= n)
                && t.partitions.iter().all(|p| p.leader_id.0 >= 0);
            // Leaders named in Metadata may not serve yet (Kafka propagates asynchronously):
            // wait until every partition answers ListOffsets.
            if ok {
                let parts: Vec<(i32, i32)> = t.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)).collect();
                if list_offsets(pool, name, &parts, -1).await.is_ok() {
                    return Ok(());
                }
            }
        }
        if std::time::Instant::now() > deadline {
            return Ok(()); // created; leaders will come: don't fail the command for that
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// ListOffsets for `parts` of `topic` at `timestamp` (-2 earliest, -1 latest), sent to each
/// partition's leader. Returns partition -> offset (-1 when none).
pub(crate) async fn list_offsets(
    pool: &mut Pool,
    topic: &str,
    parts: &[(i32, i32)],
    timestamp: i64,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for &(p, leader) in parts {
        by_leader.entry(leader).or_default().push(p);
    }
    let mut out = BTreeMap::new();
    for (leader, ps) in by_leader {
        let req =
            ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
                .with_name(tn(topic))
                .with_partitions(
                    ps.iter()
                        .map(|&p| ListOffsetsPartition::default().with_partition_index(p).with_timestamp(timestamp))
                        .collect(),
                )]);
        let resp = pool.node(leader).await?.send(&req).await?;
        for t in resp.topics {
            for p in t.partitions {
                check(p.error_code, None, format!("ListOffsets {topic}/{}", p.partition_index))?;
                out.insert(p.partition_index, p.offset);
            }
        }
    }
    Ok(out)
}

// ------------------------------------------------------------------------------------------
// topic
// ------------------------------------------------------------------------------------------

pub async fn topic(conn: &Conn, cmd: TopicCmd) -> anyhow::Result<()> {
    match cmd {
        TopicCmd::Reassign { name, partitions, replicas, cancel, wait } => {
            let moves = crate::reassign::moves(&partitions, &replicas, cancel)?;
            return crate::reassign::reassign(conn, &name, &moves, wait).await;
        }
        TopicCmd::Reassignments { name } => return crate::reassign::reassignments(conn, name.as_deref()).await,
        _ => {}
    }
    let mut pool = connect(conn).await?;
    let json = conn.output == Output::Json;
    match cmd {
        TopicCmd::Create { name, partitions, replication_factor, configs, if_not_exists } => {
            let mut cfgs = Vec::new();
            for c in &configs {
                let (k, v) = kv(c)?;
                cfgs.push(CreatableTopicConfig::default().with_name(s(&k)).with_value(Some(s(&v))));
            }
            let req =
                CreateTopicsRequest::default().with_timeout_ms(30_000).with_topics(vec![CreatableTopic::default()
                    .with_name(tn(&name))
                    .with_num_partitions(partitions.unwrap_or(-1))
                    .with_replication_factor(replication_factor.unwrap_or(-1))
                    .with_configs(cfgs)]);
            let resp = pool.main().send(&req).await?;
            let r = resp.topics.into_iter().next().ok_or_else(|| anyhow!("empty CreateTopics response"))?;
            let existed = r.error_code == ResponseError::TopicAlreadyExists.code();
            if !(existed && if_not_exists) {
                check(r.error_code, r.error_message.as_ref(), format!("creating topic {name}"))?;
                wait_for_topic(&mut pool, &name, partitions).await?;
            }
            if json {
                print_json(&json!({"topic": name, "created": !existed, "partitions": r.num_partitions,
                    "replication_factor": r.replication_factor}))?;
            } else if existed {
                println!("Topic {name} already exists.");
            } else {
                println!("Created topic {name}.");
            }
        }
        TopicCmd::List { all } => {
            let resp = metadata(&mut pool, None).await?;
            let mut topics: Vec<_> = resp
                .topics
                .iter()
                .filter(|t| all || !t.is_internal)
                .map(|t| {
                    let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
                    let rf = t.partitions.first().map(|p| p.replica_nodes.len()).unwrap_or(0);
                    (name, t.partitions.len(), rf, t.is_internal)
                })
                .collect();
            topics.sort();
            if json {
                let v: Vec<Value> = topics
                    .iter()
                    .map(|(n, p, rf, i)| json!({"name": n, "partitions": p, "replication_factor": rf, "internal": i}))
                    .collect();
                print_json(&Value::Array(v))?;
            } else {
                let mut t = Table::new(&["TOPIC", "PARTITIONS", "REPLICATION"]);
                for (n, p, rf, _) in topics {
                    t.row(vec![n, p.to_string(), rf.to_string()]);
                }
                t.print()?;
            }
        }
        TopicCmd::Describe { name } => describe_topic(&mut pool, &name, json).await?,
        TopicCmd::Delete { name, if_exists } => {
            let version = pool.main().version(ApiKey::DeleteTopics)?;
            let mut req = DeleteTopicsRequest::default().with_timeout_ms(30_000);
            if version >= 6 {
                req.topics = vec![DeleteTopicState::default().with_name(Some(tn(&name)))];
            } else {
                req.topic_names = vec![tn(&name)];
            }
            let resp = pool.main().send(&req).await?;
            let r = resp.responses.into_iter().next().ok_or_else(|| anyhow!("empty DeleteTopics response"))?;
            let missing = r.error_code == ResponseError::UnknownTopicOrPartition.code();
            if !(missing && if_exists) {
                check(r.error_code, r.error_message.as_ref(), format!("deleting topic {name}"))?;
            }
            if json {
                print_json(&json!({"topic": name, "deleted": !missing}))?;
            } else if missing {
                println!("Topic {name} does not exist.");
            } else {
                println!("Deleted topic {name}.");
            }
        }
        TopicCmd::AddPartitions { name, count } => {
            let req = CreatePartitionsRequest::default().with_timeout_ms(30_000).with_topics(vec![
                CreatePartitionsTopic::default().with_name(tn(&name)).with_count(count).with_assignments(None),
            ]);
            let resp = pool.main().send(&req).await?;
            let r = resp.results.into_iter().next().ok_or_else(|| anyhow!("empty CreatePartitions response"))?;
            check(r.error_code, r.error_message.as_ref(), format!("adding partitions to {name}"))?;
            wait_for_topic(&mut pool, &name, Some(count)).await?;
            if json {
                print_json(&json!({"topic": name, "partitions": count}))?;
            } else {
                println!("Topic {name} now has {count} partitions.");
            }
        }
        TopicCmd::AlterConfig { name, sets, deletes } => {
            if sets.is_empty() && deletes.is_empty() {
                return Err(usage("nothing to do: give --set KEY=VALUE and/or --delete KEY"));
            }
            alter_configs(&mut pool, 2, &name, &sets, &deletes, json).await?;
        }
        TopicCmd::Reassign { .. } | TopicCmd::Reassignments { .. } => unreachable!("handled above"),
    }
    Ok(())
}

async fn describe_topic(pool: &mut Pool, name: &str, json: bool) -> anyhow::Result<()> {
    let mut t = topic_metadata(pool, name).await?;
    t.partitions.sort_by_key(|p| p.partition_index);
    let parts: Vec<(i32, i32)> = t.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)).collect();
    let start = list_offsets(pool, name, &parts, -2).await.unwrap_or_default();
    let end = list_offsets(pool, name, &parts, -1).await.unwrap_or_default();
    // Sizes from DescribeLogDirs on every broker that hosts a replica (best effort).
    let mut sizes: HashMap<i32, i64> = HashMap::new();
    let mut hosts: Vec<i32> = t.partitions.iter().flat_map(|p| p.replica_nodes.iter().map(|b| b.0)).collect();
    hosts.sort();
    hosts.dedup();
    for node in hosts {
        let Ok(c) = pool.node(node).await else { continue };
        if !c.supports(ApiKey::DescribeLogDirs) {
            continue;
        }
        let req = DescribeLogDirsRequest::default().with_topics(Some(vec![DescribableLogDirTopic::default()
            .with_topic(tn(name))
            .with_partitions(parts.iter().map(|p| p.0).collect())]));
        if let Ok(resp) = c.send(&req).await {
            for d in resp.results {
                for dt in d.topics {
                    for p in dt.partitions {
                        if !p.is_future_key {
                            let e = sizes.entry(p.partition_index).or_insert(0);
                            *e = (*e).max(p.partition_size);
                        }
                    }
                }
            }
        }
    }
    let configs = describe_configs(pool, 2, name, &[]).await.unwrap_or_default();
    let overrides: BTreeMap<String, Option<String>> = configs
        .iter()
        .filter(|c| c.config_source == 1)
        .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
        .collect();
    let rf = t.partitions.first().map(|p| p.replica_nodes.len()).unwrap_or(0);
    let topic_id = t.topic_id.to_string();
    let opt = |m: &BTreeMap<i32, i64>, p: i32| m.get(&p).copied();
    if json {
        let partitions: Vec<Value> = t
            .partitions
            .iter()
            .map(|p| {
                let i = p.partition_index;
                json!({
                    "partition": i,
                    "leader": p.leader_id.0,
                    "leader_epoch": p.leader_epoch,
                    "replicas": p.replica_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
                    "isr": p.isr_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
                    "offline_replicas": p.offline_replicas.iter().map(|b| b.0).collect::<Vec<_>>(),
                    "log_start_offset": opt(&start, i),
                    "log_end_offset": opt(&end, i),
                    "size_bytes": sizes.get(&i),
                })
            })
            .collect();
        print_json(&json!({
            "name": name,
            "topic_id": topic_id,
            "internal": t.is_internal,
            "partition_count": t.partitions.len(),
            "replication_factor": rf,
            "configs": overrides,
            "partitions": partitions,
        }))?;
        return Ok(());
    }
    println!("Topic: {name}  TopicId: {topic_id}  Partitions: {}  ReplicationFactor: {rf}", t.partitions.len());
    let cfg: Vec<String> = overrides.iter().map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or(""))).collect();
    println!("Configs: {}", cfg.join(","));
    let mut table = Table::new(&["PARTITION", "LEADER", "REPLICAS", "ISR", "LOG-START", "LOG-END", "SIZE"]);
    let fmt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    for p in &t.partitions {
        let i = p.partition_index;
        let replicas: Vec<i32> = p.replica_nodes.iter().map(|b| b.0).collect();
        let isr: Vec<i32> = p.isr_nodes.iter().map(|b| b.0).collect();
        table.row(vec![
            i.to_string(),
            p.leader_id.0.to_string(),
            ids(&replicas),
            ids(&isr),
            fmt(opt(&start, i)),
            fmt(opt(&end, i)),
            fmt(sizes.get(&i).copied()),
        ]);
    }
    table.print()?;
    Ok(())
}

// ------------------------------------------------------------------------------------------
// config
// ------------------------------------------------------------------------------------------

async fn describe_configs(
    pool: &mut Pool,
    kind: i8,
    name: &str,
    keys: &[String],
) -> anyhow::Result<Vec<describe_configs_response::DescribeConfigsResourceResult>> {
    let req = DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
        .with_resource_type(kind)
        .with_resource_name(s(name))
        .with_configuration_keys(if keys.is_empty() { None } else { Some(keys.iter().map(|k| s(k)).collect()) })]);
    let resp = if kind == 4 {
        let node: i32 = name.parse().unwrap_or(-1);
        metadata(pool, Some(&[])).await?;
        pool.node(node).await?.send(&req).await?
    } else {
        pool.main().send(&req).await?
    };
    let r = resp.results.into_iter().next().ok_or_else(|| anyhow!("empty DescribeConfigs response"))?;
    let what = if kind == 2 { "topic" } else { "broker" };
    check(r.error_code, r.error_message.as_ref(), format!("describing configs of {what} {name}"))?;
    Ok(r.configs)
}

fn source_name(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

async fn alter_configs(
    pool: &mut Pool,
    kind: i8,
    name: &str,
    sets: &[String],
    deletes: &[String],
    json: bool,
) -> anyhow::Result<()> {
    let mut configs = Vec::new();
    for p in sets {
        let (k, v) = kv(p)?;
        configs.push(AlterableConfig::default().with_name(s(&k)).with_config_operation(0).with_value(Some(s(&v))));
    }
    for k in deletes {
        configs.push(AlterableConfig::default().with_name(s(k)).with_config_operation(1).with_value(None));
    }
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(kind)
        .with_resource_name(s(name))
        .with_configs(configs)]);
    let resp = if kind == 4 {
        metadata(pool, Some(&[])).await?;
        pool.node(name.parse().unwrap_or(-1)).await?.send(&req).await?
    } else {
        pool.main().send(&req).await?
    };
    let what = if kind == 2 { "topic" } else { "broker" };
    for r in resp.responses {
        check(r.error_code, r.error_message.as_ref(), format!("altering configs of {what} {name}"))?;
    }
    if json {
        print_json(&json!({"resource_type": what, "name": name, "set": sets, "deleted": deletes}))?;
    } else {
        println!("Updated configs of {what} {name}.");
    }
    Ok(())
}

pub async fn config(conn: &Conn, cmd: ConfigCmd) -> anyhow::Result<()> {
    let mut pool = connect(conn).await?;
    let json = conn.output == Output::Json;
    match cmd {
        ConfigCmd::Get { resource, keys } => {
            let (kind, name) = resource.kind_name();
            let mut configs = describe_configs(&mut pool, kind, &name, &keys).await?;
            configs.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
            if json {
                let v: BTreeMap<String, Value> = configs
                    .iter()
                    .map(|c| {
                        (
                            c.name.to_string(),
                            json!({"value": c.value.as_ref().map(|v| v.to_string()),
                            "source": source_name(c.config_source), "read_only": c.read_only,
                            "sensitive": c.is_sensitive}),
                        )
                    })
                    .collect();
                print_json(&serde_json::to_value(v)?)?;
            } else {
                let mut t = Table::new(&["KEY", "VALUE", "SOURCE"]);
                for c in &configs {
                    let value = if c.is_sensitive {
                        "(sensitive)".to_string()
                    } else {
                        c.value.as_ref().map(|v| v.to_string()).unwrap_or_else(|| "null".into())
                    };
                    t.row(vec![c.name.to_string(), value, source_name(c.config_source).into()]);
                }
                t.print()?;
            }
        }
        ConfigCmd::Set { resource, pairs } => {
            let (kind, name) = resource.kind_name();
            alter_configs(&mut pool, kind, &name, &pairs, &[], json).await?;
        }
        ConfigCmd::Delete { resource, keys } => {
            let (kind, name) = resource.kind_name();
            alter_configs(&mut pool, kind, &name, &[], &keys, json).await?;
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// cluster
// ------------------------------------------------------------------------------------------

/// id, host, port, rack
type BrokerRow = (i32, String, i32, Option<String>);

pub async fn cluster(conn: &Conn, cmd: ClusterCmd) -> anyhow::Result<()> {
    match cmd {
        ClusterCmd::Unregister { id } => return crate::reassign::unregister(conn, id).await,
        ClusterCmd::AddVoter { id } => return crate::reassign::change_voter(conn, id, true).await,
        ClusterCmd::RemoveVoter { id } => return crate::reassign::change_voter(conn, id, false).await,
        _ => {}
    }
    let mut pool = connect(conn).await?;
    if let ClusterCmd::Health { admin } = cmd {
        return cluster_health(&mut pool, &admin, conn.output == Output::Json).await;
    }
    let (cluster_id, controller, mut brokers): (String, i32, Vec<BrokerRow>) = if pool
        .main()
        .supports(ApiKey::DescribeCluster)
    {
        let r = pool.main().send(&DescribeClusterRequest::default()).await?;
        check(r.error_code, r.error_message.as_ref(), "DescribeCluster")?;
        let b = r
            .brokers
            .iter()
            .map(|b| (b.broker_id.0, b.host.to_string(), b.port, b.rack.as_ref().map(|r| r.to_string())));
        (r.cluster_id.to_string(), r.controller_id.0, b.collect())
    } else {
        let r = metadata(&mut pool, Some(&[])).await?;
        let b =
            r.brokers.iter().map(|b| (b.node_id.0, b.host.to_string(), b.port, b.rack.as_ref().map(|r| r.to_string())));
        (r.cluster_id.map(|c| c.to_string()).unwrap_or_default(), r.controller_id.0, b.collect())
    };
    brokers.sort();
    if conn.output == Output::Json {
        let b: Vec<Value> =
            brokers.iter().map(|(id, h, p, r)| json!({"id": id, "host": h, "port": p, "rack": r})).collect();
        print_json(&json!({"cluster_id": cluster_id, "controller_id": controller, "brokers": b}))?;
    } else {
        println!("Cluster id: {cluster_id}");
        println!("Controller: {controller}");
        let mut t = Table::new(&["BROKER", "HOST", "PORT", "RACK"]);
        for (id, h, p, r) in brokers {
            t.row(vec![id.to_string(), h, p.to_string(), r.unwrap_or_else(|| "-".into())]);
        }
        t.print()?;
    }
    Ok(())
}

/// `cluster health`: every broker in metadata answers ApiVersions, every partition has a leader.
async fn cluster_health(pool: &mut Pool, admin: &[String], json: bool) -> anyhow::Result<()> {
    let md = metadata(pool, None).await?;
    let mut not_ready = 0;
    let mut ready_rows = Vec::new();
    for addr in admin {
        let r = crate::admin_http::readiness(addr).await;
        not_ready += usize::from(!r.as_ref().is_ok_and(|r| r.ready));
        ready_rows.push((addr.clone(), r));
    }
    let mut brokers: Vec<(i32, String, i32, Result<u128, String>)> = Vec::new();
    let mut listed: Vec<_> = md.brokers.iter().map(|b| (b.node_id.0, b.host.to_string(), b.port)).collect();
    listed.sort();
    for (id, host, port) in listed {
        let addr = format!("{host}:{port}");
        let started = std::time::Instant::now();
        let r = match crate::client::Client::connect(&addr, &pool.opts).await {
            Ok(_) => Ok(started.elapsed().as_millis()),
            Err(e) => Err(format!("{e:#}")),
        };
        brokers.push((id, host, port, r));
    }
    // topic, partition, problem
    let mut offline: Vec<(String, i32, String)> = Vec::new();
    let mut under: Vec<(String, i32, Vec<i32>, Vec<i32>)> = Vec::new();
    let mut total = 0usize;
    let mut topic_errors: Vec<(String, String)> = Vec::new();
    for t in &md.topics {
        let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
        if t.error_code != 0 {
            topic_errors.push((name.clone(), crate::client::error_name(t.error_code)));
        }
        for p in &t.partitions {
            total += 1;
            if p.leader_id.0 < 0 || p.error_code == ResponseError::LeaderNotAvailable.code() {
                let why =
                    if p.error_code != 0 { crate::client::error_name(p.error_code) } else { "no leader".to_string() };
                offline.push((name.clone(), p.partition_index, why));
            }
            if p.isr_nodes.len() < p.replica_nodes.len() {
                under.push((
                    name.clone(),
                    p.partition_index,
                    p.replica_nodes.iter().map(|b| b.0).collect(),
                    p.isr_nodes.iter().map(|b| b.0).collect(),
                ));
            }
        }
    }
    offline.sort();
    under.sort();
    let down = brokers.iter().filter(|b| b.3.is_err()).count();
    let healthy = down == 0 && offline.is_empty() && topic_errors.is_empty() && !brokers.is_empty() && not_ready == 0;
    if json {
        let b: Vec<Value> = brokers
            .iter()
            .map(|(id, h, p, r)| {
                json!({"id": id, "host": h, "port": p, "ok": r.is_ok(),
                "latency_ms": r.as_ref().ok(), "error": r.as_ref().err()})
            })
            .collect();
        let off: Vec<Value> = offline.iter().map(|(t, p, w)| json!({"topic": t, "partition": p, "error": w})).collect();
        let ur: Vec<Value> =
            under.iter().map(|(t, p, r, i)| json!({"topic": t, "partition": p, "replicas": r, "isr": i})).collect();
        let te: Vec<Value> = topic_errors.iter().map(|(t, e)| json!({"topic": t, "error": e})).collect();
        let ready: Vec<Value> = ready_rows
            .iter()
            .map(|(addr, r)| match r {
                Ok(r) => json!({"admin": addr, "ready": r.ready, "checks": r.checks.iter()
                    .map(|(n, ok, d)| json!({"name": n, "ok": ok, "detail": d})).collect::<Vec<_>>()}),
                Err(e) => json!({"admin": addr, "ready": false, "error": format!("{e:#}")}),
            })
            .collect();
        print_json(&json!({"healthy": healthy, "brokers": b, "topics": md.topics.len(), "partitions": total,
            "offline_partitions": off, "under_replicated_partitions": ur, "topic_errors": te, "readiness": ready}))?;
    } else {
        let mut t = Table::new(&["CHECK", "STATUS", "DETAIL"]);
        if brokers.is_empty() {
            t.row(vec!["brokers".into(), "FAIL".into(), "metadata lists no brokers".into()]);
        }
        for (id, h, p, r) in &brokers {
            let (status, detail) = match r {
                Ok(ms) => ("ok", format!("answers ApiVersions ({ms} ms)")),
                Err(e) => ("FAIL", e.clone()),
            };
            t.row(vec![format!("broker {id} ({h}:{p})"), status.into(), detail]);
        }
        let leaders = if offline.is_empty() {
            ("ok", format!("{total} partitions in {} topics all have a leader", md.topics.len()))
        } else {
            let list: Vec<String> = offline.iter().take(10).map(|(t, p, w)| format!("{t}-{p} ({w})")).collect();
            ("FAIL", format!("{} of {total} without a leader: {}", offline.len(), list.join(", ")))
        };
        t.row(vec!["partition leaders".into(), leaders.0.into(), leaders.1]);
        for (topic, e) in &topic_errors {
            t.row(vec![format!("topic {topic}"), "FAIL".into(), e.clone()]);
        }
        let ur = if under.is_empty() {
            ("ok", "none".to_string())
        } else {
            let list: Vec<String> = under.iter().take(10).map(|(t, p, _, _)| format!("{t}-{p}")).collect();
            ("WARN", format!("{}: {}", under.len(), list.join(", ")))
        };
        t.row(vec!["under-replicated".into(), ur.0.into(), ur.1]);
        for (addr, r) in &ready_rows {
            let (status, detail) = match r {
                Ok(r) if r.ready => ("ok", format!("{} checks pass", r.checks.len())),
                Ok(r) => {
                    let failing: Vec<String> =
                        r.checks.iter().filter(|c| !c.1).map(|(n, _, d)| format!("{n}: {d}")).collect();
                    ("FAIL", failing.join("; "))
                }
                Err(e) => ("FAIL", format!("{e:#}")),
            };
            t.row(vec![format!("ready ({addr})"), status.into(), detail]);
        }
        t.print()?;
    }
    if !healthy {
        bail!(
            "the cluster is not healthy: {down} of {} broker(s) unreachable, {} partition(s) without a leader{}{}",
            brokers.len(),
            offline.len(),
            if topic_errors.is_empty() { String::new() } else { format!(", {} topic error(s)", topic_errors.len()) },
            if not_ready == 0 { String::new() } else { format!(", {not_ready} broker(s) not ready") }
        );
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// group
// ------------------------------------------------------------------------------------------

pub async fn group(conn: &Conn, cmd: GroupCmd) -> anyhow::Result<()> {
    let mut pool = connect(conn).await?;
    let json = conn.output == Output::Json;
    match cmd {
        GroupCmd::List => {
            let md = metadata(&mut pool, Some(&[])).await?;
            let mut groups = Vec::new();
            let nodes: Vec<i32> = md.brokers.iter().map(|b| b.node_id.0).collect();
            let nodes = if nodes.is_empty() { vec![-1] } else { nodes };
            for n in nodes {
                let r = pool.node(n).await?.send(&ListGroupsRequest::default()).await?;
                check(r.error_code, None, "ListGroups")?;
                for g in r.groups {
                    groups.push((g.group_id.to_string(), g.group_state.to_string(), g.protocol_type.to_string()));
                }
            }
            groups.sort();
            groups.dedup();
            if json {
                let v: Vec<Value> =
                    groups.iter().map(|(g, st, pt)| json!({"group": g, "state": st, "protocol_type": pt})).collect();
                print_json(&Value::Array(v))?;
            } else {
                let mut t = Table::new(&["GROUP", "STATE", "PROTOCOL-TYPE"]);
                for (g, st, pt) in groups {
                    t.row(vec![g, st, pt]);
                }
                t.print()?;
            }
        }
        GroupCmd::Describe { group } => crate::groups::describe_group(&mut pool, &group, json).await?,
        GroupCmd::ResetOffsets(args) => crate::groups::reset_offsets(&mut pool, args, json).await?,
        GroupCmd::Delete { group } => crate::groups::delete_group(&mut pool, &group, json).await?,
        GroupCmd::DeleteOffsets { group, topic } => {
            crate::groups::delete_offsets(&mut pool, &group, &topic, json).await?
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// produce
// ------------------------------------------------------------------------------------------

/// Kafka's default partitioner hash (murmur2, as in the Java client).
fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let chunks = data.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    if rest.len() == 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub async fn produce(conn: &Conn, args: ProduceArgs) -> anyhow::Result<()> {
    let mut pool = connect(conn).await?;
    let md = topic_metadata(&mut pool, &args.topic).await?;
    let leaders: BTreeMap<i32, i32> = md.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)).collect();
    let n = leaders.len() as i32;
    if let Some(p) = args.partition {
        if !leaders.contains_key(&p) {
            return Err(usage(format!("topic {} has no partition {p} (it has {n})", args.topic)));
        }
    }
    let headers: Vec<(String, String)> = args.headers.iter().map(|h| kv(h)).collect::<anyhow::Result<_>>()?;
    let acks: i16 = match args.acks {
        Acks::All => -1,
        Acks::One => 1,
        Acks::Zero => 0,
    };
    let compression = match args.compression {
        Codec::None => Compression::None,
        Codec::Gzip => Compression::Gzip,
        Codec::Snappy => Compression::Snappy,
        Codec::Lz4 => Compression::Lz4,
        Codec::Zstd => Compression::Zstd,
    };
    // Read all of stdin in chunks of batch_size lines; each chunk is one produce request.
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut round_robin = 0i32;
    let mut total = 0u64;
    let mut bytes = 0u64;
    let mut progress = crate::progress::Progress::new("produced", true);
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    loop {
        let mut chunk: Vec<(Option<Vec<u8>>, Vec<u8>)> = Vec::new();
        for line in lines.by_ref() {
            let line = line.context("reading stdin")?;
            let rec = match &args.key_separator {
                Some(sep) => match line.split_once(sep.as_str()) {
                    Some((k, v)) => (Some(k.as_bytes().to_vec()), v.as_bytes().to_vec()),
                    None => (None, line.into_bytes()),
                },
                None => (None, line.into_bytes()),
            };
            chunk.push(rec);
            if chunk.len() >= args.batch_size.max(1) {
                break;
            }
        }
        if chunk.is_empty() {
            break;
        }
        let mut by_partition: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for (i, (k, _)) in chunk.iter().enumerate() {
            let p = match (args.partition, k) {
                (Some(p), _) => p,
                (None, Some(k)) => (murmur2(k) & 0x7fff_ffff) % n,
                (None, None) => {
                    round_robin = (round_robin + 1) % n;
                    round_robin
                }
            };
            by_partition.entry(p).or_default().push(i);
        }
        let hdrs: Vec<(&str, Option<&[u8]>)> = headers.iter().map(|(k, v)| (k.as_str(), Some(v.as_bytes()))).collect();
        let ts = now_ms();
        let mut by_leader: BTreeMap<i32, Vec<PartitionProduceData>> = BTreeMap::new();
        for (p, idx) in &by_partition {
            let recs: Vec<RecordIn> = idx
                .iter()
                .map(|&i| RecordIn {
                    key: chunk[i].0.as_deref(),
                    value: Some(&chunk[i].1),
                    headers: &hdrs,
                    timestamp: ts,
                })
                .collect();
            let batch = encode_batch(&recs, &EncodeOptions { compression, ..EncodeOptions::default() });
            by_leader
                .entry(leaders[p])
                .or_default()
                .push(PartitionProduceData::default().with_index(*p).with_records(Some(batch.freeze())));
        }
        for (leader, data) in by_leader {
            let req = ProduceRequest::default().with_acks(acks).with_timeout_ms(30_000).with_topic_data(vec![
                TopicProduceData::default().with_name(tn(&args.topic)).with_partition_data(data),
            ]);
            let client = pool.node(leader).await?;
            if acks == 0 {
                client.send_oneway(&req).await?;
                continue;
            }
            let resp = client.send(&req).await?;
            for t in resp.responses {
                for p in t.partition_responses {
                    check(p.error_code, p.error_message.as_ref(), format!("producing to {}/{}", args.topic, p.index))?;
                    let count = by_partition.get(&p.index).map(|v| v.len() as i64).unwrap_or(0);
                    last.insert(p.index, p.base_offset + count - 1);
                }
            }
        }
        total += chunk.len() as u64;
        bytes += chunk.iter().map(|(k, v)| (k.as_ref().map_or(0, Vec::len) + v.len()) as u64).sum::<u64>();
        progress.update(total, bytes);
    }
    progress.finish();
    if conn.output == Output::Json {
        print_json(&json!({"topic": args.topic, "records": total, "last_offsets": last}))?;
    } else {
        eprintln!("Produced {total} records to {}.", args.topic);
    }
    Ok(())
}
