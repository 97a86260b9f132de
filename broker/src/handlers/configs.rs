//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs.
//!
//! Topic configs are dynamic and persisted with the topic. Broker configs are static (from
//! the file, environment and flags): they can be described but not altered at run time yet.

use std::collections::BTreeMap;

use rill_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use rill_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest, AlterConfigsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use rill_protocol::StrBytes;

use super::s;
use crate::broker::Broker;
use crate::config::BROKER_DEFAULTS;
use crate::error::KafkaError;
use crate::topic_config::{self, ConfigType, TOPIC_KEYS};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_BROKER_LOGGER: i8 = 8;

const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

fn wanted(keys: &Option<Vec<StrBytes>>, name: &str) -> bool {
    keys.as_ref().is_none_or(|k| k.is_empty() || k.iter().any(|x| x.as_str() == name))
}

fn describe_topic(
    broker: &Broker,
    name: &str,
    keys: &Option<Vec<StrBytes>>,
    synonyms: bool,
) -> Result<Vec<DescribeConfigsResourceResult>, KafkaError> {
    let topic = broker.topics.get(name).ok_or(KafkaError::UnknownTopicOrPartition)?;
    Ok(TOPIC_KEYS
        .iter()
        .filter(|k| wanted(keys, k.name))
        .filter_map(|k| {
            let (value, source) = topic_config::effective(k.name, &topic.configs, &broker.config)?;
            let mut syn = Vec::new();
            if synonyms {
                if let Some(v) = topic.configs.get(k.name) {
                    syn.push(
                        DescribeConfigsSynonym::default()
                            .with_name(s(k.name))
                            .with_value(Some(s(v.clone())))
                            .with_source(1),
                    );
                }
                for (b, _) in k.synonyms {
                    if let Some(v) = broker.config.raw.get(*b) {
                        syn.push(
                            DescribeConfigsSynonym::default()
                                .with_name(s(*b))
                                .with_value(Some(s(v.clone())))
                                .with_source(SOURCE_STATIC_BROKER),
                        );
                    }
                }
                syn.push(
                    DescribeConfigsSynonym::default()
                        .with_name(s(k.synonyms.first().map_or(k.name, |(b, _)| *b)))
                        .with_value(Some(s(k.default)))
                        .with_source(SOURCE_DEFAULT),
                );
            }
            Some(
                DescribeConfigsResourceResult::default()
                    .with_name(s(k.name))
                    .with_value(Some(s(value)))
                    .with_config_source(source as i8)
                    .with_config_type(k.kind as i8)
                    .with_synonyms(syn),
            )
        })
        .collect())
}

fn describe_broker(
    broker: &Broker,
    name: &str,
    keys: &Option<Vec<StrBytes>>,
) -> Result<Vec<DescribeConfigsResourceResult>, KafkaError> {
    if !name.is_empty() && name != broker.node_id().to_string() {
        return Err(KafkaError::InvalidRequest(format!(
            "Unexpected broker id, expected {} but received {name}",
            broker.node_id()
        )));
    }
    Ok(BROKER_DEFAULTS
        .iter()
        .filter(|(k, _)| wanted(keys, k))
        .map(|(k, default)| {
            let set = broker.config.raw.get(*k);
            let value = set.cloned().unwrap_or_else(|| default.to_string());
            let kind = if value.parse::<i64>().is_ok() {
                ConfigType::Long
            } else if value == "true" || value == "false" {
                ConfigType::Boolean
            } else {
                ConfigType::String
            };
            DescribeConfigsResourceResult::default()
                .with_name(s(*k))
                .with_value(Some(s(value)))
                .with_read_only(true)
                .with_config_source(if set.is_some() { SOURCE_STATIC_BROKER } else { SOURCE_DEFAULT })
                .with_config_type(kind as i8)
        })
        .collect())
}

