"""Log compaction (cleanup.policy=compact): the latest value of every key survives at its original
offset, superseded values and (after delete.retention.ms) tombstones go, and clients read the
compacted log (offset gaps, emptied batches) to its end, before and after a restart."""
import os
import subprocess
import time
import urllib.request

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import ConfigResource

from helpers import admin, consume_all, consumer, create_topic

KEYS = [f"k{i}" for i in range(5)]
ROUNDS = 8


def produce_updates(b, topic):
    """Rounds of updates of every key, each round in its own segment (segment.ms is short), then a
    tombstone for k0, then one sentinel record that seals the last segment holding updates (the
    active segment is never compacted). Returns {offset: (key, value)} of everything produced."""
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 5, "acks": "all"})
    produced = {}

    def delivered(err, m):
        assert err is None, err
        produced[m.offset()] = (m.key().decode(), m.value() and m.value().decode())

    for r in range(ROUNDS):
        for i in range(10):  # several updates per key per round, some sharing a batch
            for k in KEYS:
                p.produce(topic, key=k, value=f"{k}-{r}-{i}", on_delivery=delivered)
        assert p.flush(30) == 0
        time.sleep(0.4)
    p.produce(topic, key="k0", value=None, on_delivery=delivered)
    assert p.flush(30) == 0
    time.sleep(0.4)
    p.produce(topic, key="sentinel", value="end", on_delivery=delivered)
    assert p.flush(30) == 0
    return produced


def latest_per_key(produced):
    latest = {}
    for offset in sorted(produced):
        latest[produced[offset][0]] = offset
    return latest


def check(records, produced, allow_tombstone=True):
    """records: [(offset, key, value)] as a client read them from the beginning."""
    offsets = [o for o, _, _ in records]
    assert offsets == sorted(set(offsets)), "offsets strictly increase"
    assert offsets[-1] == max(produced), "consumption reaches the end"
    latest = latest_per_key(produced)
    for o, k, v in records:
        assert produced[o] == (k, v), f"record at {o} is what was produced there"
        assert latest[k] == o, f"superseded value of {k} at {o} survived"
    got = {k: o for o, k, _ in records}
    for k, o in latest.items():
        if produced[o][1] is None and (not allow_tombstone or k not in got):
            continue  # a tombstone may already be gone
        assert got.get(k) == o, f"latest value of {k} (offset {o}) is missing"


def confluent_records(b, topic):
    return [(m.offset(), m.key().decode(), m.value() and m.value().decode()) for m in consume_all(b, topic)]


