"""A 3-node Rill cluster (real processes, loopback): replication, leader fail-over with real
clients, a crash of every node at once, and consumer groups that outlive their coordinator.

Each test starts its own cluster; every loop is bounded in count and time."""
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from broker import target
from cluster import RillCluster

pytestmark = pytest.mark.skipif(target() != "rill", reason="Rill cluster mode")


@pytest.fixture
def cluster(request):
    # A dead follower leaves the ISR after 2 s instead of Kafka's 30 s default.
    c = RillCluster(3, extra={"replica.lag.time.max.ms": "2000"}).start()
    yield c
    if any(getattr(getattr(request.node, "rep_" + w, None), "failed", False) for w in ("setup", "call")):
        print(c.logs())
    c.cleanup()


def create(c, name, partitions):
    fs = c.admin().create_topics([NewTopic(name, num_partitions=partitions)], operation_timeout=30)
    fs[name].result(timeout=30)
    for p in range(partitions):
        c.leader(name, p)
    # Give every running node time to name a leader for every partition (a follower learns of
    # a new leader from its first append or the leader's announcement); best effort, since a
    # test may have paused a node.
    deadline = time.monotonic() + 15
    for node in [b for b in c.nodes.values() if b.alive()]:
        while time.monotonic() < deadline:
            try:
                view = metadata_via(node, name)
                if len(view) == partitions and all(leader > 0 for leader, _ in view.values()):
                    break
            except Exception:  # noqa: BLE001
                pass
            time.sleep(0.1)


