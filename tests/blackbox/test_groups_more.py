"""More consumer-group coverage: kafka-consumer-groups offset resets/deletes, librdkafka and
kafka-python splitting partitions with a commit per message, a consumer killed with SIGKILL,
and OffsetCommit/JoinGroup edge cases on the raw protocol.

Like test_groups.py, the module's `broker` runs with group.initial.rebalance.delay.ms=0.
"""
import datetime
import subprocess
import sys
import textwrap
import threading
import time

from confluent_kafka import ConsumerGroupTopicPartitions

import kproto
from groupkit import (  # noqa: F401 (broker is this module's fixture)
    GROUP_CMD, broker, consume_committing, group_consumer, group_name, produce)
from helpers import admin, create_topic
from test_cli_tools import tool

def assert_nothing_more(c, idle=2.0):
    deadline = time.monotonic() + idle
    while time.monotonic() < deadline:
        m = c.poll(0.3)
        assert m is None or m.error() is not None, f"unexpected extra message {m.partition()}@{m.offset()}"


def wait_assignment(consumers, predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in consumers:
            c.poll(0.1)
        parts = [sorted(tp.partition for tp in c.assignment()) for c in consumers]
        if predicate(parts):
            return parts
    raise AssertionError(f"assignment never settled: {[sorted(tp.partition for tp in c.assignment()) for c in consumers]}")


def committed_offsets(b, group):
    res = admin(b).list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=10)
    return {(tp.topic, tp.partition): tp.offset for tp in res.topic_partitions}


def split_ok(n):
    def pred(ps):
        return all(ps) and sorted(sum(ps, [])) == list(range(n))
    return pred


# ============================================================== kafka-consumer-groups CLI

def describe_offsets(cp, b, group, topic):
    out = tool(cp, GROUP_CMD, "--bootstrap-server", b.bootstrap, "--describe", "--group", group)
    header = next(line.split() for line in out.splitlines() if "CURRENT-OFFSET" in line)
    col = {name: i for i, name in enumerate(header)}
    rows = [line.split() for line in out.splitlines() if topic in line.split()]
    return {int(r[col["PARTITION"]]): int(r[col["CURRENT-OFFSET"]]) for r in rows}


def reset(cp, b, group, topic, *how):
    return tool(cp, GROUP_CMD, "--bootstrap-server", b.bootstrap, "--reset-offsets", "--group", group,
                "--topic", topic, *how, "--execute")


