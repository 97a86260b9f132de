"""Consumer groups (classic protocol) and durable committed offsets, through real clients.

The module's `broker` runs with group.initial.rebalance.delay.ms=0 so that rebalances do not
wait Kafka's default 3 s for more members.
"""
import time

import pytest
from confluent_kafka import KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from groupkit import (  # noqa: F401 (broker is this module's fixture)
    GROUP_BROKER_CONFIG, GROUP_CMD, broker, consume_committing, group_consumer, group_name, produce)
from helpers import admin, create_topic
from test_cli_tools import tool

def drain(c, idle=3.0, timeout=60):
    """Poll until nothing arrives for `idle` seconds; commit each message."""
    got = []
    last = time.monotonic()
    deadline = last + timeout
    while time.monotonic() - last < idle and time.monotonic() < deadline:
        m = c.poll(0.3)
        if m is None or m.error():
            continue
        got.append((m.partition(), m.offset()))
        c.commit(message=m, asynchronous=False)
        last = time.monotonic()
    return got


def wait_assignment(consumers, predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in consumers:
            c.poll(0.2)
        parts = [sorted(tp.partition for tp in c.assignment()) for c in consumers]
        if predicate(parts):
            return parts
    raise AssertionError(f"assignment never settled: {[sorted(tp.partition for tp in c.assignment()) for c in consumers]}")


def test_resume_exactly_after_last_commit(broker, topic_name):
    create_topic(broker, topic_name, partitions=3)
    produce(broker, topic_name, 30, 3)
    group = group_name()
    c = group_consumer(broker, group)
    c.subscribe([topic_name])
    first = consume_committing(c, 12)
    c.close()
    c = group_consumer(broker, group)
    c.subscribe([topic_name])
    rest = consume_committing(c, 18)
    committed = c.committed([TopicPartition(topic_name, p) for p in range(3)], timeout=10)
    c.close()
    assert not set(first) & set(rest), "a message was delivered twice across the restart"
    assert sorted(first + rest) == sorted((i % 3, i // 3) for i in range(30))
    assert sorted((tp.partition, tp.offset) for tp in committed) == [(0, 10), (1, 10), (2, 10)]


@pytest.mark.parametrize("strategy", ["range", "roundrobin", "cooperative-sticky"])
def test_two_members_split_then_one_leaves(broker, topic_name, strategy):
    create_topic(broker, topic_name, partitions=4)
    group = group_name()
    a = group_consumer(broker, group, **{"partition.assignment.strategy": strategy})
    b = group_consumer(broker, group, **{"partition.assignment.strategy": strategy})
    try:
        a.subscribe([topic_name])
        b.subscribe([topic_name])
        pa, pb = wait_assignment([a, b], lambda ps: all(ps) and sorted(ps[0] + ps[1]) == [0, 1, 2, 3])
        assert not set(pa) & set(pb)
        b.close()
        b = None
        wait_assignment([a], lambda ps: ps[0] == [0, 1, 2, 3])
        desc = admin(broker).describe_consumer_groups([group])[group].result(timeout=10)
        assert len(desc.members) == 1
        assert str(desc.state).upper().endswith("STABLE")
    finally:
        a.close()
        if b is not None:
            b.close()


def test_kafka_python_group_commit(broker, topic_name):
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    create_topic(broker, topic_name, partitions=2)
    produce(broker, topic_name, 10, 2)
    group = group_name()

    def make():
        c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False,
                          auto_offset_reset="earliest", consumer_timeout_ms=5000, session_timeout_ms=10000,
                          heartbeat_interval_ms=1000)
        c.subscribe([topic_name])
        return c

    c = make()
    seen = []
    for m in c:
        seen.append((m.partition, m.offset))
        c.commit()
        if len(seen) == 4:
            break
    c.close()
    c = make()
    more = [(m.partition, m.offset) for m in c]
    c.commit()
    committed = {p: c.committed(KTP(topic_name, p)) for p in range(2)}
    c.close()
    assert not set(seen) & set(more)
    assert sorted(seen + more) == sorted((i % 2, i // 2) for i in range(10))
    assert committed == {0: 5, 1: 5}


@pytest.mark.parametrize("how", ["stop", "kill9"])
def test_committed_offsets_survive_restart(fresh_broker, topic_name, how):
    b = fresh_broker(extra=GROUP_BROKER_CONFIG)
    try:
        create_topic(b, topic_name, partitions=2)
        produce(b, topic_name, 20, 2)
        group = group_name()
        c = group_consumer(b, group)
        c.subscribe([topic_name])
        first = consume_committing(c, 7)
        c.close()
    finally:
        b.__dict__.pop("_admin", None)
    if how == "stop":
        b.stop()
    else:
        b.kill9()
    b.restart()
    c = group_consumer(b, group)
    c.subscribe([topic_name])
    rest = consume_committing(c, 13)
    c.close()
    assert not set(first) & set(rest)
    assert sorted(first + rest) == sorted((i % 2, i // 2) for i in range(20))


def test_simple_assign_commit_and_admin_apis(broker, topic_name):
    create_topic(broker, topic_name, partitions=2)
    produce(broker, topic_name, 6, 2)
    group = group_name()
    c = group_consumer(broker, group)
    c.assign([TopicPartition(topic_name, 0, 0), TopicPartition(topic_name, 1, 0)])
    consume_committing(c, 2)
    c.commit(offsets=[TopicPartition(topic_name, 1, 3)], asynchronous=False)
    got = {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic_name, p) for p in range(2)], timeout=10)}
    c.close()
    assert got[1] == 3
    a = admin(broker)
    listed = a.list_consumer_groups().result(timeout=10)
    assert group in [g.group_id for g in listed.valid]
    offs = a.list_consumer_group_offsets(
        [__import__("confluent_kafka").ConsumerGroupTopicPartitions(group)])[group].result(timeout=10)
    assert {tp.partition: tp.offset for tp in offs.topic_partitions}[1] == 3
    a.delete_consumer_groups([group])[group].result(timeout=10)
    listed = a.list_consumer_groups().result(timeout=10)
    assert group not in [g.group_id for g in listed.valid]


def test_delete_non_empty_group_refused(broker, topic_name):
    create_topic(broker, topic_name, partitions=1)
    group = group_name()
    c = group_consumer(broker, group)
    c.subscribe([topic_name])
    try:
        wait_assignment([c], lambda ps: ps[0] == [0])
        with pytest.raises(KafkaException) as e:
            admin(broker).delete_consumer_groups([group])[group].result(timeout=10)
        assert "NON_EMPTY_GROUP" in str(e.value)
    finally:
        c.close()


def test_internal_topic_is_internal_and_not_producible(broker):
    md = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10)
    assert "__consumer_offsets" in md.topics
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "message.timeout.ms": 5000})
    errors = []
    p.produce("__consumer_offsets", value=b"x", on_delivery=lambda err, msg: errors.append(err))
    p.flush(10)
    assert errors and errors[0] is not None


