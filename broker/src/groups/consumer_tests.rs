use super::*;

const T: Uuid = Uuid::from_u128(7);

fn topics(n: i32) -> impl Fn(&str) -> Option<TopicInfo> {
    move |name: &str| (name == "t").then_some((T, n))
}

fn parts(a: &Assignment) -> Vec<i32> {
    a.get(&T).map(|s| s.iter().copied().collect()).unwrap_or_default()
}

fn owned(ps: &[i32]) -> Option<Assignment> {
    let mut a = Assignment::new();
    if !ps.is_empty() {
        a.insert(T, ps.iter().copied().collect());
    }
    Some(a)
}

fn join(id: &str) -> HeartbeatRequest {
    HeartbeatRequest {
        member_id: id.to_string(),
        member_epoch: 0,
        rebalance_timeout_ms: 30000,
        subscribed_topic_names: Some(vec!["t".to_string()]),
        owned: Some(Assignment::new()),
        ..Default::default()
    }
}

fn hb(id: &str, epoch: i32, own: Option<Assignment>) -> HeartbeatRequest {
    HeartbeatRequest {
        member_id: id.to_string(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        owned: own,
        ..Default::default()
    }
}

fn group() -> ConsumerGroup {
    ConsumerGroup::new("g", ConsumerSettings::default(), 0)
}

#[test]
fn single_member_gets_everything() {
    let mut g = group();
    let r = g.heartbeat(join("a"), &topics(6), 0).unwrap();
    assert_eq!(r.member_epoch, 1, "one bump per heartbeat");
    assert_eq!(parts(r.assignment.as_ref().unwrap()), vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(r.heartbeat_interval_ms, 5000);
    assert_eq!(g.state(), ConsumerGroupState::Stable);
    // A plain heartbeat changes nothing and sends no assignment.
    let r = g.heartbeat(hb("a", 1, None), &topics(6), 10).unwrap();
    assert_eq!(r.assignment, None);
    assert_eq!(r.member_epoch, 1);
}

#[test]
fn empty_member_id_gets_one() {
    let mut g = group();
    let r = g.heartbeat(join(""), &topics(1), 0).unwrap();
    assert!(!r.member_id.is_empty());
}

#[test]
fn revocation_before_assignment() {
    let mut g = group();
    let a = g.heartbeat(join("a"), &topics(6), 0).unwrap();
    let ea = a.member_epoch;
    // b joins: target splits 3/3, but a still owns everything, so b gets nothing yet.
    let b = g.heartbeat(join("b"), &topics(6), 1).unwrap();
    assert_eq!(b.member_epoch, 2);
    assert!(parts(b.assignment.as_ref().unwrap()).is_empty());
    assert_eq!(g.state(), ConsumerGroupState::Reconciling);
    // a is asked to revoke: its epoch stays, its assignment shrinks.
    let r = g.heartbeat(hb("a", ea, owned(&[0, 1, 2, 3, 4, 5])), &topics(6), 2).unwrap();
    assert_eq!(r.member_epoch, ea);
    let keep = parts(r.assignment.as_ref().unwrap());
    assert_eq!(keep.len(), 3);
    assert_eq!(g.members["a"].state, MemberState::UnrevokedPartitions);
    // Still owning the revoked partitions: nothing moves.
    let r = g.heartbeat(hb("a", ea, owned(&[0, 1, 2, 3, 4, 5])), &topics(6), 3).unwrap();
    assert_eq!(r.member_epoch, ea);
    let r = g.heartbeat(hb("b", 2, owned(&[])), &topics(6), 3).unwrap();
    assert_eq!(r.assignment, None, "b waits for a");
    // a acknowledges the revocation and moves to the new epoch.
    let r = g.heartbeat(hb("a", ea, owned(&keep)), &topics(6), 4).unwrap();
    assert_eq!(r.member_epoch, 2);
    assert_eq!(g.members["a"].state, MemberState::Stable);
    // b now gets the released partitions.
    let r = g.heartbeat(hb("b", 2, None), &topics(6), 5).unwrap();
    let got = parts(r.assignment.as_ref().unwrap());
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|p| !keep.contains(p)));
    assert_eq!(g.state(), ConsumerGroupState::Stable);
}

