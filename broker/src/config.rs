//! Broker configuration with Kafka's names and defaults.
//!
//! Sources, later ones winning: built-in defaults, a properties or TOML file, `RILL_*`
//! environment variables (`RILL_LOG_DIRS` sets `log.dirs`), and `--set key=value` flags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value {value:?} for {key}: {message}")]
    Invalid { key: String, value: String, message: String },
    #[error("unknown config key {0:?}")]
    Unknown(String),
    #[error("expected key=value, got {0:?}")]
    NotKeyValue(String),
}

/// A listener as `NAME://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl Listener {
    fn parse(key: &str, spec: &str) -> Result<Self, ConfigError> {
        let invalid = |message: &str| ConfigError::Invalid {
            key: key.to_string(),
            value: spec.to_string(),
            message: message.to_string(),
        };
        let (name, addr) = spec.split_once("://").ok_or_else(|| invalid("expected NAME://host:port"))?;
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| invalid("missing :port"))?;
        let port = port.parse().map_err(|_| invalid("port is not a number"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        Ok(Listener { name: name.to_string(), host, port })
    }

    fn parse_list(key: &str, spec: &str) -> Result<Vec<Self>, ConfigError> {
        spec.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Listener::parse(key, s)).collect()
    }
}

/// Broker-level settings. Topic-level defaults live in [`crate::topic_config`] and are derived
/// from the `log.*` keys here.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: i32,
    pub cluster_id: Option<String>,
    pub listeners: Vec<Listener>,
    pub advertised_listeners: Vec<Listener>,
    pub log_dirs: Vec<PathBuf>,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub auto_create_topics_enable: bool,
    pub delete_topic_enable: bool,
    pub socket_request_max_bytes: usize,
    pub max_connections: usize,
    /// Requests a connection may have in flight before the broker stops reading from it.
    pub max_inflight_requests_per_connection: usize,
    /// Request bytes a connection may have in flight before the broker stops reading from it.
    pub max_inflight_bytes_per_connection: usize,
    pub log_retention_check_interval_ms: u64,
    /// `log.cleaner.enable`: compact topics whose cleanup.policy includes `compact`.
    pub log_cleaner_enable: bool,
    /// `log.cleaner.backoff.ms`: how long the cleaner sleeps when no log needs cleaning.
    pub log_cleaner_backoff_ms: u64,
    /// `log.cleaner.dedupe.buffer.size`: memory for the key map of one cleaning pass.
    pub log_cleaner_dedupe_buffer_size: usize,
    /// `controller.quorum.voters`: node id to Raft address. Empty for a single node.
    pub quorum_voters: BTreeMap<i32, String>,
    pub rack: Option<String>,
    /// Every key that was set, for DescribeConfigs (as STATIC_BROKER_CONFIG) and for topic defaults.
    pub raw: BTreeMap<String, String>,
}

