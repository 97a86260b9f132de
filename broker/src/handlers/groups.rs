//! The group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups, OffsetDelete, and the
//! consumer group protocol's (KIP-848) ConsumerGroupHeartbeat and ConsumerGroupDescribe.
//! Each one translates the request for [`crate::groups::GroupCoordinator`] and its answer back
//! into the response of the request's version.

use std::sync::Arc;

use rill_protocol::messages::find_coordinator_response::Coordinator;
use rill_protocol::messages::{
    consumer_group_describe_response, consumer_group_heartbeat_request, consumer_group_heartbeat_response,
    delete_groups_response, describe_groups_response, join_group_response, leave_group_response, list_groups_response,
    offset_commit_response, offset_delete_response, offset_fetch_response, BrokerId, ConsumerGroupDescribeRequest,
    ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DeleteGroupsRequest,
    DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse,
    SyncGroupRequest, SyncGroupResponse, TopicName,
};
use rill_protocol::{ResponseError, StrBytes};

use super::s;
use crate::broker::{now_ms, Broker, ConnContext};
use crate::groups::assignor::Assignment;
use crate::groups::consumer::{HeartbeatRequest as ConsumerHeartbeat, TopicInfo, TopicView};
use crate::groups::offsets_log::OffsetValue;
use crate::groups::state::JoinRequest;

fn code(r: Result<(), ResponseError>) -> i16 {
    r.err().map_or(0, |e| e.code())
}

fn opt_s(v: Option<String>) -> Option<StrBytes> {
    v.map(s)
}

// ------------------------------------------------------------------------------------------
// FindCoordinator
// ------------------------------------------------------------------------------------------

pub fn find_coordinator(
    broker: &Broker,
    req: FindCoordinatorRequest,
    version: i16,
    ctx: &ConnContext,
) -> FindCoordinatorResponse {
    // key_type 0 = group, 1 = transaction (no coordinator yet).
    let error = match req.key_type {
        0 => None,
        1 => Some(ResponseError::CoordinatorNotAvailable),
        _ => Some(ResponseError::InvalidRequest),
    };
    let brokers = crate::handlers::metadata::brokers(broker, &ctx.listener);
    // The coordinator of a group: on a cluster, the leader of its offsets partition.
    let locate = |key: &str| -> Result<(i32, String, i32), ResponseError> {
        // A node that holds no replica of the group's offsets partition asks the leader directory.
        let elsewhere = || {
            let t = broker.topics.get(crate::groups::OFFSETS_TOPIC)?;
            let k = crate::groups::offsets_log::partition_for(key, t.partitions.len());
            broker.cluster.as_ref()?.leader_of(&t, k as i32).map(|l| l.0)
        };
        let node = broker
            .groups
            .coordinator_of(key, broker.node_id())
            .or_else(elsewhere)
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        brokers
            .iter()
            .find(|b| b.0 == node)
            .map(|b| (b.0, b.1.clone(), b.2))
            .ok_or(ResponseError::CoordinatorNotAvailable)
    };
    let me = |key: StrBytes| match error.map_or_else(|| locate(key.as_str()), Err) {
        Ok((node, host, port)) => {
            Coordinator::default().with_key(key).with_node_id(BrokerId(node)).with_host(s(host)).with_port(port)
        }
        Err(e) => Coordinator::default()
            .with_key(key)
            .with_node_id(BrokerId(-1))
            .with_port(-1)
            .with_error_code(e.code())
            .with_error_message(Some(s(e.to_string()))),
    };
    if version >= 4 {
        return FindCoordinatorResponse::default()
            .with_coordinators(req.coordinator_keys.into_iter().map(me).collect());
    }
    let c = me(req.key);
    let resp = FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port);
    if version >= 1 {
        resp.with_error_message(c.error_message)
    } else {
        resp
    }
}

// ------------------------------------------------------------------------------------------
// JoinGroup / SyncGroup / Heartbeat / LeaveGroup
// ------------------------------------------------------------------------------------------

fn invalid_group(id: &GroupId) -> bool {
    id.0.is_empty()
}