#[test]
fn leave_gives_partitions_to_the_rest() {
    let mut g = group();
    g.heartbeat(join("a"), &topics(6), 0).unwrap();
    g.heartbeat(join("b"), &topics(6), 0).unwrap();
    let r = g.heartbeat(hb("a", 1, owned(&[0, 1, 2, 3, 4, 5])), &topics(6), 1).unwrap();
    let keep = parts(r.assignment.as_ref().unwrap());
    g.heartbeat(hb("a", 1, owned(&keep)), &topics(6), 2).unwrap();
    let r = g.heartbeat(hb("b", 2, None), &topics(6), 3).unwrap();
    assert_eq!(parts(r.assignment.as_ref().unwrap()).len(), 3);
    // a leaves.
    let r = g.heartbeat(hb("a", -1, None), &topics(6), 4).unwrap();
    assert_eq!(r.member_epoch, -1);
    let r = g.heartbeat(hb("b", 2, None), &topics(6), 5).unwrap();
    assert_eq!(r.member_epoch, 3);
    assert_eq!(parts(r.assignment.as_ref().unwrap()), vec![0, 1, 2, 3, 4, 5]);
}

#[test]
fn fencing_and_unknown_members() {
    let mut g = group();
    g.heartbeat(join("a"), &topics(2), 0).unwrap();
    assert_eq!(g.heartbeat(hb("zz", 1, None), &topics(2), 1).unwrap_err().0, ResponseError::UnknownMemberId);
    assert_eq!(g.heartbeat(hb("a", 9, None), &topics(2), 1).unwrap_err().0, ResponseError::FencedMemberEpoch);
    // The topic grows: epoch 2.
    assert_eq!(g.heartbeat(hb("a", 1, None), &topics(3), 1).unwrap().member_epoch, 2);
    // The previous epoch is accepted with a subset of the assignment (lost response)...
    assert!(g.heartbeat(hb("a", 1, owned(&[0])), &topics(3), 1).is_ok());
    // ...but not without owned partitions.
    assert_eq!(g.heartbeat(hb("a", 1, None), &topics(3), 1).unwrap_err().0, ResponseError::FencedMemberEpoch);
}

#[test]
fn session_timeout_removes_member() {
    let mut g = group();
    g.heartbeat(join("a"), &topics(2), 0).unwrap();
    assert_eq!(g.wake_needed(), Some(45000));
    assert!(g.tick(44999).is_empty());
    assert_eq!(g.tick(45000), vec!["a".to_string()]);
    assert_eq!(g.state(), ConsumerGroupState::Empty);
}

#[test]
fn new_topic_and_more_partitions_reassign() {
    let mut g = group();
    let none = |_: &str| None;
    let r = g.heartbeat(join("a"), &none, 0).unwrap();
    assert!(parts(r.assignment.as_ref().unwrap()).is_empty());
    let e = r.member_epoch;
    // The topic appears.
    let r = g.heartbeat(hb("a", e, None), &topics(2), 1).unwrap();
    assert_eq!(parts(r.assignment.as_ref().unwrap()), vec![0, 1]);
    // It grows.
    let r = g.heartbeat(hb("a", r.member_epoch, None), &topics(4), 2).unwrap();
    assert_eq!(parts(r.assignment.as_ref().unwrap()), vec![0, 1, 2, 3]);
}

#[test]
fn static_member_replacement() {
    let mut g = group();
    let mut j = join("a");
    j.instance_id = Some("i1".into());
    let r = g.heartbeat(j.clone(), &topics(2), 0).unwrap();
    let e = r.member_epoch;
    let mut j2 = join("a2");
    j2.instance_id = Some("i1".into());
    assert_eq!(g.heartbeat(j2.clone(), &topics(2), 1).unwrap_err().0, ResponseError::UnreleasedInstanceId);
    let mut leave = hb("a", -2, None);
    leave.instance_id = Some("i1".into());
    assert_eq!(g.heartbeat(leave, &topics(2), 2).unwrap().member_epoch, -2);
    let r = g.heartbeat(j2, &topics(2), 3).unwrap();
    assert_eq!(r.member_epoch, e, "the replacement keeps the epoch");
    assert_eq!(parts(r.assignment.as_ref().unwrap()), vec![0, 1]);
    assert!(!g.members.contains_key("a"));
}

#[test]
fn group_max_size_and_assignor_checks() {
    let mut g = ConsumerGroup::new("g", ConsumerSettings { max_size: 1, ..Default::default() }, 0);
    g.heartbeat(join("a"), &topics(2), 0).unwrap();
    assert_eq!(g.heartbeat(join("b"), &topics(2), 0).unwrap_err().0, ResponseError::GroupMaxSizeReached);
    let mut j = join("c");
    j.server_assignor = Some("sticky".into());
    assert_eq!(g.heartbeat(j, &topics(2), 0).unwrap_err().0, ResponseError::UnsupportedAssignor);
    let mut j = join("c");
    j.subscribed_topic_regex = Some("t(".into());
    assert_eq!(g.heartbeat(j, &topics(2), 0).unwrap_err().0, ResponseError::InvalidRegularExpression);
}

