//! Moving partitions between brokers and retiring brokers: `topic reassign`
//! (AlterPartitionReassignments, optionally waiting for the move to finish), `topic
//! reassignments` (ListPartitionReassignments), `cluster unregister` (UnregisterBroker) and
//! `cluster add-voter` / `remove-voter` (AddRaftVoter, RemoveRaftVoter). What
//! `kafka-reassign-partitions`, `kafka-cluster unregister` and `kafka-metadata-quorum
//! add-controller` / `remove-controller` do, without a JSON plan or a controller config.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use rill_protocol::messages::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
use rill_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use rill_protocol::messages::*;
use serde_json::{json, Value};

use crate::admin::{connect, metadata, tn, topic_metadata, usage, Conn, Output};
use crate::client::{check, Pool};
use crate::output::{ids, print_json, Table};

/// One partition's move: `None` cancels the reassignment in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    pub partition: i32,
    pub target: Option<Vec<i32>>,
}

/// Parses a replica list such as `1,2,4` (no duplicates, at least one id).
pub fn parse_replicas(s: &str) -> anyhow::Result<Vec<i32>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let id: i32 =
            part.parse().map_err(|_| usage(format!("--replicas: {part:?} is not a broker id (e.g. 1,2,4)")))?;
        if out.contains(&id) {
            return Err(usage(format!("--replicas {s}: broker {id} is listed twice")));
        }
        out.push(id);
    }
    Ok(out)
}

/// Pairs the repeated `--partition` and `--replicas` flags in order (`--cancel` takes
/// partitions only).
pub fn moves(partitions: &[i32], replicas: &[String], cancel: bool) -> anyhow::Result<Vec<Move>> {
    if partitions.is_empty() {
        return Err(usage("give --partition N (repeatable)"));
    }
    if cancel {
        if !replicas.is_empty() {
            return Err(usage("--cancel takes no --replicas"));
        }
        return Ok(partitions.iter().map(|&p| Move { partition: p, target: None }).collect());
    }
    if replicas.len() != partitions.len() {
        return Err(usage(format!(
            "{} --partition but {} --replicas: give one --replicas list per --partition (or --cancel)",
            partitions.len(),
            replicas.len()
        )));
    }
    let mut out: Vec<Move> = Vec::new();
    for (&p, r) in partitions.iter().zip(replicas) {
        if out.iter().any(|m| m.partition == p) {
            return Err(usage(format!("partition {p} is given twice")));
        }
        out.push(Move { partition: p, target: Some(parse_replicas(r)?) });
    }
    Ok(out)
}