def java_tool(java_cp, main, *args, ok=True):
    """Runs a Kafka tool's main class (kafka-tools from Maven); with `ok`, it must exit 0."""
    import subprocess
    r = subprocess.run(["java", "-Xmx256m", "-XX:TieredStopAtLevel=1", "-Dlog4j.configuration=file:/dev/null",
                        "-cp", java_cp, main, *map(str, args)], capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    if ok:
        assert r.returncode == 0, f"{main} {args}: {r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r


def metric(node, name):
    """A label-less gauge from a node's /metrics (admin listener)."""
    import urllib.request
    text = urllib.request.urlopen(node.admin_url + "/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def power_cycle(c):
    """kill -9 every node, then start them all again: what a power loss does to the cluster."""
    for n in list(c.nodes):
        c.kill9(n)
    for n in list(c.nodes):
        c.nodes[n].restart(90)
    c.wait_ready(90)


def read_all(bootstrap, topic, partitions, expect, timeout=60):
    """Every record of the partitions from the beginning, by partition: [(offset, value)]."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "cluster-reader", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "enable.partition.eof": True})
    c.assign([TopicPartition(topic, p, -2) for p in range(partitions)])
    out = {p: [] for p in range(partitions)}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and sum(len(v) for v in out.values()) < expect:
            m = c.poll(0.5)
            if m is None or (m.error() and m.error().code() == KafkaError._PARTITION_EOF):
                continue
            assert not m.error(), m.error()
            out[m.partition()].append((m.offset(), m.value().decode()))
    finally:
        c.close()
    return out


def test_metadata_placement_and_replicated_produce(cluster):
    md = cluster.admin().list_topics(timeout=10)
    assert sorted(md.brokers) == [1, 2, 3]
    create(cluster, "replicated", 3)
    md = cluster.admin().list_topics(topic="replicated", timeout=10)
    parts = md.topics["replicated"].partitions
    for p in parts.values():
        assert sorted(p.replicas) == [1, 2, 3]
        assert p.leader in (1, 2, 3)
    # Preferred leaders rotate, so three partitions get three different leaders.
    assert len({p.leader for p in parts.values()}) == 3
    # A replication factor the cluster cannot honour is refused with Kafka's error.
    fs = cluster.admin().create_topics([NewTopic("rf4", num_partitions=1, replication_factor=4)])
    with pytest.raises(Exception) as e:
        fs["rf4"].result(timeout=30)
    assert "INVALID_REPLICATION_FACTOR" in str(e.value)

    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "linger.ms": 5})
    acked = []
    for i in range(300):
        p.produce("replicated", value=f"v{i}".encode(), partition=i % 3,
                  on_delivery=lambda err, m: acked.append(m) if err is None else None)
    assert p.flush(30) == 0
    assert len(acked) == 300
    got = read_all(cluster.bootstrap, "replicated", 3, 300)
    for part in range(3):
        assert [o for o, _ in got[part]] == list(range(100)), "offsets are dense"
        assert [v for _, v in got[part]] == [f"v{i}" for i in range(part, 300, 3)]

    # Replication health on each node's /metrics: every partition led exactly once, none
    # under-replicated; after a node dies, its partitions move and the others count theirs
    # as under-replicated.
    total = 3 + len(cluster.admin().list_topics(timeout=10).topics["__consumer_offsets"].partitions)

    def gauges(name, nodes):
        return sum(metric(cluster.nodes[i], name) for i in nodes)

    deadline = time.monotonic() + 30
    while gauges("kafka_server_replicamanager_underreplicatedpartitions", [1, 2, 3]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert gauges("kafka_server_replicamanager_leadercount", [1, 2, 3]) == total
    assert gauges("kafka_server_replicamanager_underreplicatedpartitions", [1, 2, 3]) == 0
    assert gauges("kafka_controller_kafkacontroller_offlinepartitionscount", [1, 2, 3]) == 0
    cluster.kill9(3)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (gauges("kafka_server_replicamanager_leadercount", [1, 2]) < total or
                                           gauges("kafka_server_replicamanager_underreplicatedpartitions", [1, 2]) < total):
        time.sleep(0.2)
    assert gauges("kafka_server_replicamanager_leadercount", [1, 2]) == total
    assert gauges("kafka_server_replicamanager_underreplicatedpartitions", [1, 2]) == total

    # Raft health: the 300 acknowledged records were committed through the partitions' leaders
    # (one histogram sample per batch), and the partitions node 3 led were won in elections by
    # nodes 1 and 2 (each group had an election at creation, so the count only grows).
    commits = sum(metric(cluster.nodes[i], "rill_raft_commit_seconds_count") for i in (1, 2))
    assert commits > 0
    assert gauges("rill_raft_elections_started_total", [1, 2]) >= total


def test_leader_killed_while_producing(cluster):
    """kill -9 the leader mid-stream: the producer rides through, every acknowledged record is
    read back in order, offsets stay dense."""
    create(cluster, "failover", 1)
    old_leader = cluster.leader("failover", 0)
    # The librdkafka profile of the event bus, with enough time to ride out an election.
    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": False,
                  "message.timeout.ms": 30000, "linger.ms": 5, "retry.backoff.ms": 50})
    acked, failed = [], []
    n = 3000

    def on_delivery(err, m):
        (failed if err else acked).append(m.value().decode())

    killed = threading.Event()
    for i in range(n):
        p.produce("failover", value=f"r{i:05d}".encode(), on_delivery=on_delivery)
        p.poll(0)
        if i == n // 3:
            p.flush(30)
            cluster.kill9(old_leader)
            killed.set()
        if i % 100 == 0:
            time.sleep(0.01)
    assert p.flush(60) == 0
    assert killed.is_set()
    new_leader = cluster.leader("failover", 0, exclude=(old_leader,))
    assert new_leader != old_leader
    assert not failed, f"{len(failed)} records failed delivery"
    got = read_all(cluster.bootstrap, "failover", 1, len(acked))[0]
    offsets = [o for o, _ in got]
    assert offsets == list(range(len(got))), "offsets are dense"
    values = [v for _, v in got]
    missing = set(acked) - set(values)
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {sorted(missing)[:5]}"
    # Retries without idempotence may duplicate (as on Kafka); first occurrences keep order.
    first = list(dict.fromkeys(values))
    assert first == sorted(first)
    # The old leader comes back as a follower and catches up.
    cluster.restart(old_leader)
    assert cluster.leader("failover", 0) in (1, 2, 3)


def test_all_nodes_crash_at_once(cluster):
    create(cluster, "powerloss", 2)
    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    acked = []
    for i in range(1000):
        p.produce("powerloss", value=f"p{i}".encode(), partition=i % 2,
                  on_delivery=lambda err, m: acked.append(m.value().decode()) if err is None else None)
    assert p.flush(30) == 0
    assert len(acked) == 1000
    for node in cluster.nodes:
        cluster.kill9(node)
    for node in cluster.nodes:
        cluster.restart(node)
    cluster.wait_ready()
    got = read_all(cluster.bootstrap, "powerloss", 2, 1000)
    values = [v for part in got.values() for _, v in part]
    assert sorted(values) == sorted(acked)
    for part in got.values():
        assert [o for o, _ in part] == list(range(len(part)))


def test_idempotent_retry_after_leader_change_is_not_appended_twice(cluster):
    """A producer whose ack was lost with its leader retries the same batch (same producer id,
    epoch and sequence) on the new leader: it gets the original offset, and the log holds the
    records once."""
    import kproto
    create(cluster, "idem-failover", 1)
    apis = None

    def send(node_id, batch):
        nonlocal apis
        s = kproto.connect(cluster.nodes[node_id])
        try:
            apis = kproto.api_versions(s)[1] if apis is None else apis
            return kproto.produce(s, apis, "idem-failover", 0, batch)
        finally:
            s.close()

    def send_until_taken(node_id, batch):
        deadline = time.monotonic() + 30
        while True:  # a leader fresh from its election may not take writes yet
            err, base = send(node_id, batch)
            if err == 0 or time.monotonic() > deadline:
                return err, base
            time.sleep(0.2)

    old = cluster.leader("idem-failover", 0)
    batch = kproto.record_batch([(None, b"once-%d" % i) for i in range(3)], producer=(4242, 0, 0))
    err, first = send_until_taken(old, batch)
    assert err == 0, err
    assert send(old, batch) == (0, first)  # the plain retry on the same leader
    cluster.kill9(old)
    new = cluster.leader("idem-failover", 0, exclude=(old,))
    assert send_until_taken(new, batch) == (0, first)
    nxt = kproto.record_batch([(None, b"next")], producer=(4242, 0, 3))
    assert send(new, nxt) == (0, first + 3)
    got = read_all(cluster.bootstrap, "idem-failover", 1, 4)
    assert [v for _, v in got[0]] == ["once-0", "once-1", "once-2", "next"]


def test_not_leader_answers_name_the_leader(cluster):
    """KIP-951: a produce sent to a follower is refused with NOT_LEADER_OR_FOLLOWER that names
    the current leader, its epoch, and the leader's endpoint."""
    import kproto
    create(cluster, "hints", 1)
    leader = cluster.leader("hints", 0)
    follower = next(i for i in cluster.nodes if i != leader)
    s = kproto.connect(cluster.nodes[follower])
    try:
        err, current, endpoints = kproto.produce_v10(s, "hints", 0, kproto.record_batch([(None, b"x")]))
    finally:
        s.close()
    assert err == 6  # NOT_LEADER_OR_FOLLOWER
    assert current is not None and current[0] == leader and current[1] >= 1
    assert endpoints == {leader: ("127.0.0.1", cluster.nodes[leader].port)}


def test_users_and_acls_are_the_same_on_every_node():
    """SCRAM users and ACLs are metadata: changed through one node, every node has them, also
    after a restart (the metadata log is replayed)."""
    from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient,
                                       ResourcePatternType, ResourceType, ScramCredentialInfo, ScramMechanism,
                                       UserScramCredentialDeletion, UserScramCredentialUpsertion)
    c = RillCluster(3, extra={"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                              "allow.everyone.if.no.acl.found": "true"}).start()
    try:
        via = {i: AdminClient({"bootstrap.servers": b.bootstrap}) for i, b in c.nodes.items()}
        cred = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096)
        for f in via[1].alter_user_scram_credentials(
                [UserScramCredentialUpsertion("claims", cred, b"claims-pw"),
                 UserScramCredentialUpsertion("pharmacy", cred, b"pharmacy-pw")]).values():
            f.result(30)
        acl = AclBinding(ResourceType.TOPIC, "prescriptions", ResourcePatternType.LITERAL, "User:pharmacy", "*",
                         AclOperation.READ, AclPermissionType.ALLOW)
        for f in via[2].create_acls([acl]).values():
            f.result(30)
        for f in via[3].alter_user_scram_credentials(
                [UserScramCredentialDeletion("claims", ScramMechanism.SCRAM_SHA_256)]).values():
            f.result(30)
        any_acl = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                                   AclPermissionType.ANY)

        def state(admin):
            users = sorted(admin.describe_user_scram_credentials().result(30))
            acls = [(a.name, a.principal, a.operation) for a in admin.describe_acls(any_acl).result(30)]
            return users, acls

        want = (["pharmacy"], [("prescriptions", "User:pharmacy", AclOperation.READ)])
        for i in (1, 2, 3):
            assert state(via[i]) == want, f"node {i}"
        c.kill9(2)
        c.restart(2)
        c.wait_ready()
        assert state(AdminClient({"bootstrap.servers": c.nodes[2].bootstrap})) == want
    finally:
        c.cleanup()


def test_group_commits_survive_coordinator_crash(cluster):
    create(cluster, "grouped", 2)
    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    for i in range(200):
        p.produce("grouped", value=f"g{i}".encode(), partition=i % 2)
    assert p.flush(30) == 0

    def consumer():
        c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "survivors", "enable.auto.commit": False,
                      "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
        c.subscribe(["grouped"])
        return c

    c = consumer()
    seen = consume_committing(c, 100)  # commit after every message
    assert len(seen) == 100
    c.close()
    committed = {tp.partition: tp.offset for tp in
                 Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "survivors"}).committed(
                     [TopicPartition("grouped", 0), TopicPartition("grouped", 1)], timeout=30)}
    assert sum(o for o in committed.values() if o >= 0) == 100

    # Crash the coordinator: the leader of the group's __consumer_offsets partition.
    md = cluster.admin().list_topics(topic="__consumer_offsets", timeout=10)
    part = group_partition("survivors", len(md.topics["__consumer_offsets"].partitions))
    coordinator = md.topics["__consumer_offsets"].partitions[part].leader
    cluster.kill9(coordinator)

    c = consumer()
    rest = consume_committing(c, 100, timeout=90)
    c.close()
    # Resumed exactly after the last commit: nothing re-read, nothing skipped.
    assert sorted(seen + rest, key=lambda v: int(v[1:])) == [f"g{i}" for i in range(200)]


