//! CreateTopics, DeleteTopics and CreatePartitions.

use std::collections::{BTreeMap, HashMap};

use rill_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use rill_protocol::messages::create_topics_request::CreatableTopic;
use rill_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use rill_protocol::messages::delete_topics_response::DeletableTopicResult;
use rill_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, TopicName,
};
use uuid::Uuid;

use super::s;
use crate::broker::Broker;
use crate::error::KafkaError;
use crate::topic_config::{self, TOPIC_KEYS};
use crate::topics::validate_topic_name;

struct Plan {
    partitions: i32,
    replication: i16,
    /// Replicas by partition when the request names them.
    assignment: Vec<Vec<i32>>,
    configs: BTreeMap<String, String>,
}

fn check_replication(broker: &Broker, rf: i16) -> Result<(), KafkaError> {
    if rf <= 0 {
        return Err(KafkaError::InvalidReplicationFactor("Replication factor must be larger than 0.".into()));
    }
    if let Some(c) = &broker.cluster {
        let n = c.nodes().len();
        if rf as usize > n {
            return Err(KafkaError::InvalidReplicationFactor(format!(
                "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {n} broker(s) are registered."
            )));
        }
        return Ok(());
    }
    if rf > 1 {
        return Err(KafkaError::InvalidReplicationFactor(format!(
            "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only 1 broker(s) are registered."
        )));
    }
    let _ = broker;
    Ok(())
}

fn plan(broker: &Broker, t: &CreatableTopic) -> Result<Plan, KafkaError> {
    let name = t.name.0.as_str();
    validate_topic_name(name)?;
    let mut configs = BTreeMap::new();
    for c in &t.configs {
        let value = c.value.as_ref().ok_or_else(|| {
            KafkaError::InvalidConfig(format!("Null value not supported for topic configs: {}", c.name.as_str()))
        })?;
        topic_config::validate(c.name.as_str(), value.as_str())?;
        configs.insert(c.name.to_string(), value.to_string());
    }
    let mut assignment = Vec::new();
    let (partitions, replication) = if !t.assignments.is_empty() {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err(KafkaError::InvalidRequest(
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into(),
            ));
        }
        let mut seen: Vec<i32> = t.assignments.iter().map(|a| a.partition_index).collect();
        seen.sort_unstable();
        if seen.iter().enumerate().any(|(i, p)| *p != i as i32) {
            return Err(KafkaError::InvalidReplicaAssignment(
                "Partitions must be numbered 0..n-1 without gaps.".into(),
            ));
        }
        let mut by_index: Vec<&_> = t.assignments.iter().collect();
        by_index.sort_by_key(|a| a.partition_index);
        for a in by_index {
            let ids: Vec<i32> = a.broker_ids.iter().map(|b| b.0).collect();
            check_replicas(broker, a.partition_index, &ids)?;
            assignment.push(ids);
        }
        if assignment.iter().any(|a| a.len() != assignment[0].len()) {
            return Err(KafkaError::InvalidReplicaAssignment(
                "All partitions should have the same number of replicas".into(),
            ));
        }
        (t.assignments.len() as i32, t.assignments[0].broker_ids.len() as i16)
    } else {
        let p = if t.num_partitions == -1 { broker.config.num_partitions } else { t.num_partitions };
        let rf = match t.replication_factor {
            -1 => broker.default_replication_factor(),
            rf => rf,
        };
        (p, rf)
    };
    if partitions <= 0 {
        return Err(KafkaError::InvalidPartitions("Number of partitions must be larger than 0.".into()));
    }
    check_replication(broker, replication)?;
    if broker.topics.get(name).is_some() {
        return Err(KafkaError::TopicAlreadyExists(name.to_string()));
    }
    Ok(Plan { partitions, replication, assignment, configs })
}

/// A partition's replicas as a request names them: known nodes, none twice, at least one.
pub(crate) fn check_replicas(broker: &Broker, partition: i32, ids: &[i32]) -> Result<(), KafkaError> {
    if ids.is_empty() {
        return Err(KafkaError::InvalidReplicaAssignment(format!(
            "Replica assignment for partition {partition} is empty"
        )));
    }
    if let Some(b) = ids.iter().find(|b| !broker.is_node(**b)) {
        return Err(KafkaError::InvalidReplicaAssignment(format!(
            "Replica assignment for partition {partition} names broker {b}, which does not exist"
        )));
    }
    if ids.iter().enumerate().any(|(i, b)| ids[..i].contains(b)) {
        return Err(KafkaError::InvalidReplicaAssignment(format!(
            "Replica assignment for partition {partition} has duplicate brokers: {ids:?}"
        )));
    }
    Ok(())
}

