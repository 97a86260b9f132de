//! The classic group protocol (JoinGroup/SyncGroup/Heartbeat/LeaveGroup) of one group as a
//! pure state machine: events in (with the current time), actions out.
//!
//! Nothing here does I/O or reads a clock. A request that must wait (a JoinGroup until the
//! rebalance completes, a SyncGroup until the leader's assignment arrives) hands over a
//! responder `T`; the machine keeps it and later returns it inside [`Action::Reply`]. Timers
//! are deadlines: the machine asks to be woken with [`Action::WakeAt`] and the caller calls
//! [`Group::tick`] at (or after) that time. The caller runs the actions in order.
//!
//! States and transitions follow Kafka's classic `GroupCoordinator`:
//! `Empty -> PreparingRebalance -> CompletingRebalance -> Stable`, back to
//! `PreparingRebalance` whenever membership or subscriptions change, and `Dead` once deleted.
//! The assignor's bytes (member metadata and assignments) are never interpreted.

use std::collections::HashMap;

use bytes::Bytes;
use indexmap::IndexMap;
use rill_protocol::ResponseError;

/// Broker settings that shape every group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLimits {
    /// `group.min.session.timeout.ms`
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group
    /// waits for more members before completing.
    pub initial_rebalance_delay_ms: i32,
}

impl Default for GroupLimits {
    fn default() -> Self {
        GroupLimits {
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3000,
        }
    }
}

/// The group states of the classic protocol, named as DescribeGroups/ListGroups report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Empty => "Empty",
            Phase::PreparingRebalance => "PreparingRebalance",
            Phase::CompletingRebalance => "CompletingRebalance",
            Phase::Stable => "Stable",
            Phase::Dead => "Dead",
        }
    }
}

/// A JoinGroup as the machine sees it.
#[derive(Debug, Clone, Default)]
pub struct JoinRequest {
    /// Empty for a member joining for the first time.
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new dynamic member first gets MEMBER_ID_REQUIRED and its id.
    pub require_known_member_id: bool,
}

/// A member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

/// The outcome of a JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    pub error: Option<ResponseError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Filled for the leader only.
    pub members: Vec<JoinedMember>,
    /// KIP-814: a static leader rejoining a stable group must not reassign.
    pub skip_assignment: bool,
}