def test_java_producer_rides_through_leader_kill(cluster, java_cp, tmp_path):
    """The Java producer profile keeps going while its partition leader is killed; every
    acknowledged record is there afterwards, at the offset it was acknowledged with."""
    import subprocess

    create(cluster, "javafail", 1)
    old_leader = cluster.leader("javafail", 0)
    acked_file = tmp_path / "acked.txt"
    proc = subprocess.Popen(["java", "-XX:TieredStopAtLevel=1", "-Dlog4j.configuration=file:/dev/null",
                             "-cp", java_cp, "FailoverProducer",
                             cluster.bootstrap, "javafail", "4000", str(acked_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    try:
        seen = []
        for _ in range(50):  # log4j may print a few lines first
            seen.append(proc.stdout.readline())
            if "STARTED" in seen[-1] or not seen[-1]:
                break
        assert "STARTED" in seen[-1], "".join(seen) + proc.stdout.read()
        time.sleep(1.0)
        cluster.kill9(old_leader)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "FAILED 0" in out, out
    assert cluster.leader("javafail", 0, exclude=(old_leader,)) != old_leader
    acked = dict(line.split() for line in acked_file.read_text().splitlines())
    # Retries without idempotence may append a batch twice, so read up to the last acked offset.
    got = read_all(cluster.bootstrap, "javafail", 1, max(int(o) for o in acked.values()) + 1)[0]
    assert [o for o, _ in got] == list(range(len(got))), "offsets are dense"
    by_offset = dict(got)
    wrong = {v: (o, by_offset.get(int(o))) for v, o in acked.items() if by_offset.get(int(o)) != v}
    assert not wrong, f"{len(wrong)} acknowledged records not at their offsets, e.g. {list(wrong.items())[:5]}"


def segment_bytes(node, topic, partition):
    """Bytes of the partition's segment files in a node's data dir."""
    import glob
    import os
    return sum(os.path.getsize(f) for f in glob.glob(os.path.join(node.data_dir, f"{topic}-{partition}", "*.log")))


def wait_same_bytes(cluster, topic, partition, timeout=60):
    """Until every replica's segments hold the same number of bytes (identical logs)."""
    deadline = time.monotonic() + timeout
    sizes = {}
    while time.monotonic() < deadline:
        sizes = {i: segment_bytes(b, topic, partition) for i, b in cluster.nodes.items()}
        if len(set(sizes.values())) == 1 and next(iter(sizes.values())) > 0:
            return sizes
        time.sleep(0.2)
    raise AssertionError(f"replicas differ: {sizes}")


def test_follower_catches_up_after_a_long_pause(cluster):
    import signal

    create(cluster, "catchup", 1)
    leader = cluster.leader("catchup", 0)
    follower = next(i for i in cluster.nodes if i != leader)
    # Bootstrapped from the nodes that stay up: a stopped process still completes TCP handshakes
    # (the kernel does), so a client that picks it for its first metadata request waits out
    # socket.timeout.ms (60 s) before trying another, longer than this test's flush.
    up = ",".join(b.bootstrap for i, b in cluster.nodes.items() if i != follower)
    p = Producer({"bootstrap.servers": up, "acks": "all", "linger.ms": 5})
    # A paused follower (SIGSTOP, like a long GC or VM stall) misses writes, then catches up.
    cluster.nodes[follower].proc.send_signal(signal.SIGSTOP)
    try:
        for i in range(3000):
            p.produce("catchup", value=f"a{i}".encode(), partition=0)
        assert p.flush(30) == 0
    finally:
        cluster.nodes[follower].proc.send_signal(signal.SIGCONT)
    wait_same_bytes(cluster, "catchup", 0)
    # Now the other follower goes: the caught-up one is needed for the quorum, and has it all.
    other = next(i for i in cluster.nodes if i not in (leader, follower))
    cluster.kill9(other)
    for i in range(100):
        p.produce("catchup", value=f"b{i}".encode(), partition=0)
    assert p.flush(30) == 0
    got = read_all(cluster.bootstrap, "catchup", 1, 3100)[0]
    assert [v for _, v in got] == [f"a{i}" for i in range(3000)] + [f"b{i}" for i in range(100)]


def test_node_that_lost_its_disk_rejoins(cluster):
    """A follower whose data directory is gone restarts empty and gets everything again:
    metadata (it knows the topic), the records, and its place in the quorum."""
    import shutil

    create(cluster, "diskloss", 1)
    leader = cluster.leader("diskloss", 0)
    victim = next(i for i in cluster.nodes if i != leader)
    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(2000):
        p.produce("diskloss", value=f"d{i}".encode(), partition=0)
    assert p.flush(30) == 0
    cluster.kill9(victim)
    shutil.rmtree(cluster.nodes[victim].data_dir)
    for i in range(2000, 3000):
        p.produce("diskloss", value=f"d{i}".encode(), partition=0)
    assert p.flush(30) == 0
    cluster.restart(victim)
    wait_same_bytes(cluster, "diskloss", 0, timeout=90)
    # The rebuilt replica is now needed for the quorum: the other follower goes.
    other = next(i for i in cluster.nodes if i not in (leader, victim))
    cluster.kill9(other)
    for i in range(3000, 3100):
        p.produce("diskloss", value=f"d{i}".encode(), partition=0)
    assert p.flush(30) == 0
    got = read_all(cluster.bootstrap, "diskloss", 1, 3100)[0]
    assert [v for _, v in got] == [f"d{i}" for i in range(3100)]


def test_preferred_leader_election_with_kafka_cli(java_cp):
    """After a leader is killed and comes back, `kafka-leader-election --election-type
    PREFERRED` hands leadership back to the preferred replica (and so would the periodic
    rebalance, checked here with a short interval); `kafka-topics --describe` shows it."""
    import subprocess

    def tool(main, *args):
        return java_tool(java_cp, main, *args).stdout

    c = RillCluster(3, extra={"leader.imbalance.check.interval.seconds": "3600"}).start()
    try:
        bs = ["--bootstrap-server", c.bootstrap]
        out = tool("org.apache.kafka.tools.TopicCommand", *bs, "--create", "--topic", "elect", "--partitions", 3,
                   "--replication-factor", 3)
        assert "Created topic elect." in out
        preferred = c.leader("elect", 0)
        c.kill9(preferred)
        moved = c.leader("elect", 0, exclude=(preferred,))
        c.restart(preferred)
        time.sleep(2)  # let it catch up
        assert c.leader("elect", 0) == moved, "no rebalance before it is asked for"
        out = tool("org.apache.kafka.tools.LeaderElectionCommand", *bs, "--election-type", "PREFERRED",
                   "--all-topic-partitions")
        assert "Successfully completed leader election" in out, out
        assert c.leader("elect", 0) == preferred
        out = tool("org.apache.kafka.tools.TopicCommand", *bs, "--describe", "--topic", "elect")
        assert "ReplicationFactor: 3" in out and f"Partition: 0\tLeader: {preferred}" in out, out
    finally:
        c.cleanup()


def test_leaders_rebalance_by_themselves():
    c = RillCluster(3, extra={"leader.imbalance.check.interval.seconds": "1"}).start()
    try:
        create(c, "rebal", 3)
        leaders = {p: c.leader("rebal", p) for p in range(3)}
        victim = leaders[0]
        c.kill9(victim)
        c.leader("rebal", 0, exclude=(victim,))
        c.restart(victim)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and c.leader("rebal", 0) != victim:
            time.sleep(0.5)
        assert c.leader("rebal", 0) == victim, "the preferred replica did not get its leadership back"
    finally:
        c.cleanup()


def test_retention_and_delete_records_on_every_replica():
    """Retention and DeleteRecords on a replicated partition: every replica deletes the prefix
    (through a Raft purge), the log start survives a leader change, a follower that was down
    meanwhile comes back starting where the others start, and what is left reads back whole."""
    c = RillCluster(3, extra={"replica.lag.time.max.ms": "2000", "log.retention.check.interval.ms": "500"}).start()
    try:
        configs = {"segment.bytes": "4096", "retention.bytes": "16384"}
        fs = c.admin().create_topics([NewTopic("ret", num_partitions=1, config=configs)], operation_timeout=30)
        fs["ret"].result(timeout=30)
        leader = c.leader("ret", 0)
        p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 2, "batch.size": 1000})

        def produce(start, n):
            for i in range(start, start + n):
                p.produce("ret", value=f"r{i:06d}".encode() * 4, partition=0)
                if i % 200 == 0:
                    p.poll(0)
            assert p.flush(30) == 0

        def watermarks():
            cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "wm"})
            try:
                return cons.get_watermark_offsets(TopicPartition("ret", 0), timeout=10)
            finally:
                cons.close()

        def wait_low(at_least, timeout=60):
            deadline = time.monotonic() + timeout
            low = -1
            while time.monotonic() < deadline:
                low, _ = watermarks()
                if low >= at_least:
                    return low
                time.sleep(0.3)
            raise AssertionError(f"log start stuck at {low}, want >= {at_least}")

        def check_reads(low, end):
            """From the beginning to `end`: contiguous, right values, starting at or after
            `low` (retention keeps trimming while this reads)."""
            cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "ret-reader", "enable.auto.commit": False,
                             "auto.offset.reset": "earliest"})
            cons.assign([TopicPartition("ret", 0, -2)])
            got = []
            deadline = time.monotonic() + 60
            try:
                while time.monotonic() < deadline and (not got or got[-1][0] < end - 1):
                    m = cons.poll(0.5)
                    if m is not None and not m.error():
                        got.append((m.offset(), m.value().decode()))
            finally:
                cons.close()
            assert got and got[0][0] >= low, f"read from {got[:1]}, log start was {low}"
            assert got == [(o, f"r{o:06d}" * 4) for o in range(got[0][0], end)]

        # A follower is down while the others fill and trim the log.
        follower = next(i for i in c.nodes if i != leader)
        c.kill9(follower)
        produce(0, 3000)
        low = wait_low(1)
        for i, node in c.nodes.items():
            if i != follower:
                deadline = time.monotonic() + 30
                while segment_bytes(node, "ret", 0) > 64 * 1024 and time.monotonic() < deadline:
                    time.sleep(0.3)
                assert segment_bytes(node, "ret", 0) <= 64 * 1024, f"node {i} kept its segments"
        check_reads(low, 3000)

        # It comes back, gets a snapshot (its missing entries are gone) and replicates the rest;
        # then it is needed for the quorum.
        c.restart(follower)
        other = next(i for i in c.nodes if i not in (leader, follower))
        c.kill9(other)
        produce(3000, 200)
        low = wait_low(low)
        check_reads(low, 3200)
        c.restart(other)

        # DeleteRecords moves the log start on every replica: after the leader is killed, the
        # new leader answers with the same log start.
        target = 3100
        res = c.admin().delete_records([TopicPartition("ret", 0, target)])
        for _, f in res.items():
            assert f.result(timeout=30).low_watermark == target
        assert watermarks()[0] == target
        old = c.leader("ret", 0)
        c.kill9(old)
        c.leader("ret", 0, exclude=(old,))
        assert wait_low(target) == target
        check_reads(target, 3200)
        assert watermarks()[0] == target, "nothing else trimmed (retention keeps 16 KB, 100 records are less)"
    except Exception:
        print(c.logs())
        raise
    finally:
        c.cleanup()


