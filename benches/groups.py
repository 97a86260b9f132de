#!/usr/bin/env python3
"""Consumer-group benchmark: Rill vs Apache Kafka through librdkafka (confluent-kafka).

    benches/groups.py [--systems rill,kafka] [--smoke] [--messages N] [--members N] [--repeat N]
                      [--heartbeat-ms MS] [--out FILE]

(a) commit: the event-bus pattern. One consumer in a group, subscribed to a 1-partition topic of
    N x 100 B records, commits every record with commit(message=m, asynchronous=False) before it
    polls the next. Reported: records/s from the first record to the last commit, and the latency
    of each synchronous commit call (p50/p99/max).
(b) rebalance: M consumers (default 10, each in its own thread polling every 20 ms) subscribe to a
    2*M-partition topic. "join" = time from the last subscribe() until every member holds a
    non-empty, disjoint share covering all partitions; then one member close()s (LeaveGroup) and
    "leave" = time from the start of close() until the remaining members cover all partitions again.
    Eager protocol (librdkafka default range,roundrobin); session.timeout.ms=10000 and
    heartbeat.interval.ms=--heartbeat-ms (default 500): members learn of a rebalance from their next
    heartbeat, so the heartbeat interval bounds the "leave" time from below.

The event-bus variant of (a), with the client profile of /work/shared/CLIENT-PROFILES.md
(Avro-framed 104-204 B records, batch.size 1024, linger 5 ms, acks=all), is bench_eventbus(),
run by benches/run.py --workloads eventbus.

Each system gets a fresh broker (tests/support/broker.py) with group.initial.rebalance.delay.ms=0
(Kafka's apache-kafka.sh sets the same). Bounded: every phase has a 60 s timeout; --smoke runs
500 commits and one rebalance round per system (< 30 s with a warm Kafka classpath).
Results: table on stdout, JSON in benches/results/groups-<YYYY-MM-DD>[-smoke].json (or --out).
"""
import argparse
import datetime
import json
import os
import platform
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "support"))
from broker import Broker  # noqa: E402

from confluent_kafka import Consumer, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

GROUP_CONFIG = {"group.initial.rebalance.delay.ms": "0"}
PHASE_TIMEOUT = 60.0


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100.0 * (len(xs) - 1))))]


def create_topic(bootstrap, name, partitions, replication_factor=1):
    a = AdminClient({"bootstrap.servers": bootstrap})
    nt = NewTopic(name, num_partitions=partitions, replication_factor=replication_factor)
    a.create_topics([nt])[name].result(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        t = a.list_topics(topic=name, timeout=10).topics.get(name)
        if t and t.error is None and len(t.partitions) == partitions and all(p.leader >= 0 for p in t.partitions.values()):
            return
        time.sleep(0.1)
    raise RuntimeError(f"topic {name} not ready")


def commit_loop(c, n, timeout=PHASE_TIMEOUT):
    """poll() and commit(message=m, asynchronous=False) n records; returns (per-commit latencies in
    seconds, seconds from the first record to the last commit, seconds spent in poll() after the
    first record)."""
    lat = []
    poll_s = 0.0
    start = None
    deadline = time.monotonic() + timeout
    while len(lat) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"commit bench timed out after {len(lat)} of {n}")
        tp = time.perf_counter()
        m = c.poll(1.0 if start is None else 0.1)
        if start is not None:
            poll_s += time.perf_counter() - tp
        if m is None:
            continue
        if m.error():
            raise RuntimeError(m.error())
        if start is None:
            start = time.perf_counter()
        t = time.perf_counter()
        c.commit(message=m, asynchronous=False)
        lat.append(time.perf_counter() - t)
    return lat, time.perf_counter() - start, poll_s


def commit_result(c, n, lat, elapsed, poll_s):
    committed = sum(tp.offset for tp in c.committed(c.assignment(), timeout=10))
    assert committed == n, f"committed {committed}, expected {n}"
    return {"records": n, "seconds": round(elapsed, 3), "records_per_s": round(n / elapsed, 1),
            "commit_p50_ms": round(pct(lat, 50) * 1e3, 3), "commit_p99_ms": round(pct(lat, 99) * 1e3, 3),
            "commit_max_ms": round(max(lat) * 1e3, 3),
            "poll_mean_ms": round(poll_s / max(1, n - 1) * 1e3, 3)}


def bench_commit(bootstrap, n):
    topic = f"bench-commit-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, 1)
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(n):
        p.produce(topic, value=b"x" * 100, key=str(i).encode())
    assert p.flush(60) == 0
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000})
    c.subscribe([topic])
    try:
        return commit_result(c, n, *commit_loop(c, n))
    finally:
        c.close()


def avro_framed(rng, schema_id=42):
    """A Confluent-framed Avro value of 104-204 bytes: magic 0, 4-byte schema id, random body."""
    return b"\x00" + schema_id.to_bytes(4, "big") + rng.randbytes(rng.randint(99, 199))


