//! KIP-951: a partition answered NOT_LEADER_OR_FOLLOWER (or, for fetches, FENCED_LEADER_EPOCH)
//! names its current leader and epoch, and the response carries that leader's endpoint, so the
//! client goes straight to it instead of refreshing metadata first. Produce v10+ and Fetch
//! v12+ (endpoints from Fetch v16).

use std::collections::BTreeSet;

use rill_protocol::messages::{fetch_response, produce_response, BrokerId, FetchResponse, ProduceResponse};
use rill_protocol::ResponseError;

use super::s;
use crate::broker::Broker;
use crate::topics::Topic;

/// The leader and epoch of partition `index` of `topic`, when this node knows a leader.
fn leader_of(broker: &Broker, topic: Option<&Topic>, index: i32) -> Option<(i32, i32)> {
    broker.cluster.as_ref()?.leader_of(topic?, index)
}

/// `(id, host, port, rack)` of the named brokers, as the connection's listener advertises them.
fn endpoints(broker: &Broker, listener: &str, ids: &BTreeSet<i32>) -> Vec<(i32, String, i32, Option<String>)> {
    super::metadata::brokers(broker, listener).into_iter().filter(|b| ids.contains(&b.0)).collect()
}

pub fn produce(broker: &Broker, resp: &mut ProduceResponse, version: i16, listener: &str) {
    if version < 10 || broker.cluster.is_none() {
        return;
    }
    let not_leader = ResponseError::NotLeaderOrFollower.code();
    let mut leaders = BTreeSet::new();
    for t in &mut resp.responses {
        let topic = if version >= 13 { broker.topics.get_by_id(&t.topic_id) } else { broker.topics.get(&t.name) };
        for p in t.partition_responses.iter_mut().filter(|p| p.error_code == not_leader) {
            if let Some((leader, epoch)) = leader_of(broker, topic.as_deref(), p.index) {
                p.current_leader = produce_response::LeaderIdAndEpoch::default()
                    .with_leader_id(BrokerId(leader))
                    .with_leader_epoch(epoch);
                leaders.insert(leader);
            }
        }
    }
    resp.node_endpoints = endpoints(broker, listener, &leaders)
        .into_iter()
        .map(|(id, host, port, rack)| {
            produce_response::NodeEndpoint::default()
                .with_node_id(BrokerId(id))
                .with_host(s(host))
                .with_port(port)
                .with_rack(rack.map(s))
        })
        .collect();
}

pub fn fetch(broker: &Broker, resp: &mut FetchResponse, version: i16, listener: &str) {
    if version < 12 || broker.cluster.is_none() {
        return;
    }
    let moved = [ResponseError::NotLeaderOrFollower.code(), ResponseError::FencedLeaderEpoch.code()];
    let mut leaders = BTreeSet::new();
    for t in &mut resp.responses {
        let topic = if version >= 13 { broker.topics.get_by_id(&t.topic_id) } else { broker.topics.get(&t.topic) };
        for p in t.partitions.iter_mut().filter(|p| moved.contains(&p.error_code)) {
            if let Some((leader, epoch)) = leader_of(broker, topic.as_deref(), p.partition_index) {
                p.current_leader = fetch_response::LeaderIdAndEpoch::default()
                    .with_leader_id(BrokerId(leader))
                    .with_leader_epoch(epoch);
                leaders.insert(leader);
            }
        }
    }
    if version >= 16 {
        resp.node_endpoints = endpoints(broker, listener, &leaders)
            .into_iter()
            .map(|(id, host, port, rack)| {
                fetch_response::NodeEndpoint::default()
                    .with_node_id(BrokerId(id))
                    .with_host(s(host))
                    .with_port(port)
                    .with_rack(rack.map(s))
            })
            .collect();
    }
}
