//! Topic-level configuration: Kafka's keys, their broker-level synonyms and validation.

use std::collections::BTreeMap;

use rill_storage::{CleanerConfig, LogConfig};

use crate::config::BrokerConfig;

/// Value type, numbered as in DescribeConfigs v3+ (`config_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// One topic config key: its type, the broker keys it defaults from (first match wins, with a
/// unit multiplier), and the value used when no broker key is set.
pub struct TopicKey {
    pub name: &'static str,
    pub kind: ConfigType,
    pub synonyms: &'static [(&'static str, i64)],
    pub default: &'static str,
    pub allowed: &'static [&'static str],
}

const fn key(
    name: &'static str,
    kind: ConfigType,
    synonyms: &'static [(&'static str, i64)],
    default: &'static str,
) -> TopicKey {
    TopicKey { name, kind, synonyms, default, allowed: &[] }
}

use ConfigType::{Boolean, Double, Int, List, Long};

pub static TOPIC_KEYS: &[TopicKey] = &[
    TopicKey {
        allowed: &["delete", "compact", "compact,delete", "delete,compact"],
        ..key("cleanup.policy", List, &[("log.cleanup.policy", 1)], "delete")
    },
    TopicKey {
        allowed: &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"],
        ..key("compression.type", ConfigType::String, &[("compression.type", 1)], "producer")
    },
    key("delete.retention.ms", Long, &[], "86400000"),
    key("file.delete.delay.ms", Long, &[], "60000"),
    key("flush.messages", Long, &[("log.flush.interval.messages", 1)], "1"),
    key("flush.ms", Long, &[("log.flush.interval.ms", 1)], "9223372036854775807"),
    // Replication throttles, set and cleared by `kafka-reassign-partitions`; Rill stores them
    // but does not throttle replication.
    key("follower.replication.throttled.replicas", List, &[], ""),
    key("index.interval.bytes", Int, &[("log.index.interval.bytes", 1)], "4096"),
    key("leader.replication.throttled.replicas", List, &[], ""),
    key("max.compaction.lag.ms", Long, &[], "9223372036854775807"),
    key("max.message.bytes", Int, &[("message.max.bytes", 1)], "1048588"),
    key("message.timestamp.after.max.ms", Long, &[], "3600000"),
    key("message.timestamp.before.max.ms", Long, &[], "9223372036854775807"),
    TopicKey {
        allowed: &["CreateTime", "LogAppendTime"],
        ..key("message.timestamp.type", ConfigType::String, &[("log.message.timestamp.type", 1)], "CreateTime")
    },
    key("min.cleanable.dirty.ratio", Double, &[], "0.5"),
    key("min.compaction.lag.ms", Long, &[], "0"),
    key("min.insync.replicas", Int, &[("min.insync.replicas", 1)], "1"),
    key("preallocate", Boolean, &[], "false"),
    key("retention.bytes", Long, &[("log.retention.bytes", 1)], "-1"),
    key(
        "retention.ms",
        Long,
        &[("log.retention.ms", 1), ("log.retention.minutes", 60_000), ("log.retention.hours", 3_600_000)],
        "604800000",
    ),
    key("segment.bytes", Int, &[("log.segment.bytes", 1)], "1073741824"),
    key("segment.index.bytes", Int, &[("log.index.size.max.bytes", 1)], "10485760"),
    key("segment.jitter.ms", Long, &[], "0"),
    key("segment.ms", Long, &[("log.roll.ms", 1), ("log.roll.hours", 3_600_000)], "604800000"),
    key("unclean.leader.election.enable", Boolean, &[], "false"),
];

pub fn lookup(name: &str) -> Option<&'static TopicKey> {
    TOPIC_KEYS.iter().find(|k| k.name == name)
}

/// Why a topic config was refused (mapped to INVALID_CONFIG by the handlers).
#[derive(Debug, thiserror::Error)]
pub enum TopicConfigError {
    #[error("Unknown topic config name: {0}")]
    Unknown(String),
    #[error("Invalid value {value} for configuration {key}: {reason}")]
    Invalid { key: String, value: String, reason: String },
}

/// Checks one key/value pair against its type and allowed values.
pub fn validate(name: &str, value: &str) -> Result<(), TopicConfigError> {
    let k = lookup(name).ok_or_else(|| TopicConfigError::Unknown(name.to_string()))?;
    let invalid = |reason: &str| TopicConfigError::Invalid {
        key: name.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let v = value.trim();
    match k.kind {
        Boolean if !matches!(v.to_ascii_lowercase().as_str(), "true" | "false") => {
            return Err(invalid("Expected value to be either true or false"))
        }
        Int => {
            let n: i32 = v.parse().map_err(|_| invalid("Expected value to be a 32-bit integer"))?;
            if n < 0 || (matches!(name, "segment.bytes") && n < 14) || (name == "min.insync.replicas" && n < 1) {
                return Err(invalid("Value out of range"));
            }
        }
        Long => {
            let n: i64 = v.parse().map_err(|_| invalid("Expected value to be a 64-bit integer"))?;
            let may_be_unlimited = matches!(name, "retention.ms" | "retention.bytes");
            if n < 0 && !(may_be_unlimited && n == -1) {
                return Err(invalid("Value out of range"));
            }
            if matches!(name, "flush.messages" | "segment.ms") && n < 1 {
                return Err(invalid("Value out of range"));
            }
        }
        Double => {
            let d: f64 = v.parse().map_err(|_| invalid("Expected value to be a double"))?;
            if !(0.0..=1.0).contains(&d) {
                return Err(invalid("Value out of range"));
            }
        }
        _ => {}
    }
    if !k.allowed.is_empty() {
        let normalized: String = v.split(',').map(str::trim).collect::<Vec<_>>().join(",");
        if !k.allowed.iter().any(|a| a.eq_ignore_ascii_case(&normalized)) {
            return Err(invalid(&format!("String must be one of: {}", k.allowed.join(", "))));
        }
    }
    Ok(())
}

/// Where a topic config's effective value came from (DescribeConfigs `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    DynamicTopic = 1,
    StaticBroker = 4,
    Default = 5,
}

