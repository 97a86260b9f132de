#!/usr/bin/env python3
"""3-node cluster benchmark: Rill cluster mode vs Apache Kafka 4.1.1 KRaft, replication factor 3.

    benches/cluster.py [--systems rill,kafka,kafka-flush1] [--smoke] [--out FILE]
                       [--workloads sync,throughput,latency,eventbus,recovery,idle] [--repeat N]
                       [--throughput-partitions 6,100] [--throughput-scale N] [--latency-partitions 6]
                       [--partitions 3] [--idle-partitions 1000] [--idle-seconds 30]
                       [--settle-seconds 60] [--idle-rate 500] [--recovery-mb 10000]
                       [--no-load] [--max-seconds SEC]

Clusters (fresh data dirs in /tmp, free loopback ports, all three nodes on this machine):
  rill          3 x `rill broker` ($RILL_BIN, else target/release/rill) with node.id and
                controller.quorum.voters (tests/support/cluster.py), production Raft timings
                (heartbeat 500 ms, election timeout 2 s) and 50 __consumer_offsets partitions.
  kafka         3 x Kafka 4.1.1 combined broker+controller nodes from the Maven jars
                (tests/support/apache-kafka.sh; static controller.quorum.voters, one cluster id),
                default flush policy (acks=all means all in-sync replicas have the record in
                memory; no fsync on the produce path).
  kafka-flush1  the same Kafka cluster, topics with flush.messages=1 (every append is fsynced on
                each replica before it is acknowledged).

Workloads (--workloads; default all of them, --smoke: sync,idle), per system, replication factor 3:
  throughput  (benches/loadgen-rs, the Rust client of benches/run.py, built by benches/run.sh)
              1,000,000 x 100 B and 200,000 x 1 KiB produced as fast as possible (linger 5 ms),
              then read back by a fresh consumer, on a topic with each of --throughput-partitions
              partitions, acks=1 and acks=all (kafka-flush1: acks=all), --repeat times: records/s,
              broker CPU s per GB (3 nodes) and the nodes' peak RSS (VmHWM, reset before each run).
              The consume phase reads the whole backlog the produce phase left (workload (c) of
              issue 7). Each topic is deleted after its phases, as the OpenMessaging Benchmark
              does, so a phase's peak RSS is its own and not that of every earlier topic.
  latency     loadgen-rs `latency`: 5,000 x 100 B/s for 30 s to --latency-partitions partitions,
              acks=1 and all; produce and end-to-end p50/p99/p99.9/max from the intended send time
  eventbus    the event-bus client profile (benches/groups.py: 104-204 B Avro-framed records,
              batch.size 1024, linger 5 ms, acks=all, a consumer committing after every record)
  recovery    --recovery-mb of 1 KiB records (acks=1) to a 6-partition topic, then kill -9 of all
              three nodes at once and a restart of all three: seconds to every node's listener,
              and to the first acks=all produce + fetch (benches/workloads.py probe)
  sync, idle  below.
The `sync` workload: on topics with --partitions partitions, with the
confluent-kafka client (benches/loadgen.py, one process per phase; same settings for all):
  produce 100 B / 1 KiB  N records as fast as possible, acks=all: records/s, MB/s and the
                         per-record delivery latency (produce() call to acknowledgement,
                         librdkafka's Message.latency()) p50/p99
  sync acks=all          records one at a time (produce() + flush()): latency when not loaded
  sync acks=1 (event bus) the same with acks=1, message.timeout.ms=100 (the librdkafka
                         event-bus profile of /work/shared/CLIENT-PROFILES.md)
Broker CPU per phase is utime+stime summed over the three node processes (/proc/<pid>/stat).
Idle cost (`idle`): after the load phases, --idle-partitions partitions (10 topics, RF 3) are created and
waited for until every one has a leader; after --settle-seconds (Kafka keeps working for tens of
seconds after creating them) CPU, RSS and threads of the three processes are sampled over
--idle-seconds of idleness (also once before creating them, as a baseline); then under a keyed
load of --idle-rate 100 B records/s (acks=all) spread over all of them for --idle-seconds
(loadgen-rs `latency`): CPU, peak RSS, latency. WARN/ERROR lines of
the node logs are counted into the JSON (the data dirs are deleted at the end). Kafka's
__consumer_offsets (50 partitions, created lazily) is created first so that both clusters hold
the same internal partitions.

Everything is bounded: per-phase client timeouts, and --max-seconds for the whole run (SIGALRM);
every process started is stopped and every data dir deleted on exit, error, timeout or SIGTERM.
Results: table on stdout, JSON in benches/results/<date>-cluster[-smoke].json (or --out), and
beside it the tables as Markdown (.md) and the throughput runs as an SVG bar chart (.svg);
--render JSON writes those two again from a JSON.
"""
import argparse
import base64
import datetime
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "support"))
from benchlib import (broker_cpu_s, create_topics, fsync_probe, git_info, loadavg, machine,  # noqa: E402
                      machine_busy_s, proc_status_kb, reset_hwm, result_path, run_loadgen, rust_loadgen,
                      svg_bars, wait_leaders)
from broker import Broker, free_port  # noqa: E402  (tests/support/broker.py)

# tests/support/cluster.py, loaded by path: this file's own name shadows it on sys.path.
_spec = importlib.util.spec_from_file_location("rill_test_cluster", os.path.join(REPO, "tests", "support", "cluster.py"))
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
RillCluster = _mod.RillCluster

