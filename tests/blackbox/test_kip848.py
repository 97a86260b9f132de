"""Consumer groups with the consumer group protocol (KIP-848, ConsumerGroupHeartbeat) through the Java
kafka-clients 4.x consumer with group.protocol=consumer and the server-side assignors.

Program: tests/java/src/Kip848Check.java (helpers in GroupTestUtil.java, GroupResumeCheck.java,
GroupTwoMembersCheck.java); it exits non-zero with a "FAIL: ..." line on a mismatch. The broker runs with its
defaults (heartbeat interval 5 s, session timeout 45 s), as Apache Kafka 4.1 does.
"""

import pytest

from groupkit import group_name as _group_name
from groupkit import plain_broker as broker  # noqa: F401 (this module's fixture)
from helpers import create_topic
from test_java_clients import run_java
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