REASSIGN = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand"


def reassign(java_cp, c, plan_path, moves, timeout=120):
    """Moves partitions with `kafka-reassign-partitions --execute`, then `--verify` until
    every one is done. `moves`: [(topic, partition, replicas)]."""
    import json
    plan_path.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": t, "partition": p, "replicas": r} for t, p, r in moves]}))
    bs = ["--bootstrap-server", c.bootstrap]
    out = java_tool(java_cp, REASSIGN, *bs, "--reassignment-json-file", plan_path, "--execute").stdout
    assert "Successfully started" in out, out
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = java_tool(java_cp, REASSIGN, *bs, "--reassignment-json-file", plan_path, "--verify").stdout
        if all(f"Reassignment of partition {t}-{p} is completed" in out for t, p, _ in moves):
            return
        time.sleep(1)
    raise AssertionError(out)


def replace_node(c, topic, gone, new):
    """Moves every partition of `topic` that `gone` holds to `new` (same slot in the replica
    list, so a preferred leader's slot goes to `new`): [(topic, partition, replicas)]."""
    return [(topic, p, [new if r == gone else r for r in replicas])
            for p, (_, replicas) in metadata_via(c.nodes[1], topic).items() if gone in replicas]


def group_partition(group, partitions):
    """The __consumer_offsets partition of `group`: Java's String.hashCode, as in Kafka."""
    h = 0
    for ch in group:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    h = h - (1 << 32) if h >= (1 << 31) else h
    return (h & 0x7FFFFFFF) % partitions


def metadata_via(node, topic):
    """Partition -> (leader, replicas) as one node alone answers Metadata. (A raw request:
    librdkafka may send an AdminClient's Metadata request to another broker it learned of
    from the bootstrap node's answer, so its view is not necessarily this node's.)"""
    import kproto
    with kproto.connect(node) as s:
        return dict(sorted(kproto.metadata(s, topic).items()))


