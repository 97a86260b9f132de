//! Unit tests of the group state machine: events in, actions asserted.
use super::*;

type G = Group<u32>;

const T0: i64 = 1_000_000;

fn limits(delay: i32) -> GroupLimits {
    GroupLimits { min_session_timeout_ms: 6000, max_session_timeout_ms: 1_800_000, initial_rebalance_delay_ms: delay }
}

fn req(member: &str, protocols: &[(&str, &[u8])]) -> JoinRequest {
    JoinRequest {
        member_id: member.into(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        protocols: protocols.iter().map(|(n, m)| (n.to_string(), Bytes::copy_from_slice(m))).collect(),
        require_known_member_id: true,
    }
}

fn range() -> JoinRequest {
    req("", &[("range", b"m")])
}

/// The replies among the actions, by responder.
fn replies(actions: Vec<Action<u32>>) -> Vec<(u32, Reply)> {
    actions
        .into_iter()
        .filter_map(|a| match a {
            Action::Reply(t, r) => Some((t, r)),
            _ => None,
        })
        .collect()
}

fn join_reply(actions: Vec<Action<u32>>, who: u32) -> JoinResult {
    replies(actions)
        .into_iter()
        .find_map(|(t, r)| match r {
            Reply::Join(j) if t == who => Some(j),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no join reply for {who}"))
}

fn sync_reply(actions: Vec<Action<u32>>, who: u32) -> SyncResult {
    replies(actions)
        .into_iter()
        .find_map(|(t, r)| match r {
            Reply::Sync(s) if t == who => Some(s),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no sync reply for {who}"))
}

/// Join with MEMBER_ID_REQUIRED round trip; returns the member id (the join is left pending
/// or answered, see actions).
fn get_member_id(g: &mut G, token: u32, now: i64) -> String {
    g.join(range(), token, now);
    let r = join_reply(g.take_actions(), token);
    assert_eq!(r.error, Some(ResponseError::MemberIdRequired));
    assert!(!r.member_id.is_empty());
    r.member_id
}

/// One member joins and syncs an empty group with no initial delay; returns its id.
fn stable_single(g: &mut G) -> String {
    let id = get_member_id(g, 1, T0);
    g.join(req(&id, &[("range", b"m")]), 2, T0);
    let r = join_reply(g.take_actions(), 2);
    assert_eq!(r.error, None);
    assert_eq!(r.generation, 1);
    assert_eq!(r.leader, id);
    assert_eq!(r.members.len(), 1);
    g.sync(1, &id, None, Some("consumer"), Some("range"), vec![(id.clone(), Bytes::from_static(b"A"))], 3, T0);
    let s = sync_reply(g.take_actions(), 3);
    assert_eq!(s.error, None);
    assert_eq!(s.assignment, Bytes::from_static(b"A"));
    assert_eq!(g.phase, Phase::Stable);
    id
}

#[test]
fn member_id_required_then_join_sync_heartbeat() {
    let mut g = G::new("g", limits(0), T0);
    let id = stable_single(&mut g);
    assert_eq!(g.heartbeat(1, &id, None, T0 + 1000), Ok(()));
    assert_eq!(g.heartbeat(0, &id, None, T0 + 1000), Err(ResponseError::IllegalGeneration));
    assert_eq!(g.heartbeat(1, "nobody", None, T0 + 1000), Err(ResponseError::UnknownMemberId));
}

#[test]
fn store_group_after_sync_and_wake_requested() {
    let mut g = G::new("g", limits(0), T0);
    g.join(range(), 1, T0);
    let acts = g.take_actions();
    assert!(acts.contains(&Action::WakeAt(T0 + 10_000)), "the pending member's deadline");
    let id = join_reply(acts, 1).member_id;
    g.join(req(&id, &[("range", b"m")]), 2, T0);
    g.take_actions();
    g.sync(1, &id, None, None, None, vec![], 3, T0);
    let acts = g.take_actions();
    assert!(acts.contains(&Action::StoreGroup));
}

#[test]
fn initial_delay_waits_then_completes_on_tick() {
    let mut g = G::new("g", limits(3000), T0);
    let id = get_member_id(&mut g, 1, T0);
    g.join(req(&id, &[("range", b"m")]), 2, T0);
    let acts = g.take_actions();
    assert!(replies(acts).is_empty(), "must wait for the initial delay");
    assert_eq!(g.phase, Phase::PreparingRebalance);
    g.tick(T0 + 2999);
    assert!(replies(g.take_actions()).is_empty());
    g.tick(T0 + 3000);
    let r = join_reply(g.take_actions(), 2);
    assert_eq!(r.generation, 1);
    assert_eq!(g.phase, Phase::CompletingRebalance);
}

#[test]
fn inconsistent_protocols_and_bad_session_timeout() {
    let mut g = G::new("g", limits(0), T0);
    stable_single(&mut g);
    // Different protocol type.
    let mut r = req("", &[("range", b"m")]);
    r.protocol_type = "connect".into();
    g.join(r, 9, T0);
    assert_eq!(join_reply(g.take_actions(), 9).error, Some(ResponseError::InconsistentGroupProtocol));
    // No common protocol.
    g.join(req("", &[("roundrobin", b"m")]), 10, T0);
    assert_eq!(join_reply(g.take_actions(), 10).error, Some(ResponseError::InconsistentGroupProtocol));
    // Empty protocol list on an empty group.
    let mut e = G::new("e", limits(0), T0);
    e.join(req("", &[]), 11, T0);
    assert_eq!(join_reply(e.take_actions(), 11).error, Some(ResponseError::InconsistentGroupProtocol));
    let mut r = range();
    r.session_timeout_ms = 10;
    e.join(r, 12, T0);
    assert_eq!(join_reply(e.take_actions(), 12).error, Some(ResponseError::InvalidSessionTimeout));
}

#[test]
fn second_member_triggers_rebalance_and_heartbeat_says_so() {
    let mut g = G::new("g", limits(0), T0);
    let a = stable_single(&mut g);
    let b = get_member_id(&mut g, 20, T0);
    g.join(req(&b, &[("range", b"m")]), 21, T0);
    assert!(replies(g.take_actions()).is_empty());
    assert_eq!(g.phase, Phase::PreparingRebalance);
    assert_eq!(g.heartbeat(1, &a, None, T0 + 10), Err(ResponseError::RebalanceInProgress));
    // A commit from the current generation is still allowed while preparing.
    assert_eq!(g.validate_commit(1, &a, None, T0 + 10), Ok(()));
    g.join(req(&a, &[("range", b"m")]), 22, T0 + 20);
    let acts = g.take_actions();
    let ra = join_reply(replies_to_actions(&acts), 22);
    let rb = join_reply(acts, 21);
    assert_eq!(ra.generation, 2);
    assert_eq!(rb.generation, 2);
    assert_eq!(ra.leader, a, "the old leader stays leader");
    assert_eq!(ra.members.len(), 2);
    assert!(rb.members.is_empty());
    // Follower syncs first and waits; the leader's sync answers both.
    g.sync(2, &b, None, None, None, vec![], 23, T0 + 30);
    assert!(replies(g.take_actions()).is_empty());
    assert_eq!(g.validate_commit(2, &a, None, T0 + 30), Err(ResponseError::RebalanceInProgress));
    g.sync(
        2,
        &a,
        None,
        None,
        None,
        vec![(a.clone(), Bytes::from_static(b"pa")), (b.clone(), Bytes::from_static(b"pb"))],
        24,
        T0 + 40,
    );
    let acts = g.take_actions();
    assert_eq!(sync_reply(replies_to_actions(&acts), 23).assignment, Bytes::from_static(b"pb"));
    assert_eq!(sync_reply(acts, 24).assignment, Bytes::from_static(b"pa"));
    assert_eq!(g.phase, Phase::Stable);
    assert_eq!(g.validate_commit(1, &a, None, T0 + 50), Err(ResponseError::IllegalGeneration));
    assert_eq!(g.validate_commit(2, &a, None, T0 + 50), Ok(()));
    assert_eq!(g.validate_commit(-1, "", None, T0 + 50), Err(ResponseError::UnknownMemberId));
}

/// Copies the reply actions (u32 tokens are Copy) so one action list can be searched twice.
fn replies_to_actions(acts: &[Action<u32>]) -> Vec<Action<u32>> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Reply(t, r) => Some(Action::Reply(*t, r.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn leave_rebalances_and_last_leave_empties() {
    let mut g = G::new("g", limits(0), T0);
    let a = stable_single(&mut g);
    let b = get_member_id(&mut g, 30, T0);
    g.join(req(&b, &[("range", b"m")]), 31, T0);
    g.join(req(&a, &[("range", b"m")]), 32, T0);
    g.take_actions();
    g.sync(2, &a, None, None, None, vec![], 33, T0);
    g.sync(2, &b, None, None, None, vec![], 34, T0);
    g.take_actions();
    assert_eq!(g.leave(&b, None, T0 + 100), Ok(()));
    assert_eq!(g.phase, Phase::PreparingRebalance);
    assert_eq!(g.leave(&b, None, T0 + 100), Err(ResponseError::UnknownMemberId));
    g.join(req(&a, &[("range", b"m")]), 35, T0 + 200);
    let r = join_reply(g.take_actions(), 35);
    assert_eq!(r.generation, 3);
    assert_eq!(r.members.len(), 1);
    g.sync(3, &a, None, None, None, vec![], 36, T0 + 200);
    g.take_actions();
    assert_eq!(g.leave(&a, None, T0 + 300), Ok(()));
    assert_eq!(g.phase, Phase::Empty);
    assert_eq!(g.generation, 4);
    assert!(g.take_actions().contains(&Action::StoreGroup));
    // Simple commits are allowed again once empty.
    assert_eq!(g.validate_commit(-1, "", None, T0 + 400), Ok(()));
}

#[test]
fn session_expiry_removes_member_and_rebalances() {
    let mut g = G::new("g", limits(0), T0);
    let a = stable_single(&mut g);
    let b = get_member_id(&mut g, 40, T0);
    g.join(req(&b, &[("range", b"m")]), 41, T0);
    g.join(req(&a, &[("range", b"m")]), 42, T0);
    g.take_actions();
    g.sync(2, &a, None, None, None, vec![], 43, T0);
    g.sync(2, &b, None, None, None, vec![], 44, T0);
    g.take_actions();
    // a keeps heartbeating, b goes silent.
    assert_eq!(g.heartbeat(2, &a, None, T0 + 8000), Ok(()));
    g.tick(T0 + 10_000);
    assert!(!g.members.contains_key(&b));
    assert_eq!(g.phase, Phase::PreparingRebalance);
    assert_eq!(g.heartbeat(2, &a, None, T0 + 10_001), Err(ResponseError::RebalanceInProgress));
}

#[test]
fn rebalance_timeout_drops_members_that_did_not_rejoin() {
    let mut g = G::new("g", limits(0), T0);
    let a = stable_single(&mut g);
    let b = get_member_id(&mut g, 50, T0);
    g.join(req(&b, &[("range", b"m")]), 51, T0);
    g.take_actions();
    // a never rejoins, but keeps its session alive by heartbeats until the rebalance times out.
    for t in (1..=6).map(|i| T0 + i * 5000) {
        let _ = g.heartbeat(1, &a, None, t);
    }
    g.tick(T0 + 30_000);
    let r = join_reply(g.take_actions(), 51);
    assert_eq!(r.generation, 2);
    assert_eq!(r.leader, b);
    assert!(!g.members.contains_key(&a));
}

#[test]
fn pending_member_expires() {
    let mut g = G::new("g", limits(0), T0);
    let a = stable_single(&mut g);
    let _pending = get_member_id(&mut g, 60, T0);
    assert_eq!(g.phase, Phase::Stable, "a pending member does not rebalance");
    assert_eq!(g.heartbeat(1, &a, None, T0 + 5000), Ok(()));
    g.tick(T0 + 10_000);
    assert_eq!(g.phase, Phase::Stable);
    assert_eq!(g.heartbeat(1, &a, None, T0 + 10_000), Ok(()));
}

fn static_req(member: &str, instance: &str, meta: &'static [u8]) -> JoinRequest {
    let mut r = req(member, &[("range", meta)]);
    r.instance_id = Some(instance.into());
    r
}

#[test]
fn static_member_restart_gets_old_assignment_without_rebalance() {
    let mut g = G::new("g", limits(0), T0);
    g.join(static_req("", "i1", b"m"), 1, T0);
    let r = join_reply(g.take_actions(), 1);
    assert_eq!(r.error, None, "static members skip MEMBER_ID_REQUIRED");
    let old = r.member_id.clone();
    assert!(old.starts_with("i1-"));
    g.sync(1, &old, Some("i1"), None, None, vec![(old.clone(), Bytes::from_static(b"P"))], 2, T0);
    g.take_actions();
    // Restart: same instance id, no member id.
    g.join(static_req("", "i1", b"m"), 3, T0 + 100);
    let r = join_reply(g.take_actions(), 3);
    assert_eq!(r.error, None);
    assert_eq!(r.generation, 1, "no rebalance");
    assert_ne!(r.member_id, old);
    assert!(r.skip_assignment, "the static leader must not reassign");
    let new = r.member_id;
    assert_eq!(g.phase, Phase::Stable);
    g.sync(1, &new, Some("i1"), None, None, vec![], 4, T0 + 100);
    assert_eq!(sync_reply(g.take_actions(), 4).assignment, Bytes::from_static(b"P"));
    // The old incarnation is fenced.
    assert_eq!(g.heartbeat(1, &old, Some("i1"), T0 + 200), Err(ResponseError::FencedInstanceId));
    assert_eq!(g.validate_commit(1, &old, Some("i1"), T0 + 200), Err(ResponseError::FencedInstanceId));
    assert_eq!(g.leave(&old, Some("i1"), T0 + 200), Err(ResponseError::FencedInstanceId));
    assert_eq!(g.heartbeat(1, &new, Some("i1"), T0 + 200), Ok(()));
}

#[test]
fn static_member_with_changed_metadata_keeps_generation() {
    let mut g = G::new("g", limits(0), T0);
    g.join(static_req("", "i1", b"m"), 1, T0);
    let old = join_reply(g.take_actions(), 1).member_id;
    g.sync(1, &old, Some("i1"), None, None, vec![], 2, T0);
    g.take_actions();
    g.join(static_req("", "i1", b"other"), 3, T0 + 100);
    let r = join_reply(g.take_actions(), 3);
    // Same protocol selected: the member gets its old assignment without a rebalance.
    assert_eq!(r.generation, 1);
    assert_eq!(g.phase, Phase::Stable);
}

#[test]
fn static_leave_by_instance_id() {
    let mut g = G::new("g", limits(0), T0);
    g.join(static_req("", "i1", b"m"), 1, T0);
    let id = join_reply(g.take_actions(), 1).member_id;
    g.sync(1, &id, Some("i1"), None, None, vec![], 2, T0);
    g.take_actions();
    assert_eq!(g.leave("", Some("nope"), T0), Err(ResponseError::UnknownMemberId));
    assert_eq!(g.leave("", Some("i1"), T0), Ok(()));
    assert_eq!(g.phase, Phase::Empty);
}

#[test]
fn sync_checks() {
    let mut g = G::new("g", limits(0), T0);
    let a = stable_single(&mut g);
    g.sync(0, &a, None, None, None, vec![], 1, T0);
    assert_eq!(sync_reply(g.take_actions(), 1).error, Some(ResponseError::IllegalGeneration));
    g.sync(1, "x", None, None, None, vec![], 2, T0);
    assert_eq!(sync_reply(g.take_actions(), 2).error, Some(ResponseError::UnknownMemberId));
    g.sync(1, &a, None, Some("connect"), None, vec![], 3, T0);
    assert_eq!(sync_reply(g.take_actions(), 3).error, Some(ResponseError::InconsistentGroupProtocol));
    g.sync(1, &a, None, None, Some("roundrobin"), vec![], 4, T0);
    assert_eq!(sync_reply(g.take_actions(), 4).error, Some(ResponseError::InconsistentGroupProtocol));
}

#[test]
fn rejoin_during_completing_rebalance_fails_waiting_syncs() {
    let mut g = G::new("g", limits(0), T0);
    let a = stable_single(&mut g);
    let b = get_member_id(&mut g, 70, T0);
    g.join(req(&b, &[("range", b"m")]), 71, T0);
    g.join(req(&a, &[("range", b"m")]), 72, T0);
    g.take_actions();
    assert_eq!(g.phase, Phase::CompletingRebalance);
    g.sync(2, &b, None, None, None, vec![], 73, T0);
    g.take_actions();
    // b changes its subscription before the leader synced: new rebalance.
    g.join(req(&b, &[("range", b"changed")]), 74, T0);
    let s = sync_reply(g.take_actions(), 73);
    assert_eq!(s.error, Some(ResponseError::RebalanceInProgress));
    assert_eq!(g.phase, Phase::PreparingRebalance);
}

#[test]
fn protocol_vote_and_opaque_bytes() {
    let mut g = G::new("g", limits(0), T0);
    let mut r1 = req("", &[("cooperative-sticky", b"\x00\x01opaque"), ("range", b"r")]);
    r1.require_known_member_id = false;
    g.join(r1, 1, T0);
    let r = join_reply(g.take_actions(), 1);
    assert_eq!(r.protocol_name.as_deref(), Some("cooperative-sticky"));
    assert_eq!(r.members[0].metadata, Bytes::from_static(b"\x00\x01opaque"));
}

#[test]
fn dead_group_refuses() {
    let mut g = G::new("g", limits(0), T0);
    g.mark_dead();
    g.join(range(), 1, T0);
    assert_eq!(join_reply(g.take_actions(), 1).error, Some(ResponseError::CoordinatorNotAvailable));
    assert_eq!(g.validate_commit(-1, "", None, T0), Err(ResponseError::CoordinatorNotAvailable));
}
