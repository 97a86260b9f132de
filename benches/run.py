#!/usr/bin/env python3
"""End-to-end throughput benchmark: Rill vs Apache Kafka through librdkafka (confluent-kafka).

    benches/run.py [--systems rill,kafka,kafka-flush1] [--scenarios small,large] [--acks 1,all]
                   [--smoke] [--timeout SEC] [--out FILE]

Systems (each gets a fresh broker and a fresh data dir, on a free loopback port):
  rill          target/release/rill (or $RILL_BIN), defaults: fsync before acking acks=all
  kafka         Apache Kafka 4.1 from Maven jars (tests/support/apache-kafka.sh), default flush
                policy (no fsync on the produce path)
  kafka-flush1  the same with log.flush.interval.messages=1 (and topic flush.messages=1)
Scenarios: small = 1,000,000 x 100 B records, large = 200,000 x 1 KiB records
           (--smoke: 20,000 x 100 B and 4,000 x 1 KiB).
Default acks per system: rill 1,all; kafka 1,all; kafka-flush1 all (override with --acks).

Each (system, scenario, acks) run uses its own topic with 1 partition, created beforehand with
CreateTopics; the producer runs, then a consumer reads the topic from offset 0. Load generator:
benches/loadgen.py in its own process. Around each phase the broker's utime+stime
(/proc/<pid>/stat) is sampled; its peak RSS (VmHWM) is reset before each run via
/proc/<pid>/clear_refs (5) and read after each phase.

Results: table on stdout, JSON in benches/results/<YYYY-MM-DD>[-smoke].json (or --out).
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
from benchlib import (broker_cpu_s, create_topic, fsync_probe, git_info, loadavg, machine,  # noqa: E402
                      machine_busy_s, proc_status_kb, reset_hwm, result_path, run_loadgen)

SCENARIOS = {"small": (1_000_000, 100), "large": (200_000, 1024)}
SMOKE = {"small": (20_000, 100), "large": (4_000, 1024)}
SYSTEMS = {
    # name: (target, broker extra config, topic configs, default acks)
    "rill": ("rill", {}, {}, ["1", "all"]),
    "kafka": ("kafka", {}, {}, ["1", "all"]),
    "kafka-flush1": ("kafka", {"log.flush.interval.messages": "1"}, {"flush.messages": "1"}, ["all"]),
}
CLIENT = {"cmd": None}


def rust_loadgen():
    for d in (os.environ.get("CARGO_TARGET_DIR"), os.path.join(HERE, "loadgen-rs", "target")):
        if d and os.path.exists(os.path.join(d, "release", "rill-loadgen")):
            return os.path.join(d, "release", "rill-loadgen")
    return None


def loadgen(mode, bootstrap, topic, count, size, acks, timeout):
    return run_loadgen(CLIENT["cmd"], mode, bootstrap, topic, count, size, acks, timeout)


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


def run_system(name, scenarios, acks_override, smoke, timeout, rows, repeat=1, warmup=True):
    target, extra, topic_cfg, acks_default = SYSTEMS[name]
    acks_list = acks_override or acks_default
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
            create_topic(b.bootstrap, wt, topic_cfg)
            wn = 20_000 if smoke else 300_000
            print(f"   warm-up: {wn} x 100 B", file=sys.stderr, flush=True)
            loadgen("produce", b.bootstrap, wt, wn, 100, "1", timeout)
            loadgen("consume", b.bootstrap, wt, wn, 100, "1", timeout)
        for rep, sc, acks in [(r, sc, ak) for sc in scenarios for ak in acks_list for r in range(repeat)]:
            count, size = (SMOKE if smoke else SCENARIOS)[sc]
            topic = f"bench-{sc}-acks{acks}-{rep}"
            probe = fsync_probe(b.workdir)
            create_topic(b.bootstrap, topic, topic_cfg)
            hwm_reset = reset_hwm(pid)
            la = loadavg()
            for mode in ("produce", "consume"):
                print(f"   {sc} acks={acks} {mode} {count} x {size} B ...", file=sys.stderr, flush=True)
                res = run_phase(b, mode, topic, count, size, acks, timeout)
                res.update(system=name, scenario=sc, acks=acks, size=size, target_count=count, rep=rep,
                           fsync_probe=probe,
                           peak_rss_reset_before_run=hwm_reset, loadavg_before=la)
                rows.append(res)
                print(f"     {res['records_per_s']:,.0f} rec/s {res['mb_per_s']:.1f} MB/s "
                      f"broker cpu {res['broker_cpu_s']}s rss {res['broker_peak_rss_mb']} MB"
                      f"{' TIMED OUT' if res.get('timed_out') else ''}", file=sys.stderr, flush=True)
                if not b.alive():
                    raise RuntimeError(f"{name} broker died:\n{b.log_tail(max_lines=50)}")


def summarize(rows):
    """One row per (system, scenario, acks, phase): the repeat with the median records/s, plus
    the min and max records/s over the repeats; peak RSS is the max over the repeats."""
    groups = {}
    for r in rows:
        groups.setdefault((r["system"], r["scenario"], r["acks"], r["mode"]), []).append(r)
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
    hdr = ["system", "scenario", "acks", "phase", "records", "secs", "records/s", "(min-max)", "MB/s",
           "broker CPU s", "CPU s/GB", "peak RSS MB", "client CPU % (main thread)", "fsync ms"]
    lines = [hdr]
    for r in rows:
        lines.append([r["system"], f"{r['target_count']}x{r['size']}B", r["acks"], r["mode"],
                      f"{r['records']:,}", f"{r['elapsed_s']:.2f}", f"{r['records_per_s']:,.0f}",
                      f"{r['records_per_s_min'] / 1e3:,.0f}k-{r['records_per_s_max'] / 1e3:,.0f}k",
                      f"{r['mb_per_s']:.1f}", f"{r['broker_cpu_s']:.1f}",
                      "-" if r["broker_cpu_s_per_gb"] is None else f"{r['broker_cpu_s_per_gb']:.1f}",
                      f"{r['broker_peak_rss_mb']:.0f}", f"{r['client_cpu_pct']:.0f} ({r['client_main_thread_cpu_pct']:.0f})"
                      + (" TIMEOUT" if r.get("timed_out") else ""), f"{r['fsync_probe']['median_ms']:.1f}"])
    out = ["| " + " | ".join(lines[0]) + " |", "|" + "---|" * len(hdr)]
    out += ["| " + " | ".join(str(c) for c in l) + " |" for l in lines[1:]]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--systems", default="rill,kafka,kafka-flush1")
    ap.add_argument("--scenarios", default="small,large")
    ap.add_argument("--acks", default="", help="comma list overriding each system's default acks list")
    ap.add_argument("--smoke", action="store_true", help="20,000 x 100 B and 4,000 x 1 KiB")
    ap.add_argument("--timeout", type=float, default=None, help="per phase (default 240, smoke 30)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--repeat", type=int, default=None, help="runs per (scenario, acks); median shown (default 3, smoke 1)")
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--client", choices=["auto", "rust", "py"], default="auto",
                    help="rust: loadgen-rs binary (built with cargo); py: loadgen.py; auto: rust if built")
    a = ap.parse_args()
    systems = [s for s in a.systems.split(",") if s]
    scenarios = [s for s in a.scenarios.split(",") if s]
    for s in systems:
        if s not in SYSTEMS:
            ap.error(f"unknown system {s}")
    for s in scenarios:
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s}")
    acks = [x for x in a.acks.split(",") if x] or None
    timeout = a.timeout or (30.0 if a.smoke else 240.0)
    repeat = a.repeat or (1 if a.smoke else 3)
    rl = rust_loadgen()
    if a.client == "rust" and not rl:
        ap.error("rill-loadgen not built: (cd benches/loadgen-rs && cargo build --release)")
    CLIENT["cmd"] = [rl] if (a.client != "py" and rl) else [sys.executable, os.path.join(HERE, "loadgen.py")]
    # Kafka with the default tiered JIT (the test helper limits the JVM to C1); see java-c2.sh.
    os.environ.setdefault("JAVA", os.path.join(HERE, "java-c2.sh"))
    if "rill" in systems and not os.environ.get("RILL_BIN"):
        tb = os.environ.get("CARGO_TARGET_DIR")
        if tb and os.path.exists(os.path.join(tb, "release", "rill")):
            os.environ["RILL_BIN"] = os.path.join(tb, "release", "rill")
    import confluent_kafka
    from confluent_kafka import libversion
    meta = {"started": datetime.datetime.now().isoformat(timespec="seconds"), "smoke": a.smoke,
            "machine": machine(), "loadavg_start": loadavg(), "confluent_kafka": confluent_kafka.__version__,
            "librdkafka": ("2.12.1 (rdkafka 0.39.0 / rdkafka-sys 4.10.0, vendored)" if CLIENT["cmd"][0] != sys.executable
                           else libversion()[0]), "partitions": 1, "java": os.environ.get("JAVA"),
            "client": CLIENT["cmd"][-1], "repeat": repeat, "warmup": not a.no_warmup, "rill_bin": os.environ.get("RILL_BIN"),
            **git_info()}
    rows = []
    failed = None
    try:
        for s in systems:
            run_system(s, scenarios, acks, a.smoke, timeout, rows, repeat, not a.no_warmup)
    except Exception as e:  # report what was measured so far
        failed = f"{type(e).__name__}: {e}"
        print(f"FAILED: {failed}", file=sys.stderr)
    meta["loadavg_end"] = loadavg()
    meta["error"] = failed
    summary = summarize(rows)
    print(table(summary))
    out = result_path("", a.smoke, a.out)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"meta": meta, "summary": summary, "runs": rows}, f, indent=1)
    print(f"wrote {out}", file=sys.stderr)
    bad = failed or any(r.get("timed_out") or r.get("errors") for r in rows)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