def test_replication_factor_below_cluster_size_and_reassignment(java_cp, tmp_path):
    """Topics with fewer replicas than nodes: placement spreads leaders and replicas, every
    node names the right leader (also for partitions it holds no replica of), and
    `kafka-reassign-partitions` moves a partition, its leader included, to another node,
    which ends up with the same records while the node that left deletes its copy."""
    import json
    import os
    import subprocess

    def tool(main, *args):
        return java_tool(java_cp, main, *args).stdout

    c = RillCluster(3, extra={"replica.lag.time.max.ms": "2000"}).start()
    try:
        fs = c.admin().create_topics([NewTopic("rf2", num_partitions=3, replication_factor=2),
                                      NewTopic("rf1", num_partitions=3, replication_factor=1)],
                                     operation_timeout=30)
        for f in fs.values():
            f.result(timeout=30)
        for t in ("rf2", "rf1"):
            for p in range(3):
                c.leader(t, p)
        placed = metadata_via(c.nodes[1], "rf2")
        assert all(len(set(r)) == 2 for _, r in placed.values()), placed
        assert sorted(r[0] for _, r in placed.values()) == [1, 2, 3], "preferred leaders spread"
        assert sorted(sum((r for _, r in placed.values()), [])) == [1, 1, 2, 2, 3, 3], "replicas spread"
        # Every node, whether or not it holds a replica, names the same leaders.
        deadline = time.monotonic() + 20
        views = []
        while time.monotonic() < deadline:
            views = [metadata_via(n, "rf2") for n in c.nodes.values()]
            if all(v == views[0] for v in views) and all(lead > 0 for lead, _ in views[0].values()):
                break
            time.sleep(0.3)
        assert all(v == views[0] for v in views), views
        # Only the replicas have the data on disk.
        for i, (_, replicas) in placed.items():
            for n, b in c.nodes.items():
                assert os.path.isdir(os.path.join(b.data_dir, f"rf2-{i}")) == (n in replicas)

        p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 5})
        for i in range(600):
            p.produce("rf2", value=f"a{i}".encode(), partition=i % 3)
            p.produce("rf1", value=f"b{i}".encode(), partition=i % 3)
        assert p.flush(30) == 0

        # Move partition 0 off its leader, onto the node that had no replica.
        leader, replicas = placed[0]
        leader = c.leader("rf2", 0)
        newcomer = next(n for n in c.nodes if n not in replicas)
        stays = next(n for n in replicas if n != leader)
        plan = tmp_path / "plan.json"
        plan.write_text(json.dumps({"version": 1, "partitions": [
            {"topic": "rf2", "partition": 0, "replicas": [newcomer, stays]}]}))
        bs = ["--bootstrap-server", c.bootstrap]
        out = tool("org.apache.kafka.tools.reassign.ReassignPartitionsCommand", *bs,
                   "--reassignment-json-file", plan, "--execute")
        assert "Successfully started partition reassignment" in out, out
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            out = tool("org.apache.kafka.tools.reassign.ReassignPartitionsCommand", *bs,
                       "--reassignment-json-file", plan, "--verify")
            if "Reassignment of partition rf2-0 is completed" in out:
                break
            time.sleep(1)
        assert "Reassignment of partition rf2-0 is completed" in out, out
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and metadata_via(c.nodes[newcomer], "rf2")[0][1] != [newcomer, stays]:
            time.sleep(0.3)
        assert metadata_via(c.nodes[newcomer], "rf2")[0][1] == [newcomer, stays]
        assert c.leader("rf2", 0, exclude=(leader,)) in (newcomer, stays)
        gone = os.path.join(c.nodes[leader].data_dir, "rf2-0")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and os.path.isdir(gone):
            time.sleep(0.3)
        assert not os.path.isdir(gone), "the node that left still has the partition"

        # The moved partition takes writes, and reads back whole and in order; so do the rest.
        for i in range(600, 900):
            p.produce("rf2", value=f"a{i}".encode(), partition=i % 3)
        assert p.flush(30) == 0
        got = read_all(c.bootstrap, "rf2", 3, 900)
        for part in range(3):
            assert [o for o, _ in got[part]] == list(range(300)), "offsets are dense"
            assert [v for _, v in got[part]] == [f"a{i}" for i in range(part, 900, 3)]
        got = read_all(c.bootstrap, "rf1", 3, 600)
        for part in range(3):
            assert [v for _, v in got[part]] == [f"b{i}" for i in range(part, 600, 3)]
        # Both replicas hold the same log: the one that stayed can lose the other.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (segment_bytes(c.nodes[newcomer], "rf2", 0)
                                               != segment_bytes(c.nodes[stays], "rf2", 0)):
            time.sleep(0.3)
        assert segment_bytes(c.nodes[newcomer], "rf2", 0) == segment_bytes(c.nodes[stays], "rf2", 0) > 0

        # Nothing is listed once done, so there is nothing to cancel.
        out = tool("org.apache.kafka.tools.reassign.ReassignPartitionsCommand", *bs, "--list")
        assert "No partition reassignments found" in out, out
        out = tool("org.apache.kafka.tools.reassign.ReassignPartitionsCommand", *bs,
                   "--reassignment-json-file", plan, "--cancel")
        assert "None of the specified partition reassignments are active" in out, out
        # A replica set naming an unknown broker is refused.
        plan.write_text(json.dumps({"version": 1, "partitions": [
            {"topic": "rf2", "partition": 1, "replicas": [1, 9]}]}))
        r = subprocess.run(["java", "-Xmx256m", "-XX:TieredStopAtLevel=1", "-Dlog4j.configuration=file:/dev/null",
                            "-cp", java_cp, "org.apache.kafka.tools.reassign.ReassignPartitionsCommand", *bs,
                            "--reassignment-json-file", str(plan), "--execute"],
                           capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert r.returncode != 0, r.stdout
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.cleanup()


def test_node_added_then_decommissioned(java_cp, tmp_path):
    """A fourth node joins a running 3-node cluster (outside the voters), learns the metadata,
    takes a partition through `kafka-reassign-partitions`, serves clients that bootstrap from
    it alone, survives a kill -9, and once its partition is moved back leaves with
    `kafka-cluster unregister` (refused while it still holds a replica)."""
    import json
    import os
    import subprocess

    def tool(main, *args, ok=True):
        r = java_tool(java_cp, main, *args, ok=ok)
        return r.stdout + r.stderr

    def move(plan_replicas):
        reassign(java_cp, c, tmp_path / "plan.json", [("grow", 0, plan_replicas)])

    c = RillCluster(3, extra={"replica.lag.time.max.ms": "2000"})
    c.start()
    try:
        create(c, "grow", 3)
        p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 5})
        for i in range(300):
            p.produce("grow", value=f"g{i}".encode(), partition=i % 3)
        assert p.flush(30) == 0

        four = c.add_node(4)
        assert sorted(c.admin().list_topics(timeout=10).brokers) == [1, 2, 3, 4]
        # The new node knows the topics and names the same leaders as the others.
        # (Right after creation node 1 may not know a leader yet either: equal answers count
        # only once node 1 names a leader for every partition.)
        deadline = time.monotonic() + 20
        while True:
            theirs, mine = metadata_via(c.nodes[1], "grow"), metadata_via(four, "grow")
            if all(leader >= 0 for leader, _ in theirs.values()) and mine == theirs:
                break
            assert time.monotonic() < deadline, (mine, theirs)
            time.sleep(0.3)

        move([4, 1, 2])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and segment_bytes(four, "grow", 0) != segment_bytes(c.nodes[1], "grow", 0):
            time.sleep(0.3)
        assert segment_bytes(four, "grow", 0) == segment_bytes(c.nodes[1], "grow", 0) > 0
        # The node that left deletes its copy once its metadata log is applied (10 s or more).
        gone = os.path.join(c.nodes[3].data_dir, "grow-0")
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and os.path.isdir(gone):
            time.sleep(0.5)
        assert not os.path.isdir(gone)

        # Clients that know only the new node: produce, and a group that commits.
        p4 = Producer({"bootstrap.servers": four.bootstrap, "acks": "all", "linger.ms": 5})
        for i in range(300, 600):
            p4.produce("grow", value=f"g{i}".encode(), partition=i % 3)
        assert p4.flush(30) == 0
        cons = Consumer({"bootstrap.servers": four.bootstrap, "group.id": "via-four", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
        cons.subscribe(["grow"])
        seen = 0
        deadline = time.monotonic() + 60
        while seen < 600 and time.monotonic() < deadline:
            m = cons.poll(0.5)
            if m is not None and not m.error():
                seen += 1
        assert seen == 600
        cons.commit(asynchronous=False)
        committed = cons.committed([TopicPartition("grow", i) for i in range(3)], timeout=10)
        assert sum(tp.offset for tp in committed) == 600
        cons.close()

        # kill -9 of the new node: it comes back from its own disk (no second join).
        c.kill9(4)
        for i in range(600, 690):
            p.produce("grow", value=f"g{i}".encode(), partition=i % 3)
        assert p.flush(30) == 0
        c.restart(4)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and segment_bytes(four, "grow", 0) != segment_bytes(c.nodes[1], "grow", 0):
            time.sleep(0.3)
        assert segment_bytes(four, "grow", 0) == segment_bytes(c.nodes[1], "grow", 0)

        bs = ["--bootstrap-server", c.bootstrap]
        out = tool("org.apache.kafka.tools.ClusterTool", "unregister", *bs, "--id", 4, ok=False)
        assert "still holds replicas" in out, out
        move([1, 2, 3])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and os.path.isdir(os.path.join(four.data_dir, "grow-0")):
            time.sleep(0.3)
        assert not os.path.isdir(os.path.join(four.data_dir, "grow-0"))
        out = tool("org.apache.kafka.tools.ClusterTool", "unregister", *bs, "--id", 4)
        assert "Broker 4 is no longer registered." in out, out
        assert sorted(c.admin().list_topics(timeout=10).brokers) == [1, 2, 3]
        out = tool("org.apache.kafka.tools.ClusterTool", "unregister", *bs, "--id", 4, ok=False)
        assert "BrokerIdNotRegistered" in out or "not registered" in out, out
        got = read_all(c.bootstrap, "grow", 3, 690)
        for part in range(3):
            assert [v for _, v in got[part]] == [f"g{i}" for i in range(part, 690, 3)]
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.cleanup()


def consume_committing(cons, n, timeout=60):
    """Polls `cons` for `n` records, committing each synchronously: their values."""
    seen = []
    deadline = time.monotonic() + timeout
    while len(seen) < n and time.monotonic() < deadline:
        m = cons.poll(0.5)
        if m is None or m.error():
            continue
        seen.append(m.value().decode())
        cons.commit(message=m, asynchronous=False)
    return seen


def coordinator_of(c, group):
    """The node FindCoordinator names for `group`, as every running node answers it (they
    must agree), once it is known."""
    from test_groups import find_coordinator_v1
    deadline = time.monotonic() + 30
    answers = []
    while time.monotonic() < deadline:
        answers = [find_coordinator_v1(b, group, 0)[:2] for b in c.nodes.values() if b.alive()]
        if all(a == answers[0] for a in answers) and answers[0][0] == 0:
            return answers[0][1]
        time.sleep(0.3)
    raise AssertionError(answers)


def partition_dirs(node, prefix=""):
    """The partition directories in a node's data dir whose names start with `prefix`."""
    import os
    return sorted(d for d in os.listdir(node.data_dir) if d.startswith(prefix) and d[-1:].isdigit()
                  and os.path.isdir(os.path.join(node.data_dir, d)) and d != "__cluster_metadata-0")


def offsets_dirs(node):
    return partition_dirs(node, "__consumer_offsets-")


def test_offsets_partitions_move_with_their_groups(java_cp, tmp_path):
    """`__consumer_offsets` partitions move like any others (kafka-reassign-partitions), here
    entirely off node 3 onto a fourth node: the group coordinators move with their partitions'
    leaders, FindCoordinator names the new one, a consumer in the group keeps its membership
    and goes on from its committed offsets, and node 4 cannot be unregistered while it holds
    offsets replicas."""
    import subprocess

    from broker import rill_bin

    c = RillCluster(3, extra={"replica.lag.time.max.ms": "2000"})
    c.start()
    try:
        create(c, "kept", 2)
        p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 5})
        for i in range(100):
            p.produce("kept", value=f"k{i}".encode(), partition=i % 2)
        assert p.flush(30) == 0
        group = "movers"
        cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": group, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "session.timeout.ms": 10000})
        cons.subscribe(["kept"])
        seen = consume_committing(cons, 60)
        assert len(seen) == 60
        desc = c.admin().describe_consumer_groups([group])[group].result(timeout=10)
        members = sorted(m.member_id for m in desc.members)
        assert len(members) == 1

        four = c.add_node(4)
        offsets = "__consumer_offsets"
        count = len(c.admin().list_topics(timeout=10).topics[offsets].partitions)
        moves = replace_node(c, offsets, 3, 4)
        assert len(moves) == count, moves  # three replicas on three nodes: node 3 had them all
        reassign(java_cp, c, tmp_path / "offsets.json", moves, timeout=180)
        placed = metadata_via(c.nodes[1], offsets)
        assert all(3 not in r and 4 in r for _, r in placed.values()), placed
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and offsets_dirs(c.nodes[3]):
            time.sleep(0.5)
        assert offsets_dirs(c.nodes[3]) == [], "node 3 still has offsets partitions"
        assert len(offsets_dirs(four)) == count

        # The coordinator is the new leader of the group's partition, and every node says so.
        part = group_partition(group, count)
        assert coordinator_of(c, group) == c.leader(offsets, part) != 3
        committed = Consumer({"bootstrap.servers": c.bootstrap, "group.id": group}).committed(
            [TopicPartition("kept", 0), TopicPartition("kept", 1)], timeout=30)
        assert sum(tp.offset for tp in committed) == 60
        # The member goes on where it was: nothing re-read, nothing skipped, still one member.
        rest = consume_committing(cons, 40, timeout=90)
        assert sorted(seen + rest, key=lambda v: int(v[1:])) == [f"k{i}" for i in range(100)]
        desc = c.admin().describe_consumer_groups([group])[group].result(timeout=10)
        assert len(desc.members) == 1, desc.members

        # Its offsets replicas keep node 4 in the cluster.
        r = subprocess.run([rill_bin(), "cluster", "unregister", "--id", "4", "--bootstrap-server", c.bootstrap],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode == 1 and "still holds replicas" in r.stderr, r
        cons.close()
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.cleanup()


QUORUM = "org.apache.kafka.tools.MetadataQuorumCommand"


def voters_of(java_cp, c):
    """(voters, observers) of the metadata quorum, from `kafka-metadata-quorum describe
    --replication` (a voter's status is Leader or Follower)."""
    out = java_tool(java_cp, QUORUM, "--bootstrap-server", c.bootstrap, "describe", "--replication").stdout
    rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
    return (sorted(int(r[0]) for r in rows if r[-1] != "Observer"),
            sorted(int(r[0]) for r in rows if r[-1] == "Observer"))


def test_original_node_decommissioned_with_voter_changes(java_cp, tmp_path):
    """Retiring one of the three original nodes: a fourth node takes every partition of node 3
    (`__consumer_offsets` included), becomes a voter of the metadata quorum (`rill cluster
    add-voter`), node 3 stops being one (`kafka-metadata-quorum remove-controller`), is
    unregistered and stopped. The cluster goes on creating topics and serving produce, consume
    and the group's committed offsets, also after nodes 1, 2 and 4 restart at once with their
    unchanged `controller.quorum.voters` (the voters come from the metadata log). Then the voters
    shrink to one, the leader removing itself included, and the last one cannot go."""
    import subprocess

    from broker import rill_bin

    def rill(*args):
        return subprocess.run([rill_bin(), *map(str, args), "--bootstrap-server", c.bootstrap],
                              capture_output=True, text=True, timeout=150, stdin=subprocess.DEVNULL)

    def group_reads(n, timeout=90):
        cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "lifers", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
        cons.subscribe(["life"])
        try:
            return consume_committing(cons, n, timeout=timeout)
        finally:
            cons.close()

    def produce(topic, first, last):
        p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 5})
        for i in range(first, last):
            p.produce(topic, value=f"l{i}".encode(), partition=i % 3)
        assert p.flush(60) == 0

    c = RillCluster(3, extra={"replica.lag.time.max.ms": "2000"})
    c.start()
    three = c.nodes[3]
    try:
        create(c, "life", 3)
        produce("life", 0, 300)
        seen = group_reads(150)
        assert len(seen) == 150

        four = c.add_node(4)
        assert voters_of(java_cp, c) == ([1, 2, 3], [4])
        moves = replace_node(c, "life", 3, 4) + replace_node(c, "__consumer_offsets", 3, 4)
        reassign(java_cp, c, tmp_path / "off3.json", moves, timeout=180)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and partition_dirs(three):
            time.sleep(0.5)
        assert partition_dirs(three) == [], "node 3 still has partitions"

        r = rill("cluster", "unregister", "--id", 3)
        assert r.returncode == 1 and "voter" in r.stderr, r
        r = rill("cluster", "add-voter", "--id", 9)
        assert r.returncode == 1 and "INVALID_REQUEST" in r.stderr, r
        r = rill("cluster", "add-voter", "--id", 4)
        assert r.returncode == 0 and "Node 4 is now a voter" in r.stdout, r
        r = rill("cluster", "add-voter", "--id", 4)
        assert r.returncode == 1 and "DUPLICATE_VOTER" in r.stderr, r
        out = java_tool(java_cp, QUORUM, "--bootstrap-server", c.bootstrap, "remove-controller",
                        "--controller-id", 3, "--controller-directory-id", "AAAAAAAAAAAAAAAAAAAAAA").stdout
        assert "Removed" in out, out
        assert voters_of(java_cp, c) == ([1, 2, 4], [3])
        r = rill("cluster", "remove-voter", "--id", 3)
        assert r.returncode == 1 and "VOTER_NOT_FOUND" in r.stderr, r
        r = rill("cluster", "unregister", "--id", 3)
        assert r.returncode == 0, r
        del c.nodes[3]
        three.stop()

        def still_works(topic, first):
            create(c, topic, 3)
            placed = metadata_via(c.nodes[1], topic)
            assert all(sorted(r) == [1, 2, 4] for _, r in placed.values()), placed
            produce(topic, 0, 30)
            assert sum(len(v) for v in read_all(c.bootstrap, topic, 3, 30).values()) == 30
            produce("life", first, first + 30)

        still_works("after-3", 300)
        committed = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "lifers"}).committed(
            [TopicPartition("life", p) for p in range(3)], timeout=30)
        assert sum(tp.offset for tp in committed if tp.offset >= 0) == 150
        seen += group_reads(150 + 30)

        # Every remaining node restarts at once, each with controller.quorum.voters 1, 2, 3.
        power_cycle(c)
        assert sorted(c.admin().list_topics(timeout=10).brokers) == [1, 2, 4]
        # Node 3 leaves the metadata group a few seconds after its unregistration, also when
        # the leader that applied it restarted meanwhile.
        deadline = time.monotonic() + 30
        while voters_of(java_cp, c) != ([1, 2, 4], []) and time.monotonic() < deadline:
            time.sleep(1)
        assert voters_of(java_cp, c) == ([1, 2, 4], [])
        still_works("after-restart", 330)
        seen += group_reads(30)
        assert sorted(seen, key=lambda v: int(v[1:])) == [f"l{i}" for i in range(360)], "each record once"

        # Down to one voter, the leader leaving first each time (it hands leadership over):
        # with the Java AdminClient (removeRaftVoter), then rill.
        leader = c.admin().list_topics(timeout=10).controller_id
        out = java_tool(java_cp, "QuorumVoters", c.bootstrap, "remove", leader).stdout
        rest = sorted({1, 2, 4} - {leader})
        assert f"voters={rest} observers=[{leader}]" in out, out
        leader = c.admin().list_topics(timeout=10).controller_id
        r = rill("cluster", "remove-voter", "--id", leader)
        assert r.returncode == 0, r
        voters, observers = voters_of(java_cp, c)
        assert len(voters) == 1 and len(observers) == 2, (voters, observers)
        # And back up to two with the AdminClient (addRaftVoter); a voter twice is refused.
        out = java_tool(java_cp, "QuorumVoters", c.bootstrap, "add", leader).stdout
        assert f"voters={sorted(voters + [leader])}" in out, out
        r = java_tool(java_cp, "QuorumVoters", c.bootstrap, "add", leader, ok=False)
        assert r.returncode != 0 and "DuplicateVoterException" in r.stderr, r.stderr[-2000:]
        r = rill("cluster", "remove-voter", "--id", leader)
        assert r.returncode == 0, r
        r = rill("cluster", "remove-voter", "--id", voters[0])
        assert r.returncode == 1 and "last voter" in r.stderr, r
        create(c, "one-voter", 1)
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.cleanup()
        three.cleanup()


