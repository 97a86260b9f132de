//! Membership of a consumer group for `rill consume --group`, over the classic group protocol
//! only (FindCoordinator, JoinGroup, SyncGroup, Heartbeat, OffsetCommit, LeaveGroup), so it
//! works against any Kafka broker. The CLI offers the `consumer` protocol type with Kafka's
//! ConsumerProtocol encodings and, when elected leader, computes range or roundrobin
//! assignments itself, exactly as the Java client's assignors would: Java consumers can share
//! the group.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use bytes::{Buf, BytesMut};
use clap::ValueEnum;
use rill_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use rill_protocol::messages::join_group_response::JoinGroupResponseMember;
use rill_protocol::messages::leave_group_request::MemberIdentity;
use rill_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use rill_protocol::messages::*;
use rill_protocol::{Decodable, Encodable, ResponseError};

use crate::admin::{metadata, s, tn};
use crate::client::{KafkaError, Pool};
use crate::groups::{commit_offsets, committed, coordinator, decode_assignment};

/// A topic-partition.
pub type Tp = (String, i32);

/// Kafka's defaults are 45 s and 3 s; a shorter session lets the group notice a killed CLI
/// (which cannot send LeaveGroup) within seconds, and 6 s is the brokers' default minimum.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
/// How long the coordinator waits for every member to rejoin during a rebalance.
const REBALANCE_TIMEOUT: Duration = Duration::from_secs(30);
/// Give up joining after this long (a coordinator that keeps moving, a group that never settles).
const JOIN_DEADLINE: Duration = Duration::from_secs(120);
const PROTOCOL_TYPE: &str = "consumer";
/// The newest ConsumerProtocol schema versions the codec knows; the Java 4.x client writes these.
const SUBSCRIPTION_VERSION: i16 = 3;
const ASSIGNMENT_VERSION: i16 = 3;

/// Partition assignment strategy offered to the group (named as Kafka's assignors are).
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum Assignor {
    Range,
    Roundrobin,
}

impl Assignor {
    fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::Roundrobin => "roundrobin",
        }
    }

    fn from_name(name: &str) -> Option<Assignor> {
        [Assignor::Range, Assignor::Roundrobin].into_iter().find(|a| a.name() == name)
    }
}

/// What a member does about a group error code. Every code the group APIs return is mapped
/// here, once.
enum Reaction {
    /// The group moved on (a rebalance, a newer generation): join again, keeping the member
    /// id unless the coordinator no longer knows it.
    Rejoin {
        reset_member_id: bool,
    },
    /// The coordinator moved or is down: find it again, then rejoin.
    Rediscover,
    /// The coordinator is loading the group: try the same request again shortly.
    Retry,
    Fatal,
}

fn reaction(code: i16) -> Reaction {
    use ResponseError as E;
    match ResponseError::try_from_code(code) {
        // MEMBER_ID_REQUIRED (KIP-394) carries the member id to join with: join again with it.
        Some(E::RebalanceInProgress | E::IllegalGeneration | E::MemberIdRequired) => {
            Reaction::Rejoin { reset_member_id: false }
        }
        Some(E::UnknownMemberId) => Reaction::Rejoin { reset_member_id: true },
        Some(E::NotCoordinator | E::CoordinatorNotAvailable) => Reaction::Rediscover,
        Some(E::CoordinatorLoadInProgress) => Reaction::Retry,
        _ => Reaction::Fatal,
    }
}

/// A fatal group error, with what to do about it where there is something to say.
fn group_error(code: i16, group: &str, doing: &str) -> anyhow::Error {
    use ResponseError as E;
    let hint = match ResponseError::try_from_code(code) {
        Some(E::InconsistentGroupProtocol) => Some(format!(
            "group {group} has members of another protocol type or whose assignors share none with \
             --assignor (range or roundrobin); use another --group or the assignor its members use"
        )),
        Some(E::GroupAuthorizationFailed) => Some(format!("not authorized to use group {group}")),
        Some(E::TopicAuthorizationFailed) => Some("not authorized to read the topic(s)".to_string()),
        Some(E::InvalidSessionTimeout) => Some(format!(
            "the broker refuses a session timeout of {} ms (see group.min.session.timeout.ms and \
             group.max.session.timeout.ms)",
            SESSION_TIMEOUT.as_millis()
        )),
        Some(E::GroupMaxSizeReached) => Some(format!("group {group} is full (group.max.size)")),
        Some(E::InvalidGroupId) => Some(format!("{group:?} is not a valid group id")),
        _ => None,
    };
    anyhow::Error::new(KafkaError { code, message: hint, context: format!("{doing} group {group}") })
}

