"""The workloads of issue 7 beyond max throughput, run by benches/run.py (--workloads):

  latency     fixed-rate produce + consume, coordinated omission corrected (loadgen-rs `latency`)
  backlog     produce a backlog, restart the broker (optionally drop the page cache), then a fresh
              consumer reads all of it
  eventbus    the event-bus client profile (groups.bench_eventbus): 104-204 B Avro-framed records,
              batch.size 1024, linger 5 ms, acks=all; a group consumer commits every record
  partitions  1,000 / 10,000 partitions on a fresh broker: RSS and CPU at idle and under load
  recovery    a data set written, kill -9, restart: time to the first produce + fetch

Each function takes the system name and options and returns result rows (dicts); every phase is
bounded in time. Brokers come from tests/support/broker.py, so a failure stops and deletes them.
"""
import os
import subprocess
import sys
import time

from benchlib import (broker_cpu_s, create_topics, loadavg, proc_status_kb, reset_hwm, run_loadgen,
                      wait_leaders)
from broker import Broker  # tests/support/broker.py (run.py puts it on sys.path)


def proc_counts(pid):
    """(threads, open fds, memory maps) of a process."""
    try:
        threads = proc_status_kb(pid, "Threads")
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        with open(f"/proc/{pid}/maps") as f:
            maps = sum(1 for _ in f)
        return threads, fds, maps
    except OSError:
        return None, None, None


def sample(pid, seconds):
    """CPU % of one core and RSS over `seconds` (RSS: max of 1 s samples)."""
    c0, t0 = broker_cpu_s(pid), time.monotonic()
    rss = 0
    end = t0 + seconds
    while time.monotonic() < end:
        rss = max(rss, proc_status_kb(pid, "VmRSS") or 0)
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))
    rss = max(rss, proc_status_kb(pid, "VmRSS") or 0)
    dt = time.monotonic() - t0
    return {"cpu_pct": round(100 * (broker_cpu_s(pid) - c0) / dt, 1), "rss_mb": round(rss / 1024, 1),
            "seconds": round(dt, 1)}


def latency_run(client, b, topic, size, acks, rate, seconds, warmup, timeout, keyed=False):
    """loadgen-rs `latency` with broker CPU around it."""
    pid = b.pid()
    c0, t0 = broker_cpu_s(pid), time.monotonic()
    extra = ["--rate", str(rate), "--duration", str(seconds), "--warmup", str(warmup)]
    if keyed:
        extra += ["--keyed", "1"]
    res = run_loadgen(client, "latency", b.bootstrap, topic, 0, size, acks, timeout, extra)
    wall = time.monotonic() - t0  # the whole client run: start-up, warm-up, sending, draining
    res["broker_cpu_s"] = round(broker_cpu_s(pid) - c0, 2)
    res["broker_cpu_pct"] = round(100 * res["broker_cpu_s"] / wall, 1)
    res["wall_s"] = round(wall, 1)
    res["broker_rss_mb"] = round(proc_status_kb(pid, "VmRSS") / 1024, 1)
    return res


def latency(name, b, o, topic_cfg, acks_list):
    rows = []
    for acks in acks_list:
        topic = f"bench-latency-p{o.latency_partitions}-acks{acks}"
        create_topics(b.bootstrap, [topic], o.latency_partitions, 1, topic_cfg)
        la = loadavg()
        print(f"   latency acks={acks} {o.rate}/s x {o.size_latency} B for {o.latency_seconds}s ...",
              file=sys.stderr, flush=True)
        res = latency_run(o.rust_client, b, topic, o.size_latency, acks, o.rate, o.latency_seconds, o.warmup_seconds,
                          o.timeout)
        res.update(workload="latency", system=name, acks=acks, partitions=o.latency_partitions, loadavg_before=la)
        rows.append(res)
        pl, el = res["produce_latency_ms"], res["e2e_latency_ms"]
        print(f"     produce p50 {pl['p50']} p99 {pl['p99']} p99.9 {pl['p999']} max {pl['max']} ms; "
              f"e2e p50 {el['p50']} p99 {el['p99']} p99.9 {el['p999']} max {el['max']} ms", file=sys.stderr, flush=True)
    return rows


