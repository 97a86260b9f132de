import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def admin(b):
    # One AdminClient per broker, kept alive: futures fail with _DESTROY if their client is collected.
    a = getattr(b, "_admin", None)
    if a is None:
        a = b._admin = AdminClient({"bootstrap.servers": b.bootstrap})
    return a


def create_topic(b, name, partitions=1, config=None, timeout=30):
    fs = admin(b).create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
                                operation_timeout=timeout, request_timeout=timeout)
    fs[name].result(timeout=timeout)
    wait_for_leaders(b, name, partitions)


def wait_for_leaders(b, name, partitions, timeout=30):
    a = admin(b)
    deadline = time.monotonic() + timeout
    while True:
        md = a.list_topics(topic=name, timeout=10)
        t = md.topics.get(name)
        if t and t.error is None and len(t.partitions) == partitions and all(p.leader >= 0 for p in t.partitions.values()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"topic {name} not ready: {t and t.error} {t and t.partitions}")
        time.sleep(0.1)


def consumer(b, **extra):
    # confluent-kafka (Python) insists on a group.id even for assign(); no group API is used:
    # no subscribe(), no commits, explicit start offsets.
    conf = {"bootstrap.servers": b.bootstrap, "group.id": "rill-blackbox-assign-only", "enable.auto.commit": False,
            "enable.auto.offset.store": False, "enable.partition.eof": True, "auto.offset.reset": "earliest"}
    conf.update(extra)
    return Consumer(conf)


def consume_all(b, topic, partitions=(0,), expected=None, timeout=30, **extra):
    """assign() all given partitions from the beginning and read until EOF on each (or `expected` msgs)."""
    c = consumer(b, **extra)
    try:
        c.assign([TopicPartition(topic, p, -2) for p in partitions])  # -2 = OFFSET_BEGINNING
        out, eof = [], set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == -191:  # _PARTITION_EOF
                    eof.add(m.partition())
                    if expected is None and eof >= set(partitions):
                        return out
                    continue
                raise AssertionError(f"consume error: {m.error()}")
            out.append(m)
            if expected is not None and len(out) >= expected:
                return out
        raise AssertionError(f"timed out: consumed {len(out)} (expected {expected}), eof on {sorted(eof)}")
    finally:
        c.close()