/// Topics by name for regex tests: each has its own id and 2 partitions.
struct Named(Vec<&'static str>);

impl TopicView for Named {
    fn info(&self, name: &str) -> Option<TopicInfo> {
        self.0.iter().position(|n| *n == name).map(|i| (Uuid::from_u128(100 + i as u128), 2))
    }
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.0.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }
}

#[test]
fn regex_subscription_matches_whole_names_and_follows_new_topics() {
    let mut g = group();
    let mut j = join("a");
    j.subscribed_topic_names = None;
    j.subscribed_topic_regex = Some("claims-.*".into());
    let view = Named(vec!["claims-eu", "claims-us", "xclaims-eu", "claims"]);
    let r = g.heartbeat(j, &view, 0).unwrap();
    let got: BTreeSet<Uuid> = r.assignment.unwrap().keys().copied().collect();
    let want: BTreeSet<Uuid> = ["claims-eu", "claims-us"].iter().map(|n| view.info(n).unwrap().0).collect();
    assert_eq!(got, want, "anchored: neither xclaims-eu nor claims");
    assert_eq!(g.subscribed_topics(), ["claims-eu", "claims-us"].iter().map(|s| s.to_string()).collect());

    // A topic created later joins on the next heartbeat, with a new group epoch.
    let view = Named(vec!["claims-eu", "claims-us", "xclaims-eu", "claims", "claims-apac"]);
    let epoch = g.group_epoch;
    let mut owned = Assignment::new();
    for n in ["claims-eu", "claims-us"] {
        owned.insert(view.info(n).unwrap().0, [0, 1].into_iter().collect());
    }
    let r = g.heartbeat(hb("a", r.member_epoch, Some(owned)), &view, 1).unwrap();
    assert!(g.group_epoch > epoch);
    let a = r.assignment.expect("the new topic is assigned");
    assert!(a.contains_key(&view.info("claims-apac").unwrap().0));

    // Switching to names drops nothing by itself; an empty regex ends the regex subscription.
    let mut h = hb("a", r.member_epoch, None);
    h.subscribed_topic_regex = Some(String::new());
    h.subscribed_topic_names = Some(vec!["claims".into()]);
    g.heartbeat(h, &view, 2).unwrap();
    assert_eq!(g.subscribed_topics(), ["claims".to_string()].into_iter().collect());
}

#[test]
fn commit_validation() {
    let mut g = group();
    assert!(g.validate_commit("", -1).is_ok());
    let r = g.heartbeat(join("a"), &topics(2), 0).unwrap();
    assert!(g.validate_commit("a", r.member_epoch).is_ok());
    assert_eq!(g.validate_commit("a", r.member_epoch - 1), Err(ResponseError::StaleMemberEpoch));
    assert_eq!(g.validate_commit("x", 1), Err(ResponseError::UnknownMemberId));
    assert_eq!(g.validate_commit("", -1), Err(ResponseError::UnknownMemberId));
    assert!(g.validate_fetch(None, -1).is_ok());
    assert_eq!(g.validate_fetch(Some("a"), 99), Err(ResponseError::StaleMemberEpoch));
}

/// A view where `principal` may describe only the listed topics.
struct Acl<'a>(Named, &'a str, Vec<&'a str>);

impl TopicView for Acl<'_> {
    fn info(&self, name: &str) -> Option<TopicInfo> {
        self.0.info(name)
    }
    fn names(&self) -> Vec<String> {
        self.0.names()
    }
    fn may_describe(&self, principal: &str, _host: &str, topic: &str) -> bool {
        principal != self.1 || self.2.contains(&topic)
    }
}

#[test]
fn regex_matches_only_topics_the_member_may_describe() {
    let mut g = group();
    let view = Acl(Named(vec!["claims-eu", "claims-us"]), "User:alice", vec!["claims-eu"]);
    let mut j = join("a");
    j.subscribed_topic_names = None;
    j.subscribed_topic_regex = Some("claims-.*".into());
    j.principal = "User:alice".into();
    let r = g.heartbeat(j, &view, 0).unwrap();
    let got: Vec<Uuid> = r.assignment.unwrap().keys().copied().collect();
    assert_eq!(got, vec![view.info("claims-eu").unwrap().0]);
    assert_eq!(g.subscribed_topics(), ["claims-eu".to_string()].into_iter().collect());

    // Another principal with the same regex sees both; alice's member still only gets hers.
    let mut j = join("b");
    j.subscribed_topic_names = None;
    j.subscribed_topic_regex = Some("claims-.*".into());
    j.principal = "User:bob".into();
    g.heartbeat(j, &view, 1).unwrap();
    assert_eq!(g.subscribed_topics().len(), 2);
    let us = view.info("claims-us").unwrap().0;
    assert!(!g.target["a"].contains_key(&us), "alice's member is never given claims-us");
}