/// Broker keys Rill understands with their defaults. Topic defaults (`log.*`, `message.max.bytes`)
/// are read by topic_config.
pub const BROKER_DEFAULTS: &[(&str, &str)] = &[
    ("node.id", "1"),
    // The admin HTTP listener (metrics, health, console): host:port, or off.
    ("admin.listener", "127.0.0.1:9644"),
    ("broker.id", ""),
    ("cluster.id", ""),
    ("listeners", "PLAINTEXT://127.0.0.1:9092"),
    ("advertised.listeners", ""),
    ("log.dirs", "./rill-data"),
    ("log.dir", ""),
    ("num.partitions", "1"),
    ("default.replication.factor", "1"),
    ("auto.create.topics.enable", "true"),
    ("delete.topic.enable", "true"),
    ("socket.request.max.bytes", "104857600"),
    ("max.connections", "10000"),
    ("queued.max.requests", "500"),
    ("rill.max.inflight.requests.per.connection", "32"),
    ("rill.max.inflight.bytes.per.connection", "8388608"),
    ("log.retention.check.interval.ms", "300000"),
    ("message.max.bytes", "1048588"),
    ("log.segment.bytes", "1073741824"),
    ("log.roll.ms", ""),
    ("log.roll.hours", "168"),
    ("log.retention.ms", ""),
    ("log.retention.minutes", ""),
    ("log.retention.hours", "168"),
    ("log.retention.bytes", "-1"),
    ("log.index.interval.bytes", "4096"),
    ("log.index.size.max.bytes", "10485760"),
    ("log.flush.interval.messages", "1"),
    ("log.flush.interval.ms", ""),
    ("log.message.timestamp.type", "CreateTime"),
    ("log.cleanup.policy", "delete"),
    // The log cleaner (compaction of cleanup.policy=compact topics), with Kafka's defaults.
    ("log.cleaner.enable", "true"),
    ("log.cleaner.backoff.ms", "15000"),
    ("log.cleaner.dedupe.buffer.size", "134217728"),
    ("min.insync.replicas", "1"),
    ("compression.type", "producer"),
    ("group.initial.rebalance.delay.ms", "3000"),
    ("group.min.session.timeout.ms", "6000"),
    ("group.max.session.timeout.ms", "1800000"),
    ("group.consumer.heartbeat.interval.ms", "5000"),
    ("group.consumer.session.timeout.ms", "45000"),
    ("group.consumer.assignors", "uniform,range"),
    ("group.consumer.max.size", "2147483647"),
    ("offsets.topic.num.partitions", "50"),
    // Cluster mode: the metadata quorum, as `id@host:port` of each node's Raft listener (like
    // KRaft's controller.quorum.voters). Empty means a single embedded node.
    ("controller.quorum.voters", ""),
    ("broker.rack", ""),
    ("auto.leader.rebalance.enable", "true"),
    ("replica.lag.time.max.ms", "30000"),
    ("leader.imbalance.check.interval.seconds", "300"),
    ("rill.raft.heartbeat.interval.ms", "500"),
    ("rill.raft.election.timeout.ms", "2000"),
    ("rill.raft.quiesce.enable", "true"),
    // A node that is not one of `controller.quorum.voters`: where it listens for Raft traffic.
    ("rill.raft.address", ""),
    ("offsets.retention.minutes", "10080"),
    ("offsets.retention.check.interval.ms", "600000"),
];

impl BrokerConfig {
    /// Builds the configuration from a file (optional), the environment and `--set` pairs.
    pub fn load(file: Option<&Path>, sets: &[String]) -> Result<Self, ConfigError> {
        let mut raw = BTreeMap::new();
        if let Some(path) = file {
            raw.extend(read_file(path)?);
        }
        for (k, v) in std::env::vars() {
            if let Some(rest) = k.strip_prefix("RILL_") {
                let key = rest.to_ascii_lowercase().replace('_', ".");
                if is_known(&key) {
                    raw.insert(key, v);
                }
            }
        }
        for s in sets {
            let (k, v) = s.split_once('=').ok_or_else(|| ConfigError::NotKeyValue(s.clone()))?;
            raw.insert(k.trim().to_string(), v.trim().to_string());
        }
        Self::from_map(raw)
    }