pub fn describe(broker: &Broker, req: DescribeConfigsRequest, _version: i16) -> DescribeConfigsResponse {
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let name = r.resource_name.to_string();
            let configs = match r.resource_type {
                RESOURCE_TOPIC => describe_topic(broker, &name, &r.configuration_keys, req.include_synonyms),
                RESOURCE_BROKER => describe_broker(broker, &name, &r.configuration_keys),
                RESOURCE_BROKER_LOGGER => Ok(Vec::new()),
                other => Err(KafkaError::InvalidRequest(format!("Unsupported resource type {other}"))),
            };
            let out = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name);
            match configs {
                Ok(c) => out.with_configs(c),
                Err(e) => out.with_error_code(e.code()).with_error_message(Some(s(e.to_string()))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Applies a complete new set of topic overrides after validating every entry.
fn apply_topic(
    broker: &Broker,
    name: &str,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), KafkaError> {
    broker.topics.get(name).ok_or(KafkaError::UnknownTopicOrPartition)?;
    for (k, v) in &configs {
        topic_config::validate(k, v)?;
    }
    if validate_only {
        return Ok(());
    }
    broker.set_topic_configs(name, configs)
}

fn broker_not_alterable() -> KafkaError {
    KafkaError::InvalidRequest(
        "Broker configs are static in this version of Rill; set them in the config file or with --set.".into(),
    )
}

pub fn alter(broker: &Broker, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let responses = req
        .resources
        .into_iter()
        .map(|r| {
            let name = r.resource_name.to_string();
            let result = match r.resource_type {
                RESOURCE_TOPIC => r
                    .configs
                    .iter()
                    .map(|c| {
                        c.value
                            .as_ref()
                            .map(|v| (c.name.to_string(), v.to_string()))
                            .ok_or_else(|| KafkaError::InvalidConfig(format!("Null value for {}", c.name.as_str())))
                    })
                    .collect::<Result<BTreeMap<_, _>, _>>()
                    .and_then(|configs| apply_topic(broker, &name, configs, req.validate_only)),
                RESOURCE_BROKER => Err(broker_not_alterable()),
                other => Err(KafkaError::InvalidRequest(format!("Unsupported resource type {other}"))),
            };
            let out = alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name);
            match result {
                Ok(()) => out,
                Err(e) => out.with_error_code(e.code()).with_error_message(Some(s(e.to_string()))),
            }
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

pub fn incremental_alter(broker: &Broker, req: IncrementalAlterConfigsRequest) -> IncrementalAlterConfigsResponse {
    let responses = req
        .resources
        .into_iter()
        .map(|r| {
            let name = r.resource_name.to_string();
            let result = match r.resource_type {
                RESOURCE_TOPIC => (|| {
                    let topic = broker.topics.get(&name).ok_or(KafkaError::UnknownTopicOrPartition)?;
                    let mut configs = topic.configs.clone();
                    for c in &r.configs {
                        let key = c.name.to_string();
                        let k = topic_config::lookup(&key)
                            .ok_or_else(|| KafkaError::InvalidConfig(format!("Unknown topic config name: {key}")))?;
                        let value = c.value.as_ref().map(|v| v.to_string());
                        match c.config_operation {
                            OP_SET => {
                                let v =
                                    value.ok_or_else(|| KafkaError::InvalidConfig(format!("Null value for {key}")))?;
                                configs.insert(key, v);
                            }
                            OP_DELETE => {
                                configs.remove(&key);
                            }
                            OP_APPEND | OP_SUBTRACT => {
                                if k.kind != ConfigType::List {
                                    return Err(KafkaError::InvalidConfig(format!(
                                        "Config {key} is not a list; APPEND and SUBTRACT apply to lists only"
                                    )));
                                }
                                let current = topic_config::effective(&key, &configs, &broker.config)
                                    .map(|(v, _)| v)
                                    .unwrap_or_default();
                                let mut items: Vec<String> = current
                                    .split(',')
                                    .map(str::trim)
                                    .filter(|x| !x.is_empty())
                                    .map(String::from)
                                    .collect();
                                for item in
                                    value.unwrap_or_default().split(',').map(str::trim).filter(|x| !x.is_empty())
                                {
                                    if c.config_operation == OP_APPEND {
                                        if !items.iter().any(|i| i == item) {
                                            items.push(item.to_string());
                                        }
                                    } else {
                                        items.retain(|i| i != item);
                                    }
                                }
                                configs.insert(key, items.join(","));
                            }
                            other => {
                                return Err(KafkaError::InvalidRequest(format!("Unknown config operation {other}")))
                            }
                        }
                    }
                    apply_topic(broker, &name, configs, req.validate_only)
                })(),
                // Nothing is set dynamically, so deleting dynamic values (what
                // `kafka-reassign-partitions --verify` does to clear throttles) changes nothing.
                RESOURCE_BROKER if r.configs.iter().all(|c| c.config_operation == OP_DELETE) => Ok(()),
                RESOURCE_BROKER => Err(broker_not_alterable()),
                other => Err(KafkaError::InvalidRequest(format!("Unsupported resource type {other}"))),
            };
            let out = incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name);
            match result {
                Ok(()) => out,
                Err(e) => out.with_error_code(e.code()).with_error_message(Some(s(e.to_string()))),
            }
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
