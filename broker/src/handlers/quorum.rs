//! DescribeQuorum, AddRaftVoter and RemoveRaftVoter (KIP-853): what `kafka-metadata-quorum`
//! and `Admin.addRaftVoter`/`removeRaftVoter` use to show and change the voters of the metadata
//! quorum. Any node answers; the metadata leader does the work (see `cluster`).
//!
//! Rill's voters have no directory ids (a node id names a voter, and a node that lost its disk
//! rejoins as itself): directory ids are reported as zero and ignored in requests. Nor do they
//! have controller listeners: a voter talks to the others over its registered Raft address,
//! reported as listener `CONTROLLER`, and the listeners of an AddRaftVoter are ignored.

use std::time::Duration;

use rill_protocol::messages::describe_quorum_response::{Listener, Node, PartitionData, ReplicaState, TopicData};
use rill_protocol::messages::{
    AddRaftVoterRequest, AddRaftVoterResponse, BrokerId, DescribeQuorumRequest, DescribeQuorumResponse,
    RemoveRaftVoterRequest, RemoveRaftVoterResponse, TopicName,
};
use rill_protocol::StrBytes;

use super::s;
use crate::broker::Broker;
use crate::cluster::QuorumState;
use crate::error::KafkaError;

/// Kafka's name of the metadata log, the one partition DescribeQuorum describes.
const METADATA_TOPIC: &str = "__cluster_metadata";
/// How long a voter change may take when the request does not say (RemoveRaftVoter).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// A cluster id in the request, if any (null or empty: none), must be this cluster's.
fn check_cluster_id(broker: &Broker, id: Option<&StrBytes>) -> Result<(), KafkaError> {
    match id {
        Some(id) if !id.is_empty() && id.as_str() != broker.topics.cluster_id() => {
            Err(KafkaError::InconsistentClusterId(format!(
                "cluster id {id} is not this cluster's ({})",
                broker.topics.cluster_id()
            )))
        }
        _ => Ok(()),
    }
}

async fn change_voter(
    broker: &Broker,
    cluster_id: Option<&StrBytes>,
    voter: i32,
    add: bool,
    timeout: Duration,
) -> Result<(), KafkaError> {
    check_cluster_id(broker, cluster_id)?;
    let Some(cluster) = &broker.cluster else {
        return Err(KafkaError::InvalidRequest("a single node has no metadata quorum to change".into()));
    };
    if add && !cluster.brokers.read().contains_key(&voter) {
        return Err(KafkaError::InvalidRequest(format!(
            "node {voter} is not a registered broker: start it (with controller.quorum.voters and rill.raft.address) first"
        )));
    }
    cluster.change_voter(voter, add, timeout.min(MAX_TIMEOUT)).await
}

fn error_parts(r: &Result<(), KafkaError>) -> (i16, Option<StrBytes>) {
    match r {
        Ok(()) => (0, None),
        Err(e) => (e.code(), Some(s(e.to_string()))),
    }
}

pub async fn add_voter(broker: &Broker, req: AddRaftVoterRequest) -> AddRaftVoterResponse {
    let timeout = if req.timeout_ms > 0 { Duration::from_millis(req.timeout_ms as u64) } else { DEFAULT_TIMEOUT };
    let r = change_voter(broker, req.cluster_id.as_ref(), req.voter_id, true, timeout).await;
    let (code, message) = error_parts(&r);
    AddRaftVoterResponse::default().with_error_code(code).with_error_message(message)
}

pub async fn remove_voter(broker: &Broker, req: RemoveRaftVoterRequest) -> RemoveRaftVoterResponse {
    let r = change_voter(broker, req.cluster_id.as_ref(), req.voter_id, false, DEFAULT_TIMEOUT).await;
    let (code, message) = error_parts(&r);
    RemoveRaftVoterResponse::default().with_error_code(code).with_error_message(message)
}

pub async fn describe(broker: &Broker, req: DescribeQuorumRequest) -> DescribeQuorumResponse {
    let wanted = req.topics.len() == 1
        && req.topics[0].topic_name.0.as_str() == METADATA_TOPIC
        && req.topics[0].partitions.len() == 1
        && req.topics[0].partitions[0].partition_index == 0;
    let partition = PartitionData::default().with_partition_index(0);
    let state = match (&broker.cluster, wanted) {
        (_, false) => Err(KafkaError::UnknownTopicOrPartition),
        (Some(c), true) => c.quorum().await,
        // A single node is the one voter and leader of its own metadata.
        (None, true) => Ok(QuorumState {
            leader: broker.node_id(),
            term: 1,
            high_watermark: -1,
            voters: vec![(broker.node_id(), -1)],
            observers: Vec::new(),
        }),
    };
    let (partition, nodes) = match state {
        Ok(q) => {
            let replica = |(id, end): &(i32, i64)| {
                ReplicaState::default()
                    .with_replica_id(BrokerId(*id))
                    .with_log_end_offset(*end)
                    .with_last_fetch_timestamp(-1)
                    .with_last_caught_up_timestamp(-1)
            };
            let nodes = q.voters.iter().map(|(id, _)| node(broker, *id)).collect();
            let p = partition
                .with_leader_id(BrokerId(q.leader))
                .with_leader_epoch(i32::try_from(q.term).unwrap_or(i32::MAX))
                .with_high_watermark(q.high_watermark)
                .with_current_voters(q.voters.iter().map(replica).collect())
                .with_observers(q.observers.iter().map(replica).collect());
            (p, nodes)
        }
        Err(e) => {
            let p = partition.with_leader_id(BrokerId(-1)).with_leader_epoch(-1).with_high_watermark(-1);
            (p.with_error_code(e.code()).with_error_message(Some(s(e.to_string()))), Vec::new())
        }
    };
    let topic = TopicData::default().with_topic_name(TopicName(s(METADATA_TOPIC))).with_partitions(vec![partition]);
    DescribeQuorumResponse::default().with_topics(vec![topic]).with_nodes(nodes)
}

/// A voter and its Raft address, as DescribeQuorum v2 lists controllers.
fn node(broker: &Broker, id: i32) -> Node {
    let addr = broker.cluster.as_ref().and_then(|c| c.raft_addr(id));
    let listener = addr.as_deref().and_then(|a| a.rsplit_once(':')).and_then(|(host, port)| {
        Some(Listener::default().with_name(s("CONTROLLER")).with_host(s(host)).with_port(port.parse().ok()?))
    });
    Node::default().with_node_id(BrokerId(id)).with_listeners(listener.into_iter().collect())
}