def kafka_python_records(b, topic):
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    c = KafkaConsumer(bootstrap_servers=b.bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", consumer_timeout_ms=2000)
    try:
        tp = KTP(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        end = c.end_offsets([tp])[tp]
        out = []
        deadline = time.monotonic() + 30
        while c.position(tp) < end and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=500).values():
                out += [(r.offset, r.key.decode(), r.value and r.value.decode()) for r in recs]
        assert c.position(tp) == end, f"kafka-python stopped at {c.position(tp)} of {end}"
        return out
    finally:
        c.close()


def java_records(java_cp, b, topic):
    r = subprocess.run(["java", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", java_cp, "CompactedDump",
                        b.bootstrap, topic], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.split("\n")
    end = [ln for ln in lines if ln.startswith("END ")]
    assert end, r.stdout
    out = []
    for ln in lines:
        parts = ln.split(" ")
        if len(parts) == 3 and parts[0].isdigit():
            out.append((int(parts[0]), parts[1], None if parts[2] == "<null>" else parts[2]))
    return out


def rill_cli_records(b, topic):
    """`rill consume` (works against either target): it must move past emptied batches too."""
    from broker import rill_bin
    r = subprocess.run([rill_bin(), "consume", topic, "--offset", "earliest", "--exit-at-end", "--format",
                        "%o %k %v\\n", "--bootstrap-server", b.bootstrap], capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    out = []
    for ln in r.stdout.splitlines():
        o, k, v = ln.split(" ", 2)
        out.append((int(o), k, v or None))  # a null value prints as nothing
    return out


def log_bytes(b, topic):
    """(bytes, count) of the partition's segment files."""
    d = os.path.join(b.data_dir, f"{topic}-0")
    logs = [os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".log")]
    return sum(logs), len(logs)


def wait_compacted(b, topic, produced, deadline):
    """Reads the topic until only the latest record of each key is left; checks and returns it."""
    latest = latest_per_key(produced)
    while True:
        records = confluent_records(b, topic)
        if all(latest[k] == o for o, k, _ in records):
            check(records, produced)
            return records
        assert time.monotonic() < deadline, f"not compacted in time: {len(records)} records left"
        time.sleep(0.5)


def metric(node, name, topic=None):
    """The first sample of `name` (of `topic`, if given) on a Rill node's /metrics, or None."""
    text = urllib.request.urlopen(f"{node.admin_url}/metrics", timeout=10).read().decode()
    for ln in text.splitlines():
        if ln.startswith(name) and (topic is None or f'topic="{topic}"' in ln):
            return float(ln.split()[-1])
    return None


@pytest.mark.slow
def test_compacted_topic_keeps_the_latest_value_per_key(fresh_broker, topic_name, java_cp):
    b = fresh_broker(extra={"log.cleaner.backoff.ms": "200"})
    config = {"cleanup.policy": "compact", "segment.ms": "300", "min.cleanable.dirty.ratio": "0.01",
              "delete.retention.ms": "1000"}
    if b.target == "rill":
        config["segment.bytes"] = "4096"  # Kafka 4 refuses segments under 1 MiB
    create_topic(b, topic_name, config=config)

    # Kafka refuses keyless records on a compacted topic with INVALID_RECORD (87).
    p = Producer({"bootstrap.servers": b.bootstrap, "retries": 0})
    errors = []
    p.produce(topic_name, value=b"no key", on_delivery=lambda err, m: errors.append(err))
    p.flush(30)
    assert errors and errors[0] is not None and errors[0].code() == 87, errors
    del p

    produced = produce_updates(b, topic_name)
    deadline = time.monotonic() + 60
    records = wait_compacted(b, topic_name, produced, deadline)
    if b.target == "rill":
        # The cleaner may already have run while the updates were produced (backoff 200 ms).
        print(f"compacted: (log bytes, segments) {log_bytes(b, topic_name)}, {len(produced)} -> {len(records)} records")
        # The tombstone goes once delete.retention.ms has passed since the cleaning that kept it.
        while any(v is None for _, _, v in records):
            assert time.monotonic() < deadline, "tombstone never removed"
            time.sleep(0.5)
            records = confluent_records(b, topic_name)
        check(records, produced, allow_tombstone=False)
        print(f"tombstone gone: (log bytes, segments) {log_bytes(b, topic_name)}, {len(records)} records")
        for name in ("rill_log_cleaner_passes_total", "rill_log_cleaner_bytes_reclaimed_total"):
            assert (metric(b, name) or 0) > 0, name
            print(name, metric(b, name))

    # Other clients read the compacted log (offset gaps, emptied batches) to its end.
    check(kafka_python_records(b, topic_name), produced)
    check(java_records(java_cp, b, topic_name), produced)
    check(rill_cli_records(b, topic_name), produced)

    b.stop()
    b.restart()
    check(confluent_records(b, topic_name), produced)
    after_restart = confluent_records(b, topic_name)
    assert _watermarks(b, topic_name)[1] == max(produced) + 1
    # ListOffsets by timestamp skips batches that compaction emptied: the first record at or
    # after time 0 is the first surviving one.
    c = consumer(b)
    try:
        found = c.offsets_for_times([TopicPartition(topic_name, 0, 0)], timeout=10)[0].offset
    finally:
        c.close()
    assert found == after_restart[0][0]


def _watermarks(b, topic):
    c = consumer(b)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        c.close()


@pytest.mark.slow
def test_consumer_offsets_are_compacted_and_still_load(fresh_broker, topic_name):
    """__consumer_offsets is compacted like any compacted topic; the group coordinator loads
    the compacted log (emptied batches, tombstones) after a restart."""
    b = fresh_broker(extra={"log.cleaner.backoff.ms": "200", "offsets.topic.num.partitions": "1"})
    if b.target != "rill":
        pytest.skip("reads Rill's cleaner metrics and shrinks __consumer_offsets segments")
    create_topic(b, topic_name)
    res = ConfigResource(ConfigResource.Type.TOPIC, "__consumer_offsets",
                         # AlterConfigs replaces every override: restate the policy.
                         set_config={"cleanup.policy": "compact", "segment.bytes": "1024", "min.cleanable.dirty.ratio": "0.01",
                                     "delete.retention.ms": "100"})
    admin(b).alter_configs([res])[res].result(timeout=30)
    groups = {"keep": None, "gone": None}
    for g in groups:
        c = consumer(b, **{"group.id": f"{topic_name}-{g}"})
        for n in range(1, 151):
            c.commit(offsets=[TopicPartition(topic_name, 0, n)], asynchronous=False)
        c.close()
    admin(b).delete_consumer_groups([f"{topic_name}-gone"])[f"{topic_name}-gone"].result(timeout=30)
    deadline = time.monotonic() + 30
    while not metric(b, "rill_log_cleaner_bytes_reclaimed_total"):
        assert time.monotonic() < deadline, "__consumer_offsets was never compacted"
        time.sleep(0.3)
    b.stop()
    b.restart()
    c = consumer(b, **{"group.id": f"{topic_name}-keep"})
    try:
        assert c.committed([TopicPartition(topic_name, 0)], timeout=30)[0].offset == 150
    finally:
        c.close()
    listed = admin(b).list_consumer_groups().result(timeout=30)
    names = {g.group_id for g in listed.valid}
    assert f"{topic_name}-keep" in names and f"{topic_name}-gone" not in names


@pytest.mark.slow
def test_replicated_compaction_and_a_follower_that_catches_up(topic_name):
    """Cluster mode: each replica compacts below its high watermark; a follower that was down
    receives compacted Raft entries and appends them at the same offsets (its log end matches)."""
    from broker import target
    from cluster import RillCluster
    from confluent_kafka.admin import NewTopic
    if target() != "rill":
        pytest.skip("Rill cluster mode")
    c = RillCluster(3, extra={"log.cleaner.backoff.ms": "200", "replica.lag.time.max.ms": "2000"}).start()
    try:
        config = {"cleanup.policy": "compact", "segment.ms": "300", "segment.bytes": "4096",
                  "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "1000"}
        fs = c.admin().create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=3, config=config)],
                                     operation_timeout=30)
        fs[topic_name].result(timeout=30)
        leader = c.leader(topic_name, 0)
        late = next(i for i in c.nodes if i != leader)
        c.kill9(late)
        produced = produce_updates(c, topic_name)
        deadline = time.monotonic() + 60
        wait_compacted(c, topic_name, produced, deadline)
        c.restart(late)
        end = max(produced) + 1
        while metric(c.nodes[late], "kafka_log_log_logendoffset", topic_name) != end:
            assert time.monotonic() < deadline + 30, "the late follower never caught up to the same log end"
            time.sleep(0.3)
        # The replicas that were up compacted on their own (the late one received an already
        # compacted log small enough to fit its active segment, which is never compacted).
        for node in (n for i, n in c.nodes.items() if i != late):
            while not metric(node, "rill_log_cleaner_passes_total"):
                assert time.monotonic() < deadline + 60, f"{node.bootstrap} never compacted"
                time.sleep(0.3)
        # The old leader goes; whoever leads now serves the same compacted log.
        c.kill9(leader)
        c.leader(topic_name, 0, exclude=(leader,))
        check(confluent_records(c, topic_name), produced)
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.cleanup()
