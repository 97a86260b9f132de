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

/// Who leads a partition and who holds it.
pub struct Placement {
    pub leader: i32,
    pub epoch: i32,
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    pub error: Option<ResponseError>,
}

pub fn placement(broker: &Broker, t: &Topic, index: i32) -> Placement {
    let me = broker.node_id();
    let Some(cluster) = &broker.cluster else {
        return Placement {
            leader: me,
            epoch: LEADER_EPOCH,
            replicas: vec![BrokerId(me)],
            isr: vec![BrokerId(me)],
            error: None,
        };
    };
    // During a reassignment Kafka lists the target replicas and the ones leaving.
    let replicas: Vec<BrokerId> = t.assignment_of(index).all_replicas().into_iter().map(BrokerId).collect();
    let leader = cluster.leader_of(t, index);
    let local = t.partition(index).ok().and_then(|p| p.replica.clone());
    // Only the leader knows who keeps up; others report the replica set.
    let isr = match (&local, leader) {
        (Some(g), Some((l, _))) if l == me => {
            g.in_sync(broker.config.replica_lag_max()).into_iter().map(|n| BrokerId(n as i32)).collect()
        }
        _ => replicas.clone(),
    };
    Placement {
        leader: leader.map_or(-1, |l| l.0),
        epoch: leader.map_or_else(|| local.as_ref().map_or(-1, |g| g.term() as i32), |l| l.1),
        replicas,
        isr,
        error: leader.is_none().then_some(ResponseError::LeaderNotAvailable),
    }
}

/// The brokers clients may connect to, with the addresses of `listener`.
pub fn brokers(broker: &Broker, listener: &str) -> Vec<(i32, String, i32, Option<String>)> {
    match &broker.cluster {
        Some(c) => c
            .brokers
            .read()
            .values()
            .map(|b| {
                let (host, port) = b.endpoint(listener);
                (b.id, host, port, b.rack.clone())
            })
            .collect(),
        None => {
            let adv = broker.config.advertised_for(listener);
            vec![(broker.node_id(), adv.host.clone(), adv.port as i32, broker.config.rack.clone())]
        }
    }
}

/// The controller id clients are told: the metadata leader in a cluster.
pub fn controller_id(broker: &Broker) -> i32 {
    match &broker.cluster {
        Some(c) => c.metadata_leader().unwrap_or(-1),
        None => broker.node_id(),
    }
}

fn topic_entry(broker: &Broker, t: &Topic) -> MetadataResponseTopic {
    let partitions = (0..t.partitions.len() as i32)
        .map(|index| {
            let pl = placement(broker, t, index);
            MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_error_code(pl.error.map_or(0, |e| e.code()))
                .with_leader_id(BrokerId(pl.leader))
                .with_leader_epoch(pl.epoch)
                .with_replica_nodes(pl.replicas)
                .with_isr_nodes(pl.isr)
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
    match broker.create_topic(name, partitions, broker.default_replication_factor(), Vec::new(), BTreeMap::new()) {
        Ok(t) => Ok(t),
        // Another request created it meanwhile.
        Err(KafkaError::TopicAlreadyExists(_)) => broker.topics.get(name).ok_or(KafkaError::UnknownTopicOrPartition),
        Err(e) => Err(e),
    }
}

pub async fn handle(broker: &Broker, req: MetadataRequest, version: i16, ctx: &ConnContext) -> MetadataResponse {
    let brokers = brokers(broker, &ctx.listener)
        .into_iter()
        .map(|(id, host, port, rack)| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(s(host))
                .with_port(port)
                .with_rack(rack.map(s))
        })
        .collect();
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
            // The Java client asks by topic id (KIP-848 regex subscriptions) with an empty
            // name rather than a null one.
            .map(|rt| match rt.name.filter(|n| !n.0.is_empty() || rt.topic_id.is_nil()) {
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
        .with_controller_id(BrokerId(controller_id(broker)))
        .with_topics(topics)
}

pub fn describe_cluster(broker: &Broker, req: DescribeClusterRequest, ctx: &ConnContext) -> DescribeClusterResponse {
    // endpoint_type 2 asks for controllers; this node is its own controller.
    let brokers = brokers(broker, &ctx.listener)
        .into_iter()
        .map(|(id, host, port, rack)| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(id))
                .with_host(s(host))
                .with_port(port)
                .with_rack(rack.map(s))
        })
        .collect();
    DescribeClusterResponse::default()
        .with_endpoint_type(req.endpoint_type)
        .with_cluster_id(s(broker.topics.cluster_id()))
        .with_controller_id(BrokerId(controller_id(broker)))
        .with_brokers(brokers)
}

pub fn describe_topic_partitions(
    broker: &Broker,
    req: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
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
        for index in (first as i32)..t.partitions.len() as i32 {
            if budget == 0 {
                next_cursor =
                    Some(Cursor::default().with_topic_name(TopicName(s(name.clone()))).with_partition_index(index));
                break;
            }
            budget -= 1;
            let pl = placement(broker, &t, index);
            parts.push(
                DescribeTopicPartitionsResponsePartition::default()
                    .with_partition_index(index)
                    .with_error_code(pl.error.map_or(0, |e| e.code()))
                    .with_leader_id(BrokerId(pl.leader))
                    .with_leader_epoch(pl.epoch)
                    .with_replica_nodes(pl.replicas)
                    .with_isr_nodes(pl.isr)
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
