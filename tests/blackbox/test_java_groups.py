"""Consumer groups (classic protocol) through the Java kafka-clients 4.x consumer and AdminClient.

Programs: tests/java/src/Group*Check.java (helpers in GroupTestUtil.java); each exits non-zero with a
"FAIL: ..." line on a mismatch. Records are key = value = "v<i>" in partition i % partitions.
The module's `broker` runs with group.initial.rebalance.delay.ms=0 (as in test_groups.py).
"""

import pytest
from confluent_kafka import Producer

from groupkit import broker  # noqa: F401 (broker is this module's fixture)
from groupkit import group_name as _group_name
from helpers import create_topic
from test_java_clients import run_java

STRATEGIES = ["range", "cooperative-sticky"]


def group_name():
    return _group_name("jg")


def produce(b, topic, start, end, partitions):
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all"})
    for i in range(start, end):
        v = f"v{i}".encode()
        p.produce(topic, key=v, value=v, partition=i % partitions)
    assert p.flush(30) == 0


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_java_subscribe_commit_each_and_resume(broker, java_cp, topic_name, strategy):
    """CLIENT-PROFILES Java consumer: reads N records once, commits each; a restarted consumer in the same
    group reads nothing old, then exactly the records produced later; a third one reads nothing."""
    n, later = 600, 90
    create_topic(broker, topic_name, partitions=3)
    produce(broker, topic_name, 0, n, 3)
    group = group_name()
    out = run_java(java_cp, "GroupResumeCheck", broker.bootstrap, topic_name, 3, group, strategy, 0, n, 0)
    assert f"OK resumed group {group}" in out
    # Restart: nothing new for 3 s, then the program produces n..n+later-1 and must read exactly those.
    out = run_java(java_cp, "GroupResumeCheck", broker.bootstrap, topic_name, 3, group, strategy, n, n, later)
    assert "OK resumed" in out
    out = run_java(java_cp, "GroupResumeCheck", broker.bootstrap, topic_name, 3, group, strategy, n + later, n + later, 0)
    assert "OK resumed" in out


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_java_two_members_split_then_leave(broker, java_cp, topic_name, strategy):
    create_topic(broker, topic_name, partitions=3)
    out = run_java(java_cp, "GroupTwoMembersCheck", broker.bootstrap, topic_name, 3, group_name(), strategy, timeout=170)
    assert "OK two members" in out


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_java_static_member_restart_without_rebalance(broker, java_cp, topic_name, strategy):
    create_topic(broker, topic_name, partitions=4)
    out = run_java(java_cp, "GroupStaticCheck", broker.bootstrap, topic_name, 4, group_name(), strategy, timeout=170)
    assert "OK static membership" in out


def test_java_admin_consumer_groups(broker, java_cp, topic_name):
    create_topic(broker, topic_name, partitions=3)
    out = run_java(java_cp, "GroupAdminCheck", broker.bootstrap, topic_name, group_name())
    assert "OK admin consumer groups" in out
