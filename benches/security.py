#!/usr/bin/env python3
"""Produce throughput over SASL_SSL vs PLAINTEXT on the same Rill node (librdkafka / confluent-kafka).

    benches/security.py [--count N] [--size S] [--repeat R] [--acks all|1] [--json PATH]

One broker (RILL_BIN or target/release/rill) with two listeners: PLAINTEXT and SASL_SSL (PLAIN,
TLS 1.3 with a P-256 certificate made by the openssl CLI at start). Each round produces N records
of S random bytes to a fresh 1-partition topic through each listener in turn (order alternates per
round), timed from the first produce() to the end of flush(). Prints one line per run and the
median of each listener, as records/s and MB/s (10^6 bytes of values), with the CPU seconds the
broker and this client process (librdkafka's threads included) spent per GB produced: client and
broker share the machine, so this shows which end a protocol's cost lands on. `--json PATH` also
writes every run.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "support"))

from broker import Broker, free_port  # noqa: E402
from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402


def certs(d):
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-x509", *ec, "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.pem", "-days", "1", "-subj", "/CN=bench CA")
    run("openssl", "req", *ec, "-keyout", f"{d}/s.key", "-out", f"{d}/s.csr", "-subj", "/CN=localhost")
    with open(f"{d}/s.ext", "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", f"{d}/s.csr", "-CA", f"{d}/ca.pem", "-CAkey", f"{d}/ca.key", "-CAcreateserial",
        "-out", f"{d}/s.pem", "-days", "1", "-extfile", f"{d}/s.ext")
    with open(f"{d}/ks.pem", "w") as f:
        f.write(open(f"{d}/s.key").read() + open(f"{d}/s.pem").read())


def broker_cpu(pid):
    """User + system CPU seconds of a process so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def client_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def produce(conf, topic, count, size, acks):
    p = Producer({**conf, "acks": acks, "linger.ms": 5, "batch.size": 1_000_000, "enable.idempotence": False,
                  "queue.buffering.max.messages": 1_000_000, "delivery.report.only.error": True})
    value = os.urandom(size)
    t0 = time.perf_counter()
    for _ in range(count):
        while True:
            try:
                p.produce(topic, value)
                break
            except BufferError:
                p.poll(0.001)
    left = p.flush(120)
    el = time.perf_counter() - t0
    assert left == 0, f"{left} records not delivered"
    return count / el, count * size / el / 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--acks", default="all")
    ap.add_argument("--json", help="also write every run to this file")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="rill-bench-sec-")
    os.makedirs(f"{work}/c")
    certs(f"{work}/c")
    p0, p1 = free_port(), free_port()
    jaas = 'x required user_bench="bench-pw";'
    b = Broker.start(port=p0, workdir=work, extra={
        "listeners": f"PLAINTEXT://127.0.0.1:{p0},SASL_SSL://127.0.0.1:{p1}",
        "ssl.keystore.location": f"{work}/c/ks.pem",
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_ssl.plain.sasl.jaas.config": jaas,
    })
    try:
        confs = {
            "PLAINTEXT": {"bootstrap.servers": f"127.0.0.1:{p0}"},
            "SASL_SSL": {"bootstrap.servers": f"127.0.0.1:{p1}", "security.protocol": "SASL_SSL",
                         "sasl.mechanism": "PLAIN", "sasl.username": "bench", "sasl.password": "bench-pw",
                         "ssl.ca.location": f"{work}/c/ca.pem"},
        }
        admin = AdminClient(confs["PLAINTEXT"])
        results = {k: [] for k in confs}
        print(f"{a.count} records x {a.size} B, acks={a.acks}, {a.repeat} rounds")
        for r in range(a.repeat):
            order = list(confs) if r % 2 == 0 else list(reversed(confs))
            for name in order:
                topic = f"bench-{uuid.uuid4().hex[:8]}"
                admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
                b0, c0 = broker_cpu(b.pid()), client_cpu()
                rps, mbps = produce(confs[name], topic, a.count, a.size, a.acks)
                gb = a.count * a.size / 1e9
                bcpu, ccpu = (broker_cpu(b.pid()) - b0) / gb, (client_cpu() - c0) / gb
                results[name].append((rps, mbps, bcpu, ccpu))
                print(f"round {r + 1} {name:10s} {rps:12,.0f} records/s {mbps:8.1f} MB/s"
                      f"  CPU s/GB: broker {bcpu:5.2f} client {ccpu:5.2f}")
        print("median:")
        base = statistics.median(x[0] for x in results["PLAINTEXT"])
        for name, rs in results.items():
            rps = statistics.median(x[0] for x in rs)
            mbps = statistics.median(x[1] for x in rs)
            bcpu = statistics.median(x[2] for x in rs)
            ccpu = statistics.median(x[3] for x in rs)
            print(f"  {name:10s} {rps:12,.0f} records/s {mbps:8.1f} MB/s ({rps / base:.0%} of PLAINTEXT)"
                  f"  CPU s/GB: broker {bcpu:5.2f} client {ccpu:5.2f}")
        if a.json:
            keys = ("records_per_s", "mb_per_s", "broker_cpu_s_per_gb", "client_cpu_s_per_gb")
            with open(a.json, "w") as f:
                json.dump({"count": a.count, "size": a.size, "acks": a.acks, "repeat": a.repeat,
                           "runs": {k: [dict(zip(keys, (round(v, 3) for v in x))) for x in rs]
                                    for k, rs in results.items()}}, f, indent=1)
        del admin
    finally:
        import gc
        gc.collect()
        b.cleanup()
        import shutil
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
