"""Consumer groups with the consumer group protocol (KIP-848, ConsumerGroupHeartbeat) through the Java
kafka-clients 4.x consumer with group.protocol=consumer and the server-side assignors.

Program: tests/java/src/Kip848Check.java (helpers in GroupTestUtil.java, GroupResumeCheck.java,
GroupTwoMembersCheck.java); it exits non-zero with a "FAIL: ..." line on a mismatch. The broker runs with its
defaults (heartbeat interval 5 s, session timeout 45 s), as Apache Kafka 4.1 does.
"""

import subprocess
import threading
import time

import pytest

from broker import target
from groupkit import group_name as _group_name
from groupkit import plain_broker as broker  # noqa: F401 (this module's fixture)
from helpers import create_topic
from test_java_clients import JAVA_OPTS, run_java
from test_java_groups import produce

def group_name():
    return _group_name("k848")


ASSIGNORS = ["uniform", "range"]


@pytest.mark.parametrize("assignor", ASSIGNORS)
def test_kip848_commit_each_and_resume(broker, java_cp, topic_name, assignor):
    """Reads N records once, commitSync after each; a restarted consumer resumes exactly after the last
    commit (reads nothing old, then exactly the records produced later); a third one reads nothing."""
    n, later = 300, 60
    create_topic(broker, topic_name, partitions=3)
    produce(broker, topic_name, 0, n, 3)
    group = group_name()
    out = run_java(java_cp, "Kip848Check", "resume", broker.bootstrap, topic_name, 3, group, assignor, 0, n, 0)
    assert f"OK kip848 resumed group {group}" in out
    out = run_java(java_cp, "Kip848Check", "resume", broker.bootstrap, topic_name, 3, group, assignor, n, n, later)
    assert "OK kip848 resumed" in out
    out = run_java(java_cp, "Kip848Check", "resume", broker.bootstrap, topic_name, 3, group, assignor,
                   n + later, n + later, 0)
    assert "OK kip848 resumed" in out


@pytest.mark.parametrize("assignor", ASSIGNORS)
def test_kip848_two_members_split_six_partitions_then_leave(broker, java_cp, topic_name, assignor):
    create_topic(broker, topic_name, partitions=6)
    out = run_java(java_cp, "Kip848Check", "two", broker.bootstrap, topic_name, 6, group_name(), assignor, timeout=300)
    assert "OK kip848 two members" in out


def test_kip848_regex_subscription(broker, java_cp, topic_name):
    """subscribe(SubscriptionPattern) with group.protocol=consumer: the coordinator matches the
    regex (SubscribedTopicRegex) against whole topic names, and a topic created later joins."""
    n = 50
    for t in (f"{topic_name}-a", f"{topic_name}-b", f"{topic_name}x-c"):
        create_topic(broker, t, partitions=2)
        produce(broker, t, 0, n, 2)
    out = run_java(java_cp, "Kip848Check", "regex", broker.bootstrap, topic_name, 2, group_name(), "uniform", n,
                   timeout=300)
    assert "OK kip848 regex" in out


def test_kip848_member_survives_broker_kill9(fresh_broker, java_cp, topic_name):
    """KIP-848 group state is durable: a Java consumer (group.protocol=consumer) that keeps heartbeating
    with its member id and epoch across kill -9 and restart of the broker is neither fenced nor
    rebalanced: it keeps its id, epoch and assignment, and reads every record exactly once."""
    b = fresh_broker()
    n = 60
    create_topic(b, topic_name, partitions=3)
    produce(b, topic_name, 0, n, 3)
    p = subprocess.Popen(["java", *JAVA_OPTS, "-cp", java_cp, "Kip848Check", "restart", b.bootstrap, topic_name, "3",
                          group_name(), "uniform", str(n)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    ready = threading.Event()

    def pump():
        for line in p.stdout:
            lines.append(line)
            if line.startswith("READY"):
                ready.set()

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    try:
        assert ready.wait(120), "".join(lines[-50:])
        b.kill9()
        b.restart()
        p.stdin.write("go\n")
        p.stdin.flush()
        assert p.wait(240) == 0, "".join(lines[-80:])
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    t.join(5)
    out = "".join(lines)
    assert "OK kip848 restart" in out, out[-5000:]
    log = b.log_tail(max_lines=2000)
    assert "consumer group members expired" not in log


def _cg_heartbeat(s, group, topic, corr):
    """A joining ConsumerGroupHeartbeat v0; returns (error code, message)."""
    from kproto import W, R, recv_frame, request
    body = (W(True).string(group).string("").i32(0).string(None).string(None).i32(30000)
            .array([topic], lambda w, t: w.string(t)).string(None).array([], lambda w, t: None).tags())
    s.sendall(request(68, 0, corr, bytes(body.b), flexible_header=True))
    r = R(recv_frame(s), True)
    assert r.i32() == corr
    r.tags()
    r.i32()
    return r.i16(), r.string()


def _join_group(s, group, corr):
    """A classic JoinGroup v5 of a new member; returns the error code."""
    from kproto import W, R, recv_frame, request
    body = (W().string(group).i32(10000).i32(30000).string("").string(None).string("consumer")
            .array([("range", b"\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff")],
                   lambda w, p: w.string(p[0]).bytes_(p[1])))
    s.sendall(request(11, 5, corr, bytes(body.b), flexible_header=False))
    r = R(recv_frame(s))
    assert r.i32() == corr
    r.i32()
    return r.i16()


@pytest.mark.skipif(target() != "rill", reason="Kafka 4.x migrates such groups online (Rill refuses them)")
def test_mixed_protocols_get_kafkas_errors(broker, topic_name):
    """Without online migration a group is classic or consumer at a time: a consumer-protocol member
    joining a classic group with members gets GROUP_ID_NOT_FOUND ("Group G is not a consumer group", what
    Kafka answers when it does not upgrade), a classic member joining a consumer group with members gets
    INCONSISTENT_GROUP_PROTOCOL; each group carries on for its own members."""
    from confluent_kafka import Consumer
    from kproto import connect
    create_topic(broker, topic_name, partitions=2)
    classic = group_name()
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": classic, "session.timeout.ms": 6000,
                  "heartbeat.interval.ms": 500})
    try:
        c.subscribe([topic_name])
        deadline = time.monotonic() + 60
        while not c.assignment():
            assert time.monotonic() < deadline, "classic consumer got no assignment"
            c.poll(0.2)
        s = connect(broker)
        err, msg = _cg_heartbeat(s, classic, topic_name, 1)
        assert (err, msg) == (69, f"Group {classic} is not a consumer group"), (err, msg)
        modern = group_name()
        assert _cg_heartbeat(s, modern, topic_name, 2)[0] == 0
        assert _join_group(s, modern, 3) == 23  # INCONSISTENT_GROUP_PROTOCOL
        c.poll(1)
        assert len(c.assignment()) == 2, "the classic group carries on"
        s.close()
    finally:
        c.close()
