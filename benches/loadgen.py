#!/usr/bin/env python3
"""librdkafka load generator (confluent-kafka): produce or consume N records of S bytes.

    loadgen.py produce --bootstrap H:P --topic T --count N --size S --acks 1|all [--timeout SEC]
    loadgen.py consume --bootstrap H:P --topic T --count N [--timeout SEC]

Prints one JSON object on stdout: records, bytes, elapsed_s, records_per_s, mb_per_s (MB = 10^6
bytes of record values), errors, client_cpu_s (whole process: Python + librdkafka threads) and
main_thread_cpu_s (the Python thread; close to elapsed_s means Python is the bottleneck).

Producer: timed from the first produce() until every delivery report arrived (flush()).
Delivery reports are requested for failures only, so the Python loop does no per-record callback.
Consumer: assign() partition 0..P-1 from offset 0, timed until `count` records were read; it
has a group.id (librdkafka needs one) but never commits.
Both loops are bounded by --timeout (exit code 2 when it expires).

Latency (produce, Python client only; benches/cluster.py uses it):
  --latency       request a delivery report per record and report librdkafka's per-record
                  latency (produce() call to broker acknowledgement, Message.latency()):
                  latency_ms = {p50, p90, p99, p999, max, n}. Costs one Python callback per record.
  --sync          one record at a time: produce() then flush() (a synchronous send per event);
                  implies --latency. --rate R instead paces produce() at R records/s.
  --message-timeout-ms, --linger-ms  override the producer's settings (default: --timeout, 5).
"""
import argparse
import json
import os
import resource
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition


def cpu_self():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def percentiles(xs):
    if not xs:
        return None
    xs = sorted(xs)

    def q(f):
        return round(xs[min(len(xs) - 1, int(f * len(xs)))] * 1000, 3)
    return {"p50": q(0.50), "p90": q(0.90), "p99": q(0.99), "p999": q(0.999), "max": q(1.0), "n": len(xs)}


def produce(a):
    errors = []
    lat = []
    track = a.latency or a.sync

    def on_error_dr(err, msg):
        if err is not None:
            errors.append(str(err))

    def on_dr(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            lat.append(msg.latency())

    p = Producer({
        "bootstrap.servers": a.bootstrap,
        "acks": a.acks,
        "linger.ms": a.linger_ms,
        "batch.size": 1_000_000,            # <= message.max.bytes of both brokers (1048588)
        "batch.num.messages": 1_000_000,
        "queue.buffering.max.messages": 2_000_000,
        "queue.buffering.max.kbytes": 2_097_151,
        "compression.type": "none",
        "enable.idempotence": False,
        "delivery.report.only.error": not track,
        "on_delivery": on_dr if track else on_error_dr,
        "message.timeout.ms": a.message_timeout_ms or int(a.timeout * 1000),
    })
    # Warm up the connection and metadata outside the timed region.
    p.list_topics(a.topic, timeout=10)
    payload = os.urandom(a.size)
    deadline = time.monotonic() + a.timeout
    cpu0, th0, t0 = cpu_self(), time.thread_time(), time.perf_counter()
    topic, produce_, poll = a.topic, p.produce, p.poll
    i = 0
    n = a.count
    if a.sync:
        flush = p.flush
        while i < n and time.monotonic() < deadline:
            produce_(topic, payload)
            i += 1
            flush(max(0.1, deadline - time.monotonic()))
    elif a.rate:
        period = 1.0 / a.rate
        while i < n and time.monotonic() < deadline:
            due = t0 + i * period
            while True:
                left = due - time.perf_counter()
                if left <= 0:
                    break
                poll(min(left, 0.01))
            produce_(topic, payload)
            i += 1
            poll(0)
    else:
        while i < n:
            try:
                produce_(topic, payload)
                i += 1
            except BufferError:
                poll(0.001)
                if time.monotonic() > deadline:
                    break
    remaining = p.flush(max(0.1, deadline - time.monotonic()))
    t1 = time.perf_counter()
    res = result("produce", a, i - remaining, t1 - t0, cpu_self() - cpu0, time.thread_time() - th0)
    res["errors"] = len(errors)
    res["error_sample"] = errors[:3]
    res["timed_out"] = remaining > 0 or i < n
    if track:
        res["latency_ms"] = percentiles([x for x in lat if x is not None])
    return res


def consume(a):
    c = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": "rill-bench-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "fetch.max.bytes": 52_428_800,
        "max.partition.fetch.bytes": 8_388_608,
        # librdkafka pauses fetching for fetch.queue.backoff.ms (default 1 s) once its local queue
        # holds queued.min.messages (default 100,000): with 100 B records one 8 MB fetch does that.
        "queued.min.messages": 2_000_000,
        "queued.max.messages.kbytes": 1_048_576,
        "fetch.queue.backoff.ms": 10,
        "fetch.wait.max.ms": 100,
        "check.crcs": False,
    })
    md = c.list_topics(a.topic, timeout=10)
    parts = sorted(md.topics[a.topic].partitions)
    deadline = time.monotonic() + a.timeout
    cpu0, th0, t0 = cpu_self(), time.thread_time(), time.perf_counter()
    c.assign([TopicPartition(a.topic, p, 0) for p in parts])
    got = nbytes = 0
    errors = []
    while got < a.count and time.monotonic() < deadline:
        # Ask for at most what is still missing, so the last call returns as soon as it arrives.
        for m in c.consume(num_messages=min(10_000, a.count - got), timeout=0.5):
            e = m.error()
            if e is not None:
                if e.code() != KafkaError._PARTITION_EOF:
                    errors.append(str(e))
                continue
            got += 1
            nbytes += len(m.value())
    t1 = time.perf_counter()
    res = result("consume", a, got, t1 - t0, cpu_self() - cpu0, time.thread_time() - th0)
    res["bytes"] = nbytes
    res["mb_per_s"] = nbytes / 1e6 / res["elapsed_s"] if res["elapsed_s"] > 0 else 0.0
    res["errors"] = len(errors)
    res["error_sample"] = errors[:3]
    res["timed_out"] = got < a.count
    c.close()
    return res


def result(mode, a, records, elapsed, cpu, thread_cpu):
    return {
        "mode": mode,
        "client": "python",
        "records": records,
        "bytes": records * a.size,
        "elapsed_s": round(elapsed, 4),
        "records_per_s": records / elapsed if elapsed > 0 else 0.0,
        "mb_per_s": records * a.size / 1e6 / elapsed if elapsed > 0 else 0.0,
        "client_cpu_s": round(cpu, 3),
        "main_thread_cpu_s": round(thread_cpu, 3),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["produce", "consume"])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--acks", default="all", choices=["0", "1", "all", "-1"])
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--latency", action="store_true", help="per-record delivery latency percentiles")
    ap.add_argument("--sync", action="store_true", help="produce() + flush() per record (implies --latency)")
    ap.add_argument("--rate", type=float, default=0, help="records/s (paced produce)")
    ap.add_argument("--message-timeout-ms", type=int, default=0)
    ap.add_argument("--linger-ms", type=float, default=5)
    a = ap.parse_args()
    res = produce(a) if a.mode == "produce" else consume(a)
    print(json.dumps(res))
    sys.exit(2 if res["timed_out"] else 0)


if __name__ == "__main__":
    main()