/// The effective value of a topic key given the topic's overrides and the broker config.
pub fn effective(name: &str, overrides: &BTreeMap<String, String>, broker: &BrokerConfig) -> Option<(String, Source)> {
    let k = lookup(name)?;
    if let Some(v) = overrides.get(name) {
        return Some((v.clone(), Source::DynamicTopic));
    }
    if let Some(v) = broker_default(k, broker) {
        return Some((v, Source::StaticBroker));
    }
    Some((k.default.to_string(), Source::Default))
}

/// The value the broker config gives a topic key, if a synonym was set explicitly.
pub fn broker_default(k: &TopicKey, broker: &BrokerConfig) -> Option<String> {
    for (syn, mult) in k.synonyms {
        if let Some(v) = broker.raw.get(*syn).filter(|v| !v.is_empty()) {
            if *mult == 1 {
                return Some(v.clone());
            }
            return v.parse::<i64>().ok().map(|n| n.saturating_mul(*mult).to_string());
        }
    }
    None
}

/// The fully resolved settings a partition needs.
#[derive(Debug, Clone)]
pub struct TopicSettings {
    pub log: LogConfig,
    pub max_message_bytes: usize,
    pub log_append_time: bool,
    pub cleanup_policy: String,
    /// `compact` is in cleanup.policy: the log cleaner compacts it and produce needs keys.
    pub compact: bool,
    /// The compaction configs (`delete.retention.ms`, `min.compaction.lag.ms`, ...).
    pub cleaner: CleanerConfig,
}

impl TopicSettings {
    pub fn resolve(overrides: &BTreeMap<String, String>, broker: &BrokerConfig) -> Self {
        let val = |name: &str| effective(name, overrides, broker).map(|(v, _)| v).unwrap_or_default();
        let long = |name: &str, fallback: i64| val(name).trim().parse::<i64>().unwrap_or(fallback);
        let log = LogConfig {
            segment_bytes: long("segment.bytes", 1 << 30).max(14) as u64,
            segment_ms: long("segment.ms", 604_800_000),
            retention_ms: long("retention.ms", 604_800_000),
            retention_bytes: long("retention.bytes", -1),
            index_interval_bytes: long("index.interval.bytes", 4096).clamp(1, u32::MAX as i64) as u32,
            segment_index_bytes: long("segment.index.bytes", 10 << 20).clamp(4096, i32::MAX as i64) as u32,
            flush_messages: long("flush.messages", 1),
            flush_ms: long("flush.ms", i64::MAX),
        };
        TopicSettings {
            log,
            max_message_bytes: long("max.message.bytes", 1_048_588).max(0) as usize,
            log_append_time: val("message.timestamp.type").eq_ignore_ascii_case("LogAppendTime"),
            compact: val("cleanup.policy").split(',').any(|p| p.trim().eq_ignore_ascii_case("compact")),
            cleanup_policy: val("cleanup.policy"),
            cleaner: CleanerConfig {
                delete_retention_ms: long("delete.retention.ms", 86_400_000),
                min_compaction_lag_ms: long("min.compaction.lag.ms", 0),
                max_compaction_lag_ms: long("max.compaction.lag.ms", i64::MAX),
                min_cleanable_dirty_ratio: val("min.cleanable.dirty.ratio").trim().parse().unwrap_or(0.5),
                max_map_bytes: broker.log_cleaner_dedupe_buffer_size,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(pairs: &[(&str, &str)]) -> BrokerConfig {
        BrokerConfig::from_map(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()).unwrap()
    }

    #[test]
    fn synonyms_and_overrides() {
        let b = broker(&[("log.retention.hours", "1")]);
        let none = BTreeMap::new();
        assert_eq!(effective("retention.ms", &none, &b), Some(("3600000".into(), Source::StaticBroker)));
        let mut o = BTreeMap::new();
        o.insert("retention.ms".to_string(), "5".to_string());
        assert_eq!(effective("retention.ms", &o, &b), Some(("5".into(), Source::DynamicTopic)));
        assert_eq!(effective("segment.jitter.ms", &none, &b), Some(("0".into(), Source::Default)));
    }

    #[test]
    fn validation() {
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("retention.ms", "soon").is_err());
        assert!(validate("cleanup.policy", "compact").is_ok());
        assert!(validate("cleanup.policy", "shred").is_err());
        assert!(validate("no.such", "1").is_err());
        assert!(validate("max.message.bytes", "-5").is_err());
    }

    #[test]
    fn compaction_settings() {
        let b = broker(&[("log.cleaner.dedupe.buffer.size", "1000")]);
        let mut o = BTreeMap::new();
        assert!(!TopicSettings::resolve(&o, &b).compact);
        o.insert("cleanup.policy".to_string(), "delete, compact".to_string());
        o.insert("min.cleanable.dirty.ratio".to_string(), "0.01".to_string());
        o.insert("delete.retention.ms".to_string(), "100".to_string());
        let s = TopicSettings::resolve(&o, &b);
        assert!(s.compact);
        assert_eq!(
            s.cleaner,
            CleanerConfig {
                delete_retention_ms: 100,
                min_cleanable_dirty_ratio: 0.01,
                max_map_bytes: 1000,
                ..CleanerConfig::default()
            }
        );
    }
}
