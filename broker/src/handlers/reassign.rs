//! AlterPartitionReassignments and ListPartitionReassignments: what `kafka-reassign-partitions`
//! uses to move partitions between nodes. A reassignment is a metadata command; the
//! partition's Raft leader carries it out (see `cluster`), and it is listed until the new
//! replica set is in place. UnregisterBroker (`kafka-cluster unregister`) then lets a node
//! that holds nothing any more leave the cluster.

use std::collections::BTreeMap;

use rill_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use rill_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use rill_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName, UnregisterBrokerRequest,
    UnregisterBrokerResponse,
};
use rill_protocol::ResponseError;

use super::s;
use crate::broker::{block_on, Broker};
use crate::cluster::Command;
use crate::error::KafkaError;
use crate::handlers::topics::check_replicas;

fn reassign(
    broker: &Broker,
    topic: &str,
    partition: i32,
    target: Option<Vec<i32>>,
    allow_rf_change: bool,
) -> Result<(), KafkaError> {
    let Some(cluster) = &broker.cluster else {
        return Err(KafkaError::InvalidReplicaAssignment("a single node cannot move partitions".into()));
    };
    let t = broker.topics.get(topic).ok_or(KafkaError::UnknownTopicOrPartition)?;
    if !t.has_partition(partition) {
        return Err(KafkaError::UnknownTopicOrPartition);
    }
    let current = t.assignment_of(partition);
    match &target {
        None if current.target.is_none() => return Err(KafkaError::NoReassignmentInProgress),
        None => {}
        Some(ids) => {
            check_replicas(broker, partition, ids)?;
            if !allow_rf_change && ids.len() != current.replicas.len() {
                return Err(KafkaError::InvalidReplicationFactor(format!(
                    "The replication factor is changed from {} to {} but allowReplicationFactorChange is false",
                    current.replicas.len(),
                    ids.len()
                )));
            }
        }
    }
    let cmd = Command::Reassign { name: t.name.clone(), id: t.id, partition, target };
    block_on(cluster.propose_and_wait(&cmd))
}

pub fn alter(
    broker: &Broker,
    req: AlterPartitionReassignmentsRequest,
    version: i16,
) -> AlterPartitionReassignmentsResponse {
    let allow_rf_change = version < 1 || req.allow_replication_factor_change;
    let responses = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let target = p.replicas.map(|r| r.into_iter().map(|b| b.0).collect());
                    let r = ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
                    match reassign(broker, &t.name.0, p.partition_index, target, allow_rf_change) {
                        Ok(()) => r,
                        Err(e) => r.with_error_code(e.code()).with_error_message(Some(s(e.to_string()))),
                    }
                })
                .collect();
            ReassignableTopicResponse::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    AlterPartitionReassignmentsResponse::default().with_responses(responses)
}

pub fn list(broker: &Broker, req: ListPartitionReassignmentsRequest) -> ListPartitionReassignmentsResponse {
    if broker.cluster.is_none() {
        return ListPartitionReassignmentsResponse::default();
    }
    // Null means every topic; unknown topics and partitions are left out, as in Kafka.
    let wanted: BTreeMap<String, Option<Vec<i32>>> = match req.topics {
        Some(ts) => ts.into_iter().map(|t| (t.name.0.to_string(), Some(t.partition_indexes))).collect(),
        None => broker.topics.list().iter().map(|t| (t.name.clone(), None)).collect(),
    };
    let ids = |v: Vec<i32>| v.into_iter().map(BrokerId).collect::<Vec<_>>();
    let mut topics = Vec::new();
    for (name, indexes) in wanted {
        let Some(t) = broker.topics.get(&name) else { continue };
        let indexes = indexes.unwrap_or_else(|| (0..t.partitions.len() as i32).collect());
        let partitions: Vec<_> = indexes
            .into_iter()
            .filter(|i| t.has_partition(*i))
            .map(|i| (i, t.assignment_of(i)))
            .filter(|(_, a)| a.target.is_some())
            .map(|(i, a)| {
                OngoingPartitionReassignment::default()
                    .with_partition_index(i)
                    .with_replicas(ids(a.all_replicas()))
                    .with_adding_replicas(ids(a.adding()))
                    .with_removing_replicas(ids(a.removing()))
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(OngoingTopicReassignment::default().with_name(TopicName(s(name))).with_partitions(partitions));
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}

/// The error a whole ListPartitionReassignments gets when the caller may not describe the cluster.
pub fn list_denied() -> ListPartitionReassignmentsResponse {
    ListPartitionReassignmentsResponse::default().with_error_code(ResponseError::ClusterAuthorizationFailed.code())
}

fn unregister_broker(broker: &Broker, id: i32) -> Result<(), (ResponseError, String)> {
    let invalid = |m: String| (ResponseError::InvalidRequest, m);
    let Some(cluster) = &broker.cluster else {
        return Err(invalid("a single node has no other brokers".into()));
    };
    if cluster.is_voter(id) {
        return Err(invalid(format!(
            "node {id} is a voter of the metadata quorum; remove it from the voters first (kafka-metadata-quorum remove-controller or rill cluster remove-voter)"
        )));
    }
    if !cluster.brokers.read().contains_key(&id) {
        return Err((ResponseError::BrokerIdNotRegistered, format!("Broker ID {id} is not registered")));
    }
    // Its replicas would be lost with it: they have to be moved first.
    let held = broker
        .topics
        .list()
        .iter()
        .map(|t| t.assignment.iter().filter(|a| a.all_replicas().contains(&id)).count())
        .sum::<usize>();
    if held > 0 {
        return Err(invalid(format!(
            "node {id} still holds replicas of {held} partition(s); move them with kafka-reassign-partitions first"
        )));
    }
    block_on(cluster.propose_and_wait(&Command::UnregisterBroker { id }))
        .map_err(|e| (e.response_error(), e.to_string()))
}

pub fn unregister(broker: &Broker, req: UnregisterBrokerRequest) -> UnregisterBrokerResponse {
    match unregister_broker(broker, req.broker_id.0) {
        Ok(()) => UnregisterBrokerResponse::default(),
        Err((e, m)) => UnregisterBrokerResponse::default().with_error_code(e.code()).with_error_message(Some(s(m))),
    }
}