def test_cli_reset_offsets_then_consumer_resumes(broker, java_cp, topic_name):
    create_topic(broker, topic_name, partitions=2)
    # 5 records per partition: offsets 0..2 stamped t0, offsets 3..4 stamped t0 + 1 h.
    t0 = int(time.time() * 1000) - 3 * 3600 * 1000
    ts = [t0 if i // 2 < 3 else t0 + 3600 * 1000 for i in range(10)]
    produce(broker, topic_name, 10, 2, timestamps=ts)
    group = group_name()
    c = group_consumer(broker, group)
    c.subscribe([topic_name])
    consume_committing(c, 10)
    c.close()
    assert describe_offsets(java_cp, broker, group, topic_name) == {0: 5, 1: 5}

    def resume(n):
        c = group_consumer(broker, group)
        c.subscribe([topic_name])
        got = consume_committing(c, n)
        assert_nothing_more(c)
        c.close()
        return sorted(got)

    # --to-earliest
    out = reset(java_cp, broker, group, topic_name, "--to-earliest")
    assert describe_offsets(java_cp, broker, group, topic_name) == {0: 0, 1: 0}, out
    assert resume(10) == sorted((i % 2, i // 2) for i in range(10))

    # --shift-by -2 from the committed end (5) -> 3
    out = reset(java_cp, broker, group, topic_name, "--shift-by", "-2")
    assert describe_offsets(java_cp, broker, group, topic_name) == {0: 3, 1: 3}, out
    assert resume(4) == [(0, 3), (0, 4), (1, 3), (1, 4)]

    # --to-datetime between the two timestamps -> first offset with timestamp >= it, i.e. 3
    when = datetime.datetime.fromtimestamp((t0 + 1800 * 1000) / 1000, tz=datetime.timezone.utc)
    out = reset(java_cp, broker, group, topic_name, "--to-datetime", when.strftime("%Y-%m-%dT%H:%M:%S.000") + "Z")
    assert describe_offsets(java_cp, broker, group, topic_name) == {0: 3, 1: 3}, out
    assert resume(4) == [(0, 3), (0, 4), (1, 3), (1, 4)]

    # --to-datetime before everything -> 0
    early = datetime.datetime.fromtimestamp((t0 - 60 * 1000) / 1000, tz=datetime.timezone.utc)
    reset(java_cp, broker, group, topic_name, "--to-datetime", early.strftime("%Y-%m-%dT%H:%M:%S.000") + "Z")
    assert describe_offsets(java_cp, broker, group, topic_name) == {0: 0, 1: 0}


def test_cli_reset_dry_run_changes_nothing(broker, java_cp, topic_name):
    create_topic(broker, topic_name, partitions=1)
    produce(broker, topic_name, 4, 1)
    group = group_name()
    c = group_consumer(broker, group)
    c.subscribe([topic_name])
    consume_committing(c, 4)
    c.close()
    out = tool(java_cp, GROUP_CMD, "--bootstrap-server", broker.bootstrap, "--reset-offsets", "--group", group,
               "--topic", topic_name, "--to-earliest", "--dry-run")
    assert any(line.split()[-1] == "0" for line in out.splitlines() if topic_name in line), out
    assert describe_offsets(java_cp, broker, group, topic_name) == {0: 4}


def test_cli_delete_offsets_of_one_partition_and_delete_group(broker, java_cp, topic_name):
    create_topic(broker, topic_name, partitions=2)
    other = topic_name + "-b"
    create_topic(broker, other, partitions=1)
    produce(broker, topic_name, 6, 2)
    produce(broker, other, 2, 1)
    group = group_name()
    c = group_consumer(broker, group)
    c.subscribe([topic_name, other])
    consume_committing(c, 8)
    c.close()
    assert committed_offsets(broker, group) == {(topic_name, 0): 3, (topic_name, 1): 3, (other, 0): 2}
    bs = ["--bootstrap-server", broker.bootstrap]

    out = tool(java_cp, GROUP_CMD, *bs, "--delete-offsets", "--group", group, "--topic", f"{topic_name}:1")
    assert "Successful" in out or "successful" in out.lower(), out
    after = committed_offsets(broker, group)
    assert after[(topic_name, 0)] == 3 and after[(other, 0)] == 2
    assert after.get((topic_name, 1), -1001) < 0, after

    tool(java_cp, GROUP_CMD, *bs, "--delete-offsets", "--group", group, "--topic", other)
    after = committed_offsets(broker, group)
    assert after.get((other, 0), -1001) < 0 and after[(topic_name, 0)] == 3, after

    # A consumer now starts partition 1 from the beginning (auto.offset.reset); partition 0 is at its end.
    produce(broker, topic_name, 2, 2)  # one more record on each partition (offset 3)
    c = group_consumer(broker, group)
    c.subscribe([topic_name])
    got = consume_committing(c, 5)
    assert_nothing_more(c)
    c.close()
    assert sorted(got) == [(0, 3), (1, 0), (1, 1), (1, 2), (1, 3)]

    out = tool(java_cp, GROUP_CMD, *bs, "--delete", "--group", group)
    assert "was successful" in out, out
    assert group not in tool(java_cp, GROUP_CMD, *bs, "--list").split()
    assert committed_offsets(broker, group).get((topic_name, 0), -1001) < 0
    # deleting it again: GROUP_ID_NOT_FOUND reported by the tool
    r = subprocess.run(["java", "-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp", java_cp, GROUP_CMD, *bs, "--delete",
                        "--group", group], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert "does not exist" in (r.stdout + r.stderr) or "GroupIdNotFound" in (r.stdout + r.stderr), r.stdout + r.stderr


# ============================================================== librdkafka (confluent-kafka)

def test_confluent_two_members_split_six_partitions_commit_each(broker, topic_name):
    create_topic(broker, topic_name, partitions=6)
    group = group_name()
    a, b = group_consumer(broker, group), group_consumer(broker, group)
    try:
        a.subscribe([topic_name])
        b.subscribe([topic_name])
        pa, pb = wait_assignment([a, b], split_ok(6))
        assert not set(pa) & set(pb)
        produce(broker, topic_name, 120, 6)
        seen = {id(a): [], id(b): []}
        deadline = time.monotonic() + 60
        while len(seen[id(a)]) + len(seen[id(b)]) < 120:
            assert time.monotonic() < deadline, f"only {len(seen[id(a)])}+{len(seen[id(b)])} of 120"
            for c in (a, b):
                m = c.poll(0.1)
                if m is None:
                    continue
                assert m.error() is None, m.error()
                seen[id(c)].append((m.partition(), m.offset()))
                c.commit(message=m, asynchronous=False)
        for c in (a, b):
            assert_nothing_more(c, idle=1.0)
        allm = seen[id(a)] + seen[id(b)]
        assert len(allm) == len(set(allm)), "a record was delivered twice"
        assert sorted(allm) == sorted((i % 6, i // 6) for i in range(120))
        assert {p for p, _ in seen[id(a)]} == set(pa) and {p for p, _ in seen[id(b)]} == set(pb)
        assert committed_offsets(broker, group) == {(topic_name, p): 20 for p in range(6)}
    finally:
        a.close()
        b.close()


def test_confluent_two_groups_each_read_everything(broker, topic_name):
    create_topic(broker, topic_name, partitions=3)
    produce(broker, topic_name, 30, 3)
    g1, g2 = group_name(), group_name()
    c1, c2 = group_consumer(broker, g1), group_consumer(broker, g2)
    try:
        c1.subscribe([topic_name])
        c2.subscribe([topic_name])
        r1 = consume_committing(c1, 30)
        r2 = consume_committing(c2, 30)
        assert_nothing_more(c1, 1.0)
        assert_nothing_more(c2, 1.0)
    finally:
        c1.close()
        c2.close()
    want = sorted((i % 3, i // 3) for i in range(30))
    assert sorted(r1) == want and sorted(r2) == want
    for g in (g1, g2):
        assert committed_offsets(broker, g) == {(topic_name, p): 10 for p in range(3)}


CHILD = textwrap.dedent("""
    import sys, time
    from confluent_kafka import Consumer
    bootstrap, group, topic, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    c.subscribe([topic])
    done = 0
    while done < n:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        c.commit(message=m, asynchronous=False)
        print(m.partition(), m.offset(), flush=True)
        done += 1
    print("READY", flush=True)
    while True:          # keep the membership (heartbeats) until SIGKILL
        c.poll(0.5)
""")


def test_confluent_consumer_killed_resumes_after_last_commit(broker, topic_name):
    create_topic(broker, topic_name, partitions=3)
    produce(broker, topic_name, 30, 3)
    group = group_name()
    p = subprocess.Popen([sys.executable, "-c", CHILD, broker.bootstrap, group, topic_name, "11"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    first = []
    try:
        deadline = time.monotonic() + 60
        while True:
            line = p.stdout.readline()
            assert line, f"child exited early: {p.stderr.read()}"
            if line.strip() == "READY":
                break
            part, off = map(int, line.split())
            first.append((part, off))
            assert time.monotonic() < deadline
    finally:
        p.kill()  # SIGKILL: no LeaveGroup, no final commit
        p.wait(10)
    assert p.returncode == -9
    assert len(first) == 11
    expect_committed = {}
    for part, off in first:
        expect_committed[(topic_name, part)] = max(expect_committed.get((topic_name, part), 0), off + 1)
    assert committed_offsets(broker, group) == expect_committed
    # The dead member still holds the partitions until its session (6 s) expires.
    c = group_consumer(broker, group)
    c.subscribe([topic_name])
    t = time.monotonic()
    try:
        rest = consume_committing(c, 19, timeout=60)
        assert_nothing_more(c, 1.0)
    finally:
        c.close()
    assert time.monotonic() - t < 45
    assert not set(first) & set(rest), "a committed record was delivered again"
    assert sorted(first + rest) == sorted((i % 3, i // 3) for i in range(30))
    for part in range(3):
        resumed = min((o for pp, o in rest if pp == part), default=None)
        if resumed is not None:
            assert resumed == expect_committed.get((topic_name, part), 0)


# ============================================================== kafka-python

def test_kafka_python_two_members_split_six_partitions_commit_each(broker, topic_name):
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    from kafka.structs import OffsetAndMetadata

    create_topic(broker, topic_name, partitions=6)
    group = group_name()
    total = 60
    lock = threading.Lock()
    seen = {0: [], 1: []}
    assigned = {0: set(), 1: set()}
    stop = threading.Event()
    produced = threading.Event()
    errors = []

    def run(idx):
        try:
            c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False,
                              auto_offset_reset="earliest", session_timeout_ms=10000, heartbeat_interval_ms=500)
            c.subscribe([topic_name])
            try:
                while not stop.is_set():
                    recs = c.poll(timeout_ms=200, max_records=1)
                    with lock:
                        assigned[idx] = {tp.partition for tp in c.assignment()}
                    for tp, ms in recs.items():
                        for m in ms:
                            assert produced.is_set(), "record before production?"
                            c.commit({KTP(tp.topic, tp.partition): OffsetAndMetadata(m.offset + 1, "", -1)})
                            with lock:
                                seen[idx].append((m.partition, m.offset))
            finally:
                c.close()
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(2)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            with lock:
                a, b = set(assigned[0]), set(assigned[1])
            if a and b and not a & b and a | b == set(range(6)):
                break
            assert not errors, errors
            assert time.monotonic() < deadline, f"kafka-python assignment never settled: {a} {b}"
            time.sleep(0.1)
        produced.set()
        produce(broker, topic_name, total, 6)
        deadline = time.monotonic() + 60
        while True:
            with lock:
                n = len(seen[0]) + len(seen[1])
            if n >= total:
                break
            assert not errors, errors
            assert time.monotonic() < deadline, f"consumed only {n} of {total}"
            time.sleep(0.1)
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors
    allm = seen[0] + seen[1]
    assert len(allm) == len(set(allm)), "a record was delivered twice"
    assert sorted(allm) == sorted((i % 6, i // 6) for i in range(total))
    assert {p for p, _ in seen[0]} <= a and {p for p, _ in seen[1]} <= b
    assert committed_offsets(broker, group) == {(topic_name, p): 10 for p in range(6)}


# ============================================================== raw protocol

API_OFFSET_COMMIT, API_JOIN, API_SYNC, API_HEARTBEAT = 8, 11, 14, 12


class Raw:
    def __init__(self, b):
        self.s = kproto.connect(b, timeout=30)
        self.corr = 100
        _, self.apis = kproto.api_versions(self.s)

    def call(self, api, version, w):
        self.corr += 1
        self.s.sendall(kproto.request(api, version, self.corr, bytes(w.b), flexible_header=False))
        return self.recv()

    def send(self, api, version, w):
        self.corr += 1
        self.s.sendall(kproto.request(api, version, self.corr, bytes(w.b), flexible_header=False))

    def recv(self):
        r = kproto.R(kproto.recv_frame(self.s))
        assert r.i32() == self.corr
        return r

    def close(self):
        self.s.close()


def subscription(topics):
    """ConsumerProtocolSubscription v0."""
    w = kproto.W().i16(0).array(topics, lambda w, t: w.string(t)).bytes_(None)
    return bytes(w.b)


def join_v5(raw, group, member_id="", topics=(), session_ms=6000, rebalance_ms=10000, wait=True):
    assert raw.apis[API_JOIN][1] >= 5
    w = kproto.W().string(group).i32(session_ms).i32(rebalance_ms).string(member_id).string(None).string("consumer")
    w.array([("range", subscription(list(topics)))], lambda w, p: w.string(p[0]).bytes_(p[1]))
    raw.send(API_JOIN, 5, w)
    if not wait:
        return None
    return parse_join_v5(raw.recv())


def parse_join_v5(r):
    r.i32()
    err, gen, proto, leader, member = r.i16(), r.i32(), r.string(), r.string(), r.string()
    members = []
    for _ in range(r.i32()):
        mid = r.string()
        r.string()
        n = r.i32()
        r.take(max(n, 0))
        members.append(mid)
    return {"error": err, "generation": gen, "protocol": proto, "leader": leader, "member_id": member,
            "members": members}


def join_polling(raw, group, consumers, timeout=40, **kw):
    """JoinGroup while polling the librdkafka consumers (they must serve their rebalance to rejoin)."""
    import select
    join_v5(raw, group, wait=False, **kw)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([raw.s], [], [], 0)[0]:
            return parse_join_v5(raw.recv())
        for c in consumers:
            c.poll(0.05)
    raise AssertionError("JoinGroup did not complete")


def join_until_member(raw, group, **kw):
    j = join_v5(raw, group, **kw)
    if j["error"] == 79:  # MEMBER_ID_REQUIRED (KIP-394): rejoin with the assigned id
        j = join_v5(raw, group, member_id=j["member_id"], **{k: v for k, v in kw.items() if k != "member_id"})
    assert j["error"] == 0, j
    return j


def sync_v3(raw, group, gen, member, assignments=()):
    w = kproto.W().string(group).i32(gen).string(member).string(None)
    w.array(list(assignments), lambda w, a: w.string(a[0]).bytes_(a[1]))
    r = raw.call(API_SYNC, 3, w)
    r.i32()
    return r.i16()


def offset_commit_v7(raw, group, gen, member, topics):
    """topics: [(name, [(partition, offset, metadata)])] -> {(name, partition): error}"""
    w = kproto.W().string(group).i32(gen).string(member).string(None)
    w.array(topics, lambda w, t: w.string(t[0]).array(
        t[1], lambda w, p: w.i32(p[0]).i64(p[1]).i32(-1).string(p[2])))
    r = raw.call(API_OFFSET_COMMIT, 7, w)
    r.i32()
    out = {}
    for _ in range(r.i32()):
        name = r.string()
        for _ in range(r.i32()):
            part = r.i32()
            out[(name, part)] = r.i16()
    return out


def test_raw_offset_commit_unknown_topic_and_metadata_size(broker, topic_name):
    create_topic(broker, topic_name, partitions=1)
    group = group_name()
    missing = topic_name + "-missing"
    raw = Raw(broker)
    try:
        res = offset_commit_v7(raw, group, -1, "", [(topic_name, [(0, 1, "ok")]), (missing, [(0, 1, None)])])
        assert res == {(topic_name, 0): 0, (missing, 0): 3}, res
        res = offset_commit_v7(raw, group, -1, "", [(topic_name, [(0, 2, "m" * 4096)])])
        assert res == {(topic_name, 0): 0}, res
        res = offset_commit_v7(raw, group, -1, "", [(topic_name, [(0, 3, "m" * 4097)])])
        assert res == {(topic_name, 0): 12}, res  # OFFSET_METADATA_TOO_LARGE
    finally:
        raw.close()
    # The refused commit did not change the stored offset; the unknown topic did not appear.
    assert committed_offsets(broker, group) == {(topic_name, 0): 2}
    assert missing not in admin(broker).list_topics(timeout=10).topics


def test_raw_offset_commit_stale_generation(broker, topic_name):
    create_topic(broker, topic_name, partitions=1)
    group = group_name()
    raw = Raw(broker)
    try:
        j = join_until_member(raw, group, topics=[topic_name])
        member, gen = j["member_id"], j["generation"]
        assert j["leader"] == member
        assert sync_v3(raw, group, gen, member, [(member, b"")]) == 0
        assert offset_commit_v7(raw, group, gen, member, [(topic_name, [(0, 1, None)])]) == {(topic_name, 0): 0}
        # Rejoin with the same member id: a new generation; the old one is now stale.
        j2 = join_v5(raw, group, member_id=member, topics=[topic_name])
        assert j2["error"] == 0 and j2["generation"] > gen, j2
        assert sync_v3(raw, group, j2["generation"], member, [(member, b"")]) == 0
        res = offset_commit_v7(raw, group, gen, member, [(topic_name, [(0, 2, None)])])
        assert res == {(topic_name, 0): 22}, res  # ILLEGAL_GENERATION
        res = offset_commit_v7(raw, group, j2["generation"], member, [(topic_name, [(0, 3, None)])])
        assert res == {(topic_name, 0): 0}, res
        res = offset_commit_v7(raw, group, j2["generation"], "not-a-member", [(topic_name, [(0, 4, None)])])
        assert res == {(topic_name, 0): 25}, res  # UNKNOWN_MEMBER_ID
    finally:
        raw.close()
    assert committed_offsets(broker, group) == {(topic_name, 0): 3}


def test_member_without_heartbeats_is_expired_and_group_recovers(broker, topic_name):
    create_topic(broker, topic_name, partitions=4)
    group = group_name()
    a, b = group_consumer(broker, group), group_consumer(broker, group)
    raw = None
    try:
        a.subscribe([topic_name])
        b.subscribe([topic_name])
        wait_assignment([a, b], split_ok(4))
        # A raw member joins (the others rejoin in the rebalance it triggers), then goes silent:
        # no SyncGroup, no Heartbeat. The leader still assigns it partitions.
        raw = Raw(broker)
        j = join_polling(raw, group, [a, b], topics=[topic_name], session_ms=6000, rebalance_ms=20000)
        if j["error"] == 79:
            j = join_polling(raw, group, [a, b], member_id=j["member_id"], topics=[topic_name], session_ms=6000,
                             rebalance_ms=20000)
        assert j["error"] == 0, j
        joined_at = time.monotonic()
        raw_is_leader = j["leader"] == j["member_id"]
        if not raw_is_leader:
            assert j["members"] == []
            # The leader assigned the silent member some partitions: a and b hold fewer than 4.
            wait_assignment([a, b], lambda ps: len(sum(ps, [])) < 4, timeout=20)
        else:
            assert len(j["members"]) == 3
        desc = admin(broker).describe_consumer_groups([group])[group].result(timeout=10)
        assert len(desc.members) == 3
        # After the session timeout the silent member is removed and a/b get all partitions back.
        wait_assignment([a, b], split_ok(4), timeout=40)
        took = time.monotonic() - joined_at
        assert took >= 5, f"silent member removed after {took:.1f}s, before its 6 s session timeout"
        desc = admin(broker).describe_consumer_groups([group])[group].result(timeout=10)
        assert len(desc.members) == 2 and str(desc.state).upper().endswith("STABLE")
        produce(broker, topic_name, 40, 4)
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 40:
            assert time.monotonic() < deadline, f"only {len(got)} of 40 after the expiry"
            for c in (a, b):
                m = c.poll(0.1)
                if m is not None and m.error() is None:
                    got.append((m.partition(), m.offset()))
                    c.commit(message=m, asynchronous=False)
        assert sorted(got) == sorted((i % 4, i // 4) for i in range(40))
    finally:
        if raw:
            raw.close()
        a.close()
        b.close()
