"""The admin HTTP listener against a live broker: health, /metrics values moving with real
client traffic, /v1 JSON agreeing with the Kafka API, connection log lines, log rate limits."""
import re
import socket
import struct
import time
import uuid

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition

import kproto
from helpers import admin, create_topic
from metricskit import Scrape, get_json, http_get

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def produce(b, topic, records, partition=0, **conf):
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 5, **conf})
    for k, v in records:
        p.produce(topic, key=k, value=v, partition=partition)
    assert p.flush(30) == 0


def wait_for(cond, timeout=15, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = cond()
        if r:
            return r
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_health_endpoints_and_content_types(broker):
    status, ready = get_json(broker, "/health/ready")
    assert status == 200 and ready["ready"] is True
    assert {c["name"] for c in ready["checks"]} >= {"storage", "metadata", "groups", "partitions", "listeners"}
    assert all(c["ok"] for c in ready["checks"])
    assert get_json(broker, "/health/live") == (200, {"status": "live"})
    s = Scrape(broker)
    assert s.value("rill_broker_ready") == 1.0
    assert s.value("rill_broker_uptime_seconds") > 0
    # jemalloc's counters: live bytes within active pages within resident memory.
    allocated, active = s.value("rill_memory_allocated_bytes"), s.value("rill_memory_active_bytes")
    assert 0 < allocated <= active <= s.value("rill_memory_resident_bytes")
    assert http_get(broker, "/no/such/thing")[0] == 404
    status, ctype, body = http_get(broker, "/")
    assert status == 200 and ctype.startswith("text/html") and b"/console/app.js" in body


def test_admin_listener_is_read_only(broker):
    import urllib.request
    import urllib.error
    from metricskit import admin_url
    req = urllib.request.Request(admin_url(broker) + "/metrics", data=b"x", method="POST")
    try:
        urllib.request.urlopen(req, timeout=10)
        raise AssertionError("POST was accepted")
    except urllib.error.HTTPError as e:
        assert e.code == 405


def test_produce_and_fetch_move_topic_and_log_metrics(broker, topic_name):
    create_topic(broker, topic_name, partitions=2)
    before = Scrape(broker)
    produce(broker, topic_name, [(b"k%d" % i, b"v" * (10 + i)) for i in range(30)], partition=0)
    produce(broker, topic_name, [(None, b"w" * 100) for _ in range(12)], partition=1)
    after = Scrape(broker)

    assert after.value("kafka_server_brokertopicmetrics_messagesin_total", topic=topic_name) == 42
    # A new topic's log holds exactly the bytes that were appended to it.
    size = sum(after.value("kafka_log_log_size", topic=topic_name, partition=p) for p in (0, 1))
    value_bytes = sum(10 + i for i in range(30)) + 12 * 100
    assert size > value_bytes and after.value("kafka_server_brokertopicmetrics_bytesin_total", topic=topic_name) == size
    # Log end offsets agree with the Kafka API's high watermarks.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "mon-watermarks"})
    try:
        for p, n in ((0, 30), (1, 12)):
            lo, hi = c.get_watermark_offsets(TopicPartition(topic_name, p), timeout=10)
            assert (lo, hi) == (0, n)
            assert after.value("kafka_log_log_logendoffset", topic=topic_name, partition=p) == hi
            assert after.value("kafka_log_log_logstartoffset", topic=topic_name, partition=p) == lo
            assert after.value("kafka_log_log_numlogsegments", topic=topic_name, partition=p) == 1
    finally:
        c.close()
    # Request metrics: every produce counted and timed, fsyncs done for acks=all.
    reqs = after.value("kafka_network_requestmetrics_requests_total", request="Produce") - \
        before.value("kafka_network_requestmetrics_requests_total", request="Produce")
    assert reqs >= 2
    for h in ("requestqueuetime", "localtime", "remotetime", "totaltime"):
        name = f"kafka_network_requestmetrics_{h}_seconds_count"
        assert after.value(name, request="Produce") - before.value(name, request="Produce") == reqs, h
    assert after.value("kafka_network_requestmetrics_totaltime_seconds_sum", request="Produce") > \
        before.value("kafka_network_requestmetrics_totaltime_seconds_sum", request="Produce")
    assert after.value("kafka_log_logflushstats_logflush_seconds_count") > \
        before.value("kafka_log_logflushstats_logflush_seconds_count")
    assert after.value("kafka_log_logflushstats_logflush_seconds_bucket", le="+Inf") == \
        after.value("kafka_log_logflushstats_logflush_seconds_count")

    # Fetch: consuming everything once sends every byte and record once.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "mon-fetch", "enable.partition.eof": True,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic_name, p, 0) for p in (0, 1)])
        got, eof = 0, set()
        deadline = time.monotonic() + 30
        while eof != {0, 1} and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                eof.add(m.partition())
            else:
                got += 1
        assert got == 42
    finally:
        c.close()
    fetched = Scrape(broker)
    assert fetched.value("rill_server_brokertopicmetrics_messagesout_total", topic=topic_name) == 42
    assert fetched.value("kafka_server_brokertopicmetrics_bytesout_total", topic=topic_name) == size
    assert fetched.value("kafka_network_requestmetrics_requests_total", request="Fetch") > \
        after.value("kafka_network_requestmetrics_requests_total", request="Fetch")

    # /v1 agrees with /metrics and the Kafka API.
    status, t = get_json(broker, f"/v1/topics/{topic_name}")
    assert status == 200 and t["partitions"] == 2 and t["messages"] == 42 and t["size_bytes"] == size
    assert [(p["partition"], p["log_end_offset"]) for p in t["partition_details"]] == [(0, 30), (1, 12)]
    assert t["bytes_in"] == size and t["messages_in"] == 42


def test_error_codes_are_counted_per_api(broker, topic_name):
    create_topic(broker, topic_name, partitions=1)
    name, err = "kafka_network_requestmetrics_errors_total", "UNKNOWN_TOPIC_OR_PARTITION"
    before = Scrape(broker).value(name, request="Produce", error=err)
    s = kproto.connect(broker)
    try:
        _, apis = kproto.api_versions(s)
        code, _ = kproto.produce(s, apis, topic_name, 7, kproto.record_batch([(None, b"x")]))
        assert code == 3
    finally:
        s.close()
    assert Scrape(broker).value(name, request="Produce", error=err) == before + 1


def test_delete_records_moves_log_start_offset(broker, topic_name):
    create_topic(broker, topic_name, partitions=1)
    produce(broker, topic_name, [(None, b"r%d" % i) for i in range(20)])
    fs = admin(broker).delete_records([TopicPartition(topic_name, 0, 15)])
    fs[TopicPartition(topic_name, 0, 15)].result(timeout=30)
    s = Scrape(broker)
    assert s.value("kafka_log_log_logstartoffset", topic=topic_name, partition=0) == 15
    assert s.value("kafka_log_log_logendoffset", topic=topic_name, partition=0) == 20
    _, t = get_json(broker, f"/v1/topics/{topic_name}")
    assert t["messages"] == 5


def test_connections_are_counted_and_logged_with_client_id(fresh_broker, monkeypatch):
    # A broker of its own: on the shared one, other tests' clients connect and disconnect.
    # It logs JSON (structured logs), one object a line.
    monkeypatch.setenv("RILL_LOG_FORMAT", "json")
    broker = fresh_broker()

    def scrape(name):
        return Scrape(broker).value(name, listener="PLAINTEXT")

    # The start-up probe (a TCP connect) has come and gone.
    wait_for(lambda: scrape("kafka_server_socketservermetrics_connection_count") == 0, what="probe closed")
    created = scrape("kafka_server_socketservermetrics_connection_creation_total")
    log_start = broker.log_size()
    socks = [kproto.connect(broker) for _ in range(3)]
    client_id = f"mon-conn-{uuid.uuid4().hex[:8]}"
    try:
        for s in socks:
            s.sendall(kproto.request(kproto.API_API_VERSIONS, 0, 1, b"", False, client_id=client_id))
            kproto.recv_frame(s)
        assert scrape("kafka_server_socketservermetrics_connection_count") == 3
        assert scrape("kafka_server_socketservermetrics_connection_creation_total") == created + 3
    finally:
        for s in socks:
            s.close()
    wait_for(lambda: scrape("kafka_server_socketservermetrics_connection_count") == 0, what="connections closed")
    assert scrape("kafka_server_socketservermetrics_connection_creation_total") == created + 3
    def events(message):
        import json
        out = []
        for ln in broker.log_tail(since=log_start, max_lines=5000).splitlines():
            if ln.startswith("{"):
                e = json.loads(ln)
                if e["fields"].get("message") == message:
                    out.append(e["fields"])
        return out

    closed = wait_for(lambda: [e for e in events("connection closed") if e.get("client_id") == client_id],
                      what="close log lines")
    assert len(closed) == 3
    for e in closed:
        assert e["peer"].startswith("127.0.0.1:") and e["listener"] == "PLAINTEXT"
        assert e["principal"] == "User:ANONYMOUS" and e["reason"] == "peer closed"
    assert sorted(e["peer"] for e in events("connection opened")) == sorted(e["peer"] for e in closed)


def test_bad_input_does_not_flood_the_log(broker):
    start = broker.log_size()
    t0 = time.monotonic()
    for _ in range(300):
        with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as s:
            s.sendall(struct.pack(">i", -5))
            assert kproto.closed_by_peer(s)
    elapsed = time.monotonic() - t0
    time.sleep(1.1)
    # A later event reports how many were dropped.
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as s:
        s.sendall(struct.pack(">i", -5))
        kproto.closed_by_peer(s)
    lines = [ln for ln in ANSI.sub("", broker.log_tail(since=start, max_lines=100000)).splitlines()
             if "negative frame size" in ln]
    assert lines, "the first bad frames are logged"
    # 10 lines a second get through at most (one window more for the boundaries).
    assert len(lines) <= 10 * (int(elapsed) + 3), (len(lines), elapsed)
    dropped = sum(int(m.group(1)) for ln in lines for m in [re.search(r"suppressed=(\d+)", ln)] if m)
    assert dropped + len(lines) >= 300 * 0.9 and dropped > 0
    status, _ = get_json(broker, "/health/ready")
    assert status == 200


def test_fetch_purgatory_counts_waiting_long_polls(broker, topic_name):
    create_topic(broker, topic_name, partitions=1)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "mon-purgatory", "fetch.wait.max.ms": 3000,
                  "auto.offset.reset": "latest", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic_name, 0, 0)])
        deadline = time.monotonic() + 20
        seen = 0
        while time.monotonic() < deadline and not seen:
            c.poll(0.2)
            seen = Scrape(broker).value("kafka_server_delayedoperationpurgatory_purgatorysize",
                                        delayedOperation="Fetch")
        assert seen >= 1
    finally:
        c.close()