def drop_page_cache():
    """Write back and drop clean pages (root only); False if not allowed."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1")
        return True
    except OSError:
        return False


def backlog(name, b, o, topic_cfg, run_phase):
    count, size = o.backlog
    topic = f"bench-backlog-{size}"
    create_topics(b.bootstrap, [topic], o.backlog_partitions, 1, topic_cfg)
    print(f"   backlog: produce {count} x {size} B to {o.backlog_partitions} partition(s) ...", file=sys.stderr, flush=True)
    prod = run_phase(b, "produce", topic, count, size, "1", o.timeout)
    t0 = time.monotonic()
    b.stop()
    dropped = drop_page_cache() if o.drop_caches else False
    b.restart()
    from confluent_kafka.admin import AdminClient
    wait_leaders(AdminClient({"bootstrap.servers": b.bootstrap}), [topic], 120)
    restart_s = time.monotonic() - t0
    reset_hwm(b.pid())
    print(f"   backlog: broker restarted in {restart_s:.1f}s (page cache dropped: {dropped}); fresh consumer ...",
          file=sys.stderr, flush=True)
    cons = run_phase(b, "consume", topic, count, size, "1", o.timeout)
    rows = []
    for r in (prod, cons):
        r.update(workload="backlog", system=name, size=size, target_count=count, partitions=o.backlog_partitions,
                 restart_s=round(restart_s, 1), page_cache_dropped=dropped)
        rows.append(r)
    print(f"     produce {prod['records_per_s']:,.0f} rec/s; consume after restart {cons['records_per_s']:,.0f} rec/s "
          f"{cons['mb_per_s']:.0f} MB/s", file=sys.stderr, flush=True)
    return rows


def eventbus(name, b, o):
    from groups import bench_eventbus
    print(f"   event bus: produce {o.eventbus_records}, consume+commit {o.eventbus_commits} ...", file=sys.stderr, flush=True)
    pid = b.pid()
    c0 = broker_cpu_s(pid)
    res = bench_eventbus(b.bootstrap, o.eventbus_records, o.eventbus_commits, o.timeout)
    res.update(workload="eventbus", system=name, broker_cpu_s=round(broker_cpu_s(pid) - c0, 2))
    print(f"     produce {res['produce_records_per_s']:,.0f} rec/s; consume+commit {res['records_per_s']:,.0f} rec/s, "
          f"commit p50 {res['commit_p50_ms']} p99 {res['commit_p99_ms']} ms", file=sys.stderr, flush=True)
    return [res]


def partitions(name, target, extra, o):
    """Fresh broker per partition count: idle before/after creating P partitions (one topic, or
    several of --topic-max-partitions), then a modest keyed load (spread over every partition of
    every topic) at --many-rate."""
    rows = []
    for p in o.many_partitions:
        print(f"== {name}: {p} partitions", file=sys.stderr, flush=True)
        with Broker.start(target=target, extra=extra) as b:
            pid = b.pid()
            base = sample(pid, 5)
            t0 = time.monotonic()
            err = None
            # Kafka's KRaft controller refuses one CreateTopics that makes more than 10,000 metadata
            # records ("excessively large batch operation"): topics of at most --topic-max-partitions.
            sizes = [min(o.topic_max_partitions, p - i) for i in range(0, p, o.topic_max_partitions)]
            topics = [f"bench-many-{i}" for i in range(len(sizes))]
            try:
                for t, n in zip(topics, sizes):
                    create_topics(b.bootstrap, [t], n, 1, {}, timeout=o.create_timeout)
            except Exception as e:  # report what the broker did rather than nothing
                err = f"{type(e).__name__}: {e}"
            create_s = round(time.monotonic() - t0, 1)
            row = {"workload": "partitions", "system": name, "partitions": p, "topics": len(topics), "create_s": create_s,
                   "before_topic": base, "error": err}
            if err is None:
                print(f"   created in {create_s}s; settle {o.settle_seconds}s, idle {o.idle_seconds}s ...",
                      file=sys.stderr, flush=True)
                time.sleep(o.settle_seconds)
                row["idle"] = sample(pid, o.idle_seconds)
                threads, fds, maps = proc_counts(pid)
                row.update(threads=threads, fds=fds, maps=maps)
                print(f"   idle {row['idle']}; load {o.many_rate}/s keyed for {o.idle_seconds}s ...", file=sys.stderr, flush=True)
                res = latency_run(o.rust_client, b, ",".join(topics), 100, "all", o.many_rate, o.idle_seconds, 2, o.timeout,
                                  keyed=True)
                row["load"] = {"cpu_pct": res["broker_cpu_pct"], "rss_mb": res["broker_rss_mb"],
                               "records_per_s": res["records_per_s"], "errors": res["errors"],
                               "timed_out": res["timed_out"], "produce_latency_ms": res["produce_latency_ms"],
                               "e2e_latency_ms": res["e2e_latency_ms"]}
                row["peak_rss_mb"] = round(proc_status_kb(pid, "VmHWM") / 1024, 1)
                print(f"   load {row['load']['cpu_pct']}% CPU, RSS {row['load']['rss_mb']} MB", file=sys.stderr, flush=True)
            else:
                print(f"   FAILED after {create_s}s: {err}", file=sys.stderr, flush=True)
            if not b.alive():
                row["error"] = (err or "") + " broker died: " + b.log_tail(max_lines=20)
            rows.append(row)
    return rows


def probe_produce_fetch(bootstrap, topic, deadline):
    """Until the deadline: produce one record (acks=all) and fetch it back. Returns seconds taken
    by the successful attempt's start, or None."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    while time.monotonic() < deadline:
        try:
            got = {}
            p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": 5000,
                          "socket.connection.setup.timeout.ms": 2000, "enable.idempotence": False})
            p.produce(topic, value=b"probe", partition=0,
                      on_delivery=lambda e, m: got.update(err=e, off=m.offset() if e is None else None))
            p.flush(6)
            if got.get("err") is None and got.get("off") is not None:
                c = Consumer({"bootstrap.servers": bootstrap, "group.id": "rill-bench-probe", "enable.auto.commit": False})
                try:
                    c.assign([TopicPartition(topic, 0, got["off"])])
                    t_end = min(deadline, time.monotonic() + 5)
                    while time.monotonic() < t_end:
                        m = c.poll(0.2)
                        if m is not None and not m.error() and m.value() == b"probe":
                            return True
                finally:
                    c.close()
        except Exception:
            pass
        time.sleep(0.05)
    return False


