//! ACL enforcement for every API, applied in the connection loop before a request reaches its
//! handler, so that handlers stay unaware of security.
//!
//! Requests naming several resources are split: what the principal may not touch is taken out
//! of the request and answered with the proper *_AUTHORIZATION_FAILED entry, merged into the
//! handler's response afterwards ([`Patch`]). Listing responses (Metadata, ListGroups, ...) are
//! filtered so a principal does not see what it may not describe. Every denial is written to
//! the audit log (target `rill::audit`).

use rill_protocol::messages::*;
use rill_protocol::{Request, ResponseError, StrBytes};
use uuid::Uuid;

use super::acl::code::*;
use super::acl::{operation_name, resource_type_name, CLUSTER_NAME};
use super::Security;
use crate::broker::{Broker, ConnContext};
use crate::handlers::s;

/// How a request goes on after authorization.
// One per request, matched once: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    Serve(Request, Patch),
    Deny(ResponseKind),
    /// No rule for this API and the principal is not a cluster admin: close the connection.
    Close(&'static str),
}

/// What to merge into (or filter out of) the handler's response.
#[derive(Default)]
pub enum Patch {
    #[default]
    None,
    Produce(Vec<produce_response::TopicProduceResponse>),
    Fetch(Vec<fetch_response::FetchableTopicResponse>),
    ListOffsets(Vec<list_offsets_response::ListOffsetsTopicResponse>),
    LeaderEpoch(Vec<offset_for_leader_epoch_response::OffsetForLeaderTopicResult>),
    Metadata(Vec<metadata_response::MetadataResponseTopic>),
    CreateTopics(Vec<create_topics_response::CreatableTopicResult>),
    DeleteTopics(Vec<delete_topics_response::DeletableTopicResult>),
    CreatePartitions(Vec<create_partitions_response::CreatePartitionsTopicResult>),
    DeleteRecords(Vec<delete_records_response::DeleteRecordsTopicResult>),
    DescribeConfigs(Vec<describe_configs_response::DescribeConfigsResult>),
    AlterConfigs(Vec<alter_configs_response::AlterConfigsResourceResponse>),
    IncrementalAlterConfigs(Vec<incremental_alter_configs_response::AlterConfigsResourceResponse>),
    FindCoordinator(Vec<find_coordinator_response::Coordinator>),
    OffsetCommit(Vec<offset_commit_response::OffsetCommitResponseTopic>),
    /// Groups (v8+) the principal may not describe, answered with GROUP_AUTHORIZATION_FAILED.
    OffsetFetch(Vec<GroupId>),
    DescribeGroups(Vec<describe_groups_response::DescribedGroup>),
    ListGroups,
    DeleteGroups(Vec<delete_groups_response::DeletableGroupResult>),
    ConsumerGroupDescribe(Vec<consumer_group_describe_response::DescribedGroup>),
    DescribeTopicPartitions(Vec<describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic>),
}

/// Authorization questions for one request, auditing each denial.
struct Check<'a> {
    sec: &'a Security,
    ctx: &'a ConnContext,
    host: String,
    api: ApiKey,
}

impl Check<'_> {
    fn allowed(&self, op: i8, rt: i8, name: &str) -> bool {
        let ok = self.sec.authorize(&self.ctx.principal, &self.host, op, rt, name);
        if !ok {
            tracing::info!(target: "rill::audit", event = "authorization", result = "denied",
                principal = %self.ctx.principal, client = %self.ctx.peer, api = ?self.api,
                operation = operation_name(op), resource_type = resource_type_name(rt), resource = name);
        }
        ok
    }
    /// For filtering listings: no audit line for what the client did not ask about by name.
    fn quietly(&self, op: i8, rt: i8, name: &str) -> bool {
        self.sec.authorize(&self.ctx.principal, &self.host, op, rt, name)
    }
    fn cluster(&self, op: i8) -> bool {
        self.allowed(op, CLUSTER, CLUSTER_NAME)
    }
    fn topic(&self, op: i8, name: &str) -> bool {
        self.allowed(op, TOPIC, name)
    }
    fn group(&self, op: i8, name: &str) -> bool {
        self.allowed(op, GROUP, name)
    }
}

const TOPIC_DENIED: ResponseError = ResponseError::TopicAuthorizationFailed;
const GROUP_DENIED: ResponseError = ResponseError::GroupAuthorizationFailed;
const CLUSTER_DENIED: ResponseError = ResponseError::ClusterAuthorizationFailed;