def test_group_lag_matches_committed_offsets(broker, topic_name):
    create_topic(broker, topic_name, partitions=2)
    produce(broker, topic_name, [(None, b"a") for _ in range(10)], partition=0)
    produce(broker, topic_name, [(None, b"b") for _ in range(7)], partition=1)
    group = f"mon-lag-{uuid.uuid4().hex[:8]}"
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    try:
        c.subscribe([topic_name])
        wait_for(lambda: c.poll(0.2) is not None and c.assignment(), what="assignment")
        c.commit(offsets=[TopicPartition(topic_name, 0, 4), TopicPartition(topic_name, 1, 7)], asynchronous=False)
        s = Scrape(broker)
        assert s.value("kafka_consumergroup_current_offset", consumergroup=group, topic=topic_name, partition=0) == 4
        assert s.value("kafka_consumergroup_lag", consumergroup=group, topic=topic_name, partition=0) == 6
        assert s.value("kafka_consumergroup_lag", consumergroup=group, topic=topic_name, partition=1) == 0
        assert s.value("kafka_consumergroup_lag_sum", consumergroup=group) == 6
        assert s.value("rill_group_members", group=group, state="Stable") == 1
        assert s.value("rill_group_rebalances_total", group=group, type="classic") >= 1
        assert s.value("kafka_coordinator_group_groupmetadatamanager_numgroups", state="Stable") >= 1

        # The same numbers from /v1 and from the Kafka API.
        committed = admin(broker).list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group] \
            .result(timeout=30).topic_partitions
        by_kafka = {(tp.topic, tp.partition): tp.offset for tp in committed}
        status, g = get_json(broker, f"/v1/groups/{group}")
        assert status == 200 and g["state"] == "Stable" and len(g["members"]) == 1 and g["lag"] == 6
        assert {(o["topic"], o["partition"]): o["committed_offset"] for o in g["offsets"]} == by_kafka
        _, groups = get_json(broker, "/v1/groups")
        assert [x["lag"] for x in groups if x["group"] == group] == [6]

        # More records: lag grows without any commit.
        produce(broker, topic_name, [(None, b"c") for _ in range(5)], partition=1)
        assert Scrape(broker).value("kafka_consumergroup_lag", consumergroup=group, topic=topic_name, partition=1) == 5
    finally:
        c.close()


