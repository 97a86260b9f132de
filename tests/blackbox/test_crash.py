"""kill -9 the broker while an acks=all producer runs; every acknowledged record must survive.

Apache Kafka does not fsync on acknowledgement, so there a loss is legitimate (xfail, non-strict);
with a plain process kill the page cache survives, so it usually passes anyway.
"""
import threading
import time

import pytest
from confluent_kafka import Producer

from broker import target
from helpers import consume_all, create_topic

PARTITIONS = 3


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.xfail(target() == "kafka", reason="Apache Kafka does not fsync acknowledged writes", strict=False)
def test_acked_records_survive_kill9(fresh_broker, topic_name):
    b = fresh_broker()
    create_topic(b, topic_name, partitions=PARTITIONS)
    acked, failed = [], []
    lock = threading.Lock()
    stop = threading.Event()

    def on_delivery(err, msg):
        with lock:
            (failed if err else acked).append((msg.partition(), msg.offset(), msg.value()))

    def run():
        p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "enable.idempotence": False,
                      "linger.ms": 2, "message.timeout.ms": 5000, "retries": 0,
                      "socket.connection.setup.timeout.ms": 1000, "reconnect.backoff.max.ms": 200})
        i = 0
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline and i < 500_000:
            try:
                p.produce(topic_name, value=b"rec-%08d-" % i + b"y" * (i % 200), partition=i % PARTITIONS,
                          on_delivery=on_delivery)
                i += 1
            except BufferError:
                p.poll(0.05)
            p.poll(0)
            if i % 100 == 0:
                time.sleep(0.002)  # a steady stream, not a flood
        p.flush(15)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    deadline = time.monotonic() + 60
    while True:
        with lock:
            n = len(acked)
        if n >= 3000:
            break
        assert time.monotonic() < deadline, f"only {n} records acknowledged before the crash"
        assert t.is_alive(), "producer thread ended early"
        time.sleep(0.01)
    b.kill9()
    time.sleep(0.5)
    stop.set()
    t.join(60)
    assert not t.is_alive()
    with lock:
        acked_now = list(acked)
    assert len(acked_now) >= 3000

    b.restart()
    msgs = consume_all(b, topic_name, partitions=tuple(range(PARTITIONS)), timeout=60)
    stored = {}
    for m in msgs:
        stored.setdefault(m.partition(), []).append((m.offset(), m.value()))
    for part, recs in stored.items():
        offs = [o for o, _ in recs]
        assert offs == list(range(offs[0], offs[0] + len(offs))) and offs[0] == 0, f"offsets not dense on {part}"
    by_pos = {(part, o): v for part, recs in stored.items() for o, v in recs}
    missing = [(p, o) for p, o, v in acked_now if by_pos.get((p, o)) != v]
    assert not missing, f"{len(missing)} of {len(acked_now)} acknowledged records lost or changed, e.g. {missing[:5]}"