def bench_eventbus(bootstrap, n_produce, n_commit, timeout=PHASE_TIMEOUT, replication_factor=1):
    """The event-bus profile of /work/shared/CLIENT-PROFILES.md as it is: a producer with
    batch.size=1024, linger.ms=5, acks unset (the client default: all), idempotence off, null
    keys, 104-204 B Avro-framed values (timed from the first produce() to the last delivery);
    then a consumer (group, auto.offset.reset=earliest, enable.auto.commit=false, poll 100 ms)
    that commits synchronously after every record, for the first n_commit records."""
    import random
    rng = random.Random(7)
    topic = f"bench-eventbus-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, 1, replication_factor)
    values = [avro_framed(rng) for _ in range(min(n_produce, 10_000))]
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "batch.size": 1024, "linger.ms": 5, "enable.idempotence": False,
                  "on_delivery": lambda e, m: e is not None and errors.append(str(e))})
    p.list_topics(topic, timeout=10)
    t0 = time.perf_counter()
    for i in range(n_produce):
        while True:
            try:
                p.produce(topic, value=values[i % len(values)])
                break
            except BufferError:
                p.poll(0.01)
        if i % 1000 == 0:
            p.poll(0)
    left = p.flush(timeout)
    produce_s = time.perf_counter() - t0
    if left or errors:
        raise RuntimeError(f"event-bus produce: {left} undelivered, errors {errors[:3]}")
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-eventbus-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    try:
        res = commit_result(c, n_commit, *commit_loop(c, n_commit, timeout))
    finally:
        c.close()
    res.update(produce_records=n_produce, produce_s=round(produce_s, 3),
               produce_records_per_s=round(n_produce / produce_s, 1),
               value_bytes_mean=round(sum(map(len, values)) / len(values), 1))
    return res


class Member(threading.Thread):
    def __init__(self, bootstrap, group, topic, hb_ms):
        super().__init__(daemon=True)
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                           "auto.offset.reset": "earliest", "session.timeout.ms": 10000,
                           "heartbeat.interval.ms": hb_ms})
        self.topic = topic
        self.parts = frozenset()
        self.subscribed_at = None
        self.stop = threading.Event()
        self.closing_at = None
        self.closed = threading.Event()

    def run(self):
        self.c.subscribe([self.topic])
        self.subscribed_at = time.monotonic()
        while not self.stop.is_set():
            self.c.poll(0.02)
            self.parts = frozenset(tp.partition for tp in self.c.assignment())
        self.closing_at = time.monotonic()
        self.c.close()
        self.closed.set()


def covered(members, partitions):
    seen = []
    for m in members:
        if not m.parts:
            return False
        seen += m.parts
    return len(seen) == len(set(seen)) == partitions


def wait_covered(members, partitions):
    deadline = time.monotonic() + PHASE_TIMEOUT
    while not covered(members, partitions):
        if time.monotonic() > deadline:
            raise RuntimeError(f"rebalance did not settle: {[sorted(m.parts) for m in members]}")
        time.sleep(0.005)
    return time.monotonic()


def bench_rebalance(bootstrap, n_members, hb_ms):
    partitions = 2 * n_members
    topic = f"bench-rebalance-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, partitions)
    group = f"bench-rb-{uuid.uuid4().hex[:8]}"
    members = [Member(bootstrap, group, topic, hb_ms) for _ in range(n_members)]
    for m in members:
        m.start()
    try:
        while any(m.subscribed_at is None for m in members):
            time.sleep(0.001)
        last_join = max(m.subscribed_at for m in members)
        join_s = wait_covered(members, partitions) - last_join
        leaver, rest = members[0], members[1:]
        leaver.stop.set()
        while leaver.closing_at is None:
            time.sleep(0.001)
        leave_s = wait_covered(rest, partitions) - leaver.closing_at
        return {"members": n_members, "partitions": partitions, "join_s": round(join_s, 3),
                "leave_s": round(leave_s, 3)}
    finally:
        for m in members:
            m.stop.set()
        for m in members:
            m.closed.wait(30)


def median(xs):
    return sorted(xs)[len(xs) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--systems", default="rill,kafka")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--messages", type=int)
    ap.add_argument("--members", type=int, default=10)
    ap.add_argument("--repeat", type=int)
    ap.add_argument("--heartbeat-ms", type=int, default=500)
    ap.add_argument("--out")
    args = ap.parse_args()
    n = args.messages or (500 if args.smoke else 5000)
    repeat = args.repeat or (1 if args.smoke else 3)
    results = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "host": platform.node(),
               "cpus": os.cpu_count(), "messages": n, "members": args.members, "repeat": repeat,
               "heartbeat_ms": args.heartbeat_ms, "broker_config": GROUP_CONFIG, "systems": {}}
    for system in args.systems.split(","):
        t0 = time.monotonic()
        with Broker.start(target=system, extra=GROUP_CONFIG) as b:
            commits = [bench_commit(b.bootstrap, n) for _ in range(repeat)]
            rebalances = [bench_rebalance(b.bootstrap, args.members, args.heartbeat_ms) for _ in range(repeat)]
        results["systems"][system] = {"commit": commits, "rebalance": rebalances,
                                      "wall_s": round(time.monotonic() - t0, 1)}
    print(f"\n{n} records, one synchronous commit per record; {args.members}-member rebalance "
          f"(heartbeat.interval.ms={args.heartbeat_ms}); median of {repeat}")
    print(f"{'system':8} {'rec/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'poll ms':>8} {'join s':>8} {'leave s':>8}")
    for system, r in results["systems"].items():
        c, rb = r["commit"], r["rebalance"]
        print(f"{system:8} {median([x['records_per_s'] for x in c]):9.0f} "
              f"{median([x['commit_p50_ms'] for x in c]):8.2f} {median([x['commit_p99_ms'] for x in c]):8.2f} "
              f"{median([x['commit_max_ms'] for x in c]):8.2f} {median([x['poll_mean_ms'] for x in c]):8.2f} {median([x['join_s'] for x in rb]):8.2f} "
              f"{median([x['leave_s'] for x in rb]):8.2f}")
    out = args.out or os.path.join(HERE, "results", f"groups-{datetime.date.today()}{'-smoke' if args.smoke else ''}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"results: {out}")


if __name__ == "__main__":
    main()