    /// Builds the configuration from explicit key/value pairs over the defaults.
    pub fn from_map(raw: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        for key in raw.keys() {
            if !is_known(key) {
                return Err(ConfigError::Unknown(key.clone()));
            }
        }
        let get = |key: &str| -> String {
            raw.get(key).cloned().unwrap_or_else(|| default_of(key).unwrap_or_default().to_string())
        };
        let node_id_raw = raw.get("broker.id").cloned().unwrap_or_else(|| get("node.id"));
        let node_id = parse_num::<i32>("node.id", &node_id_raw)?;
        let listeners = Listener::parse_list("listeners", &get("listeners"))?;
        if listeners.is_empty() {
            return Err(ConfigError::Invalid {
                key: "listeners".into(),
                value: String::new(),
                message: "at least one listener is required".into(),
            });
        }
        let advertised = get("advertised.listeners");
        let advertised_listeners = if advertised.is_empty() {
            listeners
                .iter()
                .map(|l| {
                    let host = if l.host.is_empty() || l.host == "0.0.0.0" || l.host == "::" {
                        "127.0.0.1".to_string()
                    } else {
                        l.host.clone()
                    };
                    Listener { host, ..l.clone() }
                })
                .collect()
        } else {
            Listener::parse_list("advertised.listeners", &advertised)?
        };
        let dirs = raw.get("log.dir").filter(|d| !d.is_empty()).cloned().unwrap_or_else(|| get("log.dirs"));
        let log_dirs: Vec<PathBuf> =
            dirs.split(',').map(str::trim).filter(|s| !s.is_empty()).map(PathBuf::from).collect();
        if log_dirs.is_empty() {
            return Err(ConfigError::Invalid {
                key: "log.dirs".into(),
                value: dirs,
                message: "at least one directory is required".into(),
            });
        }
        let cluster_id = Some(get("cluster.id")).filter(|s| !s.is_empty());
        let voters_raw = get("controller.quorum.voters");
        let mut quorum_voters = BTreeMap::new();
        for v in voters_raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let invalid = |message: &str| ConfigError::Invalid {
                key: "controller.quorum.voters".into(),
                value: voters_raw.clone(),
                message: message.to_string(),
            };
            let (id, addr) = v.split_once('@').ok_or_else(|| invalid("expected id@host:port,..."))?;
            let id: i32 = id.trim().parse().map_err(|_| invalid("node id is not a number"))?;
            if !addr.contains(':') {
                return Err(invalid("expected id@host:port"));
            }
            quorum_voters.insert(id, addr.trim().to_string());
        }
        // A node outside the voters joins as a broker: it needs its own Raft address.
        if !quorum_voters.is_empty() && !quorum_voters.contains_key(&node_id) && !get("rill.raft.address").contains(':')
        {
            return Err(ConfigError::Invalid {
                key: "controller.quorum.voters".into(),
                value: voters_raw,
                message: format!(
                    "node.id {node_id} is not one of the voters; to join the cluster as a broker, set rill.raft.address=host:port"
                ),
            });
        }
        Ok(BrokerConfig {
            node_id,
            cluster_id,
            listeners,
            advertised_listeners,
            log_dirs,
            num_partitions: parse_num("num.partitions", &get("num.partitions"))?,
            default_replication_factor: parse_num("default.replication.factor", &get("default.replication.factor"))?,
            auto_create_topics_enable: parse_bool("auto.create.topics.enable", &get("auto.create.topics.enable"))?,
            delete_topic_enable: parse_bool("delete.topic.enable", &get("delete.topic.enable"))?,
            socket_request_max_bytes: parse_num("socket.request.max.bytes", &get("socket.request.max.bytes"))?,
            max_connections: parse_num("max.connections", &get("max.connections"))?,
            max_inflight_requests_per_connection: parse_num(
                "rill.max.inflight.requests.per.connection",
                &get("rill.max.inflight.requests.per.connection"),
            )?,
            max_inflight_bytes_per_connection: parse_num(
                "rill.max.inflight.bytes.per.connection",
                &get("rill.max.inflight.bytes.per.connection"),
            )?,
            log_retention_check_interval_ms: parse_num(
                "log.retention.check.interval.ms",
                &get("log.retention.check.interval.ms"),
            )?,
            log_cleaner_enable: parse_bool("log.cleaner.enable", &get("log.cleaner.enable"))?,
            log_cleaner_backoff_ms: parse_num("log.cleaner.backoff.ms", &get("log.cleaner.backoff.ms"))?,
            log_cleaner_dedupe_buffer_size: parse_num(
                "log.cleaner.dedupe.buffer.size",
                &get("log.cleaner.dedupe.buffer.size"),
            )?,
            quorum_voters,
            rack: Some(get("broker.rack")).filter(|s| !s.is_empty()),
            raw,
        })
    }

    /// Where this node listens for Raft traffic: its voter entry, or `rill.raft.address` for a
    /// node that joins as a broker only.
    pub fn raft_address(&self) -> Option<String> {
        self.quorum_voters
            .get(&self.node_id)
            .cloned()
            .or_else(|| self.value("rill.raft.address").filter(|a| a.contains(':')))
    }

    /// Whether this node votes in the metadata quorum.
    pub fn is_voter(&self) -> bool {
        self.quorum_voters.contains_key(&self.node_id)
    }

    /// `replica.lag.time.max.ms`: a follower silent for longer leaves the ISR.
    pub fn replica_lag_max(&self) -> std::time::Duration {
        let ms = self.value("replica.lag.time.max.ms").and_then(|v| v.parse::<u64>().ok()).unwrap_or(30_000);
        std::time::Duration::from_millis(ms)
    }

    /// True when this node is part of a Raft cluster (`controller.quorum.voters` is set).
    pub fn is_cluster(&self) -> bool {
        !self.quorum_voters.is_empty()
    }

    /// The effective value of a broker key (set or default).
    pub fn value(&self, key: &str) -> Option<String> {
        self.raw.get(key).cloned().or_else(|| default_of(key).map(str::to_string))
    }

    /// The listener a client connected through, by name, falling back to the first advertised one.
    pub fn advertised_for(&self, listener_name: &str) -> &Listener {
        self.advertised_listeners.iter().find(|l| l.name == listener_name).unwrap_or(&self.advertised_listeners[0])
    }
}