fn topic_name_of(broker: &Broker, name: &TopicName, id: &Uuid) -> String {
    if name.0.is_empty() && !id.is_nil() {
        if let Some(t) = broker.topics.get_by_id(id) {
            return t.name.clone();
        }
    }
    name.0.to_string()
}

/// Splits `items` into what `keep` accepts and what it refuses.
fn split<T>(items: Vec<T>, mut keep: impl FnMut(&T) -> bool) -> (Vec<T>, Vec<T>) {
    items.into_iter().partition(|t| keep(t))
}

/// A cluster-level API whose denial is its response with CLUSTER_AUTHORIZATION_FAILED in the
/// top-level error code and message.
macro_rules! cluster_gated {
    ($c:expr, $serve:expr, $op:expr, $req:expr, $resp:ty) => {
        if $c.cluster($op) {
            $serve($req.into(), Patch::None)
        } else {
            Outcome::Deny(
                <$resp>::default()
                    .with_error_code(CLUSTER_DENIED.code())
                    .with_error_message(Some(crate::handlers::s(CLUSTER_DENIED.to_string())))
                    .into(),
            )
        }
    };
}

/// Authorizes a request. With no authorizer configured everything passes untouched.
pub fn check(broker: &Broker, sec: &Security, req: Request, ctx: &ConnContext) -> Outcome {
    if !sec.authorizer_enabled || sec.is_super_user(&ctx.principal) {
        return Outcome::Serve(req, Patch::None);
    }
    let c = Check { sec, ctx, host: ctx.peer.ip().to_string(), api: req.api_key };
    let version = req.version();
    let Request { api_key, header, body } = req;
    let serve =
        |body: RequestKind, patch: Patch| Outcome::Serve(Request { api_key, header: header.clone(), body }, patch);
    match body {
        RequestKind::Produce(mut r) => {
            if let Some(txn) = &r.transactional_id {
                if !c.allowed(WRITE, TRANSACTIONAL_ID, txn.0.as_str()) {
                    return Outcome::Deny(
                        ProduceResponse::default()
                            .with_responses(
                                r.topic_data
                                    .iter()
                                    .map(|t| produce_denied(t, ResponseError::TransactionalIdAuthorizationFailed))
                                    .collect(),
                            )
                            .into(),
                    );
                }
            }
            let (ok, denied) = split(r.topic_data, |t| c.topic(WRITE, &topic_name_of(broker, &t.name, &t.topic_id)));
            r.topic_data = ok;
            serve(r.into(), Patch::Produce(denied.iter().map(|t| produce_denied(t, TOPIC_DENIED)).collect()))
        }
        RequestKind::Fetch(mut r) => {
            if r.replica_id.0 >= 0 || r.replica_state.replica_id.0 >= 0 {
                if !c.cluster(CLUSTER_ACTION) {
                    return Outcome::Deny(FetchResponse::default().with_error_code(CLUSTER_DENIED.code()).into());
                }
                return serve(r.into(), Patch::None);
            }
            let (ok, denied) = split(r.topics, |t| c.topic(READ, &topic_name_of(broker, &t.topic, &t.topic_id)));
            r.topics = ok;
            let denied = denied
                .into_iter()
                .map(|t| {
                    fetch_response::FetchableTopicResponse::default()
                        .with_topic(t.topic)
                        .with_topic_id(t.topic_id)
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    fetch_response::PartitionData::default()
                                        .with_partition_index(p.partition)
                                        .with_error_code(TOPIC_DENIED.code())
                                        .with_high_watermark(-1)
                                        .with_last_stable_offset(-1)
                                        .with_log_start_offset(-1)
                                        .with_records(Some(Default::default()))
                                })
                                .collect(),
                        )
                })
                .collect();
            serve(r.into(), Patch::Fetch(denied))
        }
        RequestKind::ListOffsets(mut r) => {
            let (ok, denied) = split(r.topics, |t| c.topic(DESCRIBE, t.name.0.as_str()));
            r.topics = ok;
            let denied = denied
                .into_iter()
                .map(|t| {
                    list_offsets_response::ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                list_offsets_response::ListOffsetsPartitionResponse::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(TOPIC_DENIED.code())
                                    .with_offset(-1)
                                    .with_timestamp(-1)
                            })
                            .collect(),
                    )
                })
                .collect();
            serve(r.into(), Patch::ListOffsets(denied))
        }
        RequestKind::OffsetForLeaderEpoch(mut r) => {
            let (ok, denied) = split(r.topics, |t| c.topic(DESCRIBE, t.topic.0.as_str()));
            r.topics = ok;
            let denied = denied
                .into_iter()
                .map(|t| {
                    offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default()
                        .with_topic(t.topic)
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    offset_for_leader_epoch_response::EpochEndOffset::default()
                                        .with_partition(p.partition)
                                        .with_error_code(TOPIC_DENIED.code())
                                        .with_leader_epoch(-1)
                                        .with_end_offset(-1)
                                })
                                .collect(),
                        )
                })
                .collect();
            serve(r.into(), Patch::LeaderEpoch(denied))
        }
        RequestKind::Metadata(mut r) => {
            let mut denied = Vec::new();
            if let Some(list) = r.topics.take() {
                let asked = !list.is_empty();
                let allow_auto =
                    (version < 4 || r.allow_auto_topic_creation) && broker.config.auto_create_topics_enable;
                let mut ok = Vec::new();
                for t in list {
                    // By topic id (v10+, what KIP-848 consumers send for their assigned topics):
                    // the ACL is on the name the id stands for. A denied id is answered as an
                    // unknown one, as Kafka does, so ids do not reveal what exists.
                    if t.name.as_ref().is_none_or(|n| n.0.is_empty()) && !t.topic_id.is_nil() {
                        let known = broker.topics.get_by_id(&t.topic_id).map(|x| x.name.clone());
                        if known.is_none_or(|name| c.topic(DESCRIBE, &name)) {
                            ok.push(t);
                        } else {
                            denied.push(
                                metadata_response::MetadataResponseTopic::default()
                                    .with_topic_id(t.topic_id)
                                    .with_error_code(ResponseError::UnknownTopicId.code())
                                    .with_topic_authorized_operations(i32::MIN),
                            );
                        }
                        continue;
                    }
                    let Some(name) = t.name.as_ref().map(|n| n.0.to_string()) else {
                        ok.push(t);
                        continue;
                    };
                    let exists = broker.topics.get(&name).is_some();
                    if !c.topic(DESCRIBE, &name) {
                        denied.push(metadata_denied(&name, TOPIC_DENIED));
                    } else if !exists
                        && allow_auto
                        && !(c.quietly(CREATE, CLUSTER, CLUSTER_NAME) || c.topic(CREATE, &name))
                    {
                        denied.push(metadata_denied(&name, ResponseError::UnknownTopicOrPartition));
                    } else {
                        ok.push(t);
                    }
                }
                // An emptied list must still mean "these topics", not "all topics" (v0).
                if asked && ok.is_empty() {
                    r.topics = Some(Vec::new());
                    if version == 0 {
                        return serve(r.into(), Patch::Metadata(denied)).only_denied_topics();
                    }
                } else {
                    r.topics = Some(ok);
                }
            }
            serve(r.into(), Patch::Metadata(denied))
        }
        RequestKind::CreateTopics(mut r) => {
            let cluster_ok = c.quietly(CREATE, CLUSTER, CLUSTER_NAME);
            let (ok, denied) = split(r.topics, |t| cluster_ok || c.topic(CREATE, t.name.0.as_str()));
            r.topics = ok;
            let denied = denied
                .into_iter()
                .map(|t| {
                    create_topics_response::CreatableTopicResult::default()
                        .with_name(t.name)
                        .with_error_code(TOPIC_DENIED.code())
                        .with_num_partitions(-1)
                        .with_replication_factor(-1)
                        .with_topic_config_error_code(TOPIC_DENIED.code())
                })
                .collect();
            serve(r.into(), Patch::CreateTopics(denied))
        }
        RequestKind::DeleteTopics(mut r) => {
            let mut denied = Vec::new();
            let names = std::mem::take(&mut r.topic_names);
            for n in names {
                if c.topic(DELETE, n.0.as_str()) {
                    r.topic_names.push(n);
                } else {
                    denied.push(
                        delete_topics_response::DeletableTopicResult::default()
                            .with_name(Some(n))
                            .with_error_code(TOPIC_DENIED.code()),
                    );
                }
            }
            let states = std::mem::take(&mut r.topics);
            for t in states {
                let name = match &t.name {
                    Some(n) => n.0.to_string(),
                    None => broker.topics.get_by_id(&t.topic_id).map(|t| t.name.clone()).unwrap_or_default(),
                };
                if name.is_empty() || c.topic(DELETE, &name) {
                    r.topics.push(t);
                } else {
                    denied.push(
                        delete_topics_response::DeletableTopicResult::default()
                            .with_name(t.name)
                            .with_topic_id(t.topic_id)
                            .with_error_code(TOPIC_DENIED.code()),
                    );
                }
            }
            serve(r.into(), Patch::DeleteTopics(denied))
        }
        RequestKind::CreatePartitions(mut r) => {
            let (ok, denied) = split(r.topics, |t| c.topic(ALTER, t.name.0.as_str()));
            r.topics = ok;
            let denied = denied
                .into_iter()
                .map(|t| {
                    create_partitions_response::CreatePartitionsTopicResult::default()
                        .with_name(t.name)
                        .with_error_code(TOPIC_DENIED.code())
                })
                .collect();
            serve(r.into(), Patch::CreatePartitions(denied))
        }
        RequestKind::DeleteRecords(mut r) => {
            let (ok, denied) = split(r.topics, |t| c.topic(DELETE, t.name.0.as_str()));
            r.topics = ok;
            let denied = denied
                .into_iter()
                .map(|t| {
                    delete_records_response::DeleteRecordsTopicResult::default().with_name(t.name).with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                delete_records_response::DeleteRecordsPartitionResult::default()
                                    .with_partition_index(p.partition_index)
                                    .with_low_watermark(-1)
                                    .with_error_code(TOPIC_DENIED.code())
                            })
                            .collect(),
                    )
                })
                .collect();
            serve(r.into(), Patch::DeleteRecords(denied))
        }
        RequestKind::DescribeConfigs(mut r) => {
            let (ok, denied) =
                split(r.resources, |x| config_allowed(&c, DESCRIBE_CONFIGS, x.resource_type, x.resource_name.as_str()));
            r.resources = ok;
            let denied = denied
                .into_iter()
                .map(|x| {
                    describe_configs_response::DescribeConfigsResult::default()
                        .with_error_code(config_denied(x.resource_type).code())
                        .with_resource_type(x.resource_type)
                        .with_resource_name(x.resource_name)
                })
                .collect();
            serve(r.into(), Patch::DescribeConfigs(denied))
        }
        RequestKind::AlterConfigs(mut r) => {
            let (ok, denied) =
                split(r.resources, |x| config_allowed(&c, ALTER_CONFIGS, x.resource_type, x.resource_name.as_str()));
            r.resources = ok;
            let denied = denied
                .into_iter()
                .map(|x| {
                    alter_configs_response::AlterConfigsResourceResponse::default()
                        .with_error_code(config_denied(x.resource_type).code())
                        .with_resource_type(x.resource_type)
                        .with_resource_name(x.resource_name)
                })
                .collect();
            serve(r.into(), Patch::AlterConfigs(denied))
        }
        RequestKind::IncrementalAlterConfigs(mut r) => {
            let (ok, denied) =
                split(r.resources, |x| config_allowed(&c, ALTER_CONFIGS, x.resource_type, x.resource_name.as_str()));
            r.resources = ok;
            let denied = denied
                .into_iter()
                .map(|x| {
                    incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                        .with_error_code(config_denied(x.resource_type).code())
                        .with_resource_type(x.resource_type)
                        .with_resource_name(x.resource_name)
                })
                .collect();
            serve(r.into(), Patch::IncrementalAlterConfigs(denied))
        }
        RequestKind::InitProducerId(r) => {
            let ok = match &r.transactional_id {
                Some(t) => c.allowed(WRITE, TRANSACTIONAL_ID, t.0.as_str()),
                // Kafka: IDEMPOTENT_WRITE on the cluster, or WRITE on some topic (KIP-679).
                None => {
                    c.quietly(IDEMPOTENT_WRITE, CLUSTER, CLUSTER_NAME)
                        || sec.acls.any_allow_of_type(TOPIC, &ctx.principal, &c.host, WRITE)
                        || c.cluster(IDEMPOTENT_WRITE)
                }
            };
            if ok {
                return serve(r.into(), Patch::None);
            }
            let code = if r.transactional_id.is_some() {
                ResponseError::TransactionalIdAuthorizationFailed
            } else {
                CLUSTER_DENIED
            };
            Outcome::Deny(
                InitProducerIdResponse::default()
                    .with_error_code(code.code())
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
                    .into(),
            )
        }
        RequestKind::FindCoordinator(mut r) => {
            let (rt, op) = if r.key_type == 1 { (TRANSACTIONAL_ID, DESCRIBE) } else { (GROUP, DESCRIBE) };
            let denied_code =
                if rt == GROUP { GROUP_DENIED } else { ResponseError::TransactionalIdAuthorizationFailed };
            if version < 4 {
                if c.allowed(op, rt, r.key.as_str()) {
                    return serve(r.into(), Patch::None);
                }
                return Outcome::Deny(
                    FindCoordinatorResponse::default()
                        .with_error_code(denied_code.code())
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .into(),
                );
            }
            let (ok, denied) = split(r.coordinator_keys, |k| c.allowed(op, rt, k.as_str()));
            r.coordinator_keys = ok;
            let denied = denied
                .into_iter()
                .map(|k| {
                    find_coordinator_response::Coordinator::default()
                        .with_key(k)
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(denied_code.code())
                })
                .collect();
            serve(r.into(), Patch::FindCoordinator(denied))
        }
        RequestKind::JoinGroup(r) => {
            if c.group(READ, r.group_id.0.as_str()) {
                return serve(r.into(), Patch::None);
            }
            Outcome::Deny(
                JoinGroupResponse::default().with_error_code(GROUP_DENIED.code()).with_generation_id(-1).into(),
            )
        }
        RequestKind::SyncGroup(r) => {
            if c.group(READ, r.group_id.0.as_str()) {
                return serve(r.into(), Patch::None);
            }
            Outcome::Deny(SyncGroupResponse::default().with_error_code(GROUP_DENIED.code()).into())
        }
        RequestKind::Heartbeat(r) => {
            if c.group(READ, r.group_id.0.as_str()) {
                return serve(r.into(), Patch::None);
            }
            Outcome::Deny(HeartbeatResponse::default().with_error_code(GROUP_DENIED.code()).into())
        }
        RequestKind::LeaveGroup(r) => {
            if c.group(READ, r.group_id.0.as_str()) {
                return serve(r.into(), Patch::None);
            }
            Outcome::Deny(LeaveGroupResponse::default().with_error_code(GROUP_DENIED.code()).into())
        }
        RequestKind::OffsetCommit(mut r) => {
            let group_ok = c.group(READ, r.group_id.0.as_str());
            if !group_ok {
                let topics = r.topics.iter().map(|t| commit_denied(t, GROUP_DENIED)).collect();
                return Outcome::Deny(OffsetCommitResponse::default().with_topics(topics).into());
            }
            let (ok, denied) = split(r.topics, |t| c.topic(READ, &topic_name_of(broker, &t.name, &t.topic_id)));
            r.topics = ok;
            serve(r.into(), Patch::OffsetCommit(denied.iter().map(|t| commit_denied(t, TOPIC_DENIED)).collect()))
        }
        RequestKind::OffsetFetch(mut r) => {
            if version < 8 {
                if !c.group(DESCRIBE, r.group_id.0.as_str()) {
                    return Outcome::Deny(OffsetFetchResponse::default().with_error_code(GROUP_DENIED.code()).into());
                }
                return serve(r.into(), Patch::OffsetFetch(Vec::new()));
            }
            let denied: Vec<GroupId> = r
                .groups
                .iter()
                .filter(|g| !c.group(DESCRIBE, g.group_id.0.as_str()))
                .map(|g| g.group_id.clone())
                .collect();
            r.groups.retain(|g| !denied.contains(&g.group_id));
            if r.groups.is_empty() && !denied.is_empty() {
                let groups = denied
                    .into_iter()
                    .map(|g| {
                        offset_fetch_response::OffsetFetchResponseGroup::default()
                            .with_group_id(g)
                            .with_error_code(GROUP_DENIED.code())
                    })
                    .collect();
                return Outcome::Deny(OffsetFetchResponse::default().with_groups(groups).into());
            }
            serve(r.into(), Patch::OffsetFetch(denied))
        }
        RequestKind::DescribeGroups(mut r) => {
            let (ok, denied) = split(r.groups, |g| c.group(DESCRIBE, g.0.as_str()));
            r.groups = ok;
            let denied = denied
                .into_iter()
                .map(|g| {
                    describe_groups_response::DescribedGroup::default()
                        .with_group_id(g)
                        .with_error_code(GROUP_DENIED.code())
                        .with_authorized_operations(i32::MIN)
                })
                .collect();
            serve(r.into(), Patch::DescribeGroups(denied))
        }
        RequestKind::ListGroups(r) => {
            if c.quietly(DESCRIBE, CLUSTER, CLUSTER_NAME) {
                serve(r.into(), Patch::None)
            } else {
                serve(r.into(), Patch::ListGroups)
            }
        }
        RequestKind::DeleteGroups(mut r) => {
            let (ok, denied) = split(r.groups_names, |g| c.group(DELETE, g.0.as_str()));
            r.groups_names = ok;
            let denied = denied
                .into_iter()
                .map(|g| {
                    delete_groups_response::DeletableGroupResult::default()
                        .with_group_id(g)
                        .with_error_code(GROUP_DENIED.code())
                })
                .collect();
            serve(r.into(), Patch::DeleteGroups(denied))
        }
        RequestKind::OffsetDelete(r) => {
            if !c.group(DELETE, r.group_id.0.as_str()) {
                return Outcome::Deny(OffsetDeleteResponse::default().with_error_code(GROUP_DENIED.code()).into());
            }
            if r.topics.iter().any(|t| !c.topic(READ, t.name.0.as_str())) {
                let topics = r
                    .topics
                    .iter()
                    .map(|t| {
                        offset_delete_response::OffsetDeleteResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        offset_delete_response::OffsetDeleteResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(TOPIC_DENIED.code())
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                return Outcome::Deny(OffsetDeleteResponse::default().with_topics(topics).into());
            }
            serve(r.into(), Patch::None)
        }
        RequestKind::ConsumerGroupHeartbeat(r) => {
            let topics_ok =
                r.subscribed_topic_names.as_ref().is_none_or(|ts| ts.iter().all(|t| c.topic(DESCRIBE, t.0.as_str())));
            if !c.group(READ, r.group_id.0.as_str()) {
                return Outcome::Deny(
                    ConsumerGroupHeartbeatResponse::default().with_error_code(GROUP_DENIED.code()).into(),
                );
            }
            if !topics_ok {
                return Outcome::Deny(
                    ConsumerGroupHeartbeatResponse::default().with_error_code(TOPIC_DENIED.code()).into(),
                );
            }
            serve(r.into(), Patch::None)
        }
        RequestKind::ConsumerGroupDescribe(mut r) => {
            let (ok, denied) = split(r.group_ids, |g| c.group(DESCRIBE, g.0.as_str()));
            r.group_ids = ok;
            let denied = denied
                .into_iter()
                .map(|g| {
                    consumer_group_describe_response::DescribedGroup::default()
                        .with_group_id(g)
                        .with_error_code(GROUP_DENIED.code())
                        .with_authorized_operations(i32::MIN)
                })
                .collect();
            serve(r.into(), Patch::ConsumerGroupDescribe(denied))
        }
        RequestKind::DescribeTopicPartitions(mut r) => {
            let (ok, denied) = split(r.topics, |t| c.topic(DESCRIBE, t.name.0.as_str()));
            let asked = !ok.is_empty() || !denied.is_empty();
            r.topics = ok;
            let denied: Vec<_> = denied
                .into_iter()
                .map(|t| {
                    describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic::default()
                        .with_name(Some(t.name))
                        .with_error_code(TOPIC_DENIED.code())
                        .with_topic_authorized_operations(i32::MIN)
                })
                .collect();
            if asked && r.topics.is_empty() {
                return Outcome::Deny(DescribeTopicPartitionsResponse::default().with_topics(denied).into());
            }
            serve(r.into(), Patch::DescribeTopicPartitions(denied))
        }
        RequestKind::DescribeLogDirs(r) => {
            if c.cluster(DESCRIBE) {
                return serve(r.into(), Patch::None);
            }
            Outcome::Deny(DescribeLogDirsResponse::default().with_error_code(CLUSTER_DENIED.code()).into())
        }
        RequestKind::CreateAcls(r) => {
            if c.cluster(ALTER) {
                return serve(r.into(), Patch::None);
            }
            let results = r
                .creations
                .iter()
                .map(|_| create_acls_response::AclCreationResult::default().with_error_code(CLUSTER_DENIED.code()))
                .collect();
            Outcome::Deny(CreateAclsResponse::default().with_results(results).into())
        }
        RequestKind::DeleteAcls(r) => {
            if c.cluster(ALTER) {
                return serve(r.into(), Patch::None);
            }
            let results = r
                .filters
                .iter()
                .map(|_| delete_acls_response::DeleteAclsFilterResult::default().with_error_code(CLUSTER_DENIED.code()))
                .collect();
            Outcome::Deny(DeleteAclsResponse::default().with_filter_results(results).into())
        }
        RequestKind::DescribeAcls(r) => {
            if c.cluster(DESCRIBE) {
                return serve(r.into(), Patch::None);
            }
            Outcome::Deny(DescribeAclsResponse::default().with_error_code(CLUSTER_DENIED.code()).into())
        }
        RequestKind::DescribeUserScramCredentials(r) => {
            if c.cluster(DESCRIBE) {
                return serve(r.into(), Patch::None);
            }
            Outcome::Deny(DescribeUserScramCredentialsResponse::default().with_error_code(CLUSTER_DENIED.code()).into())
        }
        RequestKind::AlterUserScramCredentials(r) => {
            if c.cluster(ALTER) {
                return serve(r.into(), Patch::None);
            }
            let mut users: Vec<StrBytes> =
                r.deletions.iter().map(|d| d.name.clone()).chain(r.upsertions.iter().map(|u| u.name.clone())).collect();
            users.sort();
            users.dedup();
            let results = users
                .into_iter()
                .map(|u| {
                    alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default()
                        .with_user(u)
                        .with_error_code(CLUSTER_DENIED.code())
                })
                .collect();
            Outcome::Deny(AlterUserScramCredentialsResponse::default().with_results(results).into())
        }
        RequestKind::DescribeClientQuotas(r) => {
            if c.cluster(DESCRIBE_CONFIGS) {
                return serve(r.into(), Patch::None);
            }
            Outcome::Deny(DescribeClientQuotasResponse::default().with_error_code(CLUSTER_DENIED.code()).into())
        }
        RequestKind::ElectLeaders(r) => {
            if c.cluster(ALTER) {
                return serve(r.into(), Patch::None);
            }
            Outcome::Deny(
                rill_protocol::messages::ElectLeadersResponse::default().with_error_code(CLUSTER_DENIED.code()).into(),
            )
        }
        RequestKind::AlterPartitionReassignments(r) => {
            cluster_gated!(c, serve, ALTER, r, rill_protocol::messages::AlterPartitionReassignmentsResponse)
        }
        RequestKind::UnregisterBroker(r) => {
            cluster_gated!(c, serve, ALTER, r, rill_protocol::messages::UnregisterBrokerResponse)
        }
        RequestKind::AddRaftVoter(r) => {
            cluster_gated!(c, serve, ALTER, r, rill_protocol::messages::AddRaftVoterResponse)
        }
        RequestKind::RemoveRaftVoter(r) => {
            cluster_gated!(c, serve, ALTER, r, rill_protocol::messages::RemoveRaftVoterResponse)
        }
        RequestKind::DescribeQuorum(r) => {
            cluster_gated!(c, serve, DESCRIBE, r, rill_protocol::messages::DescribeQuorumResponse)
        }
        RequestKind::ListPartitionReassignments(r) => {
            if c.cluster(DESCRIBE) {
                return serve(r.into(), Patch::None);
            }
            Outcome::Deny(crate::handlers::reassign::list_denied().into())
        }
        // Needs no authorization in Kafka either.
        body @ (RequestKind::ApiVersions(_) | RequestKind::DescribeCluster(_)) => serve(body, Patch::None),
        // Anything else the broker serves must be listed above; fail closed if one is not.
        body => {
            if c.cluster(ALTER) {
                serve(body, Patch::None)
            } else {
                tracing::error!(api = ?api_key, "no authorization rule for this API; refusing it");
                Outcome::Close("API without an authorization rule")
            }
        }
    }
}

