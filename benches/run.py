#!/usr/bin/env python3
"""End-to-end throughput benchmark: Rill vs Apache Kafka through librdkafka (confluent-kafka).

    benches/run.py [--systems rill,kafka,kafka-flush1] [--scenarios small,large] [--acks 1,all]
                   [--partitions 1,6,100] [--workloads throughput,latency,backlog,eventbus,partitions,recovery]
                   [--smoke] [--timeout SEC] [--out FILE]

Systems (each gets a fresh broker and a fresh data dir, on a free loopback port):
  rill          target/release/rill (or $RILL_BIN), defaults: fsync before acking acks=all
  kafka         Apache Kafka 4.1 from Maven jars (tests/support/apache-kafka.sh), default flush
                policy (no fsync on the produce path)
  kafka-flush1  the same with log.flush.interval.messages=1 (and topic flush.messages=1)
Scenarios: small = 1,000,000 x 100 B records, large = 200,000 x 1 KiB records
           (--smoke: 20,000 x 100 B and 4,000 x 1 KiB).
Default acks per system: rill 1,all; kafka 1,all; kafka-flush1 all (override with --acks).

Each (system, scenario, partitions, acks) run uses its own topic with --partitions partitions
(default 1), created beforehand with CreateTopics; the producer runs, then a consumer reads the
topic from offset 0. Load generator: loadgen-rs (or benches/loadgen.py) in its own process. Around each phase the broker's utime+stime
(/proc/<pid>/stat) is sampled; its peak RSS (VmHWM) is reset before each run via
/proc/<pid>/clear_refs (5) and read after each phase.

Other workloads (--workloads; benches/workloads.py, see benches/README.md): latency (fixed rate,
coordinated omission corrected), backlog (consume after a broker restart), eventbus (client
profile with a commit per record), partitions (1,000 / 10,000: idle and loaded cost), recovery
(kill -9 with a data set, time to the first produce + fetch).

Results: tables on stdout, JSON in benches/results/<YYYY-MM-DD>[-smoke].json (or --out), the same
tables as Markdown beside it (.md) and the throughput table as a bar chart (.svg).
"""
import argparse
import datetime
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "support"))
from broker import Broker  # noqa: E402  (tests/support/broker.py)
import workloads  # noqa: E402
from benchlib import (broker_cpu_s, create_topics, fsync_probe, git_info, loadavg, machine,  # noqa: E402
                      machine_busy_s, markdown, proc_status_kb, reset_hwm, result_path, run_loadgen,
                      rust_loadgen, svg_bars)

SCENARIOS = {"small": (1_000_000, 100), "large": (200_000, 1024)}
SMOKE = {"small": (20_000, 100), "large": (4_000, 1024)}
SYSTEMS = {
    # name: (target, broker extra config, topic configs, default acks)
    "rill": ("rill", {}, {}, ["1", "all"]),
    "kafka": ("kafka", {}, {}, ["1", "all"]),
    "kafka-flush1": ("kafka", {"log.flush.interval.messages": "1"}, {"flush.messages": "1"}, ["all"]),
}
CLIENT = {"cmd": None}


def loadgen(mode, bootstrap, topic, count, size, acks, timeout):
    return run_loadgen(CLIENT["cmd"], mode, bootstrap, topic, count, size, acks, timeout)


WORKLOADS = ["throughput", "latency", "backlog", "eventbus", "partitions", "recovery"]