def test_kip848_member_rides_through_coordinator_move(cluster, java_cp):
    """A KIP-848 group's state is replicated with __consumer_offsets: when the coordinator is killed, the
    new leader of the group's offsets partition rebuilds it, and a Java consumer (group.protocol=consumer)
    that keeps heartbeating keeps its member id, epoch and assignment and reads every record once."""
    import subprocess
    from test_java_clients import JAVA_OPTS
    create(cluster, "moving", 2)
    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    for i in range(40):
        v = f"v{i}".encode()
        p.produce("moving", key=v, value=v, partition=i % 2)
    assert p.flush(30) == 0
    group = "k848-movers"
    proc = subprocess.Popen(["java", *JAVA_OPTS, "-cp", java_cp, "Kip848Check", "restart", cluster.bootstrap, "moving",
                             "2", group, "uniform", "40"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, ready = [], threading.Event()

    def pump():
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("READY"):
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        assert ready.wait(120), "".join(lines[-50:])
        md = cluster.admin().list_topics(topic="__consumer_offsets", timeout=10)
        part = group_partition(group, len(md.topics["__consumer_offsets"].partitions))
        old = md.topics["__consumer_offsets"].partitions[part].leader
        cluster.kill9(old)
        new = cluster.leader("__consumer_offsets", part, exclude=(old,))
        assert new != old
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.wait(240) == 0, "".join(lines[-80:])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "OK kip848 restart" in "".join(lines), "".join(lines[-80:])


def test_rill_cli_reassign_and_unregister(tmp_path):
    """`rill topic reassign --wait`, `rill topic reassignments` and `rill cluster unregister`
    against 3 nodes plus a fourth that joins: a partition moves onto node 4 (its leader's slot
    included), clients keep producing and consuming, it moves back and node 4 leaves."""
    import json
    import os
    import subprocess

    from broker import rill_bin

    def rill(*args, timeout=150):
        return subprocess.run([rill_bin(), *map(str, args), "--bootstrap-server", c.bootstrap],
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def ok(*args, **kw):
        r = rill(*args, **kw)
        assert r.returncode == 0, f"rill {args} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
        return r.stdout

    c = RillCluster(3, extra={"replica.lag.time.max.ms": "2000"})
    c.start()
    try:
        create(c, "cli-move", 2)
        p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 5})
        for i in range(200):
            p.produce("cli-move", value=f"m{i}".encode(), partition=i % 2)
        assert p.flush(30) == 0
        assert "No partition reassignments in progress." in ok("topic", "reassignments")
        assert json.loads(ok("topic", "reassignments", "cli-move", "-o", "json")) == []

        # Usage errors exit 2; a Kafka error names the error code and exits 1.
        assert rill("topic", "reassign", "cli-move", "--partition", 0).returncode == 2
        assert rill("topic", "reassign", "cli-move", "--partition", 0, "--replicas", "1,1,2").returncode == 2
        r = rill("topic", "reassign", "cli-move", "--partition", 0, "--replicas", "1,2,9")
        assert r.returncode == 1 and "INVALID_REPLICA_ASSIGNMENT" in r.stderr, r
        r = rill("topic", "reassign", "cli-move", "--partition", 0, "--cancel")
        assert r.returncode == 1 and "NO_REASSIGNMENT_IN_PROGRESS" in r.stderr, r

        four = c.add_node(4)
        before = metadata_via(c.nodes[1], "cli-move")[0][1]
        target = [4] + before[1:]  # the preferred leader's slot goes to node 4
        out = ok("topic", "reassign", "cli-move", "--partition", 0, "--replicas", ",".join(map(str, target)),
                 "--wait", 120, "-o", "json")
        assert json.loads(out) == {"topic": "cli-move", "completed": True, "partitions": [
            {"partition": 0, "target": target, "cancel": False, "error": None}]}, out
        assert sorted(metadata_via(c.nodes[1], "cli-move")[0][1]) == sorted(target)
        assert json.loads(ok("topic", "reassignments", "-o", "json")) == []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and segment_bytes(four, "cli-move", 0) == 0:
            time.sleep(0.3)
        assert segment_bytes(four, "cli-move", 0) > 0

        # Clients still work: produce to both partitions, read everything back.
        for i in range(200, 400):
            p.produce("cli-move", value=f"m{i}".encode(), partition=i % 2)
        assert p.flush(30) == 0
        got = read_all(c.bootstrap, "cli-move", 2, 400)
        for part in range(2):
            assert [v for _, v in got[part]] == [f"m{i}" for i in range(part, 400, 2)]

        r = rill("cluster", "unregister", "--id", 4)
        assert r.returncode == 1 and "still holds replicas" in r.stderr, r
        out = ok("topic", "reassign", "cli-move", "--partition", 0, "--replicas", ",".join(map(str, before)),
                 "--wait", 120)
        assert f"Reassignment of cli-move-0 to {','.join(map(str, before))} completed." in out, out
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and os.path.isdir(os.path.join(four.data_dir, "cli-move-0")):
            time.sleep(0.3)
        assert not os.path.isdir(os.path.join(four.data_dir, "cli-move-0"))
        assert "Broker 4 is no longer registered." in ok("cluster", "unregister", "--id", 4)
        assert sorted(c.admin().list_topics(timeout=10).brokers) == [1, 2, 3]
        r = rill("cluster", "unregister", "--id", 4)
        assert r.returncode == 1 and "BROKER_ID_NOT_REGISTERED" in r.stderr, r
        r = rill("cluster", "unregister", "--id", 1)
        assert r.returncode == 1 and "INVALID_REQUEST" in r.stderr and "voter" in r.stderr, r
        got = read_all(c.bootstrap, "cli-move", 2, 400)
        assert sum(len(v) for v in got.values()) == 400
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.cleanup()


def test_unregistered_node_back_at_once_stays_in_the_metadata_group():
    """A node unregistered and started again (same id and Raft address, empty disk) within the
    5 s after which the metadata leader removes an unregistered node from the metadata group
    must not be removed with its former self: it has to keep hearing metadata commands, so a
    partition moves onto it and back. (Suspected cause of a reassignment stuck in rill-jepsen's
    membership run, seed 3; this test passed before the change as well, see jepsen/README.md.)"""
    import subprocess

    from broker import rill_bin

    def rill(*args, timeout=150):
        r = subprocess.run([rill_bin(), *map(str, args), "--bootstrap-server", c.bootstrap],
                           capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, f"rill {args} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
        return r.stdout

    c = RillCluster(3, extra={"replica.lag.time.max.ms": "2000"})
    c.start()
    try:
        create(c, "back", 1)
        c.add_node(4)
        rill("cluster", "unregister", "--id", 4)
        unregistered = time.monotonic()
        old = c.nodes.pop(4)
        old.kill9()
        old.cleanup()
        # Same id and Raft address, empty disk (as an operator or the jepsen nemesis would).
        c.add_node(4, wait=False, raft_address=old.extra["rill.raft.address"])
        while 4 not in c.admin().list_topics(timeout=10).brokers:
            assert time.monotonic() - unregistered < 30, "node 4 did not register again"
            time.sleep(0.05)
        back = time.monotonic() - unregistered
        assert back < 4.5, f"node 4 took {back:.1f} s to come back: the test needs it within 5 s"
        time.sleep(7)  # past the delayed removal
        before = metadata_via(c.nodes[1], "back")[0][1]
        rill("topic", "reassign", "back", "--partition", 0, "--replicas", ",".join(map(str, [4] + before[1:])),
             "--wait", 60)
        rill("topic", "reassign", "back", "--partition", 0, "--replicas", ",".join(map(str, before)), "--wait", 60)
        rill("cluster", "unregister", "--id", 4)
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.cleanup()


def test_moved_partition_survives_every_node_restarting_at_once():
    """Regression (jepsen seed 2027, membership + power loss: 65 inconsistent offsets): a node
    replaying its metadata log at start-up passes every historical reassignment, and deleting
    its replica each time one of them removed it (re-creating it empty a command later) wiped
    every replica of a partition that had moved around all three nodes once they all restarted
    together. A replica dropped by a reassignment is now deleted only after the node has
    applied its whole metadata log and the partition is still not assigned to it."""
    import subprocess

    from broker import rill_bin

    c = RillCluster(3, extra={"replica.lag.time.max.ms": "2000"})
    c.start()
    try:
        create(c, "roams", 1)
        p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 5})
        for i in range(300):
            p.produce("roams", value=f"r{i}".encode(), partition=0)
        assert p.flush(30) == 0
        c.add_node(4)
        home = [1, 2, 3]
        # Each voter in turn hands its replica to node 4 and takes it back.
        for slot in range(3):
            for target in (home[:slot] + [4] + home[slot + 1:], home):
                r = subprocess.run([rill_bin(), "topic", "reassign", "roams", "--partition", "0", "--replicas",
                                    ",".join(map(str, target)), "--wait", "120", "--bootstrap-server", c.bootstrap],
                                   capture_output=True, text=True, timeout=150, stdin=subprocess.DEVNULL)
                assert r.returncode == 0, f"move to {target}: {r.stdout}\n{r.stderr}"
        for i in range(300, 400):
            p.produce("roams", value=f"r{i}".encode(), partition=0)
        assert p.flush(30) == 0
        del p
        power_cycle(c)
        got = read_all(c.bootstrap, "roams", 1, 400)
        assert [o for o, _ in got[0]] == list(range(400)), "offsets are dense and none was lost"
        assert [v for _, v in got[0]] == [f"r{i}" for i in range(400)]
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.cleanup()


