"""kafka-python (pure Python client) against the broker under test."""
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError


def test_admin_create_describe_delete(broker, topic_name):
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
    try:
        a.create_topics([NewTopic(topic_name, num_partitions=2, replication_factor=1,
                                  topic_configs={"retention.ms": "604800000"})], timeout_ms=30000)
        assert topic_name in a.list_topics()
        try:
            a.create_topics([NewTopic(topic_name, 2, 1)], timeout_ms=30000)
            raise AssertionError("duplicate create_topics did not fail")
        except TopicAlreadyExistsError:
            pass
        d = a.describe_topics([topic_name])
        assert len(d) == 1 and d[0]["name"] == topic_name and d[0]["error_code"] == 0
        assert sorted(p["partition_index"] for p in d[0]["partitions"]) == [0, 1]
        assert all(p["leader_id"] == 1 and p["error_code"] == 0 for p in d[0]["partitions"])
        a.delete_topics([topic_name], timeout_ms=30000)
        deadline = time.monotonic() + 30
        while topic_name in a.list_topics():
            assert time.monotonic() < deadline, "topic still listed after delete"
            time.sleep(0.2)
    finally:
        a.close()


def test_produce_and_consume_with_assign(broker, topic_name):
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
    a.create_topics([NewTopic(topic_name, num_partitions=2, replication_factor=1)], timeout_ms=30000)
    a.close()
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5, retries=5)
    sent = []
    for i in range(300):
        part = i % 2
        md = p.send(topic_name, key=b"k%d" % i, value=b"v%d" % i, partition=part,
                    headers=[("h", b"%d" % i)]).get(timeout=30)
        sent.append((md.partition, md.offset, b"k%d" % i, b"v%d" % i))
    p.flush(30)
    p.close(timeout=10)
    for part in (0, 1):
        assert [s[1] for s in sent if s[0] == part] == list(range(150))
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", consumer_timeout_ms=10000)
    try:
        tps = [TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        assert c.end_offsets(tps) == {tps[0]: 150, tps[1]: 150}
        assert c.beginning_offsets(tps) == {tps[0]: 0, tps[1]: 0}
        got = []
        deadline = time.monotonic() + 60
        while len(got) < 300 and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=500).values():
                got.extend(recs)
        assert sorted((r.partition, r.offset, r.key, r.value) for r in got) == sorted(sent)
        assert all(r.headers == [("h", r.value[1:])] for r in got)
    finally:
        c.close()
