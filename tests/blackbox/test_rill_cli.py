"""The `rill` admin subcommands (topic, config, cluster, produce, consume, group), run as a process
against the broker under test (Rill, or Apache Kafka with RILL_TEST_TARGET=kafka)."""
import json
import subprocess
import time

import pytest
from broker import rill_bin


def rill(broker, *args, input=None, timeout=60):
    return subprocess.run([rill_bin(), *map(str, args), "--bootstrap-server", broker.bootstrap], input=input,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=None if input is not None else subprocess.DEVNULL)


def ok(broker, *args, **kw):
    r = rill(broker, *args, **kw)
    assert r.returncode == 0, f"rill {args} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def describe(broker, topic):
    return json.loads(ok(broker, "topic", "describe", topic, "--output", "json"))


def test_topic_lifecycle(broker, topic_name):
    out = ok(broker, "topic", "create", topic_name, "--partitions", 2, "--replication-factor", 1,
             "--config", "retention.ms=604800000")
    assert f"Created topic {topic_name}." in out
    assert topic_name in ok(broker, "topic", "list")
    names = [t["name"] for t in json.loads(ok(broker, "topic", "list", "--output", "json"))]
    assert topic_name in names

    d = describe(broker, topic_name)
    assert d["name"] == topic_name and d["partition_count"] == 2 and d["replication_factor"] == 1
    assert d["configs"].get("retention.ms") == "604800000"
    assert [p["partition"] for p in d["partitions"]] == [0, 1]
    assert all(p["leader"] >= 0 and p["log_start_offset"] == 0 and p["log_end_offset"] == 0 for p in d["partitions"])
    human = ok(broker, "topic", "describe", topic_name)
    assert f"Topic: {topic_name}" in human and "PARTITION" in human and "retention.ms=604800000" in human

    ok(broker, "topic", "alter-config", topic_name, "--set", "retention.ms=3600000", "--set", "cleanup.policy=compact")
    cfg = json.loads(ok(broker, "config", "get", "--topic", topic_name, "--output", "json"))
    assert cfg["retention.ms"]["value"] == "3600000" and cfg["cleanup.policy"]["value"] == "compact"
    ok(broker, "topic", "alter-config", topic_name, "--delete", "cleanup.policy")
    ok(broker, "config", "set", "--topic", topic_name, "max.message.bytes=2000000")
    cfg = json.loads(ok(broker, "config", "get", "--topic", topic_name, "--output", "json"))
    assert cfg["cleanup.policy"]["value"] == "delete" and cfg["cleanup.policy"]["source"] != "DYNAMIC_TOPIC_CONFIG"
    assert cfg["max.message.bytes"]["value"] == "2000000"
    ok(broker, "config", "delete", "--topic", topic_name, "max.message.bytes")
    assert "max.message.bytes" not in describe(broker, topic_name)["configs"]

    ok(broker, "topic", "add-partitions", topic_name, "--count", 4)
    assert describe(broker, topic_name)["partition_count"] == 4

    assert f"Deleted topic {topic_name}." in ok(broker, "topic", "delete", topic_name)
    deadline = time.monotonic() + 30
    while topic_name in ok(broker, "topic", "list").split():
        assert time.monotonic() < deadline, "topic still listed after delete"
        time.sleep(0.5)


def test_create_existing_topic_errors(broker, topic_name):
    ok(broker, "topic", "create", topic_name, "--partitions", 1)
    r = rill(broker, "topic", "create", topic_name, "--partitions", 1)
    assert r.returncode == 1 and "TOPIC_ALREADY_EXISTS" in r.stderr, r
    r = rill(broker, "topic", "create", topic_name, "--partitions", 1, "--if-not-exists")
    assert r.returncode == 0, r


