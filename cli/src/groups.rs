//! Consumer group commands: describe (with each partition's owner), reset-offsets, delete and
//! delete-offsets, as kafka-consumer-groups does them, through the group's coordinator.

use std::collections::{BTreeMap, HashMap};

use anyhow::{anyhow, bail};
use bytes::Buf;
use rill_protocol::messages::describe_groups_response::DescribedGroup;
use rill_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use rill_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use rill_protocol::messages::*;
use rill_protocol::{Decodable, ResponseError};
use serde_json::{json, Value};

use crate::admin::{list_offsets, metadata, s, tn, topic_metadata, usage, ResetArgs};
use crate::client::{check, error_name, KafkaError, Pool};
use crate::output::{print_json, Table};

/// Finds the group's coordinator (retrying while it is loading or moving) and returns its node id.
pub(crate) async fn coordinator(pool: &mut Pool, group: &str) -> anyhow::Result<i32> {
    metadata(pool, Some(&[])).await?;
    let fc_version = pool.main().version(ApiKey::FindCoordinator)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let mut req = FindCoordinatorRequest::default().with_key_type(0);
        if fc_version >= 4 {
            req.coordinator_keys = vec![s(group)];
        } else {
            req.key = s(group);
        }
        let r = pool.main().send(&req).await?;
        let (code, msg, node, host, port) = if fc_version >= 4 {
            let c = r.coordinators.into_iter().next().ok_or_else(|| anyhow!("empty FindCoordinator response"))?;
            (c.error_code, c.error_message, c.node_id.0, c.host.to_string(), c.port)
        } else {
            (r.error_code, r.error_message, r.node_id.0, r.host.to_string(), r.port)
        };
        let retriable = [
            ResponseError::CoordinatorNotAvailable.code(),
            ResponseError::CoordinatorLoadInProgress.code(),
            ResponseError::NotCoordinator.code(),
        ];
        if retriable.contains(&code) && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            continue;
        }
        check(code, msg.as_ref(), format!("finding the coordinator of group {group}"))?;
        pool.nodes.entry(node).or_insert_with(|| format!("{host}:{port}"));
        return Ok(node);
    }
}

async fn describe_one(pool: &mut Pool, node: i32, group: &str) -> anyhow::Result<DescribedGroup> {
    let dg =
        pool.node(node).await?.send(&DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))])).await?;
    dg.groups.into_iter().next().ok_or_else(|| anyhow!("empty DescribeGroups response"))
}

/// Committed offsets of the group: (topic, partition) -> offset.
pub(crate) async fn committed(pool: &mut Pool, node: i32, group: &str) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let of = pool
        .node(node)
        .await?
        .send(&OffsetFetchRequest::default().with_group_id(GroupId(s(group))).with_topics(None))
        .await?;
    check(of.error_code, None, format!("fetching offsets of group {group}"))?;
    let mut out = BTreeMap::new();
    for t in &of.topics {
        for p in &t.partitions {
            if p.error_code == 0 && p.committed_offset >= 0 {
                out.insert((t.name.to_string(), p.partition_index), p.committed_offset);
            }
        }
    }
    Ok(out)
}

/// A member's assignment as topic -> partitions, for the "consumer" protocol type (the
/// ConsumerProtocolAssignment schema, prefixed by its version); None for other protocols.
pub fn decode_assignment(protocol_type: &str, bytes: &[u8]) -> Option<BTreeMap<String, Vec<i32>>> {
    if protocol_type != "consumer" {
        return None;
    }
    if bytes.len() < 2 {
        return Some(BTreeMap::new());
    }
    let mut buf = bytes::Bytes::copy_from_slice(bytes);
    let version = buf.get_i16();
    // Newer versions only add fields at the end: read them as the newest version we know.
    let a = ConsumerProtocolAssignment::decode(&mut buf, version.clamp(0, 3)).ok()?;
    let mut out: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for tp in a.assigned_partitions {
        let e = out.entry(tp.topic.to_string()).or_default();
        e.extend(tp.partitions);
        e.sort();
    }
    Some(out)
}