/// Replays records the way the coordinator does after a restart.
fn reload(g: &mut ConsumerGroup, log: &mut Vec<ConsumerRecord>, now: i64) -> ConsumerGroup {
    log.extend(g.take_changes());
    let mut image = ConsumerImage::default();
    for r in log.iter().cloned() {
        image.apply(r);
    }
    ConsumerGroup::restore("g", ConsumerSettings::default(), image, now)
}

#[test]
fn restored_group_carries_on_without_fencing_or_rebalance() {
    let mut g = group();
    let mut log = Vec::new();
    let mut bad = join("a");
    bad.rebalance_timeout_ms = -1;
    assert!(g.heartbeat(bad, &topics(4), 0).is_err());
    assert_eq!(g.take_changes(), vec![], "a refused first join writes nothing");
    let a = g.heartbeat(join("a"), &topics(4), 0).unwrap();
    let b = g.heartbeat(join("b"), &topics(4), 1).unwrap();
    // a gives up what b is to get, then both are stable.
    let a = g.heartbeat(hb("a", a.member_epoch, owned(&[0, 1, 2, 3])), &topics(4), 2).unwrap();
    let a_parts = parts(a.assignment.as_ref().unwrap());
    let a = g.heartbeat(hb("a", a.member_epoch, owned(&a_parts)), &topics(4), 3).unwrap();
    let b = g.heartbeat(hb("b", b.member_epoch, owned(&[])), &topics(4), 4).unwrap();
    let b_parts = parts(b.assignment.as_ref().unwrap());
    assert_eq!(a_parts.len() + b_parts.len(), 4);
    assert_eq!(g.state(), ConsumerGroupState::Stable);
    let epoch = g.group_epoch;

    let mut r = reload(&mut g, &mut log, 100);
    assert_eq!(r.take_changes(), vec![], "a restored group has nothing new to write");
    assert_eq!((r.group_epoch, r.assignment_epoch, r.state()), (epoch, epoch, ConsumerGroupState::Stable));
    let ra = r.heartbeat(hb("a", a.member_epoch, owned(&a_parts)), &topics(4), 101).unwrap();
    let rb = r.heartbeat(hb("b", b.member_epoch, owned(&b_parts)), &topics(4), 102).unwrap();
    assert_eq!((ra.member_epoch, ra.assignment), (a.member_epoch, None), "no new epoch, nothing to change");
    assert_eq!((rb.member_epoch, rb.assignment), (b.member_epoch, None));
    assert_eq!(r.group_epoch, epoch, "no rebalance");
    assert_eq!(r.take_changes(), vec![], "plain heartbeats write nothing");

    // A member leaving is a tombstone: after another reload only b is there.
    r.heartbeat(hb("a", -1, None), &topics(4), 103).unwrap();
    let changes = r.take_changes();
    assert!(changes.contains(&ConsumerRecord::Member("a".into(), None)));
    log.extend(changes);
    let mut r2 = reload(&mut r, &mut log, 200);
    assert_eq!(r2.members.keys().collect::<Vec<_>>(), vec!["b"]);
    // A session that ends after the restart removes the member as before.
    assert_eq!(r2.tick(200 + 45_000), vec!["b".to_string()]);
    // A deleted group leaves no live image.
    log.extend(r2.take_tombstones());
    let mut image = ConsumerImage::default();
    log.into_iter().for_each(|r| image.apply(r));
    assert!(!image.is_live());
}

#[test]
fn restored_member_mid_revocation_keeps_its_state() {
    let mut g = group();
    let mut log = Vec::new();
    let a = g.heartbeat(join("a"), &topics(2), 0).unwrap();
    g.heartbeat(join("b"), &topics(2), 1).unwrap();
    let a = g.heartbeat(hb("a", a.member_epoch, owned(&[0, 1])), &topics(2), 2).unwrap();
    assert_eq!(g.members["a"].state, MemberState::UnrevokedPartitions);
    let mut r = reload(&mut g, &mut log, 10);
    assert_eq!(r.members["a"].state, MemberState::UnrevokedPartitions);
    assert_eq!(r.members["a"].revoking, g.members["a"].revoking);
    // The member reports the revocation done and moves on as it would have.
    let kept = parts(a.assignment.as_ref().unwrap());
    let ra = r.heartbeat(hb("a", a.member_epoch, owned(&kept)), &topics(2), 11).unwrap();
    assert_eq!(ra.member_epoch, r.assignment_epoch);
    assert_eq!(r.state(), ConsumerGroupState::Reconciling, "b still to get its partition");
}
