//! One group of the consumer group protocol (KIP-848, ConsumerGroupHeartbeat) as a pure state
//! machine: no I/O, no clock; the caller passes the time and a view of the topics.
//!
//! The group has an epoch, bumped whenever membership, subscriptions or the subscribed topics'
//! metadata change. When the group epoch is ahead of the target assignment's epoch, the
//! target is recomputed by the group's assignor (on the next heartbeat of any member). Each
//! member then reconciles towards its target on its own heartbeats, as Kafka's
//! `CurrentAssignmentBuilder` does:
//! - partitions it owns but is no longer assigned are revoked first: the member stays at its
//!   epoch (state `UnrevokedPartitions`) until it reports it no longer owns them;
//! - then it moves to the target epoch and gets the target partitions that no other member
//!   still owns; the others follow on later heartbeats once released (`UnreleasedPartitions`).
//!
//! Regular expression subscriptions (SubscribedTopicRegex) are matched against every
//! non-internal topic the member's principal may DESCRIBE, on each heartbeat of the group, so a
//! topic created later (or an ACL granted later) joins the assignment within a heartbeat
//! interval. As in Kafka, a regex never hands a member a topic it could not have named.
//!
//! Durability: [`ConsumerGroup::take_changes`] yields the keyed records (Kafka's
//! `ConsumerGroup*` record kinds) that bring `__consumer_offsets` up to the state in memory,
//! and [`ConsumerGroup::restore`] rebuilds the group from them, so members keep their ids,
//! epochs and assignments across a coordinator restart or move.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use indexmap::IndexMap;
use rill_protocol::ResponseError;
use uuid::Uuid;

use super::assignor::{assign, AssignMember, Assignment, AssignorKind};

/// Broker settings of consumer groups.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// `group.consumer.heartbeat.interval.ms`
    pub heartbeat_interval_ms: i32,
    /// `group.consumer.session.timeout.ms`
    pub session_timeout_ms: i32,
    /// `group.consumer.assignors`: the first is the default.
    pub assignors: Vec<AssignorKind>,
    /// `group.consumer.max.size`
    pub max_size: usize,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        ConsumerSettings {
            heartbeat_interval_ms: 5000,
            session_timeout_ms: 45000,
            assignors: vec![AssignorKind::Uniform, AssignorKind::Range],
            max_size: i32::MAX as usize,
        }
    }
}

/// A topic as the group sees it: (id, partition count).
pub type TopicInfo = (Uuid, i32);

/// The cluster's topics as a group sees them.
pub trait TopicView {
    fn info(&self, name: &str) -> Option<TopicInfo>;
    /// Names a regular expression subscription may match (internal topics excluded), sorted.
    fn names(&self) -> Vec<String> {
        Vec::new()
    }
    /// Whether `principal` connecting from `host` may DESCRIBE `topic` (regex matches are
    /// limited to those).
    fn may_describe(&self, _principal: &str, _host: &str, _topic: &str) -> bool {
        true
    }
}

impl<F: Fn(&str) -> Option<TopicInfo>> TopicView for F {
    fn info(&self, name: &str) -> Option<TopicInfo> {
        self(name)
    }
}

/// A SubscribedTopicRegex (RE2/J syntax, which Rust's `regex` follows closely), matched
/// against whole topic names as Kafka does.
fn compile_regex(r: &str) -> Result<regex::Regex, HbError> {
    regex::Regex::new(&format!("^(?:{r})$")).map_err(|e| {
        (
            ResponseError::InvalidRegularExpression,
            Some(format!("SubscribedTopicRegex `{r}` is not a valid regular expression: {e}")),
        )
    })
}

/// A ConsumerGroupHeartbeat as the machine sees it.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatRequest {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1: unchanged.
    pub rebalance_timeout_ms: i32,
    /// None: unchanged.
    pub subscribed_topic_names: Option<Vec<String>>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// None: unchanged since the last heartbeat.
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
    /// Who the member authenticated as; its regex only matches topics this principal may
    /// describe.
    pub principal: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatResponse {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// Sent when it changed (or the member (re)joined, or reported something else).
    pub assignment: Option<Assignment>,
}

/// An error with Kafka's message.
pub type HbError = (ResponseError, Option<String>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    Stable,
    UnrevokedPartitions,
    UnreleasedPartitions,
}