/// This process's membership of one group.
pub struct Member {
    pub group: String,
    topics: Vec<String>,
    assignor: Assignor,
    coordinator: i32,
    member_id: String,
    generation: i32,
    /// Partitions of the current generation, of the subscribed topics.
    pub assignment: Vec<Tp>,
}

impl Member {
    /// Finds the coordinator, joins and gets this member's assignment.
    pub async fn join(pool: &mut Pool, group: &str, topics: &[String], assignor: Assignor) -> anyhow::Result<Member> {
        let coordinator = coordinator(pool, group).await?;
        let mut m = Member {
            group: group.to_string(),
            topics: topics.to_vec(),
            assignor,
            coordinator,
            member_id: String::new(),
            generation: -1,
            assignment: Vec::new(),
        };
        m.rejoin(pool).await?;
        Ok(m)
    }

    /// JoinGroup then SyncGroup until this member has the assignment of a settled generation.
    pub async fn rejoin(&mut self, pool: &mut Pool) -> anyhow::Result<()> {
        let deadline = Instant::now() + JOIN_DEADLINE;
        let mut last = String::from("no answer yet");
        loop {
            if Instant::now() > deadline {
                bail!("could not join group {} within {} s (last: {last})", self.group, JOIN_DEADLINE.as_secs());
            }
            let code = match self.join_and_sync(pool).await? {
                None => return Ok(()),
                Some(code) => code,
            };
            last = crate::client::error_name(code);
            match reaction(code) {
                Reaction::Rejoin { reset_member_id } => {
                    if reset_member_id {
                        self.member_id.clear();
                    }
                }
                Reaction::Rediscover => self.coordinator = coordinator(pool, &self.group).await?,
                Reaction::Retry => tokio::time::sleep(Duration::from_millis(200)).await,
                Reaction::Fatal => return Err(group_error(code, &self.group, "joining")),
            }
        }
    }

    /// One JoinGroup + SyncGroup round; Some(error code) when it has to be retried or fails.
    async fn join_and_sync(&mut self, pool: &mut Pool) -> anyhow::Result<Option<i16>> {
        // Offer the chosen assignor first and the other as a fallback, so the CLI can join a
        // group whose Java members use either.
        let others = [Assignor::Range, Assignor::Roundrobin].into_iter().filter(|a| *a != self.assignor);
        let metadata = encode_subscription(&self.topics)?;
        let protocols = std::iter::once(self.assignor)
            .chain(others)
            .map(|a| JoinGroupRequestProtocol::default().with_name(s(a.name())).with_metadata(metadata.clone()))
            .collect();
        let req = JoinGroupRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_session_timeout_ms(SESSION_TIMEOUT.as_millis() as i32)
            .with_rebalance_timeout_ms(REBALANCE_TIMEOUT.as_millis() as i32)
            .with_member_id(s(&self.member_id))
            .with_protocol_type(s(PROTOCOL_TYPE))
            .with_protocols(protocols);
        // The coordinator answers once every member has rejoined: up to the rebalance timeout.
        let wait = REBALANCE_TIMEOUT + Duration::from_secs(5);
        let join = pool.node(self.coordinator).await?.send_timeout(&req, wait).await?;
        if join.error_code == ResponseError::MemberIdRequired.code() {
            // KIP-394: the first JoinGroup only hands out the member id to join with.
            self.member_id = join.member_id.to_string();
            return Ok(Some(join.error_code));
        }
        if join.error_code != 0 {
            return Ok(Some(join.error_code));
        }
        self.member_id = join.member_id.to_string();
        self.generation = join.generation_id;
        let protocol = join.protocol_name.as_ref().map(|p| p.to_string()).unwrap_or_default();
        let assignments = if join.leader.as_str() == self.member_id {
            let assignor = Assignor::from_name(&protocol)
                .ok_or_else(|| anyhow!("the coordinator chose assignor {protocol:?}, which rill-cli did not offer"))?;
            self.lead(pool, assignor, &join.members).await?
        } else {
            Vec::new()
        };
        let req = SyncGroupRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_generation_id(self.generation)
            .with_member_id(s(&self.member_id))
            .with_protocol_type(Some(s(PROTOCOL_TYPE)))
            .with_protocol_name(Some(s(&protocol)))
            .with_assignments(assignments);
        let sync = pool.node(self.coordinator).await?.send_timeout(&req, wait).await?;
        if sync.error_code != 0 {
            return Ok(Some(sync.error_code));
        }
        let mine = decode_assignment(PROTOCOL_TYPE, &sync.assignment).unwrap_or_default();
        self.assignment = mine
            .into_iter()
            .filter(|(t, _)| self.topics.contains(t))
            .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
            .collect();
        Ok(None)
    }