impl JoinResult {
    pub fn error(e: ResponseError, member_id: &str) -> Self {
        JoinResult {
            error: Some(e),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

/// The outcome of a SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(e: ResponseError) -> Self {
        SyncResult { error: Some(e), protocol_type: None, protocol_name: None, assignment: Bytes::new() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Join(JoinResult),
    Sync(SyncResult),
}

/// What the caller must do, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<T> {
    /// Answer a waiting JoinGroup/SyncGroup.
    Reply(T, Reply),
    /// Call [`Group::tick`] at this time (ms). Earlier wake-ups are harmless.
    WakeAt(i64),
    /// The group's membership was settled (Stable or Empty): persist its metadata.
    StoreGroup,
}

/// One member of the group.
#[derive(Debug)]
pub struct Member<T> {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocols: Vec<(String, Bytes)>,
    /// This generation's assignment, as the leader sent it.
    pub assignment: Bytes,
    awaiting_join: Option<T>,
    awaiting_sync: Option<T>,
    session_deadline: i64,
}

impl<T> Member<T> {
    /// The metadata the member sent for `protocol`.
    pub fn metadata(&self, protocol: &str) -> Option<&Bytes> {
        self.protocols.iter().find(|(n, _)| n == protocol).map(|(_, m)| m)
    }

    fn kept_alive(&self) -> bool {
        self.awaiting_join.is_some() || self.awaiting_sync.is_some()
    }
}

/// One group of the classic protocol.
#[derive(Debug)]
pub struct Group<T> {
    pub id: String,
    pub phase: Phase,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// In join order: the first one becomes leader when there is none.
    pub members: IndexMap<String, Member<T>>,
    /// group.instance.id -> member id of static members.
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the deadline to come back by.
    pending: HashMap<String, i64>,
    /// When the join phase completes even if not everybody rejoined.
    rebalance_deadline: Option<i64>,
    /// The first rebalance of an empty group waits `initial_rebalance_delay_ms` (extended by
    /// each new member, up to this limit) instead of completing as soon as everybody joined.
    initial_delay_limit: Option<i64>,
    /// When the group entered its current phase (for DescribeGroups and offset expiry).
    pub state_timestamp: i64,
    scheduled_wake: Option<i64>,
    limits: GroupLimits,
    actions: Vec<Action<T>>,
}

impl<T> Group<T> {
    pub fn new(id: &str, limits: GroupLimits, now: i64) -> Self {
        Group {
            id: id.to_string(),
            phase: Phase::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: IndexMap::new(),
            static_members: HashMap::new(),
            pending: HashMap::new(),
            rebalance_deadline: None,
            initial_delay_limit: None,
            state_timestamp: now,
            scheduled_wake: None,
            limits,
            actions: Vec::new(),
        }
    }

    /// Actions produced since the last call.
    pub fn take_actions(&mut self) -> Vec<Action<T>> {
        std::mem::take(&mut self.actions)
    }

    /// No members and nobody about to join.
    pub fn has_no_members(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    /// Marks the group deleted; later requests get COORDINATOR_NOT_AVAILABLE and retry.
    pub fn mark_dead(&mut self) {
        self.phase = Phase::Dead;
    }

    // --------------------------------------------------------------------------------------
    // Events
    // --------------------------------------------------------------------------------------

    /// JoinGroup. The responder is answered now or when the rebalance completes.
    pub fn join(&mut self, req: JoinRequest, reply: T, now: i64) {
        let result = if req.session_timeout_ms < self.limits.min_session_timeout_ms
            || req.session_timeout_ms > self.limits.max_session_timeout_ms
        {
            Err(ResponseError::InvalidSessionTimeout)
        } else if self.phase == Phase::Dead {
            Err(ResponseError::CoordinatorNotAvailable)
        } else if !self.supports(&req.protocol_type, &req.protocols) {
            Err(ResponseError::InconsistentGroupProtocol)
        } else {
            Ok(())
        };
        match result {
            Err(e) => self.reply_join(reply, JoinResult::error(e, &req.member_id)),
            Ok(()) if req.member_id.is_empty() => self.join_new(req, reply, now),
            Ok(()) => self.join_known(req, reply, now),
        }
        self.reschedule();
    }

    /// SyncGroup. The responder is answered now or when the leader's assignment arrives.
    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        reply: T,
        now: i64,
    ) {
        let check = self.check_member(generation, member_id, instance_id).and_then(|()| {
            if protocol_type.is_some_and(|p| Some(p) != self.protocol_type.as_deref())
                || protocol_name.is_some_and(|p| Some(p) != self.protocol.as_deref())
            {
                return Err(ResponseError::InconsistentGroupProtocol);
            }
            match self.phase {
                Phase::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
                Phase::Empty => Err(ResponseError::UnknownMemberId),
                _ => Ok(()),
            }
        });
        if let Err(e) = check {
            self.reply_sync(reply, SyncResult::error(e));
            self.reschedule();
            return;
        }
        let m = self.members.get_mut(member_id).expect("checked");
        m.session_deadline = now + m.session_timeout_ms as i64;
        if self.phase == Phase::Stable {
            let r = self.sync_result(member_id);
            self.reply_sync(reply, r);
        } else {
            // CompletingRebalance: wait for the leader (or be it).
            m.awaiting_sync = Some(reply);
            if self.leader.as_deref() == Some(member_id) {
                let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                for m in self.members.values_mut() {
                    m.assignment = given.remove(&m.id).unwrap_or_default();
                }
                self.set_phase(Phase::Stable, now);
                self.actions.push(Action::StoreGroup);
                let ids: Vec<String> = self.members.keys().cloned().collect();
                for id in ids {
                    if let Some(t) = self.members.get_mut(&id).and_then(|m| m.awaiting_sync.take()) {
                        let r = self.sync_result(&id);
                        self.reply_sync(t, r);
                    }
                }
            }
        }
        self.reschedule();
    }

    /// Heartbeat: keeps the member's session alive and tells it about rebalances.
    pub fn heartbeat(
        &mut self,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now: i64,
    ) -> Result<(), ResponseError> {
        let r = self.check_member(generation, member_id, instance_id).and_then(|()| {
            let m = self.members.get_mut(member_id).expect("checked");
            m.session_deadline = now + m.session_timeout_ms as i64;
            match self.phase {
                Phase::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
                Phase::Empty => Err(ResponseError::UnknownMemberId),
                _ => Ok(()),
            }
        });
        self.reschedule();
        r
    }

    /// LeaveGroup of one member (by member id, or by group.instance.id for static members).
    pub fn leave(&mut self, member_id: &str, instance_id: Option<&str>, now: i64) -> Result<(), ResponseError> {
        let r = self.leave_inner(member_id, instance_id, now);
        self.reschedule();
        r
    }

    fn leave_inner(&mut self, member_id: &str, instance_id: Option<&str>, now: i64) -> Result<(), ResponseError> {
        if self.phase == Phase::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let id = if let Some(iid) = instance_id {
            match self.static_members.get(iid) {
                None => return Err(ResponseError::UnknownMemberId),
                Some(known) if !member_id.is_empty() && known != member_id => {
                    return Err(ResponseError::FencedInstanceId)
                }
                Some(known) => known.clone(),
            }
        } else {
            if self.pending.remove(member_id).is_some() {
                self.try_complete_join(now);
                return Ok(());
            }
            member_id.to_string()
        };
        if !self.members.contains_key(&id) {
            return Err(ResponseError::UnknownMemberId);
        }
        self.remove_member(&id, now);
        Ok(())
    }

    /// OffsetCommit's membership check (Kafka's `doCommitOffsets`). A commit by a member also
    /// counts as a heartbeat.
    pub fn validate_commit(
        &mut self,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now: i64,
    ) -> Result<(), ResponseError> {
        if self.phase == Phase::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if self.is_fenced(member_id, instance_id) {
            return Err(ResponseError::FencedInstanceId);
        }
        if generation < 0 && self.phase == Phase::Empty {
            return Ok(()); // a simple (assign()) consumer: no group management
        }
        let Some(m) = self.members.get_mut(member_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        match self.phase {
            Phase::Stable | Phase::PreparingRebalance => {
                m.session_deadline = now + m.session_timeout_ms as i64;
                Ok(())
            }
            Phase::CompletingRebalance => Err(ResponseError::RebalanceInProgress),
            _ => Err(ResponseError::UnknownMemberId),
        }
    }

    /// Expires sessions and pending members and completes a join phase whose time is up.
    pub fn tick(&mut self, now: i64) {
        if self.scheduled_wake.is_some_and(|w| w <= now) {
            self.scheduled_wake = None;
        }
        if self.phase != Phase::Dead {
            let before = self.pending.len();
            self.pending.retain(|_, deadline| *deadline > now);
            let expired: Vec<String> = self
                .members
                .values()
                .filter(|m| m.session_deadline <= now && !m.kept_alive())
                .map(|m| m.id.clone())
                .collect();
            for id in expired {
                self.remove_member(&id, now);
            }
            if self.phase == Phase::PreparingRebalance && self.rebalance_deadline.is_some_and(|d| d <= now) {
                self.complete_join(now);
            } else if before != self.pending.len() {
                self.try_complete_join(now);
            }
        }
        self.reschedule();
    }

    // --------------------------------------------------------------------------------------
    // Join internals
    // --------------------------------------------------------------------------------------

    fn join_new(&mut self, req: JoinRequest, reply: T, now: i64) {
        let prefix = req.instance_id.as_deref().unwrap_or(&req.client_id);
        let new_id = format!("{prefix}-{}", uuid::Uuid::new_v4());
        if let Some(iid) = &req.instance_id {
            if let Some(old_id) = self.static_members.get(iid).cloned() {
                if self.members.contains_key(&old_id) {
                    self.replace_static_member(&old_id, new_id, req, reply, now);
                    return;
                }
            }
        } else if req.require_known_member_id {
            let deadline = now + req.session_timeout_ms as i64;
            self.pending.insert(new_id.clone(), deadline);
            self.reply_join(reply, JoinResult::error(ResponseError::MemberIdRequired, &new_id));
            return;
        }
        self.add_member(new_id, req, reply, now);
    }

    fn join_known(&mut self, req: JoinRequest, reply: T, now: i64) {
        let id = req.member_id.clone();
        if self.pending.remove(&id).is_some() {
            self.add_member(id, req, reply, now);
            return;
        }
        if self.is_fenced(&id, req.instance_id.as_deref()) {
            return self.reply_join(reply, JoinResult::error(ResponseError::FencedInstanceId, &id));
        }
        let Some(m) = self.members.get_mut(&id) else {
            return self.reply_join(reply, JoinResult::error(ResponseError::UnknownMemberId, &id));
        };
        let same_protocols = m.protocols == req.protocols;
        update_member(m, &req, now);
        let is_leader = self.leader.as_deref() == Some(id.as_str());
        match self.phase {
            Phase::PreparingRebalance => {
                self.members[&id].awaiting_join = Some(reply);
                self.try_complete_join(now);
            }
            Phase::CompletingRebalance if same_protocols => {
                // A retried JoinGroup: answer with the current generation.
                let r = self.join_result(&id, is_leader, false);
                self.reply_join(reply, r);
            }
            Phase::Stable if same_protocols && !is_leader => {
                let r = self.join_result(&id, false, false);
                self.reply_join(reply, r);
            }
            Phase::CompletingRebalance | Phase::Stable => {
                self.members[&id].awaiting_join = Some(reply);
                self.prepare_rebalance(now);
            }
            Phase::Empty | Phase::Dead => {
                self.reply_join(reply, JoinResult::error(ResponseError::UnknownMemberId, &id));
            }
        }
    }

    /// KIP-345: a static member restarted (new member id, same group.instance.id). The old
    /// id is fenced; in a stable group with unchanged metadata it gets its old assignment back
    /// without a rebalance.
    fn replace_static_member(&mut self, old_id: &str, new_id: String, req: JoinRequest, reply: T, now: i64) {
        let mut m = self.members.shift_remove(old_id).expect("caller checked");
        if let Some(t) = m.awaiting_join.take() {
            self.reply_join(t, JoinResult::error(ResponseError::FencedInstanceId, old_id));
        }
        if let Some(t) = m.awaiting_sync.take() {
            self.reply_sync(t, SyncResult::error(ResponseError::FencedInstanceId));
        }
        m.id = new_id.clone();
        update_member(&mut m, &req, now);
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        self.static_members.insert(req.instance_id.clone().expect("static"), new_id.clone());
        self.members.insert(new_id.clone(), m);
        // Like Kafka: a restarted static member only forces a rebalance if its protocols would
        // change the group's protocol. Its metadata bytes usually differ (the Java client puts
        // its owned partitions and generation in them), and that alone must not rebalance.
        let unchanged = self.protocol.is_some() && self.select_protocol() == self.protocol;
        match self.phase {
            Phase::Stable if unchanged => {
                let is_leader = self.leader.as_deref() == Some(new_id.as_str());
                let r = self.join_result(&new_id, is_leader, is_leader);
                self.reply_join(reply, r);
                self.actions.push(Action::StoreGroup);
            }
            Phase::PreparingRebalance => {
                self.members[&new_id].awaiting_join = Some(reply);
                self.try_complete_join(now);
            }
            _ => {
                self.members[&new_id].awaiting_join = Some(reply);
                self.prepare_rebalance(now);
            }
        }
    }

    fn add_member(&mut self, id: String, req: JoinRequest, reply: T, now: i64) {
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(iid) = &req.instance_id {
            self.static_members.insert(iid.clone(), id.clone());
        }
        let mut m = Member {
            id: id.clone(),
            instance_id: req.instance_id.clone(),
            client_id: String::new(),
            client_host: String::new(),
            session_timeout_ms: 0,
            rebalance_timeout_ms: 0,
            protocols: Vec::new(),
            assignment: Bytes::new(),
            awaiting_join: Some(reply),
            awaiting_sync: None,
            session_deadline: 0,
        };
        update_member(&mut m, &req, now);
        self.members.insert(id, m);
        if self.phase == Phase::PreparingRebalance {
            if let (Some(limit), Some(deadline)) = (self.initial_delay_limit, self.rebalance_deadline) {
                let delay = self.limits.initial_rebalance_delay_ms as i64;
                self.rebalance_deadline = Some((deadline.max(now) + delay).min(limit));
            }
            self.try_complete_join(now);
        } else {
            self.prepare_rebalance(now);
        }
    }

    fn max_rebalance_timeout(&self) -> i64 {
        self.members.values().map(|m| m.rebalance_timeout_ms as i64).max().unwrap_or(0)
    }

    fn prepare_rebalance(&mut self, now: i64) {
        if self.phase == Phase::CompletingRebalance {
            let waiting: Vec<T> = self
                .members
                .values_mut()
                .filter_map(|m| {
                    m.assignment = Bytes::new();
                    m.awaiting_sync.take()
                })
                .collect();
            for t in waiting {
                self.reply_sync(t, SyncResult::error(ResponseError::RebalanceInProgress));
            }
        }
        let max = self.max_rebalance_timeout();
        if self.phase == Phase::Empty {
            let delay = (self.limits.initial_rebalance_delay_ms as i64).min(max);
            self.rebalance_deadline = Some(now + delay);
            self.initial_delay_limit = Some(now + max);
        } else {
            self.rebalance_deadline = Some(now + max);
            self.initial_delay_limit = None;
        }
        self.set_phase(Phase::PreparingRebalance, now);
        self.try_complete_join(now);
    }

    fn try_complete_join(&mut self, now: i64) {
        if self.phase != Phase::PreparingRebalance {
            return;
        }
        let all_joined = self.members.values().all(|m| m.awaiting_join.is_some()) && self.pending.is_empty();
        let delay_over = match self.initial_delay_limit {
            Some(_) => self.rebalance_deadline.is_some_and(|d| d <= now),
            None => true,
        };
        if (all_joined && delay_over) || self.rebalance_deadline.is_some_and(|d| d <= now) {
            self.complete_join(now);
        }
    }

    fn complete_join(&mut self, now: i64) {
        // Members that did not rejoin in time are out.
        let gone: Vec<String> =
            self.members.values().filter(|m| m.awaiting_join.is_none()).map(|m| m.id.clone()).collect();
        for id in gone {
            self.drop_member(&id);
        }
        self.pending.clear();
        self.rebalance_deadline = None;
        self.initial_delay_limit = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.set_phase(Phase::Empty, now);
            self.actions.push(Action::StoreGroup);
            return;
        }
        self.protocol = self.select_protocol();
        if !self.leader.as_ref().is_some_and(|l| self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        self.set_phase(Phase::CompletingRebalance, now);
        let leader = self.leader.clone();
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let m = &mut self.members[&id];
            m.session_deadline = now + m.session_timeout_ms as i64;
            if let Some(t) = m.awaiting_join.take() {
                let is_leader = leader.as_deref() == Some(id.as_str());
                let r = self.join_result(&id, is_leader, false);
                self.reply_join(t, r);
            }
        }
    }

    /// The protocol every member supports that most members prefer (Kafka's vote).
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: IndexMap<&str, usize> = IndexMap::new();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n.as_str())) {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for (name, n) in votes {
            if best.is_none_or(|(_, b)| n > b) {
                best = Some((name, n));
            }
        }
        best.map(|(n, _)| n.to_string())
    }