def test_message_browser_shows_newest_records(broker, topic_name):
    create_topic(broker, topic_name, partitions=1)
    records = [(b"key-%d" % i, b"value-%d" % i) for i in range(30)]
    # Confluent wire format: magic 0, schema id 42 (big-endian), then the Avro payload.
    records.append((None, b"\x00" + struct.pack(">i", 42) + b"\x02\x06abc"))
    produce(broker, topic_name, records)
    status, r = get_json(broker, f"/v1/topics/{topic_name}/partitions/0/records?limit=5")
    assert status == 200 and r["log_end_offset"] == 31
    assert [m["offset"] for m in r["records"]] == [26, 27, 28, 29, 30]
    assert [m["value"]["text"] for m in r["records"][:4]] == ["value-26", "value-27", "value-28", "value-29"]
    assert r["records"][0]["key"]["hex"] == b"key-26".hex()
    last = r["records"][-1]
    assert last["key"] is None and last["value"]["schema_id"] == 42
    assert get_json(broker, f"/v1/topics/{topic_name}/partitions/9/records")[0] == 404
    assert get_json(broker, "/v1/topics/no-such-topic-xyz")[0] == 404


def test_cluster_status_agrees_with_metadata(broker):
    md = admin(broker).list_topics(timeout=10)
    status, c = get_json(broker, "/v1/cluster")
    assert status == 200 and c["ready"] is True
    assert c["cluster_id"] == md.cluster_id and c["node_id"] == md.controller_id
    assert [b["node_id"] for b in c["brokers"]] == sorted(md.brokers)
    # Topics may be created concurrently by other tests: compare a consistent pair.
    _, topics = get_json(broker, "/v1/topics")
    assert c["topics"] <= len(topics) + 5
    assert {t["name"] for t in topics} >= {n for n in md.topics}
    for t in topics:
        if t["name"] in md.topics:
            assert t["partitions"] == len(md.topics[t["name"]].partitions)


