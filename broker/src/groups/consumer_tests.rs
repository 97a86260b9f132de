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