    /// Protocols supported by every member, in the first member's order.
    fn candidate_protocols(&self) -> Vec<&str> {
        let Some(first) = self.members.values().next() else { return Vec::new() };
        first
            .protocols
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| self.members.values().all(|m| m.protocols.iter().any(|(p, _)| p == n)))
            .collect()
    }

    /// Can a member with these protocols join? (Kafka's `supportsProtocols`.)
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let candidates = self.candidate_protocols();
        protocols.iter().any(|(n, _)| candidates.contains(&n.as_str()))
    }

    fn join_result(&self, member_id: &str, with_members: bool, skip_assignment: bool) -> JoinResult {
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = if with_members {
            self.members
                .values()
                .map(|m| JoinedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    metadata: m.metadata(&protocol).cloned().unwrap_or_default(),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members,
            skip_assignment,
        }
    }

    fn sync_result(&self, member_id: &str) -> SyncResult {
        SyncResult {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment: self.members.get(member_id).map(|m| m.assignment.clone()).unwrap_or_default(),
        }
    }

    // --------------------------------------------------------------------------------------
    // Membership helpers
    // --------------------------------------------------------------------------------------

    fn is_fenced(&self, member_id: &str, instance_id: Option<&str>) -> bool {
        instance_id.and_then(|i| self.static_members.get(i)).is_some_and(|known| known != member_id)
    }

    /// The checks shared by SyncGroup and Heartbeat.
    fn check_member(&self, generation: i32, member_id: &str, instance_id: Option<&str>) -> Result<(), ResponseError> {
        if self.phase == Phase::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if self.is_fenced(member_id, instance_id) {
            return Err(ResponseError::FencedInstanceId);
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    /// Removes a member and rebalances the rest.
    fn remove_member(&mut self, id: &str, now: i64) {
        self.drop_member(id);
        match self.phase {
            Phase::Stable | Phase::CompletingRebalance => self.prepare_rebalance(now),
            Phase::PreparingRebalance => self.try_complete_join(now),
            _ => {}
        }
    }

    /// Removes a member, answering its waiting requests with UNKNOWN_MEMBER_ID.
    fn drop_member(&mut self, id: &str) {
        let Some(mut m) = self.members.shift_remove(id) else { return };
        if let Some(iid) = &m.instance_id {
            if self.static_members.get(iid).is_some_and(|k| k == id) {
                self.static_members.remove(iid);
            }
        }
        if let Some(t) = m.awaiting_join.take() {
            self.reply_join(t, JoinResult::error(ResponseError::UnknownMemberId, id));
        }
        if let Some(t) = m.awaiting_sync.take() {
            self.reply_sync(t, SyncResult::error(ResponseError::UnknownMemberId));
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    fn set_phase(&mut self, phase: Phase, now: i64) {
        self.phase = phase;
        self.state_timestamp = now;
    }

    fn reply_join(&mut self, t: T, r: JoinResult) {
        self.actions.push(Action::Reply(t, Reply::Join(r)));
    }

    fn reply_sync(&mut self, t: T, r: SyncResult) {
        self.actions.push(Action::Reply(t, Reply::Sync(r)));
    }

    fn next_deadline(&self) -> Option<i64> {
        let members = self.members.values().map(|m| m.session_deadline);
        let pending = self.pending.values().copied();
        members.chain(pending).chain(self.rebalance_deadline).min()
    }

    /// Asks for a wake-up if the next deadline is earlier than the one already asked for.
    fn reschedule(&mut self) {
        if self.phase == Phase::Dead {
            return;
        }
        if let Some(d) = self.next_deadline() {
            if self.scheduled_wake.is_none_or(|s| d < s) {
                self.scheduled_wake = Some(d);
                self.actions.push(Action::WakeAt(d));
            }
        }
    }
}

fn update_member<T>(m: &mut Member<T>, req: &JoinRequest, now: i64) {
    m.client_id = req.client_id.clone();
    m.client_host = req.client_host.clone();
    m.session_timeout_ms = req.session_timeout_ms;
    m.rebalance_timeout_ms = req.rebalance_timeout_ms;
    m.protocols = req.protocols.clone();
    m.session_deadline = now + req.session_timeout_ms as i64;
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