fn described_configs(broker: &Broker, overrides: &BTreeMap<String, String>) -> Vec<CreatableTopicConfigs> {
    TOPIC_KEYS
        .iter()
        .filter_map(|k| {
            let (value, source) = topic_config::effective(k.name, overrides, &broker.config)?;
            Some(
                CreatableTopicConfigs::default()
                    .with_name(s(k.name))
                    .with_value(Some(s(value)))
                    .with_config_source(source as i8),
            )
        })
        .collect()
}

pub fn create(broker: &Broker, req: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for t in &req.topics {
        *counts.entry(t.name.0.to_string()).or_default() += 1;
    }
    let results = req
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let base = CreatableTopicResult::default().with_name(t.name.clone());
            let outcome = if counts[&name] > 1 {
                Err(KafkaError::InvalidRequest(format!(
                    "Create topics request from client contains a duplicate topic: {name}"
                )))
            } else {
                plan(broker, t).and_then(|plan| {
                    if req.validate_only {
                        Ok((Uuid::nil(), plan))
                    } else {
                        let topic = broker.create_topic(
                            &name,
                            plan.partitions,
                            plan.replication,
                            plan.assignment.clone(),
                            plan.configs.clone(),
                        )?;
                        Ok((topic.id, plan))
                    }
                })
            };
            match outcome {
                Ok((id, plan)) => {
                    let mut r = base
                        .with_topic_id(id)
                        .with_num_partitions(plan.partitions)
                        .with_replication_factor(plan.replication);
                    if version >= 5 {
                        r = r.with_configs(Some(described_configs(broker, &plan.configs)));
                    }
                    r
                }
                Err(e) => base
                    .with_error_code(e.code())
                    .with_error_message(Some(s(e.to_string())))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(results)
}

pub fn delete(broker: &Broker, req: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    // v6 names topics by name or id; older versions by name only.
    let targets: Vec<(Option<String>, Uuid)> = if version >= 6 {
        req.topics.into_iter().map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id)).collect()
    } else {
        req.topic_names.into_iter().map(|n| (Some(n.0.to_string()), Uuid::nil())).collect()
    };
    let responses = targets
        .into_iter()
        .map(|(name, id)| {
            let resolved = match (&name, id.is_nil()) {
                (Some(n), _) => {
                    broker.topics.get(n).map(|t| (t.name.clone(), t.id)).ok_or(KafkaError::UnknownTopicOrPartition)
                }
                (None, false) => {
                    broker.topics.get_by_id(&id).map(|t| (t.name.clone(), t.id)).ok_or(KafkaError::UnknownTopicId)
                }
                (None, true) => Err(KafkaError::InvalidRequest("neither topic name nor id given".into())),
            };
            let result = resolved.and_then(|(n, id)| {
                if !broker.config.delete_topic_enable {
                    return Err(KafkaError::TopicDeletionDisabled);
                }
                if n == crate::groups::OFFSETS_TOPIC {
                    return Err(KafkaError::InvalidTopic(format!("Cannot delete internal topic {n}")));
                }
                broker.delete_topic(&n, id)?;
                Ok((n, id))
            });
            match result {
                Ok((n, id)) => DeletableTopicResult::default().with_name(Some(TopicName(s(n)))).with_topic_id(id),
                Err(e) => DeletableTopicResult::default()
                    .with_name(name.map(|n| TopicName(s(n))))
                    .with_topic_id(id)
                    .with_error_code(e.code())
                    .with_error_message(Some(s(e.to_string()))),
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

pub fn create_partitions(broker: &Broker, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let result = (|| {
                let topic = broker.topics.get(&name).ok_or(KafkaError::UnknownTopicOrPartition)?;
                let current = topic.partitions.len() as i32;
                if t.count < current {
                    return Err(KafkaError::InvalidPartitions(format!(
                        "Topic currently has {current} partitions, which is higher than the requested {}.",
                        t.count
                    )));
                }
                if t.count == current {
                    return Err(KafkaError::InvalidPartitions(format!("Topic already has {current} partitions.")));
                }
                if let Some(assignments) = &t.assignments {
                    if assignments.len() as i32 != t.count - current {
                        return Err(KafkaError::InvalidReplicaAssignment(format!(
                            "Increasing the number of partitions by {} but {} assignments provided.",
                            t.count - current,
                            assignments.len()
                        )));
                    }
                    for (k, a) in assignments.iter().enumerate() {
                        let ids: Vec<i32> = a.broker_ids.iter().map(|b| b.0).collect();
                        check_replicas(broker, current + k as i32, &ids)?;
                    }
                }
                let assignment: Vec<Vec<i32>> =
                    t.assignments.iter().flatten().map(|a| a.broker_ids.iter().map(|b| b.0).collect()).collect();
                if !req.validate_only {
                    broker.add_partitions(&name, t.count, assignment)?;
                }
                Ok(())
            })();
            let r = CreatePartitionsTopicResult::default().with_name(t.name);
            match result {
                Ok(()) => r,
                Err(e) => r.with_error_code(e.code()).with_error_message(Some(s(e.to_string()))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
