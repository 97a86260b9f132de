"""The `rill` admin subcommands (topic, config, cluster, produce, consume, group), run as a process
against the broker under test (Rill, or Apache Kafka with RILL_TEST_TARGET=kafka)."""
import json
import os
import signal
import socket
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
    assert d["offsets"] == [{"topic": topic_name, "partition": 0, "committed_offset": 4, "log_end_offset": 10, "lag": 6,
                             "member_id": None, "client_host": None, "client_id": None}]
    assert "LAG" in ok(broker, "group", "describe", group)


def test_completion_and_help():
    r = subprocess.run([rill_bin(), "completion", "bash"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "rill" in r.stdout
    r = subprocess.run([rill_bin(), "topic", "create", "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "--if-not-exists" in r.stdout
    r = subprocess.run([rill_bin(), "consume", "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "--group" in r.stdout and "--assignor" in r.stdout, r


def run_env(*args, env=None, input=None, timeout=60):
    """Runs rill without --bootstrap-server, with RILL_* variables taken only from `env`."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("RILL_") or k == "RILL_BIN"}
    e.update(env or {})
    return subprocess.run([rill_bin(), *map(str, args)], input=input, capture_output=True, text=True,
                          timeout=timeout, env=e, stdin=None if input is not None else subprocess.DEVNULL)


def commit_offsets(broker, group, offsets):
    """Commits {(topic, partition): offset} for `group` with confluent-kafka (no members stay)."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        deadline = time.monotonic() + 30
        while True:  # Apache Kafka creates __consumer_offsets on first use: NOT_COORDINATOR meanwhile
            try:
                c.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        c.close()


def committed(broker, group):
    d = json.loads(ok(broker, "group", "describe", group, "--output", "json"))
    return {(o["topic"], o["partition"]): o["committed_offset"] for o in d["offsets"]}


def test_group_reset_offsets(broker, topic_name):
    ok(broker, "topic", "create", topic_name, "--partitions", 2)
    ok(broker, "produce", topic_name, "--partition", 0, input="".join(f"a{i}\n" for i in range(10)))
    ok(broker, "produce", topic_name, "--partition", 1, input="".join(f"b{i}\n" for i in range(6)))
    group = f"g-{topic_name}"
    commit_offsets(broker, group, {(topic_name, 0): 4, (topic_name, 1): 5})

    # Dry run (the default): prints the plan, commits nothing.
    r = rill(broker, "group", "reset-offsets", group, "--topic", topic_name, "--to-earliest")
    assert r.returncode == 0, r
    assert "NEW-OFFSET" in r.stdout and "--execute" in r.stderr
    assert committed(broker, group) == {(topic_name, 0): 4, (topic_name, 1): 5}
    plan = json.loads(ok(broker, "group", "reset-offsets", group, "--topic", topic_name, "--to-latest", "-o", "json"))
    assert plan["executed"] is False
    assert [(o["partition"], o["current_offset"], o["new_offset"]) for o in plan["offsets"]] == [(0, 4, 10), (1, 5, 6)]
    assert committed(broker, group) == {(topic_name, 0): 4, (topic_name, 1): 5}

    ok(broker, "group", "reset-offsets", group, "--topic", topic_name, "--to-earliest", "--execute")
    assert committed(broker, group) == {(topic_name, 0): 0, (topic_name, 1): 0}
    ok(broker, "group", "reset-offsets", group, "--topic", f"{topic_name}:1", "--to-offset", 3, "--execute")
    assert committed(broker, group) == {(topic_name, 0): 0, (topic_name, 1): 3}
    ok(broker, "group", "reset-offsets", group, "--topic", topic_name, "--shift-by", 2, "--execute")
    assert committed(broker, group) == {(topic_name, 0): 2, (topic_name, 1): 5}
    # Shifting past the log end is clamped to it, as kafka-consumer-groups does.
    ok(broker, "group", "reset-offsets", group, "--all-topics", "--shift-by", 100, "--execute")
    assert committed(broker, group) == {(topic_name, 0): 10, (topic_name, 1): 6}
    ok(broker, "group", "reset-offsets", group, "--topic", topic_name, "--to-datetime", "2000-01-01T00:00:00Z",
       "--execute")
    assert committed(broker, group) == {(topic_name, 0): 0, (topic_name, 1): 0}
    ok(broker, "group", "reset-offsets", group, "--topic", topic_name, "--to-datetime", "2999-01-01T00:00:00.000+02:00",
       "--execute")
    assert committed(broker, group) == {(topic_name, 0): 10, (topic_name, 1): 6}
    r = rill(broker, "group", "reset-offsets", group, "--topic", topic_name, "--to-datetime", "yesterday")
    assert r.returncode == 2, r
    r = rill(broker, "group", "reset-offsets", group, "--topic", topic_name)  # no reset spec
    assert r.returncode == 2, r


def test_group_active_members_refused(broker, topic_name):
    from confluent_kafka import Consumer
    ok(broker, "topic", "create", topic_name, "--partitions", 2)
    ok(broker, "produce", topic_name, input="x\ny\n")
    group = f"g-{topic_name}"
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "client.id": "cli-test-consumer",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        c.subscribe([topic_name])
        deadline = time.monotonic() + 60
        while not c.assignment():
            assert time.monotonic() < deadline, "consumer got no assignment"
            c.poll(0.5)
        d = json.loads(ok(broker, "group", "describe", group, "--output", "json"))
        assert d["state"] == "Stable" and d["protocol_type"] == "consumer" and len(d["members"]) == 1
        member = d["members"][0]
        assert member["client_id"] == "cli-test-consumer"
        assert member["assignment"] == [{"topic": topic_name, "partitions": [0, 1]}]
        owners = {(o["topic"], o["partition"]): o["member_id"] for o in d["offsets"]}
        assert owners == {(topic_name, 0): member["member_id"], (topic_name, 1): member["member_id"]}
        assert "CONSUMER-ID" in ok(broker, "group", "describe", group)

        r = rill(broker, "group", "reset-offsets", group, "--topic", topic_name, "--to-earliest", "--execute")
        assert r.returncode == 1, r
        assert f"Assignments can only be reset if the group '{group}' is inactive, but the current state is Stable" \
            in r.stderr, r
        r = rill(broker, "group", "delete", group)
        assert r.returncode == 1 and "NON_EMPTY_GROUP" in r.stderr, r
    finally:
        c.close()


def test_group_delete_offsets_and_delete(broker, topic_name):
    other = topic_name + "-b"
    ok(broker, "topic", "create", topic_name, "--partitions", 1)
    ok(broker, "topic", "create", other, "--partitions", 1)
    group = f"g-{topic_name}"
    commit_offsets(broker, group, {(topic_name, 0): 0, (other, 0): 0})
    assert committed(broker, group) == {(topic_name, 0): 0, (other, 0): 0}

    out = ok(broker, "group", "delete-offsets", group, "--topic", topic_name)
    assert "Successful" in out
    assert committed(broker, group) == {(other, 0): 0}

    assert f"Deleted group {group}." in ok(broker, "group", "delete", group)
    deadline = time.monotonic() + 30
    while group in [g["group"] for g in json.loads(ok(broker, "group", "list", "-o", "json"))]:
        assert time.monotonic() < deadline, "group still listed after delete"
        time.sleep(0.5)
    r = rill(broker, "group", "describe", group)
    assert r.returncode == 1 and "GROUP_ID_NOT_FOUND" in r.stderr, r
    r = rill(broker, "group", "delete", group)
    assert r.returncode == 1 and "GROUP_ID_NOT_FOUND" in r.stderr, r


def test_command_config(broker, tmp_path):
    props = tmp_path / "client.properties"
    props.write_text(f"# Kafka client properties\nbootstrap.servers={broker.bootstrap}\nclient.id=cli-test\n"
                     "request.timeout.ms=20000\nsecurity.protocol=PLAINTEXT\n")
    r = run_env("cluster", "info", "--command-config", props, "--output", "json")
    assert r.returncode == 0, r
    assert json.loads(r.stdout)["brokers"][0]["port"] == broker.port
    # --bootstrap-server wins over the file.
    bad = tmp_path / "elsewhere.properties"
    bad.write_text("bootstrap.servers=127.0.0.1:1\n")
    r = run_env("cluster", "info", "--command-config", bad, "--bootstrap-server", broker.bootstrap)
    assert r.returncode == 0, r
    # SASL_SSL without a truststore or credentials: a usage error naming what is missing.
    ssl = tmp_path / "ssl.properties"
    ssl.write_text(f"bootstrap.servers={broker.bootstrap}\nsecurity.protocol=SASL_SSL\n")
    r = run_env("cluster", "info", "--command-config", ssl)
    assert r.returncode == 2 and "ssl.truststore.location" in r.stderr, r
    r = run_env("cluster", "info", "--command-config", tmp_path / "missing.properties")
    assert r.returncode == 2, r


def test_profiles(broker, tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[profile.dev]\nbootstrap_server = "{broker.bootstrap}"\nclient_id = "cli-test"\n\n'
                   '[profile.down]\nbootstrap_server = "127.0.0.1:1"\n')
    env = {"RILL_CONFIG": str(cfg)}
    r = run_env("cluster", "info", "--profile", "dev", "-o", "json", env=env)
    assert r.returncode == 0, r
    assert json.loads(r.stdout)["brokers"][0]["port"] == broker.port
    r = run_env("cluster", "info", env={**env, "RILL_PROFILE": "dev"})
    assert r.returncode == 0, r
    # Precedence: flag > env > profile.
    r = run_env("cluster", "info", "--profile", "down", env={**env, "RILL_BOOTSTRAP_SERVER": broker.bootstrap})
    assert r.returncode == 0, r
    r = run_env("cluster", "info", "--profile", "down", "--bootstrap-server", broker.bootstrap,
                env={**env, "RILL_BOOTSTRAP_SERVER": "127.0.0.1:1"})
    assert r.returncode == 0, r
    r = run_env("cluster", "info", "--profile", "down", env=env)
    assert r.returncode == 1 and "127.0.0.1:1" in r.stderr, r
    r = run_env("cluster", "info", "--profile", "nope", env=env)
    assert r.returncode == 2 and "nope" in r.stderr and "dev" in r.stderr, r


def test_cluster_health(broker):
    h = json.loads(ok(broker, "cluster", "health", "--output", "json"))
    assert h["healthy"] is True
    assert h["brokers"] and all(b["ok"] for b in h["brokers"])
    assert h["offline_partitions"] == []
    out = ok(broker, "cluster", "health")
    assert "partition leaders" in out and "FAIL" not in out


def test_connection_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refuses connections
        r = run_env("topic", "list", "--bootstrap-server", f"127.0.0.1:{port}")
        assert r.returncode == 1, r
        assert r.stderr.strip() == (f"rill: cannot connect to 127.0.0.1:{port}: connection refused (is the broker "
                                    "running? set --bootstrap-server or RILL_BOOTSTRAP_SERVER)"), r
        r = run_env("cluster", "health", env={"RILL_BOOTSTRAP_SERVER": f"127.0.0.1:{port}"})
        assert r.returncode == 1 and "connection refused" in r.stderr, r


def test_progress_only_on_a_tty(broker, topic_name):
    ok(broker, "topic", "create", topic_name, "--partitions", 1)
    r = rill(broker, "produce", topic_name, input="a\nb\n")
    assert r.returncode == 0 and r.stderr == f"Produced 2 records to {topic_name}.\n", r
    r = rill(broker, "consume", topic_name, "--offset", "earliest", "--exit-at-end")
    assert r.returncode == 0 and r.stdout == "a\nb\n" and r.stderr == "", r


def start_member(broker, group, topics, out_path, *extra):
    """A `rill consume --group` process writing '%t %p %o %v' lines to out_path."""
    return subprocess.Popen([rill_bin(), "consume", *topics, "--group", group, "--from", "earliest",
                             "--format", "%t %p %o %v\\n", "--bootstrap-server", broker.bootstrap, *map(str, extra)],
                            stdout=open(out_path, "w"), stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def lines_of(path):
    return [line.split(" ", 3) for line in open(path).read().splitlines()]


def stop(procs, timeout=30):
    """SIGINT (Ctrl-C) each member: it commits, leaves the group and exits 0."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise AssertionError(f"rill consume --group did not exit within {timeout}s of SIGINT")


def wait_for_group(broker, group, members, timeout=90, procs=()):
    """Until the group is Stable with `members` members, each with partitions assigned."""
    deadline = time.monotonic() + timeout
    while True:
        for p in procs:
            assert p.poll() is None, f"member exited {p.returncode}: {p.stderr.read()}"
        r = rill(broker, "group", "describe", group, "-o", "json")
        if r.returncode == 0:
            d = json.loads(r.stdout)
            if d["state"] == "Stable" and len(d["members"]) == members and all(m["assignment"] for m in d["members"]):
                return d
        assert time.monotonic() < deadline, f"group {group} not Stable with {members} members: {r.stdout}{r.stderr}"
        time.sleep(0.5)


def test_consume_group_splits_partitions_and_resumes(broker, topic_name, tmp_path):
    ok(broker, "topic", "create", topic_name, "--partitions", 4)
    group = f"g-{topic_name}"
    outs = [tmp_path / "member0.out", tmp_path / "member1.out"]
    procs = [start_member(broker, group, [topic_name], path) for path in outs]
    try:
        d = wait_for_group(broker, group, 2, procs=procs)
        assert d["protocol_type"] == "consumer" and d["protocol"] == "range"
        values = [f"v{i}" for i in range(100)]
        ok(broker, "produce", topic_name, input="".join(v + "\n" for v in values))
        deadline = time.monotonic() + 60
        while sum(len(lines_of(p)) for p in outs) < len(values):
            assert time.monotonic() < deadline, [lines_of(p) for p in outs]
            assert all(p.poll() is None for p in procs)
            time.sleep(0.2)
    finally:
        stop(procs)
    for p in procs:
        assert p.returncode == 0, p.stderr.read()
    seen = [lines_of(p) for p in outs]
    parts = [{int(r[1]) for r in s} for s in seen]
    # Each member read a disjoint, non-empty set of partitions; together every record once.
    assert parts[0] and parts[1] and not parts[0] & parts[1] and parts[0] | parts[1] == {0, 1, 2, 3}, parts
    assert sorted(r[3] for s in seen for r in s) == sorted(values)
    assert all(r[0] == topic_name for s in seen for r in s)

    # The members committed what they printed and left: every partition at its log end.
    d = json.loads(ok(broker, "group", "describe", group, "-o", "json"))
    assert d["members"] == [] and d["state"] == "Empty", d
    assert [(o["partition"], o["committed_offset"]) for o in d["offsets"]] == \
        [(o["partition"], o["log_end_offset"]) for o in d["offsets"]] and len(d["offsets"]) == 4, d
    assert sum(o["committed_offset"] for o in d["offsets"]) == len(values)
    assert "CURRENT-OFFSET" in ok(broker, "group", "describe", group)

    # A new run of the group resumes after the committed offsets: nothing new, then only the new.
    resume = ["consume", topic_name, "--group", group, "--from", "earliest", "--exit-at-end"]
    assert ok(broker, *resume, timeout=90) == ""
    ok(broker, "produce", topic_name, input="w1\nw2\nw3\n")
    assert sorted(ok(broker, *resume, timeout=90).splitlines()) == ["w1", "w2", "w3"]
    assert ok(broker, *resume, "--output", "json", timeout=90) == ""


def test_consume_group_num_commits_only_printed(broker, topic_name):
    other = topic_name + "-b"
    ok(broker, "topic", "create", topic_name, "--partitions", 2)
    ok(broker, "topic", "create", other, "--partitions", 1)
    ok(broker, "produce", topic_name, input="".join(f"a{i}\n" for i in range(10)))
    ok(broker, "produce", other, input="b0\nb1\n")
    group = f"g-{topic_name}"
    # Several topics, roundrobin, JSON output; --num stops mid-batch and commits exactly that far.
    out = ok(broker, "consume", topic_name, other, "--group", group, "--from", "earliest", "--num", 5,
             "--assignor", "roundrobin", "--output", "json", timeout=90)
    recs = [json.loads(line) for line in out.splitlines()]
    assert len(recs) == 5 and all(set(r) >= {"topic", "partition", "offset", "key", "value"} for r in recs)
    d = json.loads(ok(broker, "group", "describe", group, "-o", "json"))
    assert d["members"] == [] and sum(o["committed_offset"] for o in d["offsets"]) == 5, d
    rest = ok(broker, "consume", topic_name, other, "--group", group, "--exit-at-end", "--format", "%v\\n",
              timeout=90).splitlines()
    assert sorted(rest + [r["value"] for r in recs]) == sorted([f"a{i}" for i in range(10)] + ["b0", "b1"])
    # --commit none reads from the committed offsets but leaves them alone.
    ok(broker, "produce", other, input="b2\n")
    none = ["consume", topic_name, other, "--group", group, "--exit-at-end", "--commit", "none"]
    assert ok(broker, *none, timeout=90) == "b2\n"
    assert ok(broker, *none, timeout=90) == "b2\n"


def test_consume_group_usage_errors(broker, topic_name):
    ok(broker, "topic", "create", topic_name, "--partitions", 1)
    r = rill(broker, "consume", topic_name, "--group", "g", "--offset", "5")
    assert r.returncode == 2 and "earliest or latest" in r.stderr, r
    r = rill(broker, "consume", topic_name, "--group", "g", "--partition", "0")
    assert r.returncode == 2, r
    r = rill(broker, "consume", topic_name, "--commit", "none")  # --commit only means something with --group
    assert r.returncode == 2 and "--group" in r.stderr, r
    r = rill(broker, "consume", topic_name + "-missing", "--group", "g")
    assert r.returncode == 1 and "UNKNOWN_TOPIC_OR_PARTITION" in r.stderr, r


def test_consume_group_shares_with_librdkafka(broker, topic_name, tmp_path):
    """A `rill consume --group` member and a librdkafka consumer in one group: the ConsumerProtocol
    encodings and the range assignment agree whichever of the two leads."""
    from confluent_kafka import Consumer
    ok(broker, "topic", "create", topic_name, "--partitions", 4)
    group = f"g-{topic_name}"
    out = tmp_path / "rill.out"
    member = start_member(broker, group, [topic_name], out)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "partition.assignment.strategy": "range", "enable.auto.commit": False})
    try:
        c.subscribe([topic_name])
        deadline = time.monotonic() + 90
        while len(c.assignment()) != 2 or len(wait_for_group(broker, group, 2, procs=[member])["members"]) != 2:
            assert time.monotonic() < deadline, f"no 2-2 split: {c.assignment()}"
            c.poll(0.2)
        theirs = {tp.partition for tp in c.assignment()}
        values = [f"v{i}" for i in range(40)]
        ok(broker, "produce", topic_name, input="".join(v + "\n" for v in values))
        got = []
        while len(got) + len(lines_of(out)) < len(values):
            assert time.monotonic() < deadline, (got, lines_of(out))
            m = c.poll(0.2)
            if m is not None and not m.error():
                got.append((m.partition(), m.value().decode()))
        mine = {int(r[1]) for r in lines_of(out)}
        assert mine and not mine & theirs and mine | theirs == {0, 1, 2, 3}, (mine, theirs)
        assert {p for p, _ in got} <= theirs
        assert sorted([v for _, v in got] + [r[3] for r in lines_of(out)]) == sorted(values)
    finally:
        c.close()
        stop([member])
    assert member.returncode == 0, member.stderr.read()