fn not_found(group: &str) -> anyhow::Error {
    anyhow::Error::new(KafkaError {
        code: ResponseError::GroupIdNotFound.code(),
        message: Some(format!("consumer group '{group}' does not exist (see `rill group list`)")),
        context: format!("describing group {group}"),
    })
}

/// One row of `group describe`: a partition with a committed offset or an owner.
struct Row {
    topic: String,
    partition: i32,
    committed: Option<i64>,
    end: Option<i64>,
    owner: Option<(String, String, String)>,
}

pub async fn describe_group(pool: &mut Pool, group: &str, json: bool) -> anyhow::Result<()> {
    let node = coordinator(pool, group).await?;
    let g = describe_one(pool, node, group).await?;
    if g.error_code == ResponseError::GroupIdNotFound.code() {
        return Err(not_found(group));
    }
    check(g.error_code, g.error_message.as_ref(), format!("describing group {group}"))?;
    let committed = committed(pool, node, group).await?;
    if g.group_state.as_str() == "Dead" && g.members.is_empty() && committed.is_empty() {
        return Err(not_found(group));
    }
    // Owners from the members' assignments.
    let protocol_type = g.protocol_type.to_string();
    let mut owners: BTreeMap<(String, i32), (String, String, String)> = BTreeMap::new();
    let mut assignments: Vec<Option<BTreeMap<String, Vec<i32>>>> = Vec::new();
    for m in &g.members {
        let a = decode_assignment(&protocol_type, &m.member_assignment);
        if let Some(a) = &a {
            for (t, ps) in a {
                for &p in ps {
                    owners.insert(
                        (t.clone(), p),
                        (m.member_id.to_string(), m.client_host.to_string(), m.client_id.to_string()),
                    );
                }
            }
        }
        assignments.push(a);
    }
    let mut keys: Vec<(String, i32)> = committed.keys().chain(owners.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    // Log end offsets per topic, from each partition's leader.
    let mut ends: HashMap<(String, i32), i64> = HashMap::new();
    let mut topics: Vec<String> = keys.iter().map(|k| k.0.clone()).collect();
    topics.dedup();
    for t in topics {
        let Ok(md) = topic_metadata(pool, &t).await else { continue };
        let parts: Vec<(i32, i32)> = md.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)).collect();
        if let Ok(offsets) = list_offsets(pool, &t, &parts, -1).await {
            for (p, o) in offsets {
                ends.insert((t.clone(), p), o);
            }
        }
    }
    let rows: Vec<Row> = keys
        .into_iter()
        .map(|k| Row {
            committed: committed.get(&k).copied(),
            end: ends.get(&k).copied(),
            owner: owners.get(&k).cloned(),
            topic: k.0,
            partition: k.1,
        })
        .collect();
    let lag = |r: &Row| match (r.committed, r.end) {
        (Some(c), Some(e)) => Some((e - c).max(0)),
        _ => None,
    };
    if json {
        let members: Vec<Value> = g
            .members
            .iter()
            .zip(&assignments)
            .map(|(m, a)| {
                let assignment = a
                    .as_ref()
                    .map(|a| a.iter().map(|(t, ps)| json!({"topic": t, "partitions": ps})).collect::<Vec<_>>());
                json!({"member_id": m.member_id.to_string(), "client_id": m.client_id.to_string(),
                "client_host": m.client_host.to_string(),
                "group_instance_id": m.group_instance_id.as_ref().map(|i| i.to_string()),
                "assignment": assignment})
            })
            .collect();
        let offsets: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({"topic": r.topic, "partition": r.partition, "committed_offset": r.committed,
                "log_end_offset": r.end, "lag": lag(r),
                "member_id": r.owner.as_ref().map(|o| &o.0), "client_host": r.owner.as_ref().map(|o| &o.1),
                "client_id": r.owner.as_ref().map(|o| &o.2)})
            })
            .collect();
        print_json(&json!({"group": group, "state": g.group_state.to_string(), "protocol_type": protocol_type,
            "protocol": g.protocol_data.to_string(), "coordinator": node, "members": members, "offsets": offsets}))?;
        return Ok(());
    }
    println!(
        "Group: {group}  State: {}  Protocol: {} {}  Coordinator: {node}  Members: {}",
        g.group_state,
        g.protocol_type,
        g.protocol_data,
        g.members.len()
    );
    if !g.members.is_empty() {
        let mut t = Table::new(&["MEMBER-ID", "CLIENT-ID", "HOST", "ASSIGNMENT"]);
        for (m, a) in g.members.iter().zip(&assignments) {
            let assignment = match a {
                None => "-".to_string(),
                Some(a) if a.is_empty() => "(none)".to_string(),
                Some(a) => {
                    a.iter().map(|(t, ps)| format!("{t}:{}", crate::output::ids(ps))).collect::<Vec<_>>().join(" ")
                }
            };
            t.row(vec![m.member_id.to_string(), m.client_id.to_string(), m.client_host.to_string(), assignment]);
        }
        t.print()?;
        println!();
    }
    let mut t = Table::new(&[
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ]);
    let fmt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    for r in &rows {
        let (m, h, c) = r.owner.clone().unwrap_or_else(|| ("-".into(), "-".into(), "-".into()));
        t.row(vec![r.topic.clone(), r.partition.to_string(), fmt(r.committed), fmt(r.end), fmt(lag(r)), m, h, c]);
    }
    t.print()?;
    Ok(())
}

