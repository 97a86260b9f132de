//! Metadata, DescribeCluster and DescribeTopicPartitions: what the cluster looks like. On a
//! single node this broker leads every partition with itself as the only replica.

use std::collections::BTreeMap;
use std::sync::Arc;

use rill_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use rill_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use rill_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use rill_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, DescribeTopicPartitionsRequest,
    DescribeTopicPartitionsResponse, MetadataRequest, MetadataResponse, TopicName,
};
use rill_protocol::ResponseError;
use uuid::Uuid;

use super::s;
use crate::broker::{Broker, ConnContext};
use crate::error::KafkaError;
use crate::topics::{validate_topic_name, Topic};

/// The leader epoch of every partition on a single node (the Raft term once replication lands).
pub const LEADER_EPOCH: i32 = 0;

/// KIP-320: a client that knows a newer epoch than ours is ahead of us (retriable); one that
/// knows an older epoch is behind (must refresh metadata). -1 means "no epoch known".
pub fn check_leader_epoch(current_leader_epoch: i32) -> Result<(), ResponseError> {
    if current_leader_epoch < 0 || current_leader_epoch == LEADER_EPOCH {
        Ok(())
    } else if current_leader_epoch > LEADER_EPOCH {
        Err(ResponseError::UnknownLeaderEpoch)
    } else {
        Err(ResponseError::FencedLeaderEpoch)
    }
}

fn topic_entry(broker: &Broker, t: &Topic) -> MetadataResponseTopic {
    let me = BrokerId(broker.node_id());
    let partitions = t
        .partitions
        .iter()
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p.index)
                .with_leader_id(me)
                .with_leader_epoch(LEADER_EPOCH)
                .with_replica_nodes(vec![me])
                .with_isr_nodes(vec![me])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(s(t.name.clone()))))
        .with_topic_id(t.id)
        .with_is_internal(t.name == crate::groups::OFFSETS_TOPIC)
        .with_partitions(partitions)
}

fn error_topic(name: Option<String>, id: Uuid, err: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name.map(|n| TopicName(s(n))))
        .with_topic_id(id)
        .with_error_code(err.code())
}

/// Creates a topic on first mention when `auto.create.topics.enable` allows it.
pub fn auto_create(broker: &Broker, name: &str) -> Result<Arc<Topic>, KafkaError> {
    validate_topic_name(name)?;
    let partitions = broker.config.num_partitions.max(1);
    match broker.topics.create(name, partitions, BTreeMap::new()) {
        Ok(t) => Ok(t),
        // Another request created it meanwhile.
        Err(KafkaError::TopicAlreadyExists(_)) => broker.topics.get(name).ok_or(KafkaError::UnknownTopicOrPartition),
        Err(e) => Err(e),
    }
}

pub fn handle(broker: &Broker, req: MetadataRequest, version: i16, ctx: &ConnContext) -> MetadataResponse {
    let adv = broker.config.advertised_for(&ctx.listener);
    let brokers = vec![MetadataResponseBroker::default()
        .with_node_id(BrokerId(broker.node_id()))
        .with_host(s(adv.host.clone()))
        .with_port(adv.port as i32)];
    // v0 has no way to ask for "no topics": an empty list means all of them.
    let wanted = match req.topics {
        Some(list) if !(version == 0 && list.is_empty()) => Some(list),
        _ => None,
    };
    let allow_auto = version < 4 || req.allow_auto_topic_creation;
    let topics = match wanted {
        None => broker.topics.list().iter().map(|t| topic_entry(broker, t)).collect(),
        Some(list) => list
            .into_iter()
            .map(|rt| match rt.name {
                Some(name) => {
                    let name = name.0.to_string();
                    match broker.topics.get(&name) {
                        Some(t) => topic_entry(broker, &t),
                        None if validate_topic_name(&name).is_err() => {
                            error_topic(Some(name), Uuid::nil(), ResponseError::InvalidTopicException)
                        }
                        None if allow_auto && broker.config.auto_create_topics_enable => {
                            match auto_create(broker, &name) {
                                Ok(t) => topic_entry(broker, &t),
                                Err(e) => error_topic(Some(name), Uuid::nil(), e.response_error()),
                            }
                        }
                        None => error_topic(Some(name), Uuid::nil(), ResponseError::UnknownTopicOrPartition),
                    }
                }
                None => match broker.topics.get_by_id(&rt.topic_id) {
                    Some(t) => topic_entry(broker, &t),
                    None => error_topic(None, rt.topic_id, ResponseError::UnknownTopicId),
                },
            })
            .collect(),
    };
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(s(broker.topics.cluster_id())))
        .with_controller_id(BrokerId(broker.node_id()))
        .with_topics(topics)
}

pub fn describe_cluster(broker: &Broker, req: DescribeClusterRequest, ctx: &ConnContext) -> DescribeClusterResponse {
    // endpoint_type 2 asks for controllers; this node is its own controller.
    let adv = broker.config.advertised_for(&ctx.listener);
    DescribeClusterResponse::default()
        .with_endpoint_type(req.endpoint_type)
        .with_cluster_id(s(broker.topics.cluster_id()))
        .with_controller_id(BrokerId(broker.node_id()))
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(broker.node_id()))
            .with_host(s(adv.host.clone()))
            .with_port(adv.port as i32)])
}

pub fn describe_topic_partitions(
    broker: &Broker,
    req: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let me = BrokerId(broker.node_id());
    let limit = req.response_partition_limit.max(1) as usize;
    let mut names: Vec<String> = if req.topics.is_empty() {
        broker.topics.list().iter().map(|t| t.name.clone()).collect()
    } else {
        req.topics.iter().map(|t| t.name.0.to_string()).collect()
    };
    names.sort();
    let (start_topic, start_partition) = match &req.cursor {
        Some(c) => (Some(c.topic_name.0.to_string()), c.partition_index),
        None => (None, 0),
    };
    let mut out = Vec::new();
    let mut budget = limit;
    let mut next_cursor = None;
    for name in names {
        if let Some(st) = &start_topic {
            if name < *st {
                continue;
            }
        }
        let first = if start_topic.as_deref() == Some(name.as_str()) { start_partition.max(0) as usize } else { 0 };
        let Some(t) = broker.topics.get(&name) else {
            out.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(TopicName(s(name))))
                    .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
            );
            continue;
        };
        if budget == 0 {
            next_cursor = Some(Cursor::default().with_topic_name(TopicName(s(name))).with_partition_index(0));
            break;
        }
        let mut parts = Vec::new();
        for p in t.partitions.iter().skip(first) {
            if budget == 0 {
                next_cursor =
                    Some(Cursor::default().with_topic_name(TopicName(s(name.clone()))).with_partition_index(p.index));
                break;
            }
            budget -= 1;
            parts.push(
                DescribeTopicPartitionsResponsePartition::default()
                    .with_partition_index(p.index)
                    .with_leader_id(me)
                    .with_leader_epoch(LEADER_EPOCH)
                    .with_replica_nodes(vec![me])
                    .with_isr_nodes(vec![me])
                    .with_eligible_leader_replicas(Some(vec![]))
                    .with_last_known_elr(Some(vec![])),
            );
        }
        out.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(TopicName(s(name))))
                .with_topic_id(t.id)
                .with_partitions(parts),
        );
        if next_cursor.is_some() {
            break;
        }
    }
    DescribeTopicPartitionsResponse::default().with_topics(out).with_next_cursor(next_cursor)
}