/// Why this node cannot serve `id` now: an empty id, or (in a cluster) another node
/// coordinating it or its state still loading.
fn group_error(broker: &Broker, id: &GroupId) -> Option<ResponseError> {
    if invalid_group(id) {
        return Some(ResponseError::InvalidGroupId);
    }
    broker.groups.check_coordinator(&id.0).err()
}

pub async fn join_group(
    broker: &Arc<Broker>,
    req: JoinGroupRequest,
    version: i16,
    client_id: Option<&str>,
    ctx: &ConnContext,
) -> JoinGroupResponse {
    let resp = JoinGroupResponse::default().with_generation_id(-1);
    if let Some(e) = group_error(broker, &req.group_id) {
        return resp.with_error_code(e.code()).with_member_id(req.member_id);
    }
    let rebalance_timeout_ms =
        if version >= 1 && req.rebalance_timeout_ms >= 0 { req.rebalance_timeout_ms } else { req.session_timeout_ms };
    let join = JoinRequest {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.map(|i| i.to_string()),
        client_id: client_id.unwrap_or_default().to_string(),
        client_host: format!("/{}", ctx.peer.ip()),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms,
        protocol_type: req.protocol_type.to_string(),
        protocols: req.protocols.into_iter().map(|p| (p.name.to_string(), p.metadata)).collect(),
        require_known_member_id: version >= 4,
    };
    let r = broker.groups.join(&req.group_id.0, join).await;
    let members = r
        .members
        .into_iter()
        .map(|m| {
            join_group_response::JoinGroupResponseMember::default()
                .with_member_id(s(m.member_id))
                .with_group_instance_id(if version >= 5 { opt_s(m.instance_id) } else { None })
                .with_metadata(m.metadata)
        })
        .collect();
    resp.with_error_code(r.error.map_or(0, |e| e.code()))
        .with_generation_id(r.generation)
        .with_protocol_type(opt_s(r.protocol_type))
        .with_protocol_name(Some(s(r.protocol_name.unwrap_or_default())))
        .with_leader(s(r.leader))
        .with_skip_assignment(version >= 9 && r.skip_assignment)
        .with_member_id(s(r.member_id))
        .with_members(members)
}

pub async fn sync_group(broker: &Arc<Broker>, req: SyncGroupRequest, version: i16) -> SyncGroupResponse {
    if let Some(e) = group_error(broker, &req.group_id) {
        return SyncGroupResponse::default().with_error_code(e.code());
    }
    let assignments = req.assignments.into_iter().map(|a| (a.member_id.to_string(), a.assignment)).collect();
    let r = broker
        .groups
        .sync(
            &req.group_id.0,
            req.generation_id,
            &req.member_id,
            req.group_instance_id.as_deref(),
            if version >= 5 { req.protocol_type.as_deref() } else { None },
            if version >= 5 { req.protocol_name.as_deref() } else { None },
            assignments,
        )
        .await;
    SyncGroupResponse::default()
        .with_error_code(r.error.map_or(0, |e| e.code()))
        .with_protocol_type(opt_s(r.protocol_type))
        .with_protocol_name(opt_s(r.protocol_name))
        .with_assignment(r.assignment)
}

pub fn heartbeat(broker: &Arc<Broker>, req: HeartbeatRequest) -> HeartbeatResponse {
    if let Some(e) = group_error(broker, &req.group_id) {
        return HeartbeatResponse::default().with_error_code(e.code());
    }
    let r =
        broker.groups.heartbeat(&req.group_id.0, req.generation_id, &req.member_id, req.group_instance_id.as_deref());
    HeartbeatResponse::default().with_error_code(code(r))
}

pub fn leave_group(broker: &Arc<Broker>, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    if let Some(e) = group_error(broker, &req.group_id) {
        return LeaveGroupResponse::default().with_error_code(e.code());
    }
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|i| i.to_string())))
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let results = broker.groups.leave(&req.group_id.0, &members);
    if version < 3 {
        return LeaveGroupResponse::default().with_error_code(code(results[0]));
    }
    LeaveGroupResponse::default().with_members(
        members
            .into_iter()
            .zip(results)
            .map(|((m, i), r)| {
                leave_group_response::MemberResponse::default()
                    .with_member_id(s(m))
                    .with_group_instance_id(opt_s(i))
                    .with_error_code(code(r))
            })
            .collect(),
    )
}