/// `orders` or `orders:0,2` -> (topic, partitions or None for all).
fn parse_topic_spec(spec: &str) -> anyhow::Result<(String, Option<Vec<i32>>)> {
    match spec.split_once(':') {
        None if !spec.is_empty() => Ok((spec.to_string(), None)),
        Some((t, ps)) if !t.is_empty() => {
            let parts = ps
                .split(',')
                .map(|p| p.trim().parse::<i32>().ok().filter(|&p| p >= 0))
                .collect::<Option<Vec<i32>>>()
                .ok_or_else(|| usage(format!("bad partition list in --topic {spec:?} (expected TOPIC:0,1,2)")))?;
            Ok((t.to_string(), Some(parts)))
        }
        _ => Err(usage(format!("bad --topic {spec:?} (expected TOPIC or TOPIC:0,1,2)"))),
    }
}

/// Resolves --topic specs against metadata: topic -> [(partition, leader)].
async fn resolve_partitions(pool: &mut Pool, specs: &[String]) -> anyhow::Result<BTreeMap<String, Vec<(i32, i32)>>> {
    let mut out: BTreeMap<String, Vec<(i32, i32)>> = BTreeMap::new();
    for spec in specs {
        let (topic, wanted) = parse_topic_spec(spec)?;
        let md = topic_metadata(pool, &topic).await?;
        let all: BTreeMap<i32, i32> = md.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)).collect();
        let e = out.entry(topic.clone()).or_default();
        match wanted {
            None => e.extend(all.iter().map(|(&p, &l)| (p, l))),
            Some(ps) => {
                for p in ps {
                    let l = all
                        .get(&p)
                        .ok_or_else(|| usage(format!("topic {topic} has no partition {p} (it has {})", all.len())))?;
                    e.push((p, *l));
                }
            }
        }
        e.sort();
        e.dedup();
    }
    Ok(out)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// `YYYY-MM-DDTHH:MM[:SS[.fff]][Z|±HH[:MM]]` (local time without a zone) or `@EPOCH_MS` -> epoch ms.