impl Outcome {
    /// A v0 Metadata request whose topics were all denied: answer only the denied entries
    /// (an empty v0 topic list would mean "all topics").
    fn only_denied_topics(self) -> Outcome {
        match self {
            Outcome::Serve(_, Patch::Metadata(denied)) => {
                Outcome::Deny(MetadataResponse::default().with_topics(denied).into())
            }
            other => other,
        }
    }
}

fn config_allowed(c: &Check<'_>, op: i8, resource_type: i8, name: &str) -> bool {
    // ConfigResource types: 2 topic, 4 broker, 8 broker logger.
    match resource_type {
        2 => c.topic(op, name),
        _ => c.cluster(op),
    }
}

fn config_denied(resource_type: i8) -> ResponseError {
    if resource_type == 2 {
        TOPIC_DENIED
    } else {
        CLUSTER_DENIED
    }
}

fn produce_denied(t: &produce_request::TopicProduceData, err: ResponseError) -> produce_response::TopicProduceResponse {
    produce_response::TopicProduceResponse::default()
        .with_name(t.name.clone())
        .with_topic_id(t.topic_id)
        .with_partition_responses(
            t.partition_data
                .iter()
                .map(|p| {
                    produce_response::PartitionProduceResponse::default()
                        .with_index(p.index)
                        .with_error_code(err.code())
                        .with_base_offset(-1)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(-1)
                })
                .collect(),
        )
}