def run_phase(b, mode, topic, count, size, acks, timeout):
    pid = b.pid()
    c0, m0 = broker_cpu_s(pid), machine_busy_s()
    res = loadgen(mode, b.bootstrap, topic, count, size, acks, timeout)
    c1, m1 = broker_cpu_s(pid), machine_busy_s()
    # CPU used by everything else on the machine meanwhile (other builds): a noise indicator.
    res["other_cpu_s"] = round(max(0.0, (m1 - m0) - (c1 - c0) - res["client_cpu_s"]), 2)
    gb = res["bytes"] / 1e9
    res["broker_cpu_s"] = round(c1 - c0, 2)
    res["broker_cpu_s_per_gb"] = round((c1 - c0) / gb, 2) if gb > 0 else None
    res["broker_peak_rss_mb"] = round(proc_status_kb(pid, "VmHWM") / 1024, 1)
    res["broker_rss_mb"] = round(proc_status_kb(pid, "VmRSS") / 1024, 1)
    res["client_cpu_pct"] = round(100 * res["client_cpu_s"] / res["elapsed_s"], 1) if res["elapsed_s"] else None
    res["client_main_thread_cpu_pct"] = (round(100 * res["main_thread_cpu_s"] / res["elapsed_s"], 1)
                                         if res["elapsed_s"] else None)
    return res


def run_system(name, o, rows):
    """Every workload that shares one broker (throughput, latency, eventbus, then backlog, which
    restarts it), then those that start their own (partitions, recovery)."""
    target, extra, topic_cfg, acks_default = SYSTEMS[name]
    acks_list = o.acks or acks_default
    smoke, timeout, warmup = o.smoke, o.timeout, not o.no_warmup
    if any(w in o.workloads for w in ("throughput", "latency", "eventbus", "backlog")):
        shared_broker(name, o, rows, target, extra, topic_cfg, acks_list, smoke, timeout, warmup)
    if "partitions" in o.workloads:
        rows += workloads.partitions(name, target, extra, o)
    if "recovery" in o.workloads:
        rows += workloads.recovery(name, target, extra, o, CLIENT["cmd"])