pub fn parse_datetime(v: &str) -> anyhow::Result<i64> {
    let bad = || {
        usage(format!(
            "bad --to-datetime {v:?}: expected YYYY-MM-DDTHH:MM:SS[.sss][Z|+HH:MM] (e.g. 2026-01-31T12:00:00Z) or @EPOCH_MS"
        ))
    };
    if let Some(ms) = v.strip_prefix('@') {
        return ms.parse().map_err(|_| bad());
    }
    let v = v.trim();
    let (date, rest) = v.split_once(['T', ' ']).ok_or_else(bad)?;
    let dp: Vec<&str> = date.split('-').collect();
    if dp.len() != 3 {
        return Err(bad());
    }
    let num = |x: &str| x.parse::<i64>().map_err(|_| bad());
    let (y, mo, d) = (num(dp[0])?, num(dp[1])?, num(dp[2])?);
    // Split off the zone.
    let (time, zone) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, Some(0i64))
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let (t, z) = rest.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let z = &z[1..];
        let (zh, zm) = match z.split_once(':') {
            Some((h, m)) => (num(h)?, num(m)?),
            None if z.len() == 4 => (num(&z[..2])?, num(&z[2..])?),
            None => (num(z)?, 0),
        };
        (t, Some(sign * (zh * 3600 + zm * 60)))
    } else {
        (rest, None)
    };
    let tp: Vec<&str> = time.split(':').collect();
    if tp.len() < 2 || tp.len() > 3 {
        return Err(bad());
    }
    let (h, mi) = (num(tp[0])?, num(tp[1])?);
    let (sec, ms) = match tp.get(2) {
        None => (0, 0),
        Some(sx) => match sx.split_once('.') {
            None => (num(sx)?, 0),
            Some((sec, frac)) => {
                let frac: String = frac.chars().chain(std::iter::repeat('0')).take(3).collect();
                (num(sec)?, num(&frac)?)
            }
        },
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 || h < 0 || mi < 0 {
        return Err(bad());
    }
    let secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
    let offset = match zone {
        Some(z) => z,
        None => local_offset(secs),
    };
    Ok((secs - offset) * 1000 + ms)
}

/// The local zone's UTC offset (seconds) at about `secs` (treated as UTC).
fn local_offset(secs: i64) -> i64 {
    let t = secs as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return 0;
        }
        tm.tm_gmtoff
    }
}

