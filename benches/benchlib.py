"""Helpers shared by the benchmark drivers (run.py, cluster.py): process CPU and memory from
/proc, machine noise indicators, topic creation, run metadata."""
import datetime
import json
import os
import platform
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def broker_cpu_s(pid):
    """utime+stime of a process (all threads), seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def proc_status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def reset_hwm(pid):
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def machine_busy_s():
    """CPU seconds spent by all processes on the machine (non-idle, non-iowait), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / CLK_TCK  # user..steal minus idle, iowait


def fsync_probe(dirpath, n=20, size=1 << 20):
    """Median and max ms of (write 1 MiB + fdatasync) in dirpath: the disk's commit latency right
    now, which other writers on the machine (builds) change a lot."""
    path = os.path.join(dirpath, ".fsync-probe")
    buf = os.urandom(size)
    ts = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(n):
            t = time.perf_counter()
            os.write(fd, buf)
            os.fdatasync(fd)
            ts.append((time.perf_counter() - t) * 1000)
    finally:
        os.close(fd)
        os.unlink(path)
    ts.sort()
    return {"median_ms": round(ts[len(ts) // 2], 2), "max_ms": round(ts[-1], 2)}


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def wait_leaders(admin, topics, timeout=30):
    """Until every partition of every topic has a leader; returns the seconds waited."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    pending = set(topics)
    while time.monotonic() < deadline:
        md = admin.list_topics(timeout=10)
        for name in list(pending):
            t = md.topics.get(name)
            if t is not None and t.error is None and t.partitions and all(p.leader >= 0 for p in t.partitions.values()):
                pending.discard(name)
        if not pending:
            return time.monotonic() - t0
        time.sleep(0.1)
    raise RuntimeError(f"no leader within {timeout}s for {len(pending)} topic(s), e.g. {sorted(pending)[:3]}")


def create_topics(bootstrap, topics, partitions=1, replication_factor=1, configs=None, timeout=30):
    """CreateTopics, then wait until every partition has a leader."""
    from confluent_kafka.admin import AdminClient, NewTopic
    a = AdminClient({"bootstrap.servers": bootstrap})
    fs = a.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=replication_factor,
                                   config=configs or {}) for t in topics],
                         operation_timeout=timeout, request_timeout=timeout)
    for f in fs.values():
        f.result(timeout=timeout + 30)
    return wait_leaders(a, topics, timeout)


def create_topic(bootstrap, topic, configs):
    create_topics(bootstrap, [topic], 1, 1, configs)


def machine():
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "mem_gb": round(mem_kb / 1024 / 1024, 1), "cpu": cpu,
            "kernel": platform.release(), "python": platform.python_version()}


def git_info():
    head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True).stdout.strip())
    return {"git_head": head, "git_dirty": dirty}


def result_path(prefix, smoke, out=None):
    """benches/results/<date><prefix>[-smoke].json; a second run that day gets -<HHMMSS> appended."""
    if out:
        return out
    stem = os.path.join(HERE, "results", datetime.date.today().isoformat() + prefix + ("-smoke" if smoke else ""))
    path = stem + ".json"
    if os.path.exists(path):
        path = stem + datetime.datetime.now().strftime("-%H%M%S") + ".json"
    return path


def rust_loadgen():
    """benches/loadgen-rs's binary (built by benches/run.sh), from $CARGO_TARGET_DIR or its own
    target/; None if it is not built."""
    for d in (os.environ.get("CARGO_TARGET_DIR"), os.path.join(HERE, "loadgen-rs", "target")):
        if d and os.path.exists(os.path.join(d, "release", "rill-loadgen")):
            return os.path.join(d, "release", "rill-loadgen")
    return None


def run_loadgen(cmd, mode, bootstrap, topic, count, size, acks, timeout, extra=()):
    """Run a load generator (loadgen.py or loadgen-rs: same arguments, one JSON line out) in its
    own process, killed 60 s after its own --timeout."""
    args = list(cmd) + [mode, "--bootstrap", bootstrap, "--topic", topic, "--count", str(count),
                        "--size", str(size), "--acks", acks, "--timeout", str(timeout), *extra]
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout + 60, stdin=subprocess.DEVNULL)
    if not r.stdout.strip():
        raise RuntimeError(f"loadgen {mode} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    if r.returncode != 0:
        res["loadgen_exit"] = r.returncode
        res["stderr_tail"] = r.stderr[-1000:]
    return res


def markdown(lines):
    """A Markdown table from a header row and data rows."""
    out = ["| " + " | ".join(str(c) for c in lines[0]) + " |", "|" + "---|" * len(lines[0])]
    out += ["| " + " | ".join(str(c) for c in l) + " |" for l in lines[1:]]
    return "\n".join(out)


SVG_COLOURS = ["#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e"]


def svg_bars(path, title, groups, series, unit):
    """A horizontal grouped bar chart as a standalone SVG (no plotting library needed):
    groups = [(label, {series name: value})], one bar per series present in a group."""
    from xml.sax.saxutils import escape
    series = [s for s in series if any(s in g for _, g in groups)]
    vmax = max((v for _, g in groups for v in g.values()), default=1) or 1
    bar, gap, left, width, top = 12, 10, 250, 520, 50
    rows_h = sum(len([s for s in series if s in g]) * bar + gap for _, g in groups)
    height = top + rows_h + 40
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 110}" height="{height}" '
         f'font-family="sans-serif" font-size="11">',
         '<rect width="100%" height="100%" fill="white"/>',
         f'<text x="10" y="20" font-size="14" font-weight="bold">{escape(title)}</text>']
    for i, s in enumerate(series):
        x = left + i * 120
        o.append(f'<rect x="{x}" y="30" width="10" height="10" fill="{SVG_COLOURS[i % len(SVG_COLOURS)]}"/>'
                 f'<text x="{x + 14}" y="39">{escape(s)}</text>')
    y = top
    for label, g in groups:
        present = [s for s in series if s in g]
        o.append(f'<text x="{left - 6}" y="{y + len(present) * bar / 2 + 4}" text-anchor="end">{escape(label)}</text>')
        for s in present:
            w = max(1.0, width * g[s] / vmax)
            c = SVG_COLOURS[series.index(s) % len(SVG_COLOURS)]
            o.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar - 2}" fill="{c}"/>'
                     f'<text x="{left + w + 4:.1f}" y="{y + bar - 3}">{g[s]:,.0f}</text>')
            y += bar
        y += gap
    o.append(f'<line x1="{left}" y1="{top - 4}" x2="{left}" y2="{y}" stroke="black"/>')
    o.append(f'<text x="{left}" y="{y + 16}">0</text><text x="{left + width}" y="{y + 16}" text-anchor="end">'
             f'{vmax:,.0f} {escape(unit)}</text></svg>')
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")