#[derive(Debug, Clone)]
pub struct ConsumerMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub principal: String,
    pub subscribed: Vec<String>,
    pub regex: Option<String>,
    compiled: Option<regex::Regex>,
    /// Topics the regex matches now (refreshed on every heartbeat of the group).
    matched: Vec<String>,
    pub server_assignor: Option<AssignorKind>,
    pub rebalance_timeout_ms: i32,
    pub member_epoch: i32,
    pub previous_epoch: i32,
    pub state: MemberState,
    /// Partitions the member may use.
    pub assigned: Assignment,
    /// Partitions it must give up before it moves on.
    pub revoking: Assignment,
    session_deadline: i64,
    revoke_deadline: Option<i64>,
}

impl ConsumerMember {
    /// Subscribed by name or matched by the regex.
    fn topics(&self) -> impl Iterator<Item = &String> {
        self.subscribed.iter().chain(self.matched.iter())
    }

    /// The host the authorizer knows the member by (`client_host` is `/ip`).
    fn host(&self) -> &str {
        self.client_host.trim_start_matches('/')
    }

    fn stored(&self) -> StoredConsumerMember {
        StoredConsumerMember {
            instance_id: self.instance_id.clone(),
            rack_id: self.rack_id.clone(),
            client_id: self.client_id.clone(),
            client_host: self.client_host.clone(),
            subscribed: self.subscribed.clone(),
            regex: self.regex.clone(),
            rebalance_timeout_ms: self.rebalance_timeout_ms,
            server_assignor: self.server_assignor.map(|a| a.name().to_string()),
            principal: self.principal.clone(),
            matched: self.matched.clone(),
        }
    }

    fn stored_assignment(&self) -> StoredAssignment {
        StoredAssignment {
            member_epoch: self.member_epoch,
            previous_epoch: self.previous_epoch,
            state: self.state,
            assigned: self.assigned.clone(),
            revoking: self.revoking.clone(),
        }
    }
}

/// A member's subscription and identity as stored (Kafka's ConsumerGroupMemberMetadataValue,
/// plus the principal and the regex's matches, which Rill needs to resume the same
/// assignment without a rebalance).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredConsumerMember {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed: Vec<String>,
    pub regex: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub server_assignor: Option<String>,
    pub principal: String,
    pub matched: Vec<String>,
}

/// A member's reconciliation state as stored (Kafka's ConsumerGroupCurrentMemberAssignmentValue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAssignment {
    pub member_epoch: i32,
    pub previous_epoch: i32,
    pub state: MemberState,
    pub assigned: Assignment,
    pub revoking: Assignment,
}

/// One keyed record of a consumer group's state; `None` values are tombstones. Each variant
/// is one of Kafka's record kinds, so the latest value per key is the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerRecord {
    /// ConsumerGroupMetadata: the group epoch; its tombstone deletes the group.
    Epoch(Option<i32>),
    /// ConsumerGroupPartitionMetadata: the subscribed topics as of the last check.
    Topics(Option<BTreeMap<String, TopicInfo>>),
    /// ConsumerGroupMemberMetadata of one member.
    Member(String, Option<StoredConsumerMember>),
    /// ConsumerGroupTargetAssignmentMetadata: the assignment epoch.
    TargetEpoch(Option<i32>),
    /// ConsumerGroupTargetAssignmentMember of one member.
    Target(String, Option<Assignment>),
    /// ConsumerGroupCurrentMemberAssignment of one member.
    Current(String, Option<StoredAssignment>),
}

/// The latest value of every key of one group, as replayed from the log.
#[derive(Debug, Default)]
pub struct ConsumerImage {
    epoch: Option<i32>,
    topics: Option<BTreeMap<String, TopicInfo>>,
    target_epoch: Option<i32>,
    /// In the order members first appeared, which is the order they joined.
    members: IndexMap<String, StoredConsumerMember>,
    targets: HashMap<String, Assignment>,
    current: HashMap<String, StoredAssignment>,
}

impl ConsumerImage {
    pub fn apply(&mut self, rec: ConsumerRecord) {
        match rec {
            ConsumerRecord::Epoch(v) => self.epoch = v,
            ConsumerRecord::Topics(v) => self.topics = v,
            ConsumerRecord::TargetEpoch(v) => self.target_epoch = v,
            ConsumerRecord::Member(id, Some(m)) => {
                self.members.insert(id, m);
            }
            ConsumerRecord::Member(id, None) => {
                self.members.shift_remove(&id);
            }
            ConsumerRecord::Target(id, Some(a)) => {
                self.targets.insert(id, a);
            }
            ConsumerRecord::Target(id, None) => {
                self.targets.remove(&id);
            }
            ConsumerRecord::Current(id, Some(a)) => {
                self.current.insert(id, a);
            }
            ConsumerRecord::Current(id, None) => {
                self.current.remove(&id);
            }
        }
    }