pub async fn reset_offsets(pool: &mut Pool, args: ResetArgs, json: bool) -> anyhow::Result<()> {
    let group = args.group.as_str();
    let node = coordinator(pool, group).await?;
    let g = describe_one(pool, node, group).await?;
    let missing = g.error_code == ResponseError::GroupIdNotFound.code();
    if !missing {
        check(g.error_code, g.error_message.as_ref(), format!("describing group {group}"))?;
        let state = g.group_state.to_string();
        if !(state == "Empty" || state == "Dead") || !g.members.is_empty() {
            bail!(
                "Assignments can only be reset if the group '{group}' is inactive, but the current state is \
                 {state}. (Stop its {} consumer(s) first.)",
                g.members.len()
            );
        }
    }
    let current = committed(pool, node, group).await?;
    let targets: BTreeMap<String, Vec<(i32, i32)>> = if args.all_topics {
        let specs: Vec<String> = {
            let mut t: Vec<String> = current.keys().map(|k| k.0.clone()).collect();
            t.dedup();
            t
        };
        if specs.is_empty() {
            bail!("group {group} has no committed offsets: name the topics with --topic");
        }
        let mut out = resolve_partitions(pool, &specs).await?;
        for (t, ps) in out.iter_mut() {
            ps.retain(|(p, _)| current.contains_key(&(t.clone(), *p)));
        }
        out
    } else {
        resolve_partitions(pool, &args.topic).await?
    };
    let spec = &args.spec;
    let datetime = spec.to_datetime.as_deref().map(parse_datetime).transpose()?;
    // topic, partition, current, new
    let mut plan: Vec<(String, i32, Option<i64>, i64)> = Vec::new();
    for (topic, parts) in &targets {
        let earliest = list_offsets(pool, topic, parts, -2).await?;
        let latest = list_offsets(pool, topic, parts, -1).await?;
        let at_time = match datetime {
            Some(ts) => Some(list_offsets(pool, topic, parts, ts).await?),
            None => None,
        };
        for &(p, _) in parts {
            let lo = earliest.get(&p).copied().unwrap_or(0);
            let hi = latest.get(&p).copied().unwrap_or(lo);
            let cur = current.get(&(topic.clone(), p)).copied();
            let clamp = |o: i64| {
                let c = o.clamp(lo, hi.max(lo));
                if c != o {
                    eprintln!(
                        "New offset ({o}) is {} the {} offset of {topic}-{p}: using {c}.",
                        if o < lo { "lower than" } else { "higher than" },
                        if o < lo { "earliest" } else { "latest" }
                    );
                }
                c
            };
            let new = if spec.to_earliest {
                lo
            } else if spec.to_latest {
                hi
            } else if spec.to_current {
                cur.unwrap_or(hi)
            } else if let Some(o) = spec.to_offset {
                clamp(o)
            } else if let Some(by) = spec.shift_by {
                let c = cur.ok_or_else(|| {
                    anyhow!("cannot shift the offset of {topic}-{p}: group {group} has no committed offset there")
                })?;
                clamp(c.saturating_add(by))
            } else if let Some(found) = &at_time {
                match found.get(&p).copied() {
                    Some(o) if o >= 0 => o,
                    _ => hi, // nothing at or after that time
                }
            } else {
                unreachable!("clap requires one reset spec")
            };
            plan.push((topic.clone(), p, cur, new));
        }
    }
    if args.execute && !plan.is_empty() {
        let offsets: BTreeMap<(String, i32), i64> = plan.iter().map(|(t, p, _, o)| ((t.clone(), *p), *o)).collect();
        // Generation -1 and no member id: a commit from outside the group, as kafka-consumer-groups does.
        for ((t, p), code) in commit_offsets(pool, node, group, -1, "", &offsets).await? {
            check(code, None, format!("committing the new offset of {t}-{p} for group {group}"))?;
        }
    }
    if json {
        let offsets: Vec<Value> = plan
            .iter()
            .map(|(t, p, c, n)| json!({"topic": t, "partition": p, "current_offset": c, "new_offset": n}))
            .collect();
        print_json(&json!({"group": group, "executed": args.execute, "offsets": offsets}))?;
    } else {
        let mut table = Table::new(&["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"]);
        for (t, p, _, n) in &plan {
            table.row(vec![group.to_string(), t.clone(), p.to_string(), n.to_string()]);
        }
        table.print()?;
    }
    if !args.execute {
        eprintln!("Dry run: nothing was committed. Add --execute to commit these offsets.");
    }
    Ok(())
}

/// OffsetCommit of `offsets` to the group's coordinator `node`; returns each partition's error
/// code (callers decide which are fatal: a member treats fencing errors as a cue to rejoin).
pub(crate) async fn commit_offsets(
    pool: &mut Pool,
    node: i32,
    group: &str,
    generation: i32,
    member_id: &str,
    offsets: &BTreeMap<(String, i32), i64>,
) -> anyhow::Result<Vec<((String, i32), i16)>> {
    let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for ((t, p), o) in offsets {
        by_topic.entry(t).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*o)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(Some(s(""))),
        );
    }
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member_id))
        .with_retention_time_ms(-1)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| OffsetCommitRequestTopic::default().with_name(tn(t)).with_partitions(ps))
                .collect(),
        );
    let resp = pool.node(node).await?.send(&req).await?;
    let mut out = Vec::new();
    for t in resp.topics {
        for p in t.partitions {
            out.push(((t.name.to_string(), p.partition_index), p.error_code));
        }
    }
    Ok(out)
}

pub async fn delete_group(pool: &mut Pool, group: &str, json: bool) -> anyhow::Result<()> {
    let node = coordinator(pool, group).await?;
    let resp =
        pool.node(node).await?.send(&DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))])).await?;
    let r = resp.results.into_iter().next().ok_or_else(|| anyhow!("empty DeleteGroups response"))?;
    if r.error_code == ResponseError::NonEmptyGroup.code() {
        bail!("deleting group {group}: NON_EMPTY_GROUP: the group has active members (stop its consumers first)");
    }
    if r.error_code == ResponseError::GroupIdNotFound.code() {
        return Err(anyhow::Error::new(KafkaError {
            code: r.error_code,
            message: Some(format!("consumer group '{group}' does not exist (see `rill group list`)")),
            context: format!("deleting group {group}"),
        }));
    }
    check(r.error_code, None, format!("deleting group {group}"))?;
    if json {
        print_json(&json!({"group": group, "deleted": true}))?;
    } else {
        println!("Deleted group {group}.");
    }
    Ok(())
}