// ------------------------------------------------------------------------------------------
// OffsetCommit / OffsetFetch
// ------------------------------------------------------------------------------------------

pub async fn offset_commit(broker: &Arc<Broker>, req: OffsetCommitRequest, _version: i16) -> OffsetCommitResponse {
    let group_error = group_error(broker, &req.group_id);
    let now = now_ms();
    let max_meta = broker.groups.config().max_metadata_bytes;
    // Per partition: an error found here, or None = to be committed.
    type Shape = Vec<(TopicName, Vec<(i32, Option<ResponseError>)>)>;
    let mut shape: Shape = Vec::new();
    let mut to_commit = Vec::new();
    for t in req.topics {
        let topic = broker.topics.get(&t.name.0);
        let mut parts = Vec::new();
        for p in t.partitions {
            let err = if let Some(e) = group_error {
                Some(e)
            } else if topic
                .as_ref()
                .is_none_or(|tp| p.partition_index < 0 || p.partition_index as usize >= tp.partitions.len())
            {
                Some(ResponseError::UnknownTopicOrPartition)
            } else if p.committed_metadata.as_ref().is_some_and(|m| m.len() > max_meta) {
                Some(ResponseError::OffsetMetadataTooLarge)
            } else {
                to_commit.push((
                    t.name.0.to_string(),
                    p.partition_index,
                    OffsetValue {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p.committed_metadata.as_deref().unwrap_or_default().to_string(),
                        commit_timestamp: now,
                    },
                ));
                None
            };
            parts.push((p.partition_index, err));
        }
        shape.push((t.name, parts));
    }
    let commit_error = if group_error.is_none() {
        broker
            .groups
            .commit(
                &req.group_id.0,
                req.generation_id_or_member_epoch,
                &req.member_id,
                req.group_instance_id.as_deref(),
                to_commit,
            )
            .await
            .err()
    } else {
        None
    };
    let topics = shape
        .into_iter()
        .map(|(name, parts)| {
            offset_commit_response::OffsetCommitResponseTopic::default().with_name(name).with_partitions(
                parts
                    .into_iter()
                    .map(|(index, err)| {
                        let e = err.or(commit_error);
                        offset_commit_response::OffsetCommitResponsePartition::default()
                            .with_partition_index(index)
                            .with_error_code(e.map_or(0, |e| e.code()))
                    })
                    .collect(),
            )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// Offsets of one group for OffsetFetch: (topic, [(partition, offset, epoch, metadata)]).
type Fetched = Vec<(String, Vec<(i32, i64, i32, Option<String>)>)>;

fn fetch_group(broker: &Broker, group: &str, topics: Option<Vec<(String, Vec<i32>)>>) -> Fetched {
    broker
        .groups
        .fetch(group, topics.as_deref())
        .into_iter()
        .map(|(t, parts)| {
            let parts = parts
                .into_iter()
                .map(|(p, v)| match v {
                    Some(v) => (p, v.offset, v.leader_epoch, Some(v.metadata)),
                    None => (p, -1, -1, Some(String::new())),
                })
                .collect();
            (t, parts)
        })
        .collect()
}

pub fn offset_fetch(broker: &Broker, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                if let Err(e) = broker.groups.check_coordinator(&g.group_id.0) {
                    return offset_fetch_response::OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(e.code());
                }
                if version >= 9 {
                    if let Err(e) = broker.groups.validate_fetch(&g.group_id.0, g.member_id.as_deref(), g.member_epoch)
                    {
                        return offset_fetch_response::OffsetFetchResponseGroup::default()
                            .with_group_id(g.group_id)
                            .with_error_code(e.code());
                    }
                }
                let topics =
                    g.topics.map(|ts| ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
                let fetched = fetch_group(broker, &g.group_id.0, topics);
                offset_fetch_response::OffsetFetchResponseGroup::default().with_group_id(g.group_id).with_topics(
                    fetched
                        .into_iter()
                        .map(|(t, parts)| {
                            offset_fetch_response::OffsetFetchResponseTopics::default()
                                .with_name(TopicName(s(t)))
                                .with_partitions(
                                    parts
                                        .into_iter()
                                        .map(|(p, o, e, m)| {
                                            offset_fetch_response::OffsetFetchResponsePartitions::default()
                                                .with_partition_index(p)
                                                .with_committed_offset(o)
                                                .with_committed_leader_epoch(e)
                                                .with_metadata(opt_s(m))
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                )
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    if let Err(e) = broker.groups.check_coordinator(&req.group_id.0) {
        return OffsetFetchResponse::default().with_error_code(e.code());
    }
    let topics = req.topics.map(|ts| ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
    let fetched = fetch_group(broker, &req.group_id.0, topics);
    OffsetFetchResponse::default().with_topics(
        fetched
            .into_iter()
            .map(|(t, parts)| {
                offset_fetch_response::OffsetFetchResponseTopic::default().with_name(TopicName(s(t))).with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, o, e, m)| {
                            let r = offset_fetch_response::OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(o)
                                .with_metadata(opt_s(m));
                            if version >= 5 {
                                r.with_committed_leader_epoch(e)
                            } else {
                                r
                            }
                        })
                        .collect(),
                )
            })
            .collect(),
    )
}

// ------------------------------------------------------------------------------------------
// DescribeGroups / ListGroups / DeleteGroups / OffsetDelete
// ------------------------------------------------------------------------------------------

pub fn describe_groups(broker: &Broker, req: DescribeGroupsRequest, version: i16) -> DescribeGroupsResponse {
    let groups = req
        .groups
        .into_iter()
        .map(|id| {
            let g = describe_groups_response::DescribedGroup::default().with_group_id(id.clone());
            if let Some(e) = group_error(broker, &id) {
                return g.with_error_code(e.code()).with_group_state(s("Dead"));
            }
            if matches!(broker.groups.with_consumer_group(&id.0, |c| !c.is_empty()), Ok(true)) {
                // As Kafka 4: DescribeGroups describes classic groups only.
                // ErrorMessage exists from v6 on: setting it for older versions fails the
                // encoding, and the client would wait out its request timeout.
                let message = (version >= 6).then(|| s(format!("Group {} is not a classic group.", id.0)));
                return g
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(message)
                    .with_group_state(s("Dead"));
            }
            match broker.groups.describe(&id.0) {
                None => g.with_group_state(s("Dead")),
                Some(d) => g
                    .with_group_state(s(d.state))
                    .with_protocol_type(s(d.protocol_type))
                    .with_protocol_data(s(d.protocol))
                    .with_authorized_operations(if version >= 3 && req.include_authorized_operations {
                        // READ, DESCRIBE, DELETE: everything a group supports, no ACLs yet.
                        (1 << 3) | (1 << 6) | (1 << 8)
                    } else {
                        i32::MIN
                    })
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|m| {
                                describe_groups_response::DescribedGroupMember::default()
                                    .with_member_id(s(m.member_id))
                                    .with_group_instance_id(if version >= 4 { opt_s(m.instance_id) } else { None })
                                    .with_client_id(s(m.client_id))
                                    .with_client_host(s(m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment)
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub fn list_groups(broker: &Broker, req: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_ascii_lowercase()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_ascii_lowercase()).collect();
    let groups = broker
        .groups
        .list()
        .into_iter()
        .filter(|(_, _, state, _)| states.is_empty() || states.contains(&state.to_ascii_lowercase()))
        .filter(|(_, _, _, gtype)| types.is_empty() || types.iter().any(|t| t == gtype))
        .map(|(id, ptype, state, gtype)| {
            let g =
                list_groups_response::ListedGroup::default().with_group_id(GroupId(s(id))).with_protocol_type(s(ptype));
            let g = if version >= 4 { g.with_group_state(s(state)) } else { g };
            if version >= 5 {
                g.with_group_type(s(gtype))
            } else {
                g
            }
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub fn delete_groups(broker: &Broker, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let results = req
        .groups_names
        .into_iter()
        .map(|id| {
            let r = if let Some(e) = group_error(broker, &id) { Err(e) } else { broker.groups.delete_group(&id.0) };
            delete_groups_response::DeletableGroupResult::default().with_group_id(id).with_error_code(code(r))
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}

pub fn offset_delete(broker: &Broker, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    if let Some(e) = group_error(broker, &req.group_id) {
        return OffsetDeleteResponse::default().with_error_code(e.code());
    }
    let mut unknown = Vec::new();
    let mut wanted = Vec::new();
    for t in &req.topics {
        let parts: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
        match broker.topics.get(&t.name.0) {
            Some(tp) => {
                let (ok, bad): (Vec<i32>, Vec<i32>) =
                    parts.into_iter().partition(|p| *p >= 0 && (*p as usize) < tp.partitions.len());
                wanted.push((t.name.0.to_string(), ok));
                if !bad.is_empty() {
                    unknown.push((t.name.0.to_string(), bad));
                }
            }
            None => unknown.push((t.name.0.to_string(), parts)),
        }
    }
    match broker.groups.delete_offsets(&req.group_id.0, &wanted) {
        Err(e) => OffsetDeleteResponse::default().with_error_code(e.code()),
        Ok(results) => {
            let mut topics: Vec<offset_delete_response::OffsetDeleteResponseTopic> = results
                .into_iter()
                .map(|(t, parts)| {
                    offset_delete_response::OffsetDeleteResponseTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|(p, r)| {
                                    offset_delete_response::OffsetDeleteResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_error_code(code(r))
                                })
                                .collect(),
                        )
                })
                .collect();
            for (t, parts) in unknown {
                let bad = parts.into_iter().map(|p| {
                    offset_delete_response::OffsetDeleteResponsePartition::default()
                        .with_partition_index(p)
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                });
                match topics.iter_mut().find(|x| x.name.0.as_str() == t) {
                    Some(x) => x.partitions.extend(bad),
                    None => topics.push(
                        offset_delete_response::OffsetDeleteResponseTopic::default()
                            .with_name(TopicName(s(t)))
                            .with_partitions(bad.collect()),
                    ),
                }
            }
            OffsetDeleteResponse::default().with_topics(topics)
        }
    }
}

// ------------------------------------------------------------------------------------------
// ConsumerGroupHeartbeat / ConsumerGroupDescribe (KIP-848)
// ------------------------------------------------------------------------------------------

fn to_assignment(tps: Vec<consumer_group_heartbeat_request::TopicPartitions>) -> Assignment {
    let mut a = Assignment::new();
    for tp in tps {
        if !tp.partitions.is_empty() {
            a.entry(tp.topic_id).or_default().extend(tp.partitions);
        }
    }
    a
}

/// The broker's topics for a consumer group: lookups by name, and the names a regex
/// subscription may match (not the internal topics, and only those the member may DESCRIBE, as
/// in Kafka).
struct BrokerTopics<'a>(&'a Broker);

impl TopicView for BrokerTopics<'_> {
    fn info(&self, name: &str) -> Option<TopicInfo> {
        self.0.topics.get(name).map(|t| (t.id, t.partitions.len() as i32))
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .0
            .topics
            .list()
            .iter()
            .filter(|t| t.name != crate::groups::OFFSETS_TOPIC)
            .map(|t| t.name.clone())
            .collect();
        names.sort();
        names
    }

    fn may_describe(&self, principal: &str, host: &str, topic: &str) -> bool {
        use crate::security::acl::code::{DESCRIBE, TOPIC};
        self.0.security.authorize(principal, host, DESCRIBE, TOPIC, topic)
    }
}

pub async fn consumer_group_heartbeat(
    broker: &Arc<Broker>,
    req: ConsumerGroupHeartbeatRequest,
    version: i16,
    client_id: Option<&str>,
    ctx: &ConnContext,
) -> ConsumerGroupHeartbeatResponse {
    let resp = ConsumerGroupHeartbeatResponse::default();
    if invalid_group(&req.group_id) {
        return resp
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(s("GroupId can't be empty.")));
    }
    if let Err(e) = broker.groups.check_coordinator(&req.group_id.0) {
        return resp.with_error_code(e.code());
    }
    let hb = ConsumerHeartbeat {
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.map(|i| i.to_string()),
        rack_id: req.rack_id.map(|i| i.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topic_names: req.subscribed_topic_names.map(|v| v.into_iter().map(|t| t.0.to_string()).collect()),
        subscribed_topic_regex: if version >= 1 { req.subscribed_topic_regex.map(|r| r.to_string()) } else { None },
        server_assignor: req.server_assignor.map(|a| a.to_string()),
        owned: req.topic_partitions.map(to_assignment),
        client_id: client_id.unwrap_or_default().to_string(),
        client_host: format!("/{}", ctx.peer.ip()),
        principal: ctx.principal.clone(),
    };
    match broker.groups.consumer_heartbeat(&req.group_id.0, hb, &BrokerTopics(broker)).await {
        Err((e, msg)) => resp.with_error_code(e.code()).with_error_message(msg.map(s)).with_member_epoch(-1),
        Ok(r) => resp
            .with_member_id(Some(s(r.member_id)))
            .with_member_epoch(r.member_epoch)
            .with_heartbeat_interval_ms(r.heartbeat_interval_ms)
            .with_assignment(r.assignment.map(|a| {
                consumer_group_heartbeat_response::Assignment::default().with_topic_partitions(
                    a.into_iter()
                        .map(|(t, ps)| {
                            consumer_group_heartbeat_response::TopicPartitions::default()
                                .with_topic_id(t)
                                .with_partitions(ps.into_iter().collect())
                        })
                        .collect(),
                )
            })),
    }
}

fn describe_assignment(broker: &Broker, a: &Assignment) -> consumer_group_describe_response::Assignment {
    consumer_group_describe_response::Assignment::default().with_topic_partitions(
        a.iter()
            .map(|(t, ps)| {
                let name = broker.topics.get_by_id(t).map(|t| t.name.clone()).unwrap_or_default();
                consumer_group_describe_response::TopicPartitions::default()
                    .with_topic_id(*t)
                    .with_topic_name(TopicName(s(name)))
                    .with_partitions(ps.iter().copied().collect())
            })
            .collect(),
    )
}

pub fn consumer_group_describe(broker: &Broker, req: ConsumerGroupDescribeRequest) -> ConsumerGroupDescribeResponse {
    let groups = req
        .group_ids
        .into_iter()
        .map(|id| {
            let g = consumer_group_describe_response::DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(i32::MIN);
            if let Some(e) = group_error(broker, &id) {
                return g.with_error_code(e.code());
            }
            let described = broker.groups.with_consumer_group(&id.0, |c| {
                let members = c
                    .members
                    .values()
                    .map(|m| {
                        consumer_group_describe_response::Member::default()
                            .with_member_id(s(m.id.clone()))
                            .with_instance_id(opt_s(m.instance_id.clone()))
                            .with_rack_id(opt_s(m.rack_id.clone()))
                            .with_member_epoch(m.member_epoch)
                            .with_client_id(s(m.client_id.clone()))
                            .with_client_host(s(m.client_host.clone()))
                            .with_subscribed_topic_names(m.subscribed.iter().map(|t| TopicName(s(t.clone()))).collect())
                            .with_subscribed_topic_regex(opt_s(m.regex.clone()))
                            .with_assignment(describe_assignment(broker, &m.assigned))
                            .with_target_assignment(describe_assignment(
                                broker,
                                &c.target.get(&m.id).cloned().unwrap_or_default(),
                            ))
                    })
                    .collect();
                (c.state().name(), c.group_epoch, c.assignment_epoch, c.assignor.name(), members)
            });
            match described {
                Ok((state, epoch, assignment_epoch, assignor, members)) => g
                    .with_group_state(s(state))
                    .with_group_epoch(epoch)
                    .with_assignment_epoch(assignment_epoch)
                    .with_assignor_name(s(assignor))
                    .with_authorized_operations(if req.include_authorized_operations {
                        (1 << 3) | (1 << 6) | (1 << 8)
                    } else {
                        i32::MIN
                    })
                    .with_members(members),
                Err(is_classic) => g.with_error_code(ResponseError::GroupIdNotFound.code()).with_error_message(Some(
                    s(if is_classic {
                        format!("Group {} is not a consumer group.", id.0)
                    } else {
                        format!("Group {} not found.", id.0)
                    }),
                )),
            }
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