/// `topic reassign`: starts (or cancels) the moves; with `wait`, polls until every partition
/// has its target replicas and no reassignment of them is listed any more.
pub async fn reassign(conn: &Conn, topic: &str, moves: &[Move], wait: Option<u64>) -> anyhow::Result<()> {
    let json = conn.output == Output::Json;
    let mut pool = connect(conn).await?;
    let partitions = moves
        .iter()
        .map(|m| {
            ReassignablePartition::default()
                .with_partition_index(m.partition)
                .with_replicas(m.target.as_ref().map(|t| t.iter().map(|&b| BrokerId(b)).collect()))
        })
        .collect();
    let req = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(30_000)
        .with_allow_replication_factor_change(true)
        .with_topics(vec![ReassignableTopic::default().with_name(tn(topic)).with_partitions(partitions)]);
    let resp = pool.main().send(&req).await?;
    check(resp.error_code, resp.error_message.as_ref(), format!("reassigning partitions of {topic}"))?;
    let mut errors: BTreeMap<i32, String> = BTreeMap::new();
    let mut first_error = None;
    for t in &resp.responses {
        for p in &t.partitions {
            if let Err(e) =
                check(p.error_code, p.error_message.as_ref(), format!("reassigning {topic}-{}", p.partition_index))
            {
                errors.insert(p.partition_index, e.name());
                first_error.get_or_insert(e);
            }
        }
    }
    let started: Vec<&Move> = moves.iter().filter(|m| !errors.contains_key(&m.partition)).collect();
    let mut completed = None;
    if let (Some(secs), None) = (wait, &first_error) {
        wait_done(conn, &mut pool, topic, &started, Duration::from_secs(secs)).await?;
        completed = Some(true);
    }
    if json {
        let v: Vec<Value> = moves
            .iter()
            .map(|m| {
                json!({"partition": m.partition, "target": m.target, "cancel": m.target.is_none(),
                    "error": errors.get(&m.partition)})
            })
            .collect();
        print_json(&json!({"topic": topic, "partitions": v, "completed": completed}))?;
    } else {
        for m in moves {
            let what = match &m.target {
                Some(t) => format!("Reassignment of {topic}-{} to {}", m.partition, ids(t)),
                None => format!("Cancellation of the reassignment of {topic}-{}", m.partition),
            };
            match (errors.get(&m.partition), completed) {
                (Some(e), _) => println!("{what} failed: {e}"),
                (None, Some(true)) => println!("{what} completed."),
                (None, _) => println!("{what} started."),
            }
        }
    }
    match first_error {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// Polls ListPartitionReassignments and Metadata until every move is done. Connection errors
/// (a broker restarting, an election) are retried with a fresh connection until the deadline.
async fn wait_done(conn: &Conn, pool: &mut Pool, topic: &str, moves: &[&Move], budget: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + budget;
    loop {
        let last = match pending(pool, topic, moves).await {
            Ok(None) => return Ok(()),
            Ok(Some(why)) => why,
            Err(e) => {
                if let Ok(p) = connect(conn).await {
                    *pool = p;
                }
                format!("{e:#}")
            }
        };
        if Instant::now() >= deadline {
            bail!("reassignment of {topic} not finished after {} s: {last}", budget.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `None` when every move is complete, else what is still outstanding.
async fn pending(pool: &mut Pool, topic: &str, moves: &[&Move]) -> anyhow::Result<Option<String>> {
    let listed = list(pool, Some(vec![(topic.to_string(), moves.iter().map(|m| m.partition).collect())])).await?;
    if let Some(r) = listed.first() {
        return Ok(Some(format!(
            "{topic}-{} still reassigning (replicas {}, adding {}, removing {})",
            r.partition,
            ids(&r.replicas),
            ids(&r.adding),
            ids(&r.removing)
        )));
    }
    let md = topic_metadata(pool, topic).await?;
    for m in moves {
        let Some(target) = &m.target else { continue };
        let p = md
            .partitions
            .iter()
            .find(|p| p.partition_index == m.partition)
            .ok_or_else(|| anyhow!("{topic}-{} missing from metadata", m.partition))?;
        let mut have: Vec<i32> = p.replica_nodes.iter().map(|b| b.0).collect();
        let mut want = target.clone();
        have.sort_unstable();
        want.sort_unstable();
        if have != want {
            return Ok(Some(format!("{topic}-{} has replicas {}, not yet {}", m.partition, ids(&have), ids(target))));
        }
    }
    Ok(None)
}

/// One ongoing reassignment as ListPartitionReassignments reports it.
pub struct Ongoing {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

/// ListPartitionReassignments of `topics` (name, partitions), or of everything when `None`.
async fn list(pool: &mut Pool, topics: Option<Vec<(String, Vec<i32>)>>) -> anyhow::Result<Vec<Ongoing>> {
    let req = ListPartitionReassignmentsRequest::default().with_timeout_ms(30_000).with_topics(topics.map(|ts| {
        ts.into_iter()
            .map(|(t, ps)| ListPartitionReassignmentsTopics::default().with_name(tn(&t)).with_partition_indexes(ps))
            .collect()
    }));
    let resp = pool.main().send(&req).await?;
    check(resp.error_code, resp.error_message.as_ref(), "listing partition reassignments")?;
    let b = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
    let mut out: Vec<Ongoing> = resp
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| Ongoing {
                topic: t.name.to_string(),
                partition: p.partition_index,
                replicas: b(&p.replicas),
                adding: b(&p.adding_replicas),
                removing: b(&p.removing_replicas),
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(out)
}

/// `topic reassignments [TOPIC]`: the reassignments in progress.
pub async fn reassignments(conn: &Conn, topic: Option<&str>) -> anyhow::Result<()> {
    let mut pool = connect(conn).await?;
    let topics = match topic {
        None => None,
        Some(name) => {
            // Naming a topic means naming its partitions.
            let md = topic_metadata(&mut pool, name).await?;
            Some(vec![(name.to_string(), md.partitions.iter().map(|p| p.partition_index).collect())])
        }
    };
    let listed = list(&mut pool, topics).await?;
    if conn.output == Output::Json {
        let v: Vec<Value> = listed
            .iter()
            .map(|r| {
                json!({"topic": r.topic, "partition": r.partition, "replicas": r.replicas,
                    "adding": r.adding, "removing": r.removing})
            })
            .collect();
        print_json(&Value::Array(v))?;
    } else if listed.is_empty() {
        println!("No partition reassignments in progress.");
    } else {
        let mut t = Table::new(&["TOPIC", "PARTITION", "REPLICAS", "ADDING", "REMOVING"]);
        for r in &listed {
            t.row(vec![r.topic.clone(), r.partition.to_string(), ids(&r.replicas), ids(&r.adding), ids(&r.removing)]);
        }
        t.print()?;
    }
    Ok(())
}

/// `cluster unregister --id N`: UnregisterBroker.
pub async fn unregister(conn: &Conn, id: i32) -> anyhow::Result<()> {
    let mut pool = connect(conn).await?;
    // Metadata first, so a broker that does not support UnregisterBroker says so by name.
    metadata(&mut pool, Some(&[])).await?;
    let resp = pool.main().send(&UnregisterBrokerRequest::default().with_broker_id(BrokerId(id))).await?;
    check(resp.error_code, resp.error_message.as_ref(), format!("unregistering broker {id}"))?;
    if conn.output == Output::Json {
        print_json(&json!({"broker": id, "unregistered": true}))?;
    } else {
        println!("Broker {id} is no longer registered.");
    }
    Ok(())
}

/// How long a new voter may take to catch up with the metadata log.
const VOTER_TIMEOUT: Duration = Duration::from_secs(60);

/// `cluster add-voter --id N` (AddRaftVoter) or `cluster remove-voter --id N` (RemoveRaftVoter).
pub async fn change_voter(conn: &Conn, id: i32, add: bool) -> anyhow::Result<()> {
    let mut pool = connect(conn).await?;
    metadata(&mut pool, Some(&[])).await?;
    let (code, message) = if add {
        let req = AddRaftVoterRequest::default()
            .with_cluster_id(None)
            .with_voter_id(id)
            .with_timeout_ms(VOTER_TIMEOUT.as_millis() as i32);
        let resp = pool.main().send_timeout(&req, VOTER_TIMEOUT + Duration::from_secs(5)).await?;
        (resp.error_code, resp.error_message)
    } else {
        let resp = pool.main().send(&RemoveRaftVoterRequest::default().with_cluster_id(None).with_voter_id(id)).await?;
        (resp.error_code, resp.error_message)
    };
    let what = if add { "adding" } else { "removing" };
    check(code, message.as_ref(), format!("{what} voter {id}"))?;
    if conn.output == Output::Json {
        print_json(&json!({"node": id, "voter": add}))?;
    } else if add {
        println!("Node {id} is now a voter of the metadata quorum.");
    } else {
        println!("Node {id} is no longer a voter of the metadata quorum.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_partitions_with_replica_lists() {
        let m = moves(&[0, 2], &["1,2,4".into(), "3, 4".into()], false).unwrap();
        assert_eq!(
            m,
            vec![Move { partition: 0, target: Some(vec![1, 2, 4]) }, Move { partition: 2, target: Some(vec![3, 4]) }]
        );
        assert_eq!(moves(&[1], &[], true).unwrap(), vec![Move { partition: 1, target: None }]);
    }

    #[test]
    fn refuses_mismatched_or_bad_lists() {
        assert!(moves(&[0, 1], &["1,2".into()], false).is_err());
        assert!(moves(&[0], &["1,1".into()], false).is_err());
        assert!(moves(&[0], &["1,x".into()], false).is_err());
        assert!(moves(&[0], &["1".into()], true).is_err());
        assert!(moves(&[0, 0], &["1".into(), "2".into()], false).is_err());
        assert!(moves(&[], &[], true).is_err());
    }
}
