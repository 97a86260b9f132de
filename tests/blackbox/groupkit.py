"""Shared pieces of the consumer-group tests: a module-scoped broker whose first rebalance does
not wait Kafka's default 3 s for more members, group names, and a commit-per-message consumer.

Import `broker` into a test module to use it as that module's broker fixture.
"""
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer

from broker import Broker

GROUP_BROKER_CONFIG = {"group.initial.rebalance.delay.ms": "0"}
GROUP_CMD = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"


def _module_broker(extra):
    b = Broker.start(extra=extra) if extra else Broker.start()
    try:
        yield b
    finally:
        b.__dict__.pop("_admin", None)
        b.cleanup()


@pytest.fixture(scope="module")
def broker():
    yield from _module_broker(GROUP_BROKER_CONFIG)


@pytest.fixture(scope="module")
def plain_broker():
    """A module-scoped broker with default group settings."""
    yield from _module_broker(None)


def group_name(prefix="g"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def produce(b, topic, n, partitions, timestamps=None):
    """n records key=i, value=v<i> into partition i % partitions (acks=all)."""
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all"})
    for i in range(n):
        kw = {"timestamp": timestamps[i]} if timestamps else {}
        p.produce(topic, key=str(i).encode(), value=f"v{i}".encode(), partition=i % partitions, **kw)
    assert p.flush(30) == 0


def group_consumer(b, group, **extra):
    conf = {"bootstrap.servers": b.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
            "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
    conf.update(extra)
    return Consumer(conf)


def consume_committing(c, want, timeout=60):
    """Poll `want` messages, committing each synchronously right after it is 'processed'."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < want:
        assert time.monotonic() < deadline, f"consumed only {len(got)} of {want}: {got}"
        m = c.poll(0.5)
        if m is None:
            continue
        assert m.error() is None, m.error()
        got.append((m.partition(), m.offset()))
        c.commit(message=m, asynchronous=False)
    return got