def test_unknown_topic_and_usage_errors(broker, topic_name):
    r = rill(broker, "topic", "describe", topic_name)
    assert r.returncode == 1 and "UNKNOWN_TOPIC_OR_PARTITION" in r.stderr, r
    r = rill(broker, "topic", "delete", topic_name)
    assert r.returncode == 1 and "UNKNOWN_TOPIC_OR_PARTITION" in r.stderr, r
    assert rill(broker, "topic", "delete", topic_name, "--if-exists").returncode == 0
    r = rill(broker, "topic", "create", topic_name, "--partitions", "many")
    assert r.returncode == 2, r
    r = rill(broker, "topic", "create", topic_name, "--config", "novalue")
    assert r.returncode == 2, r


def test_produce_consume_roundtrip(broker, topic_name):
    ok(broker, "topic", "create", topic_name, "--partitions", 3)
    lines = [f"key{i}:value {i}" for i in range(200)]
    ok(broker, "produce", topic_name, "--key-separator", ":", "--header", "src=cli", input="\n".join(lines) + "\n")
    out = ok(broker, "consume", topic_name, "--offset", "earliest", "--exit-at-end", "--format", "%k:%v\\n")
    got = out.splitlines()
    assert sorted(got) == sorted(lines)
    # murmur2 partitioning keeps a key's records in order within its partition.
    recs = [json.loads(line) for line in
            ok(broker, "consume", topic_name, "--offset", "earliest", "--exit-at-end", "--output", "json").splitlines()]
    assert len(recs) == 200
    assert all(r["headers"] == [{"key": "src", "value": "cli"}] for r in recs)
    by_key = {}
    for r in recs:
        by_key.setdefault(r["key"], set()).add(r["partition"])
    assert all(len(ps) == 1 for ps in by_key.values())
    d = describe(broker, topic_name)
    assert sum(p["log_end_offset"] for p in d["partitions"]) == 200


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_produce_compressed_to_partition(broker, topic_name, codec):
    ok(broker, "topic", "create", topic_name, "--partitions", 2)
    ok(broker, "produce", topic_name, "--partition", 1, "--compression", codec, "--acks", "1",
       input="a\nb\nc\n")
    out = ok(broker, "consume", topic_name, "--partition", 1, "--offset", "earliest", "--exit-at-end",
             "--format", "%t %p %o %v\\n")
    assert out.splitlines() == [f"{topic_name} 1 0 a", f"{topic_name} 1 1 b", f"{topic_name} 1 2 c"]
    out = ok(broker, "consume", topic_name, "--partition", 1, "--offset", 1, "--num", 1)
    assert out == "b\n"
    assert ok(broker, "consume", topic_name, "--partition", 0, "--offset", "earliest", "--exit-at-end") == ""


def test_cluster_info(broker):
    info = json.loads(ok(broker, "cluster", "info", "--output", "json"))
    assert info["cluster_id"] and info["brokers"] and info["brokers"][0]["port"] == broker.port
    assert "Cluster id:" in ok(broker, "cluster", "info")


def test_group_describe_lag(broker, topic_name):
    from confluent_kafka import Consumer, TopicPartition
    ok(broker, "topic", "create", topic_name, "--partitions", 1)
    ok(broker, "produce", topic_name, input="".join(f"m{i}\n" for i in range(10)))
    group = f"g-{topic_name}"
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        deadline = time.monotonic() + 30
        while True:  # Apache Kafka creates __consumer_offsets on first use: NOT_COORDINATOR meanwhile
            try:
                c.commit(offsets=[TopicPartition(topic_name, 0, 4)], asynchronous=False)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        c.close()
    assert group in ok(broker, "group", "list")
    d = json.loads(ok(broker, "group", "describe", group, "--output", "json"))
    assert d["offsets"] == [{"topic": topic_name, "partition": 0, "committed_offset": 4, "log_end_offset": 10, "lag": 6}]
    assert "LAG" in ok(broker, "group", "describe", group)


def test_completion_and_help():
    r = subprocess.run([rill_bin(), "completion", "bash"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "rill" in r.stdout
    r = subprocess.run([rill_bin(), "topic", "create", "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "--if-not-exists" in r.stdout