    /// As leader: every member's assignment, from their subscriptions and the topics' sizes.
    async fn lead(
        &self,
        pool: &mut Pool,
        assignor: Assignor,
        members: &[JoinGroupResponseMember],
    ) -> anyhow::Result<Vec<SyncGroupRequestAssignment>> {
        let subs: Vec<(String, Vec<String>)> = members
            .iter()
            .map(|m| (m.member_id.to_string(), decode_subscription(&m.metadata).unwrap_or_default()))
            .collect();
        let wanted: BTreeSet<&str> = subs.iter().flat_map(|(_, ts)| ts.iter().map(String::as_str)).collect();
        let wanted: Vec<&str> = wanted.into_iter().collect();
        let md = metadata(pool, Some(&wanted)).await?;
        // Topics that don't exist (yet) get no partitions, as in the Java assignors.
        let sizes: BTreeMap<String, i32> = md
            .topics
            .iter()
            .filter(|t| t.error_code == 0)
            .filter_map(|t| Some((t.name.as_ref()?.to_string(), t.partitions.len() as i32)))
            .collect();
        let plan = assign(assignor, &subs, &sizes);
        subs.iter()
            .map(|(id, _)| {
                let bytes = encode_assignment(plan.get(id).cloned().unwrap_or_default())?;
                Ok(SyncGroupRequestAssignment::default().with_member_id(s(id)).with_assignment(bytes))
            })
            .collect()
    }

    /// One heartbeat; true when the member has to rejoin (a rebalance started, or it was fenced).
    pub async fn heartbeat(&mut self, pool: &mut Pool) -> anyhow::Result<bool> {
        let req = HeartbeatRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_generation_id(self.generation)
            .with_member_id(s(&self.member_id));
        let code = pool.node(self.coordinator).await?.send(&req).await?.error_code;
        self.needs_rejoin(pool, code, "heartbeating in").await
    }

    /// Maps a heartbeat or commit error: Ok(false) on success, Ok(true) when the member has to
    /// rejoin, an error when it cannot go on.
    async fn needs_rejoin(&mut self, pool: &mut Pool, code: i16, doing: &str) -> anyhow::Result<bool> {
        if code == 0 {
            return Ok(false);
        }
        match reaction(code) {
            Reaction::Rejoin { reset_member_id } => {
                if reset_member_id {
                    self.member_id.clear();
                }
            }
            // A retry after rejoining is as good as one now, and rejoining re-reads the
            // committed offsets from wherever the group lives now.
            Reaction::Rediscover | Reaction::Retry => self.coordinator = coordinator(pool, &self.group).await?,
            Reaction::Fatal => return Err(group_error(code, &self.group, doing)),
        }
        Ok(true)
    }