    /// Whether the log holds a live consumer group (its metadata record is not tombstoned).
    pub fn is_live(&self) -> bool {
        self.epoch.is_some()
    }
}

/// What `__consumer_offsets` holds for a group, to write only what changed. A key whose
/// value is `None` exists in the log with a value that may be stale (a write failed), so it
/// is written again next time.
#[derive(Debug, Default)]
struct Persisted {
    epoch: Option<i32>,
    topics: Option<BTreeMap<String, TopicInfo>>,
    target_epoch: Option<i32>,
    members: HashMap<String, Option<StoredConsumerMember>>,
    targets: HashMap<String, Option<Assignment>>,
    current: HashMap<String, Option<StoredAssignment>>,
}

fn forget<T>(m: &mut HashMap<String, Option<T>>) {
    m.values_mut().for_each(|v| *v = None);
}

/// The group states ConsumerGroupDescribe and ListGroups report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerGroupState {
    Empty,
    Assigning,
    Reconciling,
    Stable,
}

impl ConsumerGroupState {
    pub fn name(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
        }
    }
}

#[derive(Debug)]
pub struct ConsumerGroup {
    pub id: String,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub members: IndexMap<String, ConsumerMember>,
    pub target: HashMap<String, Assignment>,
    static_members: HashMap<String, String>,
    /// The subscribed topics that exist, by name, as of the last check.
    pub metadata: BTreeMap<String, TopicInfo>,
    pub assignor: AssignorKind,
    /// When the group last changed state (for offset expiry once empty).
    pub state_timestamp: i64,
    scheduled_wake: Option<i64>,
    settings: ConsumerSettings,
    persisted: Persisted,
}

fn normalize(mut a: Assignment) -> Assignment {
    a.retain(|_, s| !s.is_empty());
    a
}

fn overlaps(a: &Assignment, b: &Assignment) -> bool {
    a.iter().any(|(t, ps)| b.get(t).is_some_and(|qs| !ps.is_disjoint(qs)))
}

fn is_subset(a: &Assignment, b: &Assignment) -> bool {
    a.iter().all(|(t, ps)| ps.is_empty() || b.get(t).is_some_and(|qs| ps.is_subset(qs)))
}

fn invalid(msg: &str) -> HbError {
    (ResponseError::InvalidRequest, Some(msg.to_string()))
}

impl ConsumerGroup {
    pub fn new(id: &str, settings: ConsumerSettings, now: i64) -> Self {
        let assignor = settings.assignors.first().copied().unwrap_or(AssignorKind::Uniform);
        ConsumerGroup {
            id: id.to_string(),
            group_epoch: 0,
            assignment_epoch: 0,
            members: IndexMap::new(),
            target: HashMap::new(),
            static_members: HashMap::new(),
            metadata: BTreeMap::new(),
            assignor,
            state_timestamp: now,
            scheduled_wake: None,
            settings,
            persisted: Persisted::default(),
        }
    }