def test_recreated_topic_survives_every_node_restarting_at_once(cluster):
    """A node replays its metadata log at start-up. Partition directories are named after the
    topic, so the replayed creation of a deleted topic opened the directory of the topic later
    created under the same name, and the replayed deletion deleted it: after a restart of every
    node the new topic had lost its records on every replica."""
    c = cluster
    create(c, "reborn", 2)
    p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(100):
        p.produce("reborn", value=f"old{i}".encode(), partition=i % 2)
    assert p.flush(30) == 0
    c.admin().delete_topics(["reborn"], operation_timeout=30)["reborn"].result(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            create(c, "reborn", 2)
            break
        except Exception:  # noqa: BLE001 - the deletion may not have reached every node yet
            time.sleep(0.5)
    p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(200):
        p.produce("reborn", value=f"new{i}".encode(), partition=i % 2)
    assert p.flush(30) == 0
    del p
    power_cycle(c)
    for part in range(2):
        c.leader("reborn", part)
    got = read_all(c.bootstrap, "reborn", 2, 200)
    for part in range(2):
        assert [o for o, _ in got[part]] == list(range(100)), f"partition {part}: offsets dense, none lost"
        assert [v for _, v in got[part]] == [f"new{i}" for i in range(part, 200, 2)]


def test_epoch_end_is_never_below_what_was_committed(cluster):
    """Regression (jepsen seed 2027 on e5dc958: an assigned librdkafka consumer skipped 4,245
    records while every node lost power). librdkafka checks its fetch position, which runs
    ahead of what the application has polled, with OffsetForLeaderEpoch after a leader
    change, and seeks to the answer when it is lower, dropping what it prefetched in between.
    Rill cut the answer at the high watermark, which lags on a leader that has not committed
    an entry of its own term yet, and a leader restarted by openraft without an election came
    back with the commit index of its committed-index hint (saved at most every 200 ms)."""
    import socket

    import kproto

    c = cluster
    create(c, "epochs", 1)
    leader = c.leader("epochs", 0)
    s = kproto.connect(c.nodes[leader])
    try:
        apis = kproto.api_versions(s)[1]
        # A burst of acks=all writes: the hint on disk stays behind the last of them.
        for i in range(30):
            assert kproto.produce(s, apis, "epochs", 0, kproto.record_batch([(None, b"e%d" % i)])) == (0, i)
    finally:
        s.close()
    r = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "epochs", "enable.auto.commit": False})
    r.assign([TopicPartition("epochs", 0, 0)])
    m = None
    deadline = time.monotonic() + 30
    while m is None and time.monotonic() < deadline:
        m = r.poll(0.5)
    r.close()
    assert m is not None and not m.error(), m
    epoch = m.leader_epoch()
    assert epoch is not None and epoch >= 0

    def ask(node, timeout):
        """The node's answer for the records' epoch, or None if it gives none in time."""
        try:
            s = kproto.connect(node, timeout=timeout)
            try:
                return kproto.offset_for_leader_epoch(s, "epochs", 0, epoch)
            finally:
                s.close()
        except (OSError, socket.timeout):
            return None

    for n in list(c.nodes):
        c.kill9(n)
    # Alone, the old leader has no quorum: whatever it answers must not cut the epoch short.
    c.nodes[leader].restart(90)
    alone = ask(c.nodes[leader], 3)
    if alone is not None and alone[0] == 0:
        assert alone[1:] == (epoch, 30), f"a lone restarted leader answered {alone}"
    for n in c.nodes:
        if n != leader:
            c.nodes[n].restart(90)
    # Every answer from whichever node leads next, from its election on.
    answers = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(answers) < 20:
        for node in c.nodes.values():
            a = ask(node, 2)
            if a is not None and a[0] == 0:
                answers.append(a)
        time.sleep(0.05)
    assert answers, "no node answered OffsetForLeaderEpoch after the restart"
    assert all(a[1:] == (epoch, 30) for a in answers), answers
