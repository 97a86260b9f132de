//! Three Raft nodes in one process over real loopback sockets: a partition group replicates
//! record batches, survives the loss of its leader, and a restarted node catches up from disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::BasicNode;
use rill_protocol::records::{decode_batches, encode_batch, EncodeOptions, RecordIn};
use rill_raft::group::{raft_config, Group, Timing, WriteError};
use rill_raft::network::{self, AppHandler, Groups, Peers};
use rill_storage::LogConfig;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const GROUP: u64 = 7;

struct Node {
    id: u64,
    addr: String,
    dir: PathBuf,
    peers: Arc<Peers>,
    groups: Groups,
    server: JoinHandle<std::io::Result<()>>,
    group: Group,
}

fn timing() -> Timing {
    Timing { heartbeat_ms: 100, election_min_ms: 400, election_max_ms: 800 }
}

fn no_app() -> AppHandler {
    Arc::new(|_, _, _| Box::pin(async { Err("no application rpcs here".to_string()) }))
}

async fn start(id: u64, listener: TcpListener, dir: &Path, addrs: &BTreeMap<u64, String>) -> Node {
    start_with(id, listener, dir, addrs, LogConfig::default()).await
}

async fn start_with(id: u64, listener: TcpListener, dir: &Path, addrs: &BTreeMap<u64, String>, log: LogConfig) -> Node {
    let addr = listener.local_addr().unwrap().to_string();
    let peers = Peers::new(id);
    for (n, a) in addrs {
        peers.set_addr(*n, a.clone());
    }
    let groups = Groups::default();
    let group = Group::open(id, GROUP, dir, log, peers.clone(), None, raft_config(&timing())).await.unwrap();
    let server = tokio::spawn(network::serve(listener, id, groups.clone(), no_app(), peers.liveness.clone()));
    groups.insert(&group);
    Node { id, addr, dir: dir.to_path_buf(), peers, groups, server, group }
}

async fn stop(node: Node) -> (u64, String, PathBuf) {
    node.server.abort();
    node.groups.remove(GROUP);
    node.group.shutdown().await;
    drop(node.peers);
    (node.id, node.addr, node.dir)
}

/// Loopback listeners for nodes 1, 2 and 3, and their addresses.
async fn three_listeners() -> (Vec<(u64, TcpListener)>, BTreeMap<u64, String>) {
    let mut listeners = Vec::new();
    let mut addrs = BTreeMap::new();
    for id in 1..=3u64 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.insert(id, l.local_addr().unwrap().to_string());
        listeners.push((id, l));
    }
    (listeners, addrs)
}

/// Three nodes on loopback, each with the group initialized with all three as voters.
async fn three_nodes(dir: &Path) -> (Vec<Node>, BTreeMap<u64, String>) {
    three_nodes_with(dir, LogConfig::default()).await
}

async fn three_nodes_with(dir: &Path, log: LogConfig) -> (Vec<Node>, BTreeMap<u64, String>) {
    let (listeners, addrs) = three_listeners().await;
    let mut nodes = Vec::new();
    for (id, l) in listeners {
        nodes.push(start_with(id, l, &dir.join(format!("n{id}")), &addrs, log.clone()).await);
    }
    let members: BTreeMap<u64, BasicNode> = addrs.iter().map(|(id, a)| (*id, BasicNode { addr: a.clone() })).collect();
    for n in &nodes {
        n.group.initialize(members.clone()).await.unwrap();
    }
    (nodes, addrs)
}

fn batch(first: u32, n: u32) -> Bytes {
    let values: Vec<String> = (first..first + n).map(|i| format!("record-{i}")).collect();
    let recs: Vec<RecordIn<'_>> = values
        .iter()
        .map(|v| RecordIn { value: Some(v.as_bytes()), timestamp: 1_700_000_000_000, ..Default::default() })
        .collect();
    encode_batch(&recs, &EncodeOptions::default()).freeze()
}