def shared_broker(name, o, rows, target, extra, topic_cfg, acks_list, smoke, timeout, warmup):
    print(f"== {name}: starting broker", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    with Broker.start(target=target, extra=extra) as b:
        pid = b.pid()
        probe = fsync_probe(b.workdir)
        print(f"   fsync probe (1 MiB write + fdatasync): {probe}", file=sys.stderr, flush=True)
        print(f"   pid {pid} on {b.bootstrap}, up in {time.monotonic() - t0:.1f}s, data {b.data_dir}",
              file=sys.stderr, flush=True)
        if warmup:  # JIT, page cache, allocator: not recorded
            wt = "bench-warmup"
            create_topics(b.bootstrap, [wt], 1, 1, topic_cfg)
            wn = 20_000 if smoke else 300_000
            print(f"   warm-up: {wn} x 100 B", file=sys.stderr, flush=True)
            loadgen("produce", b.bootstrap, wt, wn, 100, "1", timeout)
            loadgen("consume", b.bootstrap, wt, wn, 100, "1", timeout)
        runs = [(r, sc, np, ak) for sc in o.scenarios for np in o.partitions for ak in acks_list
                for r in range(o.repeat)] if "throughput" in o.workloads else []
        for rep, sc, np, acks in runs:
            count, size = (SMOKE if smoke else SCENARIOS)[sc]
            topic = f"bench-{sc}-p{np}-acks{acks}-{rep}"
            probe = fsync_probe(b.workdir)
            create_topics(b.bootstrap, [topic], np, 1, topic_cfg)
            hwm_reset = reset_hwm(pid)
            la = loadavg()
            for mode in ("produce", "consume"):
                print(f"   {sc} p={np} acks={acks} {mode} {count} x {size} B ...", file=sys.stderr, flush=True)
                res = run_phase(b, mode, topic, count, size, acks, timeout)
                res.update(workload="throughput", system=name, scenario=sc, partitions=np, acks=acks, size=size,
                           target_count=count, rep=rep,
                           fsync_probe=probe,
                           peak_rss_reset_before_run=hwm_reset, loadavg_before=la)
                rows.append(res)
                print(f"     {res['records_per_s']:,.0f} rec/s {res['mb_per_s']:.1f} MB/s "
                      f"broker cpu {res['broker_cpu_s']}s rss {res['broker_peak_rss_mb']} MB"
                      f"{' TIMED OUT' if res.get('timed_out') else ''}", file=sys.stderr, flush=True)
                check_alive(b, name)
        if "latency" in o.workloads:
            rows += workloads.latency(name, b, o, topic_cfg, acks_list)
            check_alive(b, name)
        if "eventbus" in o.workloads:
            rows += workloads.eventbus(name, b, o)
            check_alive(b, name)
        if "backlog" in o.workloads:
            rows += workloads.backlog(name, b, o, topic_cfg, run_phase)
            check_alive(b, name)


def check_alive(b, name):
    if not b.alive():
        raise RuntimeError(f"{name} broker died:\n{b.log_tail(max_lines=50)}")


def summarize(rows):
    """One row per (system, scenario, partitions, acks, phase) of the throughput workload: the
    repeat with the median records/s, plus the min and max records/s over the repeats; peak RSS
    is the max over the repeats."""
    groups = {}
    for r in rows:
        if r.get("workload") == "throughput":
            groups.setdefault((r["system"], r["scenario"], r["partitions"], r["acks"], r["mode"]), []).append(r)
    out = []
    for g in groups.values():
        g = sorted(g, key=lambda r: r["records_per_s"])
        m = dict(g[len(g) // 2])
        m["repeats"] = len(g)
        m["records_per_s_min"] = g[0]["records_per_s"]
        m["records_per_s_max"] = g[-1]["records_per_s"]
        m["broker_peak_rss_mb"] = max(r["broker_peak_rss_mb"] for r in g)
        m["timed_out"] = any(r.get("timed_out") for r in g)
        m["fsync_probe"] = {"median_ms": sorted(r["fsync_probe"]["median_ms"] for r in g)[len(g) // 2],
                            "max_ms": max(r["fsync_probe"]["max_ms"] for r in g)}
        out.append(m)
    return out


def table(rows):
    hdr = ["system", "scenario", "partitions", "acks", "phase", "records", "secs", "records/s", "(min-max)", "MB/s",
           "broker CPU s", "CPU s/GB", "peak RSS MB", "client CPU % (main thread)", "fsync ms"]
    lines = [hdr]
    for r in rows:
        lines.append([r["system"], f"{r['target_count']}x{r['size']}B", r["partitions"], r["acks"], r["mode"],
                      f"{r['records']:,}", f"{r['elapsed_s']:.2f}", f"{r['records_per_s']:,.0f}",
                      f"{r['records_per_s_min'] / 1e3:,.0f}k-{r['records_per_s_max'] / 1e3:,.0f}k",
                      f"{r['mb_per_s']:.1f}", f"{r['broker_cpu_s']:.1f}",
                      "-" if r["broker_cpu_s_per_gb"] is None else f"{r['broker_cpu_s_per_gb']:.1f}",
                      f"{r['broker_peak_rss_mb']:.0f}", f"{r['client_cpu_pct']:.0f} ({r['client_main_thread_cpu_pct']:.0f})"
                      + (" TIMEOUT" if r.get("timed_out") else ""), f"{r['fsync_probe']['median_ms']:.1f}"])
    return markdown(lines)


def ms(d, k):
    return f"{d[k]:.1f}" if d[k] >= 10 else f"{d[k]:.2f}"


def other_tables(rows):
    """Markdown tables of the workloads other than throughput (only those that ran)."""
    out = []
    lat = [r for r in rows if r.get("workload") == "latency"]
    if lat:
        hdr = ["system", "acks", "partitions", "rate/s (achieved)", "produce p50", "p99", "p99.9", "max",
               "end-to-end p50", "p99", "p99.9", "max", "broker CPU %", "errors"]
        out.append("### Latency at a fixed rate (ms, from the intended send time)\n\n" + markdown([hdr] + [
            [r["system"], r["acks"], r["partitions"], f"{r['target_rate']:,.0f} ({r['records_per_s']:,.0f})",
             *(ms(r["produce_latency_ms"], k) for k in ("p50", "p99", "p999", "max")),
             *(ms(r["e2e_latency_ms"], k) for k in ("p50", "p99", "p999", "max")),
             r["broker_cpu_pct"], r["errors"] or ("TIMEOUT" if r.get("timed_out") else 0)] for r in lat]))
    bl = [r for r in rows if r.get("workload") == "backlog"]
    if bl:
        hdr = ["system", "records", "partitions", "phase", "records/s", "MB/s", "broker CPU s/GB", "restart s",
               "page cache dropped"]
        out.append("### Consume from a backlog after a broker restart\n\n" + markdown([hdr] + [
            [r["system"], f"{r['target_count']:,}x{r['size']}B", r["partitions"], r["mode"], f"{r['records_per_s']:,.0f}",
             f"{r['mb_per_s']:.0f}", r["broker_cpu_s_per_gb"], r["restart_s"] if r["mode"] == "consume" else "",
             r["page_cache_dropped"] if r["mode"] == "consume" else ""] for r in bl]))
    eb = [r for r in rows if r.get("workload") == "eventbus"]
    if eb:
        hdr = ["system", "produce records/s", "consume+commit records/s", "commit p50 ms", "commit p99 ms",
               "commit max ms", "records (produce / commit)"]
        out.append("### Event bus: 104-204 B Avro-framed, batch.size 1024, linger 5 ms, acks=all; commit per record\n\n"
                   + markdown([hdr] + [[r["system"], f"{r['produce_records_per_s']:,.0f}", f"{r['records_per_s']:,.0f}",
                                        r["commit_p50_ms"], r["commit_p99_ms"], r["commit_max_ms"],
                                        f"{r['produce_records']:,} / {r['records']:,}"] for r in eb]))
    mp = [r for r in rows if r.get("workload") == "partitions"]
    if mp:
        hdr = ["system", "partitions (topics)", "create s", "RSS MB before", "idle CPU %", "idle RSS MB", "threads", "fds",
               "maps", "load rec/s", "load CPU %", "load RSS MB", "load e2e p99 ms", "error"]

        def g(r, k, f):
            return r[k][f] if r.get(k) else "-"
        out.append("### Many partitions, one node: idle and under a modest keyed load\n\n" + markdown([hdr] + [
            [r["system"], f"{r['partitions']:,} ({r.get('topics', 1)})", r["create_s"], r["before_topic"]["rss_mb"], g(r, "idle", "cpu_pct"),
             g(r, "idle", "rss_mb"), r.get("threads", "-"), r.get("fds", "-"), r.get("maps", "-"),
             f"{r['load']['records_per_s']:,.0f}" if r.get("load") else "-", g(r, "load", "cpu_pct"),
             g(r, "load", "rss_mb"), r["load"]["e2e_latency_ms"]["p99"] if r.get("load") else "-",
             (r["error"] or "")[:120]] for r in mp]))
    rc = [r for r in rows if r.get("workload") == "recovery"]
    if rc:
        hdr = ["system", "data on disk MB", "write s", "listener up s", "first produce+fetch s", "RSS MB after", "error"]
        out.append("### Restart after kill -9 (from process start)\n\n" + markdown([hdr] + [
            [r["system"], r["data_mb"], r["write_s"], r["port_s"], r["ready_s"], r["rss_mb_after"], r["error"] or ""]
            for r in rc]))
    return "\n\n".join(out)


def chart(summary, path, title):
    """The throughput table as a grouped bar chart (records/s per system)."""
    groups = {}
    for r in summary:
        label = f"{r['size']} B, {r['partitions']}p, acks={r['acks']}, {r['mode']}"
        groups.setdefault(label, {})[r["system"]] = r["records_per_s"]
    svg_bars(path, title, list(groups.items()), list(SYSTEMS), "records/s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--systems", default="rill,kafka,kafka-flush1")
    ap.add_argument("--workloads", default=None, help="comma list of " + ",".join(WORKLOADS)
                    + " (default throughput; --smoke: throughput,eventbus with 2,000 records and 100 commits)")
    ap.add_argument("--scenarios", default="small,large")
    ap.add_argument("--partitions", default="1", help="throughput: comma list of partition counts (one topic)")
    ap.add_argument("--acks", default="", help="comma list overriding each system's default acks list")
    ap.add_argument("--smoke", action="store_true", help="20,000 x 100 B and 4,000 x 1 KiB")
    ap.add_argument("--timeout", type=float, default=None, help="per phase (default 240, smoke 30)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--repeat", type=int, default=None, help="runs per (scenario, acks); median shown (default 3, smoke 1)")
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--client", choices=["auto", "rust", "py"], default="auto",
                    help="rust: loadgen-rs binary (built with cargo); py: loadgen.py; auto: rust if built")
    g = ap.add_argument_group("latency")
    g.add_argument("--rate", type=int, default=5000, help="records/s (default 5000)")
    g.add_argument("--latency-seconds", type=float, default=30, help="measured seconds (after --warmup-seconds)")
    g.add_argument("--warmup-seconds", type=float, default=2)
    g.add_argument("--size-latency", type=int, default=100, help="record bytes (default 100)")
    g.add_argument("--latency-partitions", type=int, default=1)
    g = ap.add_argument_group("backlog")
    g.add_argument("--backlog", default="1000000x1024", help="COUNTxSIZE (default 1000000x1024, ~1 GB)")
    g.add_argument("--backlog-partitions", type=int, default=6)
    g.add_argument("--drop-caches", action="store_true", help="drop the page cache while the broker is down (root)")
    g = ap.add_argument_group("eventbus")
    g.add_argument("--eventbus-records", type=int, default=None, help="records produced (default 100,000)")
    g.add_argument("--eventbus-commits", type=int, default=None, help="records consumed with a commit each (default 3000)")
    g = ap.add_argument_group("partitions")
    g.add_argument("--many-partitions", default="1000", help="comma list (default 1000; 10000 is the issue's second size)")
    g.add_argument("--settle-seconds", type=float, default=30, help="after creating the topic, before the idle sample")
    g.add_argument("--idle-seconds", type=float, default=30, help="idle sample, and the loaded sample")
    g.add_argument("--many-rate", type=int, default=2000, help="records/s of the loaded sample (keyed over all partitions)")
    g.add_argument("--topic-max-partitions", type=int, default=5000,
                   help="partitions per topic (more go to further topics; Kafka refuses >10,000 in one CreateTopics)")
    g.add_argument("--create-timeout", type=float, default=300, help="topic creation / restart bound (s)")
    g = ap.add_argument_group("recovery")
    g.add_argument("--recovery-mb", type=int, default=200, help="data written before kill -9 (default 200; the issue's is 10000)")
    a = ap.parse_args()
    systems = [s for s in a.systems.split(",") if s]
    a.workloads = [w for w in (a.workloads or ("throughput,eventbus" if a.smoke else "throughput")).split(",") if w]
    a.eventbus_records = a.eventbus_records or (2000 if a.smoke else 100_000)
    a.eventbus_commits = a.eventbus_commits or (100 if a.smoke else 3000)
    a.scenarios = [s for s in a.scenarios.split(",") if s]
    a.partitions = [int(x) for x in a.partitions.split(",") if x]
    a.many_partitions = [int(x) for x in a.many_partitions.split(",") if x]
    a.backlog = tuple(int(x) for x in a.backlog.lower().split("x"))
    for s in systems:
        if s not in SYSTEMS:
            ap.error(f"unknown system {s}")
    for s in a.scenarios:
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s}")
    for w in a.workloads:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w}")
    a.acks = [x for x in a.acks.split(",") if x] or None
    a.timeout = a.timeout or (30.0 if a.smoke else 240.0)
    a.repeat = a.repeat or (1 if a.smoke else 3)
    rl = rust_loadgen()
    if (a.client == "rust" or {"latency", "partitions"} & set(a.workloads)) and not rl:
        ap.error("rill-loadgen not built (the latency and partitions workloads need it): "
                 "(cd benches/loadgen-rs && cargo build --release)")
    CLIENT["cmd"] = [rl] if (a.client != "py" and rl) else [sys.executable, os.path.join(HERE, "loadgen.py")]
    a.rust_client = [rl] if rl else None  # the latency mode exists in loadgen-rs only
    # Kafka with the default tiered JIT (the test helper limits the JVM to C1); see java-c2.sh.
    os.environ.setdefault("JAVA", os.path.join(HERE, "java-c2.sh"))
    if "rill" in systems and not os.environ.get("RILL_BIN"):
        tb = os.environ.get("CARGO_TARGET_DIR")
        if tb and os.path.exists(os.path.join(tb, "release", "rill")):
            os.environ["RILL_BIN"] = os.path.join(tb, "release", "rill")
    import confluent_kafka
    from confluent_kafka import libversion
    opts = {k: v for k, v in vars(a).items() if k not in ("client", "rust_client", "out")}
    meta = {"started": datetime.datetime.now().isoformat(timespec="seconds"), "smoke": a.smoke,
            "machine": machine(), "loadavg_start": loadavg(), "confluent_kafka": confluent_kafka.__version__,
            "librdkafka": ("2.12.1 (rdkafka 0.39.0 / rdkafka-sys 4.10.0, vendored)" if CLIENT["cmd"][0] != sys.executable
                           else libversion()[0]), "options": opts, "java": os.environ.get("JAVA"),
            "client": CLIENT["cmd"][-1], "rill_bin": os.environ.get("RILL_BIN"), **git_info()}
    rows = []
    errors = []
    t0 = time.monotonic()
    for s in systems:
        try:
            run_system(s, a, rows)
        except Exception as e:  # report what was measured so far, go on with the next system
            errors.append(f"{s}: {type(e).__name__}: {e}")
            print(f"FAILED: {errors[-1]}", file=sys.stderr)
    meta["wall_s"] = round(time.monotonic() - t0, 1)
    meta["loadavg_end"] = loadavg()
    meta["error"] = "; ".join(errors) or None
    summary = summarize(rows)
    out = result_path("", a.smoke, a.out)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"meta": meta, "summary": summary, "runs": rows}, f, indent=1)
    stem = os.path.splitext(out)[0]
    md = [f"# Rill vs Apache Kafka 4.1.1 ({meta['started']}, git {meta['git_head']}{' dirty' if meta['git_dirty'] else ''})",
          f"Machine: {meta['machine']['nproc']} CPUs ({meta['machine']['cpu']}), {meta['machine']['mem_gb']} GB; "
          f"load average at start {meta['loadavg_start']}, at end {meta['loadavg_end']}; wall {meta['wall_s']} s.",
          f"Command: `benches/run.py {' '.join(sys.argv[1:])}`"]
    if summary:
        md.append("### Max throughput\n\n" + table(summary) + f"\n\nChart: [{os.path.basename(stem)}.svg]({os.path.basename(stem)}.svg)")
        chart(summary, stem + ".svg", f"Max throughput, records/s ({meta['started'][:10]}, {meta['machine']['nproc']} CPUs)")
    md.append(other_tables(rows))
    if meta["error"]:
        md.append(f"**Errors:** {meta['error']}")
    with open(stem + ".md", "w") as f:
        f.write("\n\n".join(m for m in md if m) + "\n")
    print("\n\n".join(md[3:]))
    print(f"wrote {out}, {stem}.md" + (", .svg" if summary else ""), file=sys.stderr)
    bad = errors or any(r.get("timed_out") or r.get("errors") or (r.get("workload") in ("partitions", "recovery")
                                                                  and r.get("error")) for r in rows)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
