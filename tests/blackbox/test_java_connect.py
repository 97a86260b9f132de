"""A Kafka Connect 4.x distributed cluster (connect-runtime from Maven, tests/java/connect/pom.xml) against the
broker under test: two workers in one group with Connect's own group protocol ("connect", sessioned
incremental cooperative assignment, whose metadata and assignments the broker passes through untouched),
the config/offset/status topics Connect creates compacted and verifies, and the file source and sink
connectors moving lines through a topic. A worker stopping hands its connector and task to the other,
which resumes from the source offset stored in the offsets topic: every line arrives once, in order."""
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid

from broker import free_port
from test_java_clients import JAVA_OPTS

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def connect_cp():
    return subprocess.run(["bash", os.path.join(TESTS, "support", "classpath.sh"), "connect"], check=True,
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL).stdout.strip()


def rest(url, body=None, method=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data else "GET"),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def wait(what, cond, timeout, logs):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = cond()
            if last:
                return last
        except (urllib.error.URLError, ConnectionError, OSError, KeyError, ValueError) as e:
            last = e
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})\n{logs()}")


class Worker:
    def __init__(self, cp, d, name, props):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.id = f"127.0.0.1:{self.port}"
        self.log = os.path.join(d, f"{name}.log")
        cfg = os.path.join(d, f"{name}.properties")
        with open(cfg, "w") as f:
            for k, v in {**props, "listeners": self.url, "rest.advertised.host.name": "127.0.0.1",
                         "rest.advertised.port": self.port}.items():
                f.write(f"{k}={v}\n")
        log4j = os.path.join(d, f"{name}-log4j.properties")
        with open(log4j, "w") as f:
            f.write("log4j.rootLogger=INFO, f\nlog4j.appender.f=org.apache.log4j.FileAppender\n"
                    f"log4j.appender.f.File={self.log}\nlog4j.appender.f.layout=org.apache.log4j.PatternLayout\n"
                    "log4j.appender.f.layout.ConversionPattern=[%d] %p %m (%c)%n\n")
        opts = [o for o in JAVA_OPTS if not o.startswith("-Dlog4j")]
        self.proc = subprocess.Popen(["java", *opts, f"-Dlog4j.configuration=file:{log4j}", "-cp", cp,
                                      "org.apache.kafka.connect.cli.ConnectDistributed", cfg],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def tail(self, n=60):
        try:
            with open(self.log) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def test_connect_distributed_workers_hand_over_file_connectors(broker, tmp_path):
    cp = connect_cp()
    tag = uuid.uuid4().hex[:8]
    props = {
        "bootstrap.servers": broker.bootstrap, "group.id": f"connect-{tag}",
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.storage.StringConverter",
        "config.storage.topic": f"connect-configs-{tag}", "offset.storage.topic": f"connect-offsets-{tag}",
        "status.storage.topic": f"connect-status-{tag}", "config.storage.replication.factor": 1,
        "offset.storage.replication.factor": 1, "status.storage.replication.factor": 1,
        "offset.storage.partitions": 5, "status.storage.partitions": 2,
        "offset.flush.interval.ms": 1000,
        # A departed worker's work is handed over after this delay (Kafka's default is 5 minutes).
        "scheduled.rebalance.max.delay.ms": 2000,
    }
    src, out, topic = tmp_path / "in.txt", tmp_path / "out.txt", f"connect-lines-{tag}"
    src.write_text("".join(f"line-{i}\n" for i in range(100)))
    workers = [Worker(cp, str(tmp_path), name, props) for name in ("w1", "w2")]

    def logs():
        return "\n".join(f"--- {w.id} (exit {w.proc.poll()})\n{w.tail()}" for w in workers)

    try:
        for w in workers:
            wait(f"worker {w.id} REST", lambda w=w: rest(w.url + "/").get("kafka_cluster_id"), 120, logs)
        rest(workers[0].url + "/connectors", {"name": "src", "config": {
            "connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector", "tasks.max": "1",
            "file": str(src), "topic": topic}})
        rest(workers[1].url + "/connectors", {"name": "sink", "config": {
            "connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector", "tasks.max": "1",
            "file": str(out), "topics": topic}})
        expected = [f"line-{i}" for i in range(100)]
        wait("100 lines through the topic", lambda: lines(out) == expected, 120, logs)

        def placed(url=workers[0].url):
            st = {n: rest(f"{url}/connectors/{n}/status") for n in ("src", "sink")}
            tasks = {n: [t for t in s["tasks"] if t["state"] == "RUNNING"] for n, s in st.items()}
            if all(s["connector"]["state"] == "RUNNING" for s in st.values()) and all(len(t) == 1 for t in tasks.values()):
                return {n: t[0]["worker_id"] for n, t in tasks.items()}, {s["connector"]["worker_id"] for s in st.values()}
            return None

        # Connect's assignor spreads two connectors and two tasks over both members of the group.
        tasks, owners = wait("connectors and tasks running", placed, 60, logs)
        everyone = set(tasks.values()) | owners
        assert everyone == {w.id for w in workers}, (tasks, owners)

        # The worker running the source task leaves; the other takes it over from the stored source offset.
        leaving = next(w for w in workers if w.id == tasks["src"])
        staying = next(w for w in workers if w is not leaving)
        leaving.stop()
        assert leaving.proc.returncode is not None
        wait("source task on the remaining worker",
             lambda: (p := placed(staying.url)) and p[0]["src"] == staying.id and p[0]["sink"] == staying.id, 90, logs)
        with open(src, "a") as f:
            f.write("".join(f"line-{i}\n" for i in range(100, 150)))
        expected += [f"line-{i}" for i in range(100, 150)]
        wait("150 lines, each once and in order", lambda: lines(out) == expected, 120,
             lambda: f"{lines(out)[-10:]}\n{logs()}")
    finally:
        for w in workers:
            w.stop()