async fn leader_of(nodes: &[Node]) -> usize {
    for _ in 0..100 {
        for (i, n) in nodes.iter().enumerate() {
            if n.group.is_leader() {
                return i;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no leader elected");
}

async fn wait_hw(node: &Node, hw: i64) {
    for _ in 0..200 {
        if node.group.shared.high_watermark() >= hw {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("node {} stuck at high watermark {}, want {hw}", node.id, node.group.shared.high_watermark());
}

/// Every record of the node's log up to `hw`, as (offset, value, leader epoch) checked dense.
fn records(node: &Node, hw: i64) -> Vec<(i64, String)> {
    records_from(node, 0, hw)
}

fn records_from(node: &Node, from: i64, hw: i64) -> Vec<(i64, String)> {
    let log = &node.group.shared.log;
    let mut out = Vec::new();
    let mut at = from;
    while at < hw {
        let r = log.read(at, 1 << 20, hw).unwrap();
        assert!(!r.records.is_empty(), "node {}: nothing at {at} below {hw}", node.id);
        for rec in decode_batches(&r.records).unwrap().into_iter().filter(|r| r.offset >= from) {
            assert_eq!(rec.offset, at, "offsets must be dense");
            out.push((rec.offset, String::from_utf8(rec.value.unwrap().to_vec()).unwrap()));
            at += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicate_fail_over_and_catch_up() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut nodes, addrs) = three_nodes(tmp.path()).await;

    // 50 entries of 3 records: offsets 0..150, dense although Raft also logged a membership
    // entry and a blank one.
    let l = leader_of(&nodes).await;
    let mut expected = Vec::new();
    for i in 0..50u32 {
        let a = nodes[l].group.write(batch(i * 3, 3)).await.unwrap();
        assert_eq!((a.base_offset, a.end_offset), (i as i64 * 3, i as i64 * 3 + 3));
        expected.extend((i * 3..i * 3 + 3).map(|r| (r as i64, format!("record-{r}"))));
    }
    assert_eq!(nodes[l].group.shared.high_watermark(), 150);
    let term1 = nodes[l].group.term();
    for n in &nodes {
        wait_hw(n, 150).await;
        assert_eq!(records(n, 150), expected, "node {} differs", n.id);
        // The Kafka leader epoch stamped in every batch is the Raft term.
        let epoch = n.group.shared.log.read(0, 1 << 20, 150).unwrap().records[12..16].to_vec();
        assert_eq!(i32::from_be_bytes(epoch.try_into().unwrap()) as u64, term1);
    }

    // A follower refuses writes and names the leader.
    let f = (l + 1) % 3;
    match nodes[f].group.write(batch(0, 1)).await {
        Err(WriteError::NotLeader { leader }) => assert_eq!(leader, Some(nodes[l].id)),
        other => panic!("follower accepted a write: {other:?}"),
    }

    // Crash the leader: the other two elect a new one and go on at offset 150.
    let old = nodes.remove(l);
    let (old_id, old_addr, old_dir) = stop(old).await;
    let l2 = leader_of(&nodes).await;
    assert!(nodes[l2].group.term() > term1);
    for i in 50..100u32 {
        let a = nodes[l2].group.write(batch(i * 3, 3)).await.unwrap();
        assert_eq!(a.base_offset, i as i64 * 3);
        expected.extend((i * 3..i * 3 + 3).map(|r| (r as i64, format!("record-{r}"))));
    }

    // The old leader restarts from its disk, on its old address, and catches up.
    let listener = TcpListener::bind(&old_addr).await.unwrap();
    let back = start(old_id, listener, &old_dir, &addrs).await;
    nodes.push(back);
    for n in &nodes {
        wait_hw(n, 300).await;
        assert_eq!(records(n, 300), expected, "node {} differs after fail-over", n.id);
    }
    for n in nodes {
        stop(n).await;
    }
}

/// A follower that lost its disk comes back empty and, as the broker does for a group that
/// exists elsewhere, waits to be replicated to instead of proposing a membership of its own
/// (a rival index-0 entry can leave it stuck); the leader's log is copied to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_rejoins_with_an_empty_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut nodes, addrs) = three_nodes(tmp.path()).await;
    let l = leader_of(&nodes).await;
    for i in 0..20u32 {
        nodes[l].group.write(batch(i * 2, 2)).await.unwrap();
    }
    // Wipe a follower whose own initial entry lost: its re-proposed one then conflicts at index 0.
    let first = nodes[l].group.shared.with_index(|idx| idx.get(0).map(|m| m.log_id.leader_id.node_id)).unwrap();
    let f = (0..3).find(|&i| i != l && nodes[i].id != first).unwrap();
    let gone = nodes.remove(f);
    let (id, addr, dir) = stop(gone).await;
    std::fs::remove_dir_all(&dir).unwrap();
    let l = leader_of(&nodes).await;
    for i in 20..40u32 {
        nodes[l].group.write(batch(i * 2, 2)).await.unwrap();
    }
    let back = start(id, TcpListener::bind(&addr).await.unwrap(), &dir, &addrs).await;
    wait_hw(&back, 80).await;
    let expected = records(&nodes[0], 80);
    assert_eq!(records(&back, 80), expected);
    nodes.push(back);
    for n in nodes {
        stop(n).await;
    }
}

/// A leader fresh from an election refuses writes until a quorum has answered it (openraft's
/// leader lease): retry like a client.
async fn write_after_election(g: &Group, b: Bytes) -> rill_raft::Appended {
    for _ in 0..100 {
        match g.write(b.clone()).await {
            Ok(a) => return a,
            Err(WriteError::NotLeader { leader: None }) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("write failed: {e}"),
        }
    }
    panic!("the new leader never took the write")
}

async fn wait_log_start(node: &Node, at_least: i64) {
    for _ in 0..400 {
        if node.group.shared.log.log_start_offset() >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("node {}: log start stuck at {}, want {at_least}", node.id, node.group.shared.log.log_start_offset());
}

/// Retention on a replicated partition: each replica purges its Raft log up to an entry
/// boundary, which deletes the segments below. A follower that was down while the leader
/// purged cannot get the entries it misses; it receives a snapshot, restarts its log, empty,
/// where the leader's now starts, and replicates everything above. A DeleteRecords point
/// inside an entry still lets that entry be replicated whole. Everything survives restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_deletes_the_prefix_and_a_lagging_follower_restarts_at_the_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let log = LogConfig { segment_bytes: 1024, ..LogConfig::default() };
    let (mut nodes, addrs) = three_nodes_with(tmp.path(), log.clone()).await;
    let l = leader_of(&nodes).await;
    for i in 0..30u32 {
        nodes[l].group.write(batch(i * 3, 3)).await.unwrap();
    }
    for n in &nodes {
        wait_hw(n, 90).await;
    }
    // A follower goes away; the others go on and purge below offset 121 (entries hold 3
    // records, so the cut is the entry ending at 120), and the leader's log start moves to
    // 121 as DeleteRecords would put it.
    let f = (l + 1) % 3;
    let gone = nodes.remove(f);
    let (fid, faddr, fdir) = stop(gone).await;
    let l = leader_of(&nodes).await;
    for i in 30..60u32 {
        nodes[l].group.write(batch(i * 3, 3)).await.unwrap();
    }
    for n in &nodes {
        wait_hw(n, 180).await;
        let cut = n.group.purge_to(121).await.unwrap();
        assert_eq!(cut, Some(120), "node {}", n.id);
        wait_log_start(n, 120).await;
        assert!(n.group.shared.log.segment_count() < 10, "node {}: segments below the cut deleted", n.id);
    }
    nodes[l].group.shared.log.delete_records_before(121).unwrap();
    assert!(nodes[l].group.shared.log.read(60, 1024, 180).is_err(), "purged records are gone");
    let expected = records_from(&nodes[l], 121, 180);
    for i in 60..70u32 {
        nodes[l].group.write(batch(i * 3, 3)).await.unwrap();
    }
    let mut expected_all = expected.clone();
    expected_all.extend((180..210).map(|r| (r as i64, format!("record-{r}"))));

    // The follower comes back with its old log (it ends near 90, below the cut).
    let back = start_with(fid, TcpListener::bind(&faddr).await.unwrap(), &fdir, &addrs, log.clone()).await;
    wait_hw(&back, 210).await;
    assert_eq!(back.group.shared.log.log_start_offset(), 120, "restarted at the snapshot's end");
    assert_eq!(records_from(&back, 121, 210), expected_all);
    nodes.push(back);

    // Every node restarts from its disk: the purged prefix stays purged and writes go on.
    let mut stopped = Vec::new();
    for n in nodes.drain(..) {
        stopped.push(stop(n).await);
    }
    for (id, addr, dir) in stopped {
        nodes.push(start_with(id, TcpListener::bind(&addr).await.unwrap(), &dir, &addrs, log.clone()).await);
    }
    let l = leader_of(&nodes).await;
    write_after_election(&nodes[l].group, batch(210, 3)).await;
    expected_all.extend((210..213).map(|r| (r as i64, format!("record-{r}"))));
    for n in &nodes {
        wait_hw(n, 213).await;
        assert!(n.group.shared.log.log_start_offset() >= 120);
        assert_eq!(records_from(n, 121, 213), expected_all, "node {}", n.id);
    }
    for n in nodes {
        stop(n).await;
    }
}

/// A node hosting many groups, with quiescence running.
struct ManyNode {
    id: u64,
    groups: Groups,
    tasks: Vec<JoinHandle<()>>,
    server: JoinHandle<std::io::Result<()>>,
}

async fn start_many(
    id: u64,
    listener: TcpListener,
    dir: &Path,
    addrs: &BTreeMap<u64, String>,
    ids: &[u64],
) -> ManyNode {
    let peers = Peers::new(id);
    for (n, a) in addrs {
        peers.set_addr(*n, a.clone());
    }
    let groups = Groups::default();
    for gid in ids {
        let g = Group::open(
            id,
            *gid,
            &dir.join(format!("g{gid}")),
            LogConfig::default(),
            peers.clone(),
            None,
            raft_config(&timing()),
        )
        .await
        .unwrap();
        groups.insert(&g);
    }
    let server = tokio::spawn(network::serve(listener, id, groups.clone(), no_app(), peers.liveness.clone()));
    let tasks = vec![tokio::spawn(rill_raft::quiesce::run(peers.clone(), groups.clone(), timing()))];
    ManyNode { id, groups, tasks, server }
}

fn group_of(n: &ManyNode, gid: u64) -> Group {
    n.groups.groups().into_iter().find(|g| g.id == gid).unwrap()
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..400 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Quiescence: idle groups stop ticking on every node (one node heartbeat per peer replaces
/// their Raft heartbeats) yet keep a full in-sync set; a write wakes a group and commits at
/// once; when the node leading quiet groups dies, the others notice its silence and elect new
/// leaders, and every group takes writes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_groups_quiesce_wake_on_writes_and_fail_over() {
    let tmp = tempfile::tempdir().unwrap();
    let ids: Vec<u64> = (100..112).collect();
    let (listeners, addrs) = three_listeners().await;
    let mut nodes = Vec::new();
    for (id, l) in listeners {
        nodes.push(start_many(id, l, &tmp.path().join(format!("n{id}")), &addrs, &ids).await);
    }
    let members: BTreeMap<u64, BasicNode> = addrs.iter().map(|(id, a)| (*id, BasicNode { addr: a.clone() })).collect();
    for gid in &ids {
        group_of(&nodes[(*gid as usize) % 3], *gid).initialize(members.clone()).await.unwrap();
    }
    let leader_of_group = |nodes: &[ManyNode], gid: u64| nodes.iter().position(|n| group_of(n, gid).is_leader());
    let write = |nodes: &[ManyNode], gid: u64, v: u32| {
        let g = leader_of_group(nodes, gid).map(|i| group_of(&nodes[i], gid));
        async move { g.expect("a leader").write(batch(v, 1)).await }
    };
    for gid in &ids {
        // Right after an election the new leader may still refuse writes: retry like a client.
        let mut ok = false;
        for _ in 0..100 {
            if leader_of_group(&nodes, *gid).is_some() && write(&nodes, *gid, 0).await.is_ok() {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ok, "group {gid} never took its first write");
    }
    wait_until("every group quiet on every node", || {
        nodes.iter().all(|n| ids.iter().all(|g| group_of(n, *g).shared.quiet.is_quiesced()))
    })
    .await;
    for gid in &ids {
        let l = leader_of_group(&nodes, *gid).unwrap();
        assert_eq!(group_of(&nodes[l], *gid).in_sync(Duration::from_secs(2)).len(), 3, "quiet groups stay in sync");
    }
    // Stays quiet: no election anywhere while idle.
    let terms: Vec<u64> = ids.iter().map(|g| group_of(&nodes[0], *g).term()).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(terms, ids.iter().map(|g| group_of(&nodes[0], *g).term()).collect::<Vec<_>>());

    // A write wakes its group and commits.
    let a = tokio::time::timeout(Duration::from_secs(3), write(&nodes, ids[0], 1)).await.unwrap().unwrap();
    assert_eq!(a.base_offset, 1);

    // The node leading the most groups dies; the others take over every group it led.
    let victim =
        (0..3).max_by_key(|i| ids.iter().filter(|g| leader_of_group(&nodes, **g) == Some(*i)).count()).unwrap();
    let dead = nodes.remove(victim);
    dead.server.abort();
    for t in &dead.tasks {
        t.abort();
    }
    for g in dead.groups.groups() {
        g.shutdown().await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    for gid in &ids {
        // A new leader takes writes once a quorum has answered it (openraft's leader lease).
        loop {
            if leader_of_group(&nodes, *gid).is_some() {
                let a = tokio::time::timeout(Duration::from_secs(5), write(&nodes, *gid, 2)).await;
                if matches!(a, Ok(Ok(_))) {
                    break;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "group {gid} takes no writes after node {} died", dead.id);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for n in nodes {
        n.server.abort();
        for t in &n.tasks {
            t.abort();
        }
        for g in n.groups.groups() {
            g.shutdown().await;
        }
    }
}