def recovery(name, target, extra, o, client):
    """Write --recovery-mb of 1 KiB records (acks=1) to 6 partitions, kill -9, and time the restart:
    process start -> listener up (port_s), and -> the first produce (acks=all) + fetch (ready_s)."""
    count = max(1, o.recovery_mb * 1_000_000 // 1024)
    print(f"== {name}: recovery, {o.recovery_mb} MB ({count} x 1 KiB)", file=sys.stderr, flush=True)
    with Broker.start(target=target, extra=extra) as b:
        topic = "bench-recovery"
        create_topics(b.bootstrap, [topic], 6, 1, {})
        t0 = time.monotonic()
        prod = run_loadgen(client, "produce", b.bootstrap, topic, count, 1024, "1", max(o.timeout, count / 20_000))
        write_s = time.monotonic() - t0
        du = subprocess.run(["du", "-sm", b.data_dir], capture_output=True, text=True).stdout.split()
        b.kill9()
        t0 = time.monotonic()
        b.restart(timeout=o.create_timeout)
        port_s = time.monotonic() - t0
        ok = probe_produce_fetch(b.bootstrap, topic, t0 + o.create_timeout)
        ready_s = time.monotonic() - t0
        row = {"workload": "recovery", "system": name, "data_mb": int(du[0]) if du else None,
               "records": prod["records"], "write_s": round(write_s, 1), "write_errors": prod["errors"],
               "port_s": round(port_s, 2), "ready_s": round(ready_s, 2) if ok else None,
               "error": None if ok else f"no produce+fetch within {o.create_timeout}s",
               "rss_mb_after": round((proc_status_kb(b.pid(), "VmRSS") or 0) / 1024, 1)}
        print(f"   {row['data_mb']} MB on disk; restart: listener {row['port_s']}s, first produce+fetch {row['ready_s']}s",
              file=sys.stderr, flush=True)
        return [row]
