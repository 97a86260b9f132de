//! ElectLeaders: preferred-leader election (what `kafka-leader-election --election-type
//! PREFERRED` asks for). In a cluster the partition's current leader hands leadership to the
//! preferred replica (its first) with a Raft leadership transfer; a single node always leads
//! already.

use std::time::Duration;

use rill_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use rill_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use rill_protocol::ResponseError;

use super::s;
use crate::broker::Broker;
use crate::cluster::partition_group;
use crate::topics::Topic;

const PREFERRED: i8 = 0;

async fn elect(
    broker: &Broker,
    t: &Topic,
    index: i32,
    election_type: i8,
    timeout: Duration,
) -> Result<(), ResponseError> {
    let Some(cluster) = &broker.cluster else {
        return Err(ResponseError::ElectionNotNeeded);
    };
    let leader = cluster.leader_of(t, index).map(|l| l.0);
    if election_type != PREFERRED {
        // Unclean election: Raft always elects from the in-sync quorum, so there is never a
        // leader to force.
        return Err(if leader.is_some() {
            ResponseError::ElectionNotNeeded
        } else {
            ResponseError::EligibleLeadersNotAvailable
        });
    }
    let Some(&preferred) = t.assignment_of(index).replicas.first() else {
        return Err(ResponseError::PreferredLeaderNotAvailable);
    };
    let group = partition_group(&t.id, index);
    match leader {
        Some(l) if l == preferred => return Err(ResponseError::ElectionNotNeeded),
        Some(l) => cluster.transfer_leader(l, group, preferred).await.map_err(|e| {
            tracing::warn!(topic = %t.name, partition = index, error = %e, "leadership transfer failed");
            ResponseError::PreferredLeaderNotAvailable
        })?,
        None => return Err(ResponseError::PreferredLeaderNotAvailable),
    }
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if cluster.leader_of(t, index).is_some_and(|l| l.0 == preferred) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(ResponseError::PreferredLeaderNotAvailable)
}

pub async fn handle(broker: &Broker, req: ElectLeadersRequest, version: i16) -> ElectLeadersResponse {
    let timeout = Duration::from_millis(req.timeout_ms.clamp(0, 30_000) as u64);
    let election_type = if version >= 1 { req.election_type } else { PREFERRED };
    // Null means every partition.
    let wanted: Vec<(String, Vec<i32>)> = match req.topic_partitions {
        Some(tps) => tps.into_iter().map(|t| (t.topic.0.to_string(), t.partitions)).collect(),
        None => {
            broker.topics.list().iter().map(|t| (t.name.clone(), (0..t.partitions.len() as i32).collect())).collect()
        }
    };
    let mut results = Vec::with_capacity(wanted.len());
    for (topic, partitions) in wanted {
        let t = broker.topics.get(&topic);
        let mut out = Vec::with_capacity(partitions.len());
        for index in partitions {
            let r = match &t {
                Some(t) if t.has_partition(index) => elect(broker, t, index, election_type, timeout).await,
                _ => Err(ResponseError::UnknownTopicOrPartition),
            };
            let pr = PartitionResult::default().with_partition_id(index);
            out.push(match r {
                Ok(()) => pr,
                Err(e) => pr.with_error_code(e.code()).with_error_message(Some(s(e.to_string()))),
            });
        }
        results.push(ReplicaElectionResult::default().with_topic(TopicName(s(topic))).with_partition_result(out));
    }
    ElectLeadersResponse::default().with_replica_election_results(results)
}