LOADGEN = [sys.executable, os.path.join(HERE, "loadgen.py")]
# Production defaults (tests/support/cluster.py shortens them for fault tests).
RILL_DEFAULTS = {"rill.raft.heartbeat.interval.ms": "500", "rill.raft.election.timeout.ms": "2000",
                 "offsets.topic.num.partitions": "50"}
# Replicated like the Rill cluster: RF 3 by default, an acks=all write needs 2 of 3 in sync.
KAFKA_CLUSTER = {"default.replication.factor": "3", "min.insync.replicas": "2",
                 "offsets.topic.replication.factor": "3", "transaction.state.log.replication.factor": "3",
                 "transaction.state.log.min.isr": "2", "share.coordinator.state.topic.replication.factor": "3",
                 "share.coordinator.state.topic.min.isr": "2"}
SYSTEMS = {"rill": ("rill", {}), "kafka": ("kafka", {}), "kafka-flush1": ("kafka", {"flush.messages": "1"})}

WORKLOADS = ["sync", "throughput", "latency", "eventbus", "recovery", "idle"]
FULL = {"throughput": [(500_000, 100), (100_000, 1024)], "sync": 2_000, "warmup": 200_000,
        "rs_throughput": [(1_000_000, 100), (200_000, 1024)], "rate": 5_000, "latency_seconds": 30.0,
        "eventbus_records": 100_000, "eventbus_commits": 3_000,
        "idle_partitions": 1000, "idle_seconds": 30.0, "baseline_seconds": 15.0, "settle_seconds": 60.0,
        "idle_rate": 500, "recovery_mb": 10_000, "timeout": 180.0, "max_seconds": 3600}
SMOKE = {"throughput": [(20_000, 100), (4_000, 1024)], "sync": 200, "warmup": 5_000,
         "rs_throughput": [(20_000, 100), (4_000, 1024)], "rate": 1_000, "latency_seconds": 5.0,
         "eventbus_records": 2_000, "eventbus_commits": 100,
         "idle_partitions": 100, "idle_seconds": 5.0, "baseline_seconds": 3.0, "settle_seconds": 2.0,
         "idle_rate": 100, "recovery_mb": 50, "timeout": 30.0, "max_seconds": 110}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class KafkaCluster:
    """n Apache Kafka combined broker+controller nodes (KRaft, static voters) on loopback, each
    started by tests/support/apache-kafka.sh in its own dir, formatted with one cluster id."""

    def __init__(self, n=3, extra=None):
        self.cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        cports = [free_port() for _ in range(n)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{p}" for i, p in enumerate(cports))
        self.nodes = {}
        for i in range(n):
            wd = tempfile.mkdtemp(prefix=f"kafka-node{i + 1}-")
            with open(os.path.join(wd, "controller.port"), "w") as f:  # apache-kafka.sh reuses it
                f.write(f"{cports[i]}\n")
            cfg = {"node.id": str(i + 1), "controller.quorum.voters": voters, **KAFKA_CLUSTER, **(extra or {})}
            self.nodes[i + 1] = Broker("kafka", free_port(), wd, True, cfg)

    @property
    def bootstrap(self):
        return ",".join(b.bootstrap for b in self.nodes.values())

    def start(self, timeout=120):
        # In parallel: a node's broker listener opens only once the controller quorum has a leader.
        os.environ["KAFKA_CLUSTER_ID"] = self.cluster_id
        errors = []

        def launch(b):
            try:
                b._launch(timeout)
            except Exception as e:  # noqa: BLE001
                errors.append(e)
        self._threads = ts = [threading.Thread(target=launch, args=(b,), daemon=True) for b in self.nodes.values()]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout + 90)
        if errors:
            raise RuntimeError(f"kafka cluster start failed: {errors[0]}\n{self.logs()}")
        from confluent_kafka.admin import AdminClient
        a = AdminClient({"bootstrap.servers": self.bootstrap})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if len(a.list_topics(timeout=5).brokers) == len(self.nodes):
                    return self
            except Exception:  # noqa: BLE001
                pass
            time.sleep(0.2)
        raise RuntimeError(f"kafka cluster: not all brokers registered within {timeout}s\n{self.logs()}")

    def logs(self, lines=30):
        return "\n".join(f"----- node {i} ({b.log_path}) -----\n{b.log_tail(max_lines=lines)}"
                         for i, b in self.nodes.items())

    def cleanup(self):
        for t in getattr(self, "_threads", []):  # a start still under way writes its pid file first
            t.join(200)
        # In parallel: stopped one by one, the last node cannot shut down in a controlled way
        # (no controller quorum left) and waits for apache-kafka.sh's 30 s SIGKILL fallback.
        def stop(b):
            try:
                b.cleanup()
            except Exception as e:  # noqa: BLE001
                log(f"cleanup of {b.workdir}: {e}")
        ts = [threading.Thread(target=stop, args=(b,)) for b in self.nodes.values()]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)