    /// The group's committed offsets of this member's partitions.
    pub async fn committed(&self, pool: &mut Pool) -> anyhow::Result<BTreeMap<Tp, i64>> {
        let all = committed(pool, self.coordinator, &self.group).await?;
        Ok(all.into_iter().filter(|(tp, _)| self.assignment.contains(tp)).collect())
    }

    /// Commits `offsets` (the next offset to read per partition) in this generation; true when
    /// the member was fenced and has to rejoin (the commit is then lost: those records will be
    /// read again, at least once).
    pub async fn commit(&mut self, pool: &mut Pool, offsets: &BTreeMap<Tp, i64>) -> anyhow::Result<bool> {
        if offsets.is_empty() {
            return Ok(false);
        }
        let (group, generation, member) = (self.group.clone(), self.generation, self.member_id.clone());
        let results = commit_offsets(pool, self.coordinator, &group, generation, &member, offsets).await?;
        let mut rejoin = false;
        for (_, code) in results {
            rejoin |= self.needs_rejoin(pool, code, "committing offsets of").await?;
        }
        Ok(rejoin)
    }

    /// Leaves the group so the others get this member's partitions at once instead of after
    /// the session timeout.
    pub async fn leave(&mut self, pool: &mut Pool) -> anyhow::Result<()> {
        if self.member_id.is_empty() {
            return Ok(());
        }
        let version = pool.node(self.coordinator).await?.version(ApiKey::LeaveGroup)?;
        let mut req = LeaveGroupRequest::default().with_group_id(GroupId(s(&self.group)));
        if version >= 3 {
            req.members = vec![MemberIdentity::default().with_member_id(s(&self.member_id))];
        } else {
            req.member_id = s(&self.member_id);
        }
        let resp = pool.node(self.coordinator).await?.send(&req).await?;
        let code = std::iter::once(resp.error_code).chain(resp.members.iter().map(|m| m.error_code)).find(|&c| c != 0);
        match code {
            // Already gone (session expired, fenced): nothing left to leave.
            Some(c) if c == ResponseError::UnknownMemberId.code() => Ok(()),
            Some(c) => Err(group_error(c, &self.group, "leaving")),
            None => Ok(()),
        }
    }
}

fn encode_subscription(topics: &[String]) -> anyhow::Result<bytes::Bytes> {
    let sub = ConsumerProtocolSubscription::default()
        .with_topics(topics.iter().map(|t| s(t)).collect())
        .with_generation_id(-1);
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&SUBSCRIPTION_VERSION.to_be_bytes());
    sub.encode(&mut buf, SUBSCRIPTION_VERSION)?;
    Ok(buf.freeze())
}

/// A member's subscribed topics from its ConsumerProtocolSubscription.
fn decode_subscription(bytes: &[u8]) -> Option<Vec<String>> {
    let mut buf = bytes::Bytes::copy_from_slice(bytes);
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16();
    // Newer versions only add fields at the end: read them as the newest version we know.
    let sub = ConsumerProtocolSubscription::decode(&mut buf, version.clamp(0, SUBSCRIPTION_VERSION)).ok()?;
    Some(sub.topics.iter().map(|t| t.to_string()).collect())
}

fn encode_assignment(parts: BTreeMap<String, Vec<i32>>) -> anyhow::Result<bytes::Bytes> {
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(
        parts
            .into_iter()
            .map(|(t, ps)| {
                consumer_protocol_assignment::TopicPartition::default().with_topic(tn(&t)).with_partitions(ps)
            })
            .collect(),
    );
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&ASSIGNMENT_VERSION.to_be_bytes());
    a.encode(&mut buf, ASSIGNMENT_VERSION)?;
    Ok(buf.freeze())
}

/// member id -> topic -> partitions, computed as Kafka's RangeAssignor and RoundRobinAssignor
/// do: members in member-id order; range gives each member of a topic's subscribers a
/// contiguous block (the first ones one more when it doesn't divide), roundrobin deals all
/// topic-partitions in order to the members subscribed to each topic in turn.
type Plan = BTreeMap<String, BTreeMap<String, Vec<i32>>>;