def test_cluster_health_reads_the_admin_listener(broker):
    import json
    import subprocess
    from broker import free_port, rill_bin
    from metricskit import admin_url
    admin_addr = admin_url(broker).split("//", 1)[1]

    def health(*extra):
        return subprocess.run([rill_bin(), "cluster", "health", "--bootstrap-server", broker.bootstrap, *extra],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)

    r = health("--admin", admin_addr, "--output", "json")
    assert r.returncode == 0, r.stderr
    h = json.loads(r.stdout)
    assert h["healthy"] is True and [x["ready"] for x in h["readiness"]] == [True]
    _, ready = get_json(broker, "/health/ready")
    assert {c["name"] for c in h["readiness"][0]["checks"]} == {c["name"] for c in ready["checks"]}
    r = health("--admin", admin_addr)
    assert r.returncode == 0 and f"ready ({admin_addr})" in r.stdout and "FAIL" not in r.stdout
    # An admin listener that does not answer makes the cluster unhealthy.
    dead = f"127.0.0.1:{free_port()}"
    r = health("--admin", admin_addr, "--admin", dead)
    assert r.returncode == 1 and "1 broker(s) not ready" in r.stderr, (r.stdout, r.stderr)
    assert f"ready ({dead})" in r.stdout and "FAIL" in r.stdout


@pytest.mark.slow
def test_ready_only_after_recovery(fresh_broker):
    """After kill -9 the admin listener answers at once: live, but not ready while partition
    logs recover; ready once the Kafka listener serves."""
    import threading
    b = fresh_broker()
    a = admin(b)
    from confluent_kafka.admin import NewTopic
    # Enough partitions that recovery after a crash takes a noticeable moment.
    names = [f"recover-{i}" for i in range(20)]
    for f in a.create_topics([NewTopic(n, num_partitions=100, replication_factor=1) for n in names],
                             operation_timeout=60, request_timeout=60).values():
        f.result(timeout=120)
    produce(b, names[0], [(None, b"x") for _ in range(10)])
    b.kill9()
    seen = []
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            try:
                live = http_get(b, "/health/live", timeout=2)[0]
                status, ctype, body = http_get(b, "/health/ready", timeout=2)
                seen.append((live, status, body))
            except OSError:
                seen.append((None, None, None))
            time.sleep(0.005)

    t = threading.Thread(target=poll)
    t.start()
    try:
        b.restart()
        wait_for(lambda: seen and seen[-1][1] == 200, what="ready after restart")
    finally:
        stop.set()
        t.join()
    import json
    answered = [(live, status, json.loads(body)) for live, status, body in seen if status is not None]
    recovering = [r for live, status, r in answered if status == 503]
    assert recovering, "no 503 seen while recovering 2,000 partitions"
    assert all(live == 200 for live, _, _ in answered), "live answers 200 throughout"
    assert any(c["name"] == "storage" and not c["ok"] for c in recovering[0]["checks"])
    assert answered[-1][2]["ready"] is True
    # Once ready, it stays ready.
    first_ready = next(i for i, (_, status, _) in enumerate(answered) if status == 200)
    assert all(status == 200 for _, status, _ in answered[first_ready:])