class Nodes:
    """CPU and memory of a cluster's node processes."""

    def __init__(self, cluster):
        self.cluster = cluster

    def pids(self):
        return {i: b.pid() for i, b in self.cluster.nodes.items()}

    def check_alive(self):
        dead = [i for i, b in self.cluster.nodes.items() if not b.alive()]
        if dead:
            raise RuntimeError(f"node(s) {dead} died:\n{self.cluster.logs()}")

    def cpu(self):
        return {i: broker_cpu_s(p) for i, p in self.pids().items()}

    def rss_mb(self):
        return {i: round(proc_status_kb(p, "VmRSS") / 1024, 1) for i, p in self.pids().items()}

    def reset_peak_rss(self):
        for p in self.pids().values():
            reset_hwm(p)

    def peak_rss_mb(self):
        return {i: round(proc_status_kb(p, "VmHWM") / 1024, 1) for i, p in self.pids().items()}


def loadgen_rs():
    """The Rust load generator's command (benchlib.rust_loadgen); the workloads that need it fail
    without it."""
    path = rust_loadgen()
    if path is None:
        raise RuntimeError("benches/loadgen-rs is not built (benches/run.sh builds it)")
    return [path]


def measured(nodes, fn):
    """Run fn(); return its result plus the nodes' CPU seconds (sum and per node) meanwhile and
    the CPU used by everything else on the machine (noise indicator)."""
    c0, m0, t0 = nodes.cpu(), machine_busy_s(), time.monotonic()
    res = fn()
    c1, m1, t1 = nodes.cpu(), machine_busy_s(), time.monotonic()
    per = {i: round(c1[i] - c0[i], 2) for i in c0}
    total = sum(c1[i] - c0[i] for i in c0)
    res = dict(res)
    res["broker_cpu_s"] = round(total, 2)
    res["broker_cpu_s_per_node"] = per
    res["wall_s"] = round(t1 - t0, 2)
    res["other_cpu_s"] = round(max(0.0, (m1 - m0) - total - res.get("client_cpu_s", 0.0)), 2)
    res["broker_rss_mb"] = nodes.rss_mb()
    nodes.check_alive()
    return res


def load_phases(system, cluster, nodes, p, timeout, partitions, rows):
    topic_cfg = SYSTEMS[system][1]
    tag = system.replace("-", "")
    boot = cluster.bootstrap

    def phase(name, topic, count, size, acks, extra):
        la = loadavg()
        log(f"   {name}: {count} x {size} B acks={acks} ...")
        res = measured(nodes, lambda: run_loadgen(LOADGEN, "produce", boot, topic, count, size, acks, timeout, extra))
        res.update(system=system, phase=name, acks=acks, size=size, target_count=count, partitions=partitions,
                   loadavg_before=la)
        lat = res.get("latency_ms") or {}
        log(f"     {res['records_per_s']:,.0f} rec/s {res['mb_per_s']:.1f} MB/s p50 {lat.get('p50')} ms "
            f"p99 {lat.get('p99')} ms, broker cpu {res['broker_cpu_s']} s {res['broker_cpu_s_per_node']}, "
            f"errors {res.get('errors')}{' TIMED OUT' if res.get('timed_out') else ''}")
        rows.append(res)

    for count, size in p["throughput"]:
        topic = f"bench-{tag}-{size}b"
        create_topics(boot, [topic], partitions, 3, topic_cfg, timeout=60)
        phase(f"produce {size} B", topic, count, size, "all", ["--latency"])
    topic = f"bench-{tag}-sync"
    create_topics(boot, [topic], partitions, 3, topic_cfg, timeout=60)
    phase("sync acks=all", topic, p["sync"], 100, "all", ["--sync"])
    phase("sync acks=1 (event bus)", topic, p["sync"], 100, "1", ["--sync", "--message-timeout-ms", "100"])


def acks_of(system):
    # Kafka with flush.messages=1 only matters where the acknowledgement waits for the replicas.
    return ["all"] if system == "kafka-flush1" else ["1", "all"]


def rs_throughput(system, cluster, nodes, p, o, rows):
    """Max throughput with the Rust client (as benches/run.py on one node): produce N records as
    fast as possible, then a fresh consumer reads them back, per (size, partitions, acks, repeat)."""
    client = loadgen_rs()
    topic_cfg = SYSTEMS[system][1]
    tag = system.replace("-", "")
    for rep in range(o.repeat):
        for count, size in p["rs_throughput"]:
            count *= o.throughput_scale
            for np in o.rs_partitions:
                for acks in acks_of(system):
                    topic = f"bench-{tag}-rs-{size}b-p{np}-acks{acks}-{rep}"
                    create_topics(cluster.bootstrap, [topic], np, 3, topic_cfg, timeout=120)
                    nodes.reset_peak_rss()
                    la = loadavg()
                    for mode in ("produce", "consume"):
                        log(f"   throughput {size} B p={np} acks={acks} {mode} {count} ...")
                        res = measured(nodes, lambda: run_loadgen(client, mode, cluster.bootstrap, topic, count, size,
                                                                  acks, p["timeout"]))
                        gb = res["bytes"] / 1e9
                        res.update(workload="throughput", system=system, mode=mode, phase=f"{mode} {size} B",
                                   acks=acks, size=size, target_count=count, partitions=np, rep=rep,
                                   loadavg_before=la, client="benches/loadgen-rs",
                                   broker_cpu_s_per_gb=round(res["broker_cpu_s"] / gb, 2) if gb else None,
                                   broker_peak_rss_mb=nodes.peak_rss_mb())
                        log(f"     {res['records_per_s']:,.0f} rec/s {res['mb_per_s']:.1f} MB/s, broker cpu "
                            f"{res['broker_cpu_s']} s ({res['broker_cpu_s_per_gb']} s/GB), peak RSS "
                            f"{sum(res['broker_peak_rss_mb'].values()):.0f} MB, other cpu {res['other_cpu_s']} s"
                            f"{' TIMED OUT' if res.get('timed_out') else ''}")
                        rows.append(res)
                    delete_topic(cluster.bootstrap, topic, p["timeout"])