fn assign(assignor: Assignor, subs: &[(String, Vec<String>)], sizes: &BTreeMap<String, i32>) -> Plan {
    let mut members: Vec<&(String, Vec<String>)> = subs.iter().collect();
    members.sort_by(|a, b| a.0.cmp(&b.0));
    let mut plan: Plan = members.iter().map(|(id, _)| (id.clone(), BTreeMap::new())).collect();
    let subscribed = |topic: &str| -> Vec<&str> {
        members.iter().filter(|(_, ts)| ts.iter().any(|t| t == topic)).map(|(id, _)| id.as_str()).collect()
    };
    match assignor {
        Assignor::Range => {
            for (topic, &n) in sizes {
                let who = subscribed(topic);
                if who.is_empty() {
                    continue;
                }
                let (each, extra) = (n / who.len() as i32, n % who.len() as i32);
                for (i, id) in who.iter().enumerate() {
                    let i = i as i32;
                    let start = each * i + i.min(extra);
                    let len = each + i32::from(i < extra);
                    if len > 0 {
                        plan.get_mut(*id).expect("member").insert(topic.clone(), (start..start + len).collect());
                    }
                }
            }
        }
        Assignor::Roundrobin => {
            let ids: Vec<&str> = members.iter().map(|(id, _)| id.as_str()).collect();
            let mut next = 0usize;
            for (topic, &n) in sizes {
                let who = subscribed(topic);
                if who.is_empty() {
                    continue;
                }
                for p in 0..n {
                    // The next member in the circle that subscribes to this topic.
                    while !who.contains(&ids[next % ids.len()]) {
                        next += 1;
                    }
                    let id = ids[next % ids.len()];
                    next += 1;
                    plan.get_mut(id).expect("member").entry(topic.clone()).or_default().push(p);
                }
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(v: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        v.iter().map(|(id, ts)| (id.to_string(), ts.iter().map(|t| t.to_string()).collect())).collect()
    }

    fn sizes(v: &[(&str, i32)]) -> BTreeMap<String, i32> {
        v.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    #[test]
    fn range_splits_each_topic_into_blocks() {
        let plan =
            assign(Assignor::Range, &subs(&[("b", &["t", "u"]), ("a", &["t", "u"])]), &sizes(&[("t", 3), ("u", 4)]));
        assert_eq!(plan["a"]["t"], vec![0, 1]);
        assert_eq!(plan["b"]["t"], vec![2]);
        assert_eq!(plan["a"]["u"], vec![0, 1]);
        assert_eq!(plan["b"]["u"], vec![2, 3]);
    }

    #[test]
    fn roundrobin_deals_in_turn_to_subscribers() {
        let plan =
            assign(Assignor::Roundrobin, &subs(&[("a", &["t"]), ("b", &["t", "u"])]), &sizes(&[("t", 3), ("u", 2)]));
        assert_eq!(plan["a"]["t"], vec![0, 2]);
        assert_eq!(plan["b"]["t"], vec![1]);
        assert_eq!(plan["b"]["u"], vec![0, 1]);
        assert!(!plan["a"].contains_key("u"));
    }

    #[test]
    fn more_members_than_partitions() {
        let plan = assign(Assignor::Range, &subs(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]), &sizes(&[("t", 2)]));
        assert_eq!(plan["a"]["t"], vec![0]);
        assert_eq!(plan["b"]["t"], vec![1]);
        assert!(plan["c"].is_empty());
    }

    #[test]
    fn subscription_and_assignment_roundtrip() {
        let bytes = encode_subscription(&["t".to_string(), "u".to_string()]).unwrap();
        assert_eq!(decode_subscription(&bytes).unwrap(), vec!["t", "u"]);
        let bytes = encode_assignment(BTreeMap::from([("t".to_string(), vec![0, 2])])).unwrap();
        assert_eq!(decode_assignment("consumer", &bytes).unwrap(), BTreeMap::from([("t".to_string(), vec![0, 2])]));
    }
}