def test_kafka_consumer_groups_cli_list_and_describe_lag(broker, java_cp, topic_name):
    create_topic(broker, topic_name, partitions=2)
    produce(broker, topic_name, 10, 2)
    group = group_name()
    c = group_consumer(broker, group)
    c.subscribe([topic_name])
    consume_committing(c, 4)
    # Commit a known position on both partitions (the 4 messages may all be from one).
    c.commit(offsets=[TopicPartition(topic_name, 0, 2), TopicPartition(topic_name, 1, 2)], asynchronous=False)
    c.close()
    bs = ["--bootstrap-server", broker.bootstrap]
    assert group in tool(java_cp, GROUP_CMD, *bs, "--list").split()
    out = tool(java_cp, GROUP_CMD, *bs, "--describe", "--group", group)
    rows = [line.split() for line in out.splitlines() if topic_name in line]
    assert len(rows) == 2, out
    header = next(line.split() for line in out.splitlines() if "LAG" in line)
    col = {name: i for i, name in enumerate(header)}
    total_lag = sum(int(r[col["LAG"]]) for r in rows)
    assert total_lag == 6, out
    assert sorted(int(r[col["LOG-END-OFFSET"]]) for r in rows) == [5, 5]


def find_coordinator_v1(b, key, key_type):
    import kproto
    s = kproto.connect(b)
    try:
        body = kproto.W().string(key).i8(key_type).b
        s.sendall(kproto.request(10, 1, 5, bytes(body), False))
        r = kproto.R(kproto.recv_frame(s))
        assert r.i32() == 5
        r.i32()  # throttle
        err = r.i16()
        r.string()  # error message
        return err, r.i32(), r.string(), r.i32()
    finally:
        s.close()


def test_find_coordinator_raw(broker):
    err, node, host, port = find_coordinator_v1(broker, "any-group", 0)
    assert (err, node, port) == (0, 1, broker.port) and host == "127.0.0.1"
    err, node, _, _ = find_coordinator_v1(broker, "some-txn", 1)
    assert err == 15 and node == -1  # COORDINATOR_NOT_AVAILABLE: no transaction coordinator


def test_cli_delete_offsets_refused_while_subscribed(broker, java_cp, topic_name):
    create_topic(broker, topic_name, partitions=1)
    produce(broker, topic_name, 3, 1)
    group = group_name()
    c = group_consumer(broker, group)
    c.subscribe([topic_name])
    bs = ["--bootstrap-server", broker.bootstrap]
    try:
        consume_committing(c, 2)
        import subprocess
        from test_cli_tools import JAVA_OPTS
        r = subprocess.run(["java", *JAVA_OPTS, "-cp", java_cp, GROUP_CMD, *bs, "--delete-offsets", "--group", group,
                            "--topic", topic_name], capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        assert "subscribed" in (r.stdout + r.stderr).lower(), r.stdout + r.stderr
    finally:
        c.close()
    tool(java_cp, GROUP_CMD, *bs, "--delete-offsets", "--group", group, "--topic", topic_name)
    out = tool(java_cp, GROUP_CMD, *bs, "--describe", "--group", group)
    assert topic_name not in out, out


def test_java_console_consumer_group_resumes(broker, java_cp, topic_name):
    from test_cli_tools import CONSUMER
    create_topic(broker, topic_name, partitions=2)
    produce(broker, topic_name, 8, 2)
    group = group_name()
    bs = ["--bootstrap-server", broker.bootstrap]

    def consume(n):
        out = tool(java_cp, CONSUMER, *bs, "--topic", topic_name, "--group", group, "--from-beginning",
                   "--max-messages", n, "--consumer-property", "enable.auto.commit=true",
                   "--timeout-ms", 30000)
        return [line for line in out.splitlines() if line.startswith("v")]

    first = consume(5)
    rest = consume(3)
    assert len(first) == 5 and len(rest) == 3
    assert sorted(first + rest) == sorted(f"v{i}" for i in range(8))
    out = tool(java_cp, GROUP_CMD, *bs, "--describe", "--group", group)
    rows = [line.split() for line in out.splitlines() if topic_name in line]
    assert sorted(int(r[3]) for r in rows) == [4, 4], out


def test_internal_topic_not_deletable(broker):
    with pytest.raises(KafkaException):
        admin(broker).delete_topics(["__consumer_offsets"], operation_timeout=10)["__consumer_offsets"].result(timeout=15)
    assert "__consumer_offsets" in admin(broker).list_topics(timeout=10).topics