def delete_topic(bootstrap, topic, timeout):
    """DeleteTopics, then wait until the topic is no longer listed."""
    from confluent_kafka.admin import AdminClient
    a = AdminClient({"bootstrap.servers": bootstrap})
    a.delete_topics([topic], operation_timeout=timeout, request_timeout=timeout)[topic].result(timeout=timeout + 30)
    deadline = time.monotonic() + timeout
    while topic in a.list_topics(timeout=10).topics:
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {topic} still listed {timeout}s after its deletion")
        time.sleep(0.2)


def du_mb(path):
    out = subprocess.run(["du", "-sm", path], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None


def recovery(system, cluster, nodes, p, out):
    """Write --recovery-mb, kill -9 every node at once, restart them all, time the recovery."""
    from workloads import probe_produce_fetch
    count = max(1, p["recovery_mb"] * 1_000_000 // 1024)
    topic = f"bench-{system.replace('-', '')}-recovery"
    create_topics(cluster.bootstrap, [topic], 6, 3, {}, timeout=120)
    log(f"   recovery: writing {p['recovery_mb']} MB ({count:,} x 1 KiB, acks=1) ...")
    t0 = time.monotonic()
    prod = run_loadgen(loadgen_rs(), "produce", cluster.bootstrap, topic, count, 1024, "1",
                       max(p["timeout"], count / 20_000))
    write_s = time.monotonic() - t0
    disk_mb = {i: du_mb(b.workdir) for i, b in cluster.nodes.items()}
    for b in cluster.nodes.values():
        b.kill9()
    t0 = time.monotonic()
    # In parallel: a node's listener may wait for a quorum of the others.
    errors = []

    def restart(b):
        try:
            b.restart(p["timeout"])
        except Exception as e:  # noqa: BLE001
            errors.append(f"{type(e).__name__}: {e}")
    ts = [threading.Thread(target=restart, args=(b,), daemon=True) for b in cluster.nodes.values()]
    for t in ts:
        t.start()
    for t in ts:
        t.join(p["timeout"] + 30)
    listeners_s = time.monotonic() - t0
    ok = not errors and probe_produce_fetch(cluster.bootstrap, topic, t0 + p["timeout"])
    ready_s = time.monotonic() - t0
    res = {"workload": "recovery", "system": system, "disk_mb_per_node": disk_mb, "records": prod["records"],
           "write_s": round(write_s, 1), "write_errors": prod["errors"], "listeners_s": round(listeners_s, 2),
           "ready_s": round(ready_s, 2) if ok else None,
           "error": errors[0] if errors else (None if ok else f"no produce+fetch within {p['timeout']}s"),
           "rss_mb_after": nodes.rss_mb()}
    log(f"     {sum(v or 0 for v in disk_mb.values())} MB on disk (3 nodes); after kill -9 of all three: listeners "
        f"{res['listeners_s']} s, first produce+fetch {res['ready_s']} s{'; ' + res['error'] if res['error'] else ''}")
    out["recovery"] = res
    if ok:
        delete_topic(cluster.bootstrap, topic, p["timeout"])


def rs_latency(system, cluster, nodes, p, o, rows):
    """End-to-end latency at a fixed rate well below saturation (loadgen-rs `latency`: coordinated
    omission corrected, from each record's intended send time)."""
    client = loadgen_rs()
    topic_cfg = SYSTEMS[system][1]
    tag = system.replace("-", "")
    for acks in acks_of(system):
        topic = f"bench-{tag}-latency-p{o.latency_partitions}-acks{acks}"
        create_topics(cluster.bootstrap, [topic], o.latency_partitions, 3, topic_cfg, timeout=120)
        la = loadavg()
        log(f"   latency acks={acks} {p['rate']}/s x 100 B, {o.latency_partitions} partitions, {p['latency_seconds']} s ...")
        extra = ["--rate", str(p["rate"]), "--duration", str(p["latency_seconds"]), "--warmup", "2"]
        res = measured(nodes, lambda: run_loadgen(client, "latency", cluster.bootstrap, topic, 0, 100, acks,
                                                  p["timeout"], extra))
        res.update(workload="latency", system=system, phase="latency", acks=acks, size=100,
                   partitions=o.latency_partitions, loadavg_before=la,
                   broker_cpu_pct=round(100 * res["broker_cpu_s"] / res["wall_s"], 1))
        pl, el = res["produce_latency_ms"], res["e2e_latency_ms"]
        log(f"     produce p50 {pl['p50']} p99 {pl['p99']} p99.9 {pl['p999']} max {pl['max']} ms; e2e p50 {el['p50']} "
            f"p99 {el['p99']} p99.9 {el['p999']} max {el['max']} ms; broker cpu {res['broker_cpu_pct']} %")
        rows.append(res)


def eventbus(system, cluster, nodes, p, rows):
    """The event-bus client profile (benches/groups.py), on a topic with replication factor 3."""
    from groups import bench_eventbus
    log(f"   event bus: produce {p['eventbus_records']}, consume+commit {p['eventbus_commits']} ...")
    res = measured(nodes, lambda: bench_eventbus(cluster.bootstrap, p["eventbus_records"], p["eventbus_commits"],
                                                 p["timeout"], replication_factor=3))
    res.update(workload="eventbus", system=system, phase="eventbus")
    log(f"     produce {res['produce_records_per_s']:,.0f} rec/s; consume+commit {res['records_per_s']:,.0f} rec/s, "
        f"commit p50 {res['commit_p50_ms']} p99 {res['commit_p99_ms']} ms")
    rows.append(res)


def idle_cost(system, cluster, nodes, p, out):
    from confluent_kafka.admin import AdminClient
    a = AdminClient({"bootstrap.servers": cluster.bootstrap})

    def sample(seconds):
        c0, m0, t0 = nodes.cpu(), machine_busy_s(), time.monotonic()
        time.sleep(seconds)
        c1, m1, t1 = nodes.cpu(), machine_busy_s(), time.monotonic()
        nodes.check_alive()
        per = {i: round(100 * (c1[i] - c0[i]) / (t1 - t0), 2) for i in c0}
        total = sum(c1[i] - c0[i] for i in c0)
        return {"seconds": round(t1 - t0, 1), "cpu_pct_total": round(100 * total / (t1 - t0), 2),
                "cpu_pct_per_node": per, "other_cpu_pct": round(100 * max(0.0, m1 - m0 - total) / (t1 - t0), 1),
                "rss_mb_per_node": nodes.rss_mb(), "rss_mb_total": round(sum(nodes.rss_mb().values()), 1),
                "threads_per_node": {i: proc_status_kb(pid, "Threads") for i, pid in nodes.pids().items()},
                "partitions": sum(len(t.partitions) for t in a.list_topics(timeout=10).topics.values()),
                "loadavg": loadavg()}

    if SYSTEMS[system][0] == "kafka":  # create __consumer_offsets (FindCoordinator), as Rill has it
        from confluent_kafka import Consumer, TopicPartition
        c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "bench-idle"})
        try:
            c.committed([TopicPartition(f"bench-warmup-{SYSTEMS[system][0]}", 0)], timeout=30)
        except Exception as e:  # noqa: BLE001
            log(f"   committed(): {e} (expected while __consumer_offsets is being created)")
        c.close()
        wait_leaders(a, ["__consumer_offsets"], 60)
    log(f"   idle baseline {p['baseline_seconds']} s ...")
    time.sleep(p["settle_seconds"] / 2)
    out["baseline"] = sample(p["baseline_seconds"])
    log(f"     {out['baseline']}")
    n = p["idle_partitions"]
    topics, per_topic = 10, n // 10
    names = [f"idle-{i}" for i in range(topics)]
    log(f"   creating {topics} x {per_topic} partitions, RF 3 ...")
    t0 = time.monotonic()
    c0 = nodes.cpu()
    # Kafka's controller refuses one CreateTopics of more than 10,000 metadata records: at most
    # 5,000 partitions per request (1,000 partitions are one request, as before).
    chunk = max(1, 5000 // max(1, per_topic))
    for i in range(0, topics, chunk):
        create_topics(cluster.bootstrap, names[i:i + chunk], per_topic, 3, {}, timeout=max(240, n / 20))
    out["create_s"] = round(time.monotonic() - t0, 1)
    out["create_cpu_s"] = round(sum(nodes.cpu().values()) - sum(c0.values()), 1)
    log(f"     all leaders after {out['create_s']} s (nodes used {out['create_cpu_s']} CPU s)")
    time.sleep(p["settle_seconds"])
    log(f"   idle {p['idle_seconds']} s with {n} more partitions ...")
    out["idle"] = sample(p["idle_seconds"])
    log(f"     {out['idle']}")
    out["idle_partitions"] = n
    if rust_loadgen() is None:
        log("   load over them: skipped (benches/loadgen-rs is not built)")
        return
    log(f"   load: {p['idle_rate']} keyed x 100 B/s (acks=all) over them for {p['idle_seconds']} s ...")
    nodes.reset_peak_rss()
    extra = ["--rate", str(p["idle_rate"]), "--duration", str(p["idle_seconds"]), "--warmup", "2", "--keyed", "1"]
    res = measured(nodes, lambda: run_loadgen(loadgen_rs(), "latency", cluster.bootstrap, ",".join(names), 0, 100,
                                              "all", p["timeout"], extra))
    out["load"] = {"rate": p["idle_rate"], "records_per_s": res["records_per_s"], "errors": res["errors"],
                   "timed_out": res["timed_out"], "cpu_pct_total": round(100 * res["broker_cpu_s"] / res["wall_s"], 1),
                   "peak_rss_mb_total": round(sum(nodes.peak_rss_mb().values()), 1),
                   "produce_latency_ms": res["produce_latency_ms"], "e2e_latency_ms": res["e2e_latency_ms"]}
    log(f"     {out['load']}")


def run_cluster(kind, systems, p, o, rows, idle):
    log(f"== {kind}: starting 3 nodes")
    t0 = time.monotonic()
    cluster = RillCluster(3, RILL_DEFAULTS) if kind == "rill" else KafkaCluster(3)
    try:
        cluster.start(120)
        nodes = Nodes(cluster)
        first = next(iter(cluster.nodes.values()))
        probe = fsync_probe(first.workdir)
        log(f"   up in {time.monotonic() - t0:.1f} s, pids {nodes.pids()}, {cluster.bootstrap}, fsync probe {probe}")
        idle.setdefault(kind, {})["startup_s"] = round(time.monotonic() - t0, 1)
        idle[kind]["fsync_probe"] = probe
        warm = f"bench-warmup-{kind}"
        create_topics(cluster.bootstrap, [warm], o.partitions, 3, {}, timeout=60)
        if set(o.workloads) - {"idle", "recovery"}:
            log(f"   warm-up {p['warmup']} x 100 B acks=1 (not recorded)")
            run_loadgen(LOADGEN, "produce", cluster.bootstrap, warm, p["warmup"], 100, "1", p["timeout"])
            for s in systems:
                log(f"== {s}")
                if "sync" in o.workloads:
                    load_phases(s, cluster, nodes, p, p["timeout"], o.partitions, rows)
                if "throughput" in o.workloads:
                    rs_throughput(s, cluster, nodes, p, o, rows)
                if "latency" in o.workloads:
                    rs_latency(s, cluster, nodes, p, o, rows)
                # kafka-flush1 is a topic setting; the event-bus topic is made by the workload.
                if "eventbus" in o.workloads and s != "kafka-flush1":
                    eventbus(s, cluster, nodes, p, rows)
        if "recovery" in o.workloads:
            log(f"== {kind}: recovery after kill -9")
            recovery(systems[0], cluster, nodes, p, idle[kind])
        if "idle" in o.workloads:
            log(f"== {kind}: idle cost")
            idle_cost(systems[0], cluster, nodes, p, idle[kind])
    finally:
        stop_cluster(kind, cluster, idle)


def stop_cluster(kind, cluster, idle):
    # A SIGTERM/SIGALRM delivered inside a C call (librdkafka) can surface later, in the middle of
    # the cleanup: so retry it, and never let it skip stopping the nodes.
    interrupted = None
    for attempt in range(3):
        try:
            if attempt == 0:
                idle.setdefault(kind, {})["log_warnings"] = log_warnings(cluster)
            log(f"== {kind}: stopping")
            cluster.cleanup()
            break
        except BaseException as e:  # noqa: BLE001
            log(f"   cleanup attempt {attempt + 1}: {type(e).__name__}: {e}")
            interrupted = interrupted or e
    if interrupted is not None:
        raise interrupted


WARN_RE = re.compile(rb"\bWARN\b|\bERROR\b|panicked")
ANSI_RE = re.compile(rb"\x1b\[[0-9;]*m")


def log_warnings(cluster, keep=8):
    """WARN/ERROR lines of each node's log (the data dirs are deleted afterwards): count + sample."""
    out = {}
    for i, b in cluster.nodes.items():
        n, sample = 0, []
        try:
            with open(b.log_path, "rb") as f:
                for line in f:
                    if WARN_RE.search(line):
                        n += 1
                        if len(sample) < keep:
                            sample.append(ANSI_RE.sub(b"", line).decode("utf-8", "replace").rstrip()[:300])
        except OSError:
            pass
        out[i] = {"count": n, "sample": sample}
    return out


def fmt_lat(r):
    lat = r.get("latency_ms") or {}
    return f"{lat.get('p50', '-')} / {lat.get('p99', '-')}"


def table(rows, idle):
    out = ["| system | phase | records | records/s | MB/s | latency p50 / p99 ms | broker CPU s (3 nodes) | errors | load avg |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r.get("workload"):
            continue
        out.append(f"| {r['system']} | {r['phase']} | {r['records']:,} x {r['size']} B | {r['records_per_s']:,.0f} | "
                   f"{r['mb_per_s']:.1f} | {fmt_lat(r)} | {r['broker_cpu_s']:.1f} | {r.get('errors', 0)}"
                   f"{' TIMEOUT' if r.get('timed_out') else ''} | {r['loadavg_before'][0]:.1f} |")
    out += ["", "| cluster | partitions (incl. internal) | idle CPU % (3 nodes) | per node | RSS MB (3 nodes) | "
                "baseline: partitions, CPU %, RSS MB | create + leaders s | other CPU % | load avg |",
            "|---|---:|---:|---|---:|---|---:|---:|---:|"]
    for k, v in idle.items():
        i, b = v.get("idle"), v.get("baseline")
        if not i or not b:
            continue
        out.append(f"| {k} | {i['partitions']:,} | {i['cpu_pct_total']:.1f} | "
                   f"{' / '.join(f'{x:.1f}' for x in i['cpu_pct_per_node'].values())} | {i['rss_mb_total']:.0f} | "
                   f"{b['partitions']}, {b['cpu_pct_total']:.1f} %, {b['rss_mb_total']:.0f} | {v['create_s']} | "
                   f"{i['other_cpu_pct']:.0f} | {i['loadavg'][0]:.1f} |")
    loaded = [(k, v["load"]) for k, v in idle.items() if v.get("load")]
    if loaded:
        out += ["", "| cluster | idle partitions under keyed load | rate/s | broker CPU % (3 nodes) | peak RSS MB (3 nodes) | "
                    "produce p50 / p99 ms | end-to-end p50 / p99 ms | errors |", "|---|---:|---:|---:|---:|---|---|---:|"]
        for k, v in loaded:
            pl, el = v["produce_latency_ms"], v["e2e_latency_ms"]
            out.append(f"| {k} | {idle[k]['idle_partitions']:,} | {v['records_per_s']:,.0f} | {v['cpu_pct_total']} | "
                       f"{v['peak_rss_mb_total']:.0f} | {pl['p50']} / {pl['p99']} | {el['p50']} / {el['p99']} | "
                       f"{v['errors']}{' TIMEOUT' if v['timed_out'] else ''} |")
    rec = [(k, v["recovery"]) for k, v in idle.items() if v.get("recovery")]
    if rec:
        out += ["", "| cluster | on disk MB (3 nodes) | write s | after kill -9 of all 3: listeners s | "
                    "first produce + fetch s |", "|---|---:|---:|---:|---:|"]
        for k, v in rec:
            out.append(f"| {k} | {sum(x or 0 for x in v['disk_mb_per_node'].values()):,} | {v['write_s']} | "
                       f"{v['listeners_s']} | {v['ready_s'] if v['ready_s'] is not None else 'FAILED: ' + str(v['error'])} |")
    return "\n".join(out) + "\n\n" + workload_tables(rows)


def workload_tables(rows):
    out = []
    tp = [r for r in rows if r.get("workload") == "throughput"]
    if tp:
        out += ["| system | records | partitions | acks | phase | rep | records/s | MB/s | broker CPU s/GB (3 nodes) | "
                "peak RSS MB (3 nodes) | other CPU s | load avg |", "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in tp:
            out.append(f"| {r['system']} | {r['target_count']:,} x {r['size']} B | {r['partitions']} | {r['acks']} | "
                       f"{r['mode']} | {r['rep']} | {r['records_per_s']:,.0f}{' TIMEOUT' if r.get('timed_out') else ''} | "
                       f"{r['mb_per_s']:.1f} | {r['broker_cpu_s_per_gb']} | {sum(r['broker_peak_rss_mb'].values()):.0f} | "
                       f"{r['other_cpu_s']} | {r['loadavg_before'][0]:.1f} |")
        out.append("")
    lat = [r for r in rows if r.get("workload") == "latency"]
    if lat:
        out += ["| system | acks | partitions | rate/s | produce p50 / p99 / p99.9 / max ms | end-to-end p50 / p99 / p99.9 / max ms | "
                "broker CPU % (3 nodes) | errors |", "|---|---|---:|---:|---|---|---:|---:|"]
        for r in lat:
            pl, el = r["produce_latency_ms"], r["e2e_latency_ms"]
            out.append(f"| {r['system']} | {r['acks']} | {r['partitions']} | {r['records_per_s']:,.0f} | "
                       + " / ".join(str(pl[k]) for k in ("p50", "p99", "p999", "max")) + " | "
                       + " / ".join(str(el[k]) for k in ("p50", "p99", "p999", "max"))
                       + f" | {r['broker_cpu_pct']} | {r.get('errors', 0)} |")
        out.append("")
    eb = [r for r in rows if r.get("workload") == "eventbus"]
    if eb:
        out += ["| system | event-bus produce rec/s | consume + commit rec/s | commit p50 / p99 ms | broker CPU s |",
                "|---|---:|---:|---|---:|"]
        for r in eb:
            out.append(f"| {r['system']} | {r['produce_records_per_s']:,.0f} | {r['records_per_s']:,.0f} | "
                       f"{r['commit_p50_ms']} / {r['commit_p99_ms']} | {r['broker_cpu_s']} |")
    return "\n".join(out)


def write_reports(out, meta, rows, idle):
    """Beside the JSON: the tables as Markdown (<stem>.md) and the max-throughput runs as a
    bar chart (<stem>.svg), records/s per system."""
    stem = os.path.splitext(out)[0]
    md = [f"# Rill vs Apache Kafka 4.1.1, 3 nodes, RF 3 ({meta['started']}, git {meta.get('git_head')}"
          f"{' dirty' if meta.get('git_dirty') else ''})",
          f"Machine: {meta['machine']['nproc']} CPUs ({meta['machine']['cpu']}), {meta['machine']['mem_gb']} GB; "
          f"load average at start {meta['loadavg_start']}, at end {meta.get('loadavg_end')}; "
          f"{meta.get('elapsed_s')} s. Workloads: {','.join(meta['workloads'])}.",
          table(rows, idle)]
    groups = {}
    for r in rows:
        if r.get("workload") == "throughput" and r.get("rep", 0) == 0:
            label = f"{r['size']} B, {r['partitions']}p, acks={r['acks']}, {r['mode']}"
            groups.setdefault(label, {})[r["system"]] = r["records_per_s"]
    if groups:
        svg_bars(stem + ".svg", f"3 nodes, RF 3: max throughput, records/s ({meta['started'][:10]}, "
                 f"{meta['machine']['nproc']} CPUs)", list(groups.items()), list(SYSTEMS), "records/s")
        md.insert(2, f"Chart: [{os.path.basename(stem)}.svg]({os.path.basename(stem)}.svg)")
    if meta.get("error"):
        md.append(f"**Error:** {meta['error']}")
    with open(stem + ".md", "w") as f:
        f.write("\n\n".join(md) + "\n")


class Deadline(Exception):
    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--systems", default=None, help="default rill,kafka,kafka-flush1; with --smoke: rill")
    ap.add_argument("--smoke", action="store_true", help="small counts, 100 idle partitions, Rill only: ~45 s")
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--idle-partitions", type=int, default=None)
    ap.add_argument("--idle-seconds", type=float, default=None)
    ap.add_argument("--settle-seconds", type=float, default=None, help="wait after creating the idle partitions (default 60, smoke 2)")
    ap.add_argument("--idle-rate", type=int, default=None, help="keyed records/s over the idle partitions (default 500)")
    ap.add_argument("--recovery-mb", type=int, default=None, help="data written before kill -9 (default 10000, smoke 50)")
    ap.add_argument("--timeout", type=float, default=None, help="per load phase")
    ap.add_argument("--max-seconds", type=int, default=None, help="whole run (SIGALRM); default 2400, smoke 110")
    ap.add_argument("--no-load", action="store_true", help="only the idle measurement (--workloads idle)")
    ap.add_argument("--workloads", default=None,
                    help="comma list of " + ",".join(WORKLOADS) + " (default all; with --smoke: sync,idle)")
    ap.add_argument("--throughput-partitions", default="6,100", help="throughput: comma list of partition counts")
    ap.add_argument("--latency-partitions", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=1, help="throughput: runs per (size, partitions, acks)")
    ap.add_argument("--throughput-scale", type=int, default=1,
                    help="throughput: records per phase times this (1: a second or less per Rill phase)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--render", metavar="JSON", help="only write JSON's .md and .svg again from its results")
    a = ap.parse_args()
    if a.render:
        with open(a.render) as f:
            d = json.load(f)
        write_reports(a.render, d["meta"], d["runs"], d["idle"])
        return
    systems = [s for s in (a.systems or ("rill" if a.smoke else "rill,kafka,kafka-flush1")).split(",") if s]
    for s in systems:
        if s not in SYSTEMS:
            ap.error(f"unknown system {s}")
    p = dict(SMOKE if a.smoke else FULL)
    for k in ("idle_partitions", "idle_seconds", "settle_seconds", "idle_rate", "recovery_mb", "timeout", "max_seconds"):
        if getattr(a, k) is not None:
            p[k] = getattr(a, k)
    a.workloads = ["idle"] if a.no_load else (a.workloads or ("sync,idle" if a.smoke else ",".join(WORKLOADS))).split(",")
    for w in a.workloads:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w}")
    a.rs_partitions = [int(x) for x in a.throughput_partitions.split(",") if x]
    # Kafka with the default tiered JIT (the test helper limits the JVM to C1); see java-c2.sh.
    os.environ.setdefault("JAVA", os.path.join(HERE, "java-c2.sh"))

    def on_signal(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the cleanup must not be interrupted
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        raise Deadline(f"signal {signum} ({'--max-seconds ' + str(p['max_seconds']) if signum == signal.SIGALRM else 'terminated'})")
    signal.signal(signal.SIGALRM, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.alarm(int(p["max_seconds"]))

    import confluent_kafka
    meta = {"started": datetime.datetime.now().isoformat(timespec="seconds"), "smoke": a.smoke,
            "machine": machine(), "loadavg_start": loadavg(), "confluent_kafka": confluent_kafka.__version__,
            "librdkafka": confluent_kafka.libversion()[0], "client": "benches/loadgen.py", "nodes": 3,
            "replication_factor": 3, "partitions": a.partitions, "params": p, "workloads": a.workloads,
            "throughput_partitions": a.rs_partitions, "throughput_scale": a.throughput_scale, "latency_partitions": a.latency_partitions, "repeat": a.repeat, "rill_bin": os.environ.get("RILL_BIN"),
            "java": os.environ.get("JAVA"), "nice": os.nice(0), **git_info()}
    rows, idle = [], {}
    failed = None
    t0 = time.monotonic()
    try:
        kinds = [k for k in ("rill", "kafka") if any(SYSTEMS[s][0] == k for s in systems)]
        for k in kinds:
            run_cluster(k, [s for s in systems if SYSTEMS[s][0] == k], p, a, rows, idle)
    except BaseException as e:  # noqa: BLE001 - report what was measured so far
        failed = f"{type(e).__name__}: {e}"
        log(f"FAILED: {failed}")
    finally:
        signal.alarm(0)
    meta["loadavg_end"] = loadavg()
    meta["elapsed_s"] = round(time.monotonic() - t0, 1)
    meta["error"] = failed
    print(table(rows, idle))
    print(f"\nload average start {meta['loadavg_start']}, end {meta['loadavg_end']} ({os.cpu_count()} CPUs); "
          f"{meta['elapsed_s']} s")
    out = result_path("-cluster", a.smoke, a.out)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"meta": meta, "runs": rows, "idle": idle}, f, indent=1)
    write_reports(out, meta, rows, idle)
    log(f"wrote {out} (and .md, .svg)")
    bad = failed or any(r.get("timed_out") or r.get("loadgen_exit") for r in rows) or any(
        (v.get("recovery") or {}).get("error") or (v.get("load") or {}).get("timed_out") for v in idle.values())
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