fn commit_denied(
    t: &offset_commit_request::OffsetCommitRequestTopic,
    err: ResponseError,
) -> offset_commit_response::OffsetCommitResponseTopic {
    offset_commit_response::OffsetCommitResponseTopic::default()
        .with_name(t.name.clone())
        .with_topic_id(t.topic_id)
        .with_partitions(
            t.partitions
                .iter()
                .map(|p| {
                    offset_commit_response::OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(err.code())
                })
                .collect(),
        )
}

fn metadata_denied(name: &str, err: ResponseError) -> metadata_response::MetadataResponseTopic {
    metadata_response::MetadataResponseTopic::default()
        .with_name(Some(TopicName(s(name))))
        .with_error_code(err.code())
        .with_topic_authorized_operations(i32::MIN)
}

impl Patch {
    pub fn is_none(&self) -> bool {
        matches!(self, Patch::None)
    }

    /// Merges the denied entries into the handler's response and filters listings.
    pub fn apply(self, resp: ResponseKind, sec: &Security, ctx: &ConnContext) -> ResponseKind {
        if matches!(self, Patch::None) {
            return resp;
        }
        let c = Check { sec, ctx, host: ctx.peer.ip().to_string(), api: ApiKey::Metadata };
        let describable = |name: &str| c.quietly(DESCRIBE, TOPIC, name);
        match (self, resp) {
            (Patch::Produce(d), ResponseKind::Produce(mut r)) => {
                r.responses.extend(d);
                r.into()
            }
            (Patch::Fetch(d), ResponseKind::Fetch(mut r)) => {
                r.responses.extend(d);
                r.into()
            }
            (Patch::ListOffsets(d), ResponseKind::ListOffsets(mut r)) => {
                r.topics.extend(d);
                r.into()
            }
            (Patch::LeaderEpoch(d), ResponseKind::OffsetForLeaderEpoch(mut r)) => {
                r.topics.extend(d);
                r.into()
            }
            (Patch::Metadata(d), ResponseKind::Metadata(mut r)) => {
                // Listing all topics: hide what the principal may not describe.
                r.topics.retain(|t| t.name.as_ref().is_none_or(|n| describable(n.0.as_str())));
                r.topics.extend(d);
                r.into()
            }
            (Patch::CreateTopics(d), ResponseKind::CreateTopics(mut r)) => {
                r.topics.extend(d);
                r.into()
            }
            (Patch::DeleteTopics(d), ResponseKind::DeleteTopics(mut r)) => {
                r.responses.extend(d);
                r.into()
            }
            (Patch::CreatePartitions(d), ResponseKind::CreatePartitions(mut r)) => {
                r.results.extend(d);
                r.into()
            }
            (Patch::DeleteRecords(d), ResponseKind::DeleteRecords(mut r)) => {
                r.topics.extend(d);
                r.into()
            }
            (Patch::DescribeConfigs(d), ResponseKind::DescribeConfigs(mut r)) => {
                r.results.extend(d);
                r.into()
            }
            (Patch::AlterConfigs(d), ResponseKind::AlterConfigs(mut r)) => {
                r.responses.extend(d);
                r.into()
            }
            (Patch::IncrementalAlterConfigs(d), ResponseKind::IncrementalAlterConfigs(mut r)) => {
                r.responses.extend(d);
                r.into()
            }
            (Patch::FindCoordinator(d), ResponseKind::FindCoordinator(mut r)) => {
                r.coordinators.extend(d);
                r.into()
            }
            (Patch::OffsetCommit(d), ResponseKind::OffsetCommit(mut r)) => {
                r.topics.extend(d);
                r.into()
            }
            (Patch::OffsetFetch(denied), ResponseKind::OffsetFetch(mut r)) => {
                r.topics.retain(|t| describable(t.name.0.as_str()));
                for g in &mut r.groups {
                    g.topics.retain(|t| describable(t.name.0.as_str()));
                }
                r.groups.extend(denied.into_iter().map(|g| {
                    offset_fetch_response::OffsetFetchResponseGroup::default()
                        .with_group_id(g)
                        .with_error_code(GROUP_DENIED.code())
                }));
                r.into()
            }
            (Patch::DescribeGroups(d), ResponseKind::DescribeGroups(mut r)) => {
                r.groups.extend(d);
                r.into()
            }
            (Patch::ListGroups, ResponseKind::ListGroups(mut r)) => {
                r.groups.retain(|g| c.quietly(DESCRIBE, GROUP, g.group_id.0.as_str()));
                r.into()
            }
            (Patch::DeleteGroups(d), ResponseKind::DeleteGroups(mut r)) => {
                r.results.extend(d);
                r.into()
            }
            (Patch::ConsumerGroupDescribe(d), ResponseKind::ConsumerGroupDescribe(mut r)) => {
                r.groups.extend(d);
                r.into()
            }
            (Patch::DescribeTopicPartitions(d), ResponseKind::DescribeTopicPartitions(mut r)) => {
                r.topics.retain(|t| t.error_code != 0 || t.name.as_ref().is_none_or(|n| describable(n.0.as_str())));
                r.topics.extend(d);
                r.into()
            }
            (_, resp) => resp,
        }
    }
}