    /// Rebuilds a group from its stored records. Members get a fresh session (as if they had
    /// just heartbeated), so a member that keeps heartbeating after the restart carries on
    /// with its id, epoch and assignment, and one that is gone expires after its session.
    pub fn restore(id: &str, settings: ConsumerSettings, image: ConsumerImage, now: i64) -> Self {
        let mut g = ConsumerGroup::new(id, settings, now);
        g.group_epoch = image.epoch.unwrap_or(0);
        g.assignment_epoch = image.target_epoch.unwrap_or(0);
        g.metadata = image.topics.clone().unwrap_or_default();
        let session = g.settings.session_timeout_ms as i64;
        for (mid, s) in &image.members {
            let cur = image.current.get(mid);
            let state = cur.map_or(MemberState::Stable, |c| c.state);
            let rebalance_timeout_ms = s.rebalance_timeout_ms;
            let m = ConsumerMember {
                id: mid.clone(),
                instance_id: s.instance_id.clone(),
                rack_id: s.rack_id.clone(),
                client_id: s.client_id.clone(),
                client_host: s.client_host.clone(),
                principal: s.principal.clone(),
                subscribed: s.subscribed.clone(),
                regex: s.regex.clone(),
                // Stored regexes compiled when they were accepted; one that no longer does
                // matches nothing until the member sends it again.
                compiled: s.regex.as_deref().and_then(|r| compile_regex(r).ok()),
                matched: s.matched.clone(),
                server_assignor: s.server_assignor.as_deref().and_then(AssignorKind::parse),
                rebalance_timeout_ms,
                member_epoch: cur.map_or(0, |c| c.member_epoch),
                previous_epoch: cur.map_or(0, |c| c.previous_epoch),
                state,
                assigned: cur.map(|c| c.assigned.clone()).unwrap_or_default(),
                revoking: cur.map(|c| c.revoking.clone()).unwrap_or_default(),
                session_deadline: now + session,
                revoke_deadline: (state == MemberState::UnrevokedPartitions)
                    .then(|| now + rebalance_timeout_ms.max(0) as i64),
            };
            if let Some(iid) = &m.instance_id {
                g.static_members.insert(iid.clone(), mid.clone());
            }
            g.members.insert(mid.clone(), m);
        }
        g.target = image
            .targets
            .iter()
            .filter(|(k, _)| g.members.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        g.assignor = g.pick_assignor();
        g.persisted = Persisted {
            epoch: image.epoch,
            topics: image.topics,
            target_epoch: image.target_epoch,
            members: image.members.into_iter().map(|(k, v)| (k, Some(v))).collect(),
            targets: image.targets.into_iter().map(|(k, v)| (k, Some(v))).collect(),
            current: image.current.into_iter().map(|(k, v)| (k, Some(v))).collect(),
        };
        g
    }

    /// The records that bring the log from what was last taken to the state in memory
    /// (nothing when nothing durable changed: a plain heartbeat writes nothing). Within one
    /// batch the order does not matter: the load applies a whole group before using it.
    pub fn take_changes(&mut self) -> Vec<ConsumerRecord> {
        let mut out = Vec::new();
        let p = &mut self.persisted;
        // A group nobody has joined yet (the first join was refused) is not worth a record:
        // Kafka writes nothing for a failed heartbeat either.
        if self.members.is_empty() && p.epoch.is_none() && p.members.is_empty() && p.targets.is_empty() {
            return out;
        }
        if p.epoch != Some(self.group_epoch) {
            p.epoch = Some(self.group_epoch);
            out.push(ConsumerRecord::Epoch(p.epoch));
        }
        if p.topics.as_ref() != Some(&self.metadata) {
            p.topics = Some(self.metadata.clone());
            out.push(ConsumerRecord::Topics(p.topics.clone()));
        }
        for (id, m) in &self.members {
            let s = m.stored();
            if p.members.get(id).and_then(Option::as_ref) != Some(&s) {
                p.members.insert(id.clone(), Some(s.clone()));
                out.push(ConsumerRecord::Member(id.clone(), Some(s)));
            }
        }
        for (id, t) in &self.target {
            if p.targets.get(id).and_then(Option::as_ref) != Some(t) {
                p.targets.insert(id.clone(), Some(t.clone()));
                out.push(ConsumerRecord::Target(id.clone(), Some(t.clone())));
            }
        }
        // The target epoch follows the member targets, as in Kafka: it vouches for them.
        if p.target_epoch != Some(self.assignment_epoch) {
            p.target_epoch = Some(self.assignment_epoch);
            out.push(ConsumerRecord::TargetEpoch(p.target_epoch));
        }
        for (id, m) in &self.members {
            let a = m.stored_assignment();
            if p.current.get(id).and_then(Option::as_ref) != Some(&a) {
                p.current.insert(id.clone(), Some(a.clone()));
                out.push(ConsumerRecord::Current(id.clone(), Some(a)));
            }
        }
        let gone: Vec<String> = p.members.keys().filter(|k| !self.members.contains_key(*k)).cloned().collect();
        for id in gone {
            p.members.remove(&id);
            out.push(ConsumerRecord::Member(id, None));
        }
        let gone: Vec<String> = p.current.keys().filter(|k| !self.members.contains_key(*k)).cloned().collect();
        for id in gone {
            p.current.remove(&id);
            out.push(ConsumerRecord::Current(id, None));
        }
        let gone: Vec<String> = p.targets.keys().filter(|k| !self.target.contains_key(*k)).cloned().collect();
        for id in gone {
            p.targets.remove(&id);
            out.push(ConsumerRecord::Target(id, None));
        }
        out
    }

    /// The records last taken did not reach the log: write everything again next time.
    pub fn persist_failed(&mut self) {
        let p = &mut self.persisted;
        p.epoch = None;
        p.topics = None;
        p.target_epoch = None;
        forget(&mut p.members);
        forget(&mut p.targets);
        forget(&mut p.current);
    }

    /// Tombstones for everything stored of this group (it is deleted or turns classic).
    pub fn take_tombstones(&mut self) -> Vec<ConsumerRecord> {
        let p = std::mem::take(&mut self.persisted);
        let mut out = Vec::new();
        for id in p.members.keys() {
            out.push(ConsumerRecord::Member(id.clone(), None));
        }
        for id in p.current.keys() {
            out.push(ConsumerRecord::Current(id.clone(), None));
        }
        for id in p.targets.keys() {
            out.push(ConsumerRecord::Target(id.clone(), None));
        }
        // Unconditional: after a failed write the snapshot no longer knows what the log holds,
        // and a tombstone of a key that is not there is harmless. The group's own record goes
        // last, so a load that sees it has seen the rest.
        out.extend([ConsumerRecord::Topics(None), ConsumerRecord::TargetEpoch(None), ConsumerRecord::Epoch(None)]);
        out
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.group_epoch > self.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| m.member_epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    /// Topic names any member subscribes to.
    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        self.members.values().flat_map(|m| m.topics().cloned()).collect()
    }

    fn bump(&mut self, now: i64) {
        self.group_epoch += 1;
        self.state_timestamp = now;
    }

    /// One ConsumerGroupHeartbeat. `topics` resolves a topic name to its id and partitions.
    pub fn heartbeat(
        &mut self,
        req: HeartbeatRequest,
        topics: &dyn TopicView,
        now: i64,
    ) -> Result<HeartbeatResponse, HbError> {
        // Checked up front so a bad one changes nothing.
        let compiled = match req.subscribed_topic_regex.as_deref() {
            Some(r) if !r.is_empty() => Some(compile_regex(r)?),
            _ => None,
        };
        if let Some(a) = &req.server_assignor {
            if AssignorKind::parse(a).is_none_or(|k| !self.settings.assignors.contains(&k)) {
                return Err((ResponseError::UnsupportedAssignor, Some(format!("ServerAssignor {a} is not supported"))));
            }
        }
        match req.member_epoch {
            -1 | -2 => self.leave(req, now),
            0 => self.join(req, compiled, topics, now),
            e if e > 0 => self.heartbeat_member(req, compiled, topics, now),
            _ => Err(invalid("MemberEpoch is invalid")),
        }
    }

    fn join(
        &mut self,
        mut req: HeartbeatRequest,
        compiled: Option<regex::Regex>,
        topics: &dyn TopicView,
        now: i64,
    ) -> Result<HeartbeatResponse, HbError> {
        if req.rebalance_timeout_ms < 0 {
            return Err(invalid("RebalanceTimeoutMs must be provided in first request."));
        }
        if req.owned.as_ref().is_none_or(|o| !normalize(o.clone()).is_empty()) {
            return Err(invalid("TopicPartitions must be empty when (re-)joining."));
        }
        if req.subscribed_topic_names.is_none() && compiled.is_none() {
            return Err(invalid("SubscribedTopicNames or SubscribedTopicRegex must be set in first request."));
        }
        if req.member_id.is_empty() {
            req.member_id = Uuid::new_v4().to_string();
        }
        let id = req.member_id.clone();
        if let Some(iid) = req.instance_id.clone() {
            if let Some(old) = self.static_members.get(&iid).cloned() {
                if old != id {
                    let old_epoch = self.members.get(&old).map_or(-2, |m| m.member_epoch);
                    if old_epoch != -2 {
                        return Err((
                            ResponseError::UnreleasedInstanceId,
                            Some(format!("Static member {old} with instance id {iid} is not released yet")),
                        ));
                    }
                    // KIP-345 in KIP-848: the restarted static member takes over the old one's
                    // assignment and epoch.
                    if let Some(mut m) = self.members.shift_remove(&old) {
                        m.id = id.clone();
                        m.member_epoch = m.previous_epoch.max(0);
                        if let Some(t) = self.target.remove(&old) {
                            self.target.insert(id.clone(), t);
                        }
                        self.members.insert(id.clone(), m);
                    }
                    self.static_members.insert(iid.clone(), id.clone());
                }
            }
        }
        if !self.members.contains_key(&id) {
            if self.members.len() >= self.settings.max_size {
                return Err((
                    ResponseError::GroupMaxSizeReached,
                    Some(format!(
                        "The consumer group has reached its maximum capacity of {} members.",
                        self.settings.max_size
                    )),
                ));
            }
            if let Some(iid) = &req.instance_id {
                self.static_members.insert(iid.clone(), id.clone());
            }
            self.members.insert(
                id.clone(),
                ConsumerMember {
                    id: id.clone(),
                    instance_id: req.instance_id.clone(),
                    rack_id: None,
                    client_id: String::new(),
                    client_host: String::new(),
                    principal: String::new(),
                    subscribed: Vec::new(),
                    regex: None,
                    compiled: None,
                    matched: Vec::new(),
                    server_assignor: None,
                    rebalance_timeout_ms: req.rebalance_timeout_ms,
                    member_epoch: 0,
                    previous_epoch: 0,
                    state: MemberState::Stable,
                    assigned: Assignment::new(),
                    revoking: Assignment::new(),
                    session_deadline: now,
                    revoke_deadline: None,
                },
            );
            return self.update_and_reconcile(req, compiled, topics, now, true, true);
        }
        // A rejoin: the member reported no partitions; whatever it had is its to take again.
        self.update_and_reconcile(req, compiled, topics, now, true, false)
    }

    fn heartbeat_member(
        &mut self,
        req: HeartbeatRequest,
        compiled: Option<regex::Regex>,
        topics: &dyn TopicView,
        now: i64,
    ) -> Result<HeartbeatResponse, HbError> {
        if req.member_id.is_empty() {
            return Err(invalid("MemberId can't be empty."));
        }
        let Some(m) = self.members.get(&req.member_id) else {
            return Err((
                ResponseError::UnknownMemberId,
                Some(format!("Member {} is not a member of group {}", req.member_id, self.id)),
            ));
        };
        if let Some(iid) = &req.instance_id {
            if self.static_members.get(iid).is_some_and(|k| k != &req.member_id) {
                return Err((ResponseError::FencedInstanceId, None));
            }
        }
        if req.member_epoch > m.member_epoch {
            return Err((ResponseError::FencedMemberEpoch, Some(format!(
                "The consumer group member has a greater member epoch ({}) than the one known by the group coordinator ({}).",
                req.member_epoch, m.member_epoch
            ))));
        }
        if req.member_epoch < m.member_epoch {
            // The response with the new epoch may have been lost: accept the previous epoch if
            // the member owns a subset of its assignment.
            let ok =
                req.member_epoch == m.previous_epoch && req.owned.as_ref().is_some_and(|o| is_subset(o, &m.assigned));
            if !ok {
                return Err((ResponseError::FencedMemberEpoch, Some(format!(
                    "The consumer group member has a smaller member epoch ({}) than the one known by the group coordinator ({}).",
                    req.member_epoch, m.member_epoch
                ))));
            }
        }
        self.update_and_reconcile(req, compiled, topics, now, false, false)
    }

    fn update_and_reconcile(
        &mut self,
        req: HeartbeatRequest,
        compiled: Option<regex::Regex>,
        topics: &dyn TopicView,
        now: i64,
        joining: bool,
        new_member: bool,
    ) -> Result<HeartbeatResponse, HbError> {
        let id = req.member_id.clone();
        let session = self.settings.session_timeout_ms as i64;
        let mut changed_subscription = new_member;
        {
            let m = self.members.get_mut(&id).expect("member exists");
            m.session_deadline = now + session;
            m.client_id = req.client_id.clone();
            m.client_host = req.client_host.clone();
            m.principal = req.principal.clone();
            if req.rack_id.is_some() {
                m.rack_id = req.rack_id.clone();
            }
            if req.rebalance_timeout_ms >= 0 {
                m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            }
            if let Some(names) = &req.subscribed_topic_names {
                let mut names = names.clone();
                names.sort();
                names.dedup();
                if names != m.subscribed {
                    m.subscribed = names;
                    changed_subscription = true;
                }
            }
            // An empty regex drops a regex subscription; absent means unchanged.
            if let Some(r) = &req.subscribed_topic_regex {
                let r = (!r.is_empty()).then(|| r.clone());
                if r != m.regex {
                    m.regex = r;
                    m.compiled = compiled;
                    m.matched.clear();
                    changed_subscription = true;
                }
            }
            if let Some(a) = req.server_assignor.as_deref().and_then(AssignorKind::parse) {
                if m.server_assignor != Some(a) {
                    m.server_assignor = Some(a);
                    changed_subscription = true;
                }
            }
            if joining && m.member_epoch == -2 {
                m.member_epoch = m.previous_epoch.max(0);
            }
        }
        // One heartbeat bumps the group epoch at most once.
        if self.refresh_metadata(topics) || changed_subscription {
            self.bump(now);
        }
        if self.group_epoch > self.assignment_epoch {
            self.compute_target();
        }
        let owned = req.owned.map(normalize);
        let changed = self.reconcile(&id, owned.as_ref(), now);
        let m = &self.members[&id];
        let send = joining || changed || owned.as_ref().is_some_and(|o| o != &m.assigned);
        Ok(HeartbeatResponse {
            member_id: id.clone(),
            member_epoch: m.member_epoch,
            heartbeat_interval_ms: self.settings.heartbeat_interval_ms,
            assignment: send.then(|| m.assigned.clone()),
        })
    }

    fn leave(&mut self, req: HeartbeatRequest, now: i64) -> Result<HeartbeatResponse, HbError> {
        let id = match (&req.instance_id, req.member_id.is_empty()) {
            (Some(iid), _) => self.static_members.get(iid).cloned().unwrap_or(req.member_id.clone()),
            (None, false) => req.member_id.clone(),
            (None, true) => return Err(invalid("MemberId can't be empty.")),
        };
        if !self.members.contains_key(&id) {
            return Err((
                ResponseError::UnknownMemberId,
                Some(format!("Member {id} is not a member of group {}", self.id)),
            ));
        }
        if req.member_epoch == -2 {
            if req.instance_id.is_none() {
                return Err(invalid("InstanceId can't be null when MemberEpoch is -2."));
            }
            // A static member leaving temporarily keeps its assignment until its session ends.
            let m = self.members.get_mut(&id).expect("member");
            if m.member_epoch >= 0 {
                m.previous_epoch = m.member_epoch;
            }
            m.member_epoch = -2;
            m.session_deadline = now + self.settings.session_timeout_ms as i64;
        } else {
            self.remove_member(&id, now);
        }
        Ok(HeartbeatResponse {
            member_id: id,
            member_epoch: req.member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        })
    }

    /// Removes a member (left, fenced or expired); its partitions become free.
    pub fn remove_member(&mut self, id: &str, now: i64) {
        let Some(m) = self.members.shift_remove(id) else { return };
        if let Some(iid) = &m.instance_id {
            if self.static_members.get(iid).is_some_and(|k| k == id) {
                self.static_members.remove(iid);
            }
        }
        self.target.remove(id);
        self.bump(now);
        if self.members.is_empty() {
            self.metadata.clear();
            self.target.clear();
        }
    }

    /// Session and revocation timeouts. Returns the ids of the members removed.
    pub fn tick(&mut self, now: i64) -> Vec<String> {
        self.scheduled_wake = None;
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.session_deadline <= now || m.revoke_deadline.is_some_and(|d| d <= now))
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            self.remove_member(id, now);
        }
        gone
    }

    /// The next time [`Self::tick`] must run, if not already asked for.
    pub fn wake_needed(&mut self) -> Option<i64> {
        let d = self.members.values().map(|m| m.revoke_deadline.unwrap_or(i64::MAX).min(m.session_deadline)).min()?;
        if self.scheduled_wake.is_none_or(|s| d < s) {
            self.scheduled_wake = Some(d);
            return Some(d);
        }
        None
    }

    /// Re-reads the subscribed topics; true if they changed.
    fn refresh_metadata(&mut self, topics: &dyn TopicView) -> bool {
        let mut changed = false;
        if self.members.values().any(|m| m.compiled.is_some()) {
            let names = topics.names();
            for m in self.members.values_mut() {
                let Some(r) = &m.compiled else { continue };
                let matched: Vec<String> = names
                    .iter()
                    .filter(|n| r.is_match(n) && topics.may_describe(&m.principal, m.host(), n))
                    .cloned()
                    .collect();
                if matched != m.matched {
                    m.matched = matched;
                    changed = true;
                }
            }
        }
        let fresh: BTreeMap<String, TopicInfo> =
            self.subscribed_topics().into_iter().filter_map(|n| topics.info(&n).map(|i| (n, i))).collect();
        if fresh != self.metadata {
            self.metadata = fresh;
            changed = true;
        }
        changed
    }

    /// The assignor most members ask for, else the configured default.
    fn pick_assignor(&self) -> AssignorKind {
        let mut votes: HashMap<AssignorKind, usize> = HashMap::new();
        for a in self.members.values().filter_map(|m| m.server_assignor) {
            *votes.entry(a).or_default() += 1;
        }
        let default = self.settings.assignors.first().copied().unwrap_or(AssignorKind::Uniform);
        votes.into_iter().max_by_key(|(k, n)| (*n, *k == default)).map_or(default, |(k, _)| k)
    }

    fn compute_target(&mut self) {
        self.assignor = self.pick_assignor();
        let members: Vec<AssignMember> = self
            .members
            .values()
            .map(|m| AssignMember {
                id: m.id.clone(),
                topics: m.topics().filter_map(|n| self.metadata.get(n).map(|(id, _)| *id)).collect(),
            })
            .collect();
        let topics: BTreeMap<Uuid, i32> = self.metadata.values().copied().collect();
        self.target = assign(self.assignor, &members, &topics, &self.target);
        self.assignment_epoch = self.group_epoch;
    }

    /// Moves one member towards its target. Returns whether its assignment or epoch changed.
    fn reconcile(&mut self, id: &str, owned: Option<&Assignment>, now: i64) -> bool {
        let m = &self.members[id];
        if m.member_epoch < 0 {
            return false;
        }
        let proceed = match m.state {
            MemberState::Stable => m.member_epoch != self.assignment_epoch,
            // Wait until the member reports that it gave up the revoked partitions.
            MemberState::UnrevokedPartitions => owned.is_some_and(|o| !overlaps(o, &m.revoking)),
            MemberState::UnreleasedPartitions => true,
        };
        if !proceed {
            return false;
        }
        self.next_assignment(id, now)
    }

    fn next_assignment(&mut self, id: &str, now: i64) -> bool {
        let target_epoch = self.assignment_epoch;
        let target = self.target.get(id).cloned().unwrap_or_default();
        // Partitions other members still hold.
        let mut taken: HashMap<(Uuid, i32), ()> = HashMap::new();
        for (other, m) in &self.members {
            if other == id {
                continue;
            }
            for a in [&m.assigned, &m.revoking] {
                for (t, ps) in a {
                    for p in ps {
                        taken.insert((*t, *p), ());
                    }
                }
            }
        }
        let m = self.members.get_mut(id).expect("member");
        let before = (m.member_epoch, m.assigned.clone(), m.revoking.clone(), m.state);
        let mut kept = Assignment::new();
        let mut revoke = Assignment::new();
        for (t, ps) in &m.assigned {
            for p in ps {
                let dst = if target.get(t).is_some_and(|s| s.contains(p)) { &mut kept } else { &mut revoke };
                dst.entry(*t).or_default().insert(*p);
            }
        }
        let mut free = Assignment::new();
        let mut unreleased = false;
        for (t, ps) in &target {
            for p in ps {
                if m.assigned.get(t).is_some_and(|s| s.contains(p)) {
                    continue;
                }
                if taken.contains_key(&(*t, *p)) {
                    unreleased = true;
                } else {
                    free.entry(*t).or_default().insert(*p);
                }
            }
        }
        if !revoke.is_empty() {
            m.assigned = kept;
            m.revoking = revoke;
            m.state = MemberState::UnrevokedPartitions;
            m.revoke_deadline = Some(now + m.rebalance_timeout_ms.max(0) as i64);
        } else {
            for (t, ps) in free {
                kept.entry(t).or_default().extend(ps);
            }
            m.assigned = kept;
            m.revoking = Assignment::new();
            m.revoke_deadline = None;
            if m.member_epoch != target_epoch {
                m.previous_epoch = m.member_epoch;
                m.member_epoch = target_epoch;
            }
            m.state = if unreleased { MemberState::UnreleasedPartitions } else { MemberState::Stable };
        }
        before != (m.member_epoch, m.assigned.clone(), m.revoking.clone(), m.state)
    }

    /// OffsetCommit from a member of this group (Kafka's `ConsumerGroup.validateOffsetCommit`).
    pub fn validate_commit(&self, member_id: &str, member_epoch: i32) -> Result<(), ResponseError> {
        if member_epoch < 0 && self.members.is_empty() {
            return Ok(()); // admin or a consumer without group management
        }
        let m = self.members.get(member_id).ok_or(ResponseError::UnknownMemberId)?;
        if member_epoch != m.member_epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }

    /// OffsetFetch with a member id and epoch (Kafka's `ConsumerGroup.validateOffsetFetch`).
    pub fn validate_fetch(&self, member_id: Option<&str>, member_epoch: i32) -> Result<(), ResponseError> {
        let Some(member_id) = member_id else {
            return Ok(());
        };
        if member_epoch < 0 && member_id.is_empty() {
            return Ok(());
        }
        let m = self.members.get(member_id).ok_or(ResponseError::UnknownMemberId)?;
        if member_epoch != m.member_epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "consumer_tests.rs"]
mod tests;