fn default_of(key: &str) -> Option<&'static str> {
    BROKER_DEFAULTS.iter().find(|(k, _)| *k == key).map(|(_, v)| *v).or_else(|| crate::security::default_of(key))
}

fn is_known(key: &str) -> bool {
    default_of(key).is_some() || crate::security::is_known(key) || key == "process.roles"
}

pub(crate) fn parse_num<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ConfigError> {
    value.trim().parse().map_err(|_| ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        message: "not a valid number".into(),
    })
}

pub(crate) fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ConfigError::Invalid {
            key: key.to_string(),
            value: value.to_string(),
            message: "expected true or false".into(),
        }),
    }
}

fn read_file(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    if path.extension().is_some_and(|e| e == "toml") {
        let table: toml::Table = toml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
        let mut out = BTreeMap::new();
        flatten_toml("", &table, &mut out);
        return Ok(out);
    }
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let (k, v) = line.split_once('=').or_else(|| line.split_once(':')).ok_or_else(|| ConfigError::Parse {
            path: path.to_path_buf(),
            message: format!("line {}: expected key=value", n + 1),
        })?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

/// `[log] dirs = "x"` and `"log.dirs" = "x"` both mean `log.dirs`.
fn flatten_toml(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::Table(t) => flatten_toml(&key, t, out),
            toml::Value::String(s) => {
                out.insert(key, s.clone());
            }
            toml::Value::Array(items) => {
                let joined: Vec<String> =
                    items.iter().map(|i| i.as_str().map(str::to_string).unwrap_or_else(|| i.to_string())).collect();
                out.insert(key, joined.join(","));
            }
            other => {
                out.insert(key, other.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_work_out_of_the_box() {
        let c = BrokerConfig::from_map(BTreeMap::new()).unwrap();
        assert_eq!(c.listeners[0], Listener { name: "PLAINTEXT".into(), host: "127.0.0.1".into(), port: 9092 });
        assert_eq!(c.log_dirs, vec![PathBuf::from("./rill-data")]);
        assert!(c.auto_create_topics_enable);
        assert_eq!(c.num_partitions, 1);
    }

    #[test]
    fn unknown_and_bad_values_are_refused() {
        let mut m = BTreeMap::new();
        m.insert("no.such.key".to_string(), "1".to_string());
        assert!(matches!(BrokerConfig::from_map(m), Err(ConfigError::Unknown(_))));
        let mut m = BTreeMap::new();
        m.insert("num.partitions".to_string(), "many".to_string());
        assert!(matches!(BrokerConfig::from_map(m), Err(ConfigError::Invalid { .. })));
    }

    #[test]
    fn advertised_defaults_to_listener_with_routable_host() {
        let mut m = BTreeMap::new();
        m.insert("listeners".to_string(), "PLAINTEXT://0.0.0.0:19092".to_string());
        let c = BrokerConfig::from_map(m).unwrap();
        assert_eq!(c.advertised_for("PLAINTEXT").host, "127.0.0.1");
        assert_eq!(c.advertised_for("PLAINTEXT").port, 19092);
    }
}
