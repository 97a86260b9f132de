//! Server-side assignors of the consumer group protocol (KIP-848): `uniform` and `range`.
//!
//! Both are pure functions from the members' subscriptions, the subscribed topics' partition
//! counts and the previous target assignment to the new target assignment.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

/// Partitions by topic id. Topics without partitions are never kept as keys.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// The assignors this broker offers (`group.consumer.assignors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AssignorKind {
    Uniform,
    Range,
}

impl AssignorKind {
    /// Accepts the short names the clients send (`group.remote.assignor`) and Kafka's class
    /// names of the broker config.
    pub fn parse(name: &str) -> Option<Self> {
        let n = name.trim();
        let short = n.rsplit('.').next().unwrap_or(n).to_ascii_lowercase();
        match short.as_str() {
            "uniform" | "uniformassignor" => Some(AssignorKind::Uniform),
            "range" | "rangeassignor" => Some(AssignorKind::Range),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AssignorKind::Uniform => "uniform",
            AssignorKind::Range => "range",
        }
    }
}

/// One member as an assignor sees it: its id and the ids of the topics it subscribes to
/// (only topics that exist).
#[derive(Debug, Clone)]
pub struct AssignMember {
    pub id: String,
    pub topics: BTreeSet<Uuid>,
}

/// Computes the target assignment. `members` may be in any order; the result has an entry
/// (possibly empty) for every member.
pub fn assign(
    kind: AssignorKind,
    members: &[AssignMember],
    topics: &BTreeMap<Uuid, i32>,
    previous: &HashMap<String, Assignment>,
) -> HashMap<String, Assignment> {
    match kind {
        AssignorKind::Uniform => uniform(members, topics, previous),
        AssignorKind::Range => range(members, topics),
    }
}

fn add(a: &mut Assignment, t: Uuid, p: i32) {
    a.entry(t).or_default().insert(p);
}

fn remove(a: &mut Assignment, t: Uuid, p: i32) {
    if let Some(set) = a.get_mut(&t) {
        set.remove(&p);
        if set.is_empty() {
            a.remove(&t);
        }
    }
}

pub fn count(a: &Assignment) -> usize {
    a.values().map(|s| s.len()).sum()
}

/// Kafka's RangeAssignor: per topic, the subscribed members sorted by id get consecutive
/// ranges; the first `partitions % members` get one more.
fn range(members: &[AssignMember], topics: &BTreeMap<Uuid, i32>) -> HashMap<String, Assignment> {
    let mut out: HashMap<String, Assignment> = members.iter().map(|m| (m.id.clone(), Assignment::new())).collect();
    for (&t, &n) in topics {
        let mut subs: Vec<&AssignMember> = members.iter().filter(|m| m.topics.contains(&t)).collect();
        if subs.is_empty() || n <= 0 {
            continue;
        }
        subs.sort_by(|a, b| a.id.cmp(&b.id));
        let k = subs.len() as i32;
        let (base, extra) = (n / k, n % k);
        let mut next = 0;
        for (i, m) in subs.iter().enumerate() {
            let take = base + i32::from((i as i32) < extra);
            let a = out.get_mut(&m.id).expect("member");
            for p in next..next + take {
                add(a, t, p);
            }
            next += take;
        }
    }
    out
}