pub async fn delete_offsets(pool: &mut Pool, group: &str, specs: &[String], json: bool) -> anyhow::Result<()> {
    let targets = resolve_partitions(pool, specs).await?;
    let node = coordinator(pool, group).await?;
    let req = OffsetDeleteRequest::default().with_group_id(GroupId(s(group))).with_topics(
        targets
            .iter()
            .map(|(t, ps)| {
                OffsetDeleteRequestTopic::default().with_name(tn(t)).with_partitions(
                    ps.iter().map(|&(p, _)| OffsetDeleteRequestPartition::default().with_partition_index(p)).collect(),
                )
            })
            .collect(),
    );
    let resp = pool.node(node).await?.send(&req).await?;
    if resp.error_code == ResponseError::GroupIdNotFound.code() {
        return Err(anyhow::Error::new(KafkaError {
            code: resp.error_code,
            message: Some(format!("consumer group '{group}' does not exist (see `rill group list`)")),
            context: format!("deleting offsets of group {group}"),
        }));
    }
    check(resp.error_code, None, format!("deleting offsets of group {group}"))?;
    let mut rows: Vec<(String, i32, i16)> = Vec::new();
    for t in &resp.topics {
        for p in &t.partitions {
            rows.push((t.name.to_string(), p.partition_index, p.error_code));
        }
    }
    rows.sort();
    let failed = rows.iter().filter(|r| r.2 != 0).count();
    let status = |code: i16| if code == 0 { "Successful".to_string() } else { format!("Error: {}", error_name(code)) };
    if json {
        let v: Vec<Value> = rows
            .iter()
            .map(|(t, p, c)| json!({"topic": t, "partition": p, "error": if *c == 0 { None } else { Some(error_name(*c)) }}))
            .collect();
        print_json(&json!({"group": group, "partitions": v}))?;
    } else {
        let mut table = Table::new(&["TOPIC", "PARTITION", "STATUS"]);
        for (t, p, c) in &rows {
            table.row(vec![t.clone(), p.to_string(), status(*c)]);
        }
        table.print()?;
    }
    if failed > 0 {
        let subscribed = rows.iter().any(|r| r.2 == ResponseError::GroupSubscribedToTopic.code());
        let hint = if subscribed { " (active members consume these topics: stop them first)" } else { "" };
        bail!("could not delete the offsets of {failed} partition(s) of group {group}{hint}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(parse_datetime("2026-01-31T12:00:00.5Z").unwrap(), 1_769_860_800_500);
        assert_eq!(parse_datetime("2026-01-31T14:00:00+02:00").unwrap(), 1_769_860_800_000);
        assert_eq!(parse_datetime("2026-01-31T07:00-0500").unwrap(), 1_769_860_800_000);
        assert_eq!(parse_datetime("@1234").unwrap(), 1234);
        assert!(parse_datetime("yesterday").is_err());
        assert!(parse_datetime("2026-13-01T00:00:00Z").is_err());
    }

    #[test]
    fn assignments() {
        use rill_protocol::Encodable;
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            consumer_protocol_assignment::TopicPartition::default().with_topic(tn("t")).with_partitions(vec![2, 0]),
        ]);
        let mut buf = bytes::BytesMut::new();
        buf.extend_from_slice(&1i16.to_be_bytes());
        a.encode(&mut buf, 1).unwrap();
        let got = decode_assignment("consumer", &buf).unwrap();
        assert_eq!(got, BTreeMap::from([("t".to_string(), vec![0, 2])]));
        assert!(decode_assignment("connect", &buf).is_none());
    }
}