/// A sticky, balanced assignment (Kafka's UniformAssignor in spirit): every partition goes
/// to a subscribed member; partitions stay where they were as long as the counts stay
/// within one of each other among the members that could take them.
fn uniform(
    members: &[AssignMember],
    topics: &BTreeMap<Uuid, i32>,
    previous: &HashMap<String, Assignment>,
) -> HashMap<String, Assignment> {
    let mut sorted: Vec<&AssignMember> = members.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let mut out: HashMap<String, Assignment> = sorted.iter().map(|m| (m.id.clone(), Assignment::new())).collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let mut owner: HashMap<(Uuid, i32), &str> = HashMap::new();
    // Keep what is still valid.
    for m in &sorted {
        counts.insert(&m.id, 0);
        let Some(prev) = previous.get(&m.id) else { continue };
        for (t, parts) in prev {
            let Some(&n) = topics.get(t) else { continue };
            if !m.topics.contains(t) {
                continue;
            }
            for &p in parts {
                if p < n && !owner.contains_key(&(*t, p)) {
                    owner.insert((*t, p), &m.id);
                    add(out.get_mut(&m.id).expect("member"), *t, p);
                    *counts.get_mut(m.id.as_str()).expect("member") += 1;
                }
            }
        }
    }
    // Give each unowned partition to the least loaded subscribed member.
    for (&t, &n) in topics {
        let eligible: Vec<&str> = sorted.iter().filter(|m| m.topics.contains(&t)).map(|m| m.id.as_str()).collect();
        if eligible.is_empty() {
            continue;
        }
        for p in 0..n {
            if owner.contains_key(&(t, p)) {
                continue;
            }
            let best = *eligible.iter().min_by_key(|id| (counts[*id], **id)).expect("non-empty");
            owner.insert((t, p), best);
            add(out.get_mut(best).expect("member"), t, p);
            *counts.get_mut(best).expect("member") += 1;
        }
    }
    // Balance: move partitions from a member to an eligible one with at least two fewer.
    let mut moved = true;
    let mut rounds = 0;
    while moved && rounds < 10_000 {
        moved = false;
        rounds += 1;
        // The most loaded member first.
        let mut by_load: Vec<&str> = sorted.iter().map(|m| m.id.as_str()).collect();
        by_load.sort_by_key(|id| (std::cmp::Reverse(counts[*id]), *id));
        'outer: for from in by_load {
            let parts: Vec<(Uuid, i32)> = out[from].iter().flat_map(|(t, ps)| ps.iter().map(|p| (*t, *p))).collect();
            // Give up the highest partitions first: keeps low ones stable.
            for (t, p) in parts.into_iter().rev() {
                let target = sorted
                    .iter()
                    .filter(|m| m.topics.contains(&t) && m.id != from)
                    .map(|m| m.id.as_str())
                    .filter(|id| counts[*id] + 1 < counts[from])
                    .min_by_key(|id| (counts[*id], *id));
                if let Some(to) = target {
                    remove(out.get_mut(from).expect("member"), t, p);
                    add(out.get_mut(to).expect("member"), t, p);
                    *counts.get_mut(from).expect("member") -= 1;
                    *counts.get_mut(to).expect("member") += 1;
                    moved = true;
                    break 'outer;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn member(id: &str, topics: &[Uuid]) -> AssignMember {
        AssignMember { id: id.to_string(), topics: topics.iter().copied().collect() }
    }

    fn parts(a: &Assignment, topic: Uuid) -> Vec<i32> {
        a.get(&topic).map(|s| s.iter().copied().collect()).unwrap_or_default()
    }

    fn all_assigned_once(out: &HashMap<String, Assignment>, topics: &BTreeMap<Uuid, i32>) {
        for (&tid, &n) in topics {
            let mut seen: Vec<i32> = out.values().flat_map(|a| parts(a, tid)).collect();
            seen.sort();
            assert_eq!(seen, (0..n).collect::<Vec<_>>(), "topic {tid}");
        }
    }

    #[test]
    fn parse_names() {
        assert_eq!(AssignorKind::parse("uniform"), Some(AssignorKind::Uniform));
        assert_eq!(
            AssignorKind::parse("org.apache.kafka.coordinator.group.assignor.RangeAssignor"),
            Some(AssignorKind::Range)
        );
        assert_eq!(AssignorKind::parse("sticky"), None);
    }

    #[test]
    fn range_splits_per_topic() {
        let topics: BTreeMap<Uuid, i32> = [(t(1), 7), (t(2), 2)].into_iter().collect();
        let ms = vec![member("b", &[t(1), t(2)]), member("a", &[t(1), t(2)]), member("c", &[t(1)])];
        let out = assign(AssignorKind::Range, &ms, &topics, &HashMap::new());
        assert_eq!(parts(&out["a"], t(1)), vec![0, 1, 2]);
        assert_eq!(parts(&out["b"], t(1)), vec![3, 4]);
        assert_eq!(parts(&out["c"], t(1)), vec![5, 6]);
        assert_eq!(parts(&out["a"], t(2)), vec![0]);
        assert_eq!(parts(&out["b"], t(2)), vec![1]);
        assert!(parts(&out["c"], t(2)).is_empty());
        all_assigned_once(&out, &topics);
    }

    #[test]
    fn uniform_balances_and_sticks() {
        let topics: BTreeMap<Uuid, i32> = [(t(1), 6)].into_iter().collect();
        let one = vec![member("a", &[t(1)])];
        let first = assign(AssignorKind::Uniform, &one, &topics, &HashMap::new());
        assert_eq!(count(&first["a"]), 6);
        let two = vec![member("a", &[t(1)]), member("b", &[t(1)])];
        let second = assign(AssignorKind::Uniform, &two, &topics, &first);
        assert_eq!(count(&second["a"]), 3);
        assert_eq!(count(&second["b"]), 3);
        all_assigned_once(&second, &topics);
        // a kept a subset of what it had; adding c moves one partition from each.
        let three = vec![member("a", &[t(1)]), member("b", &[t(1)]), member("c", &[t(1)])];
        let third = assign(AssignorKind::Uniform, &three, &topics, &second);
        for id in ["a", "b", "c"] {
            assert_eq!(count(&third[id]), 2, "{id}");
        }
        for id in ["a", "b"] {
            assert!(third[id][&t(1)].is_subset(&second[id][&t(1)]), "{id} sticky");
        }
        all_assigned_once(&third, &topics);
        // b leaves: a and c take its partitions, keeping theirs.
        let two_again = vec![member("a", &[t(1)]), member("c", &[t(1)])];
        let fourth = assign(AssignorKind::Uniform, &two_again, &topics, &third);
        assert_eq!(count(&fourth["a"]), 3);
        assert_eq!(count(&fourth["c"]), 3);
        assert!(third["a"][&t(1)].is_subset(&fourth["a"][&t(1)]));
        all_assigned_once(&fourth, &topics);
    }

    #[test]
    fn uniform_heterogeneous_subscriptions() {
        let topics: BTreeMap<Uuid, i32> = [(t(1), 3), (t(2), 3)].into_iter().collect();
        let ms = vec![member("a", &[t(1)]), member("b", &[t(1), t(2)])];
        let out = assign(AssignorKind::Uniform, &ms, &topics, &HashMap::new());
        assert!(parts(&out["a"], t(2)).is_empty());
        assert_eq!(parts(&out["b"], t(2)), vec![0, 1, 2]);
        all_assigned_once(&out, &topics);
        assert_eq!(count(&out["a"]) + count(&out["b"]), 6);
        assert!(count(&out["a"]) >= 2, "a gets most of t1: {:?}", out);
    }

    #[test]
    fn shrinking_topics_drop_partitions() {
        let topics: BTreeMap<Uuid, i32> = [(t(1), 2)].into_iter().collect();
        let prev: HashMap<String, Assignment> =
            [("a".to_string(), [(t(1), [0, 1, 2, 3].into_iter().collect())].into_iter().collect())]
                .into_iter()
                .collect();
        let out = assign(AssignorKind::Uniform, &[member("a", &[t(1)])], &topics, &prev);
        assert_eq!(parts(&out["a"], t(1)), vec![0, 1]);
    }
}
