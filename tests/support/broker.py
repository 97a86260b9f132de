"""Start/stop the broker under test (Rill or Apache Kafka) on a free loopback port.

Reusable outside pytest (benchmarks):

    from broker import Broker
    with Broker.start(target="kafka") as b:      # or "rill"
        print(b.bootstrap)

Target: argument, else env RILL_TEST_TARGET (rill|kafka, default rill).
Rill binary: env RILL_BIN, else <repo>/target/release/rill.
Rill is run as `rill broker --set listeners=PLAINTEXT://127.0.0.1:<port> --set log.dirs=<dir>/data
--set node.id=1` and is ready when the port accepts connections.
Apache Kafka is run by support/apache-kafka.sh (KRaft combined mode, jars from Maven).
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
KAFKA_SH = os.path.join(HERE, "apache-kafka.sh")


def target():
    t = os.environ.get("RILL_TEST_TARGET", "rill")
    if t not in ("rill", "kafka"):
        raise ValueError(f"RILL_TEST_TARGET must be rill or kafka, not {t!r}")
    return t


_handed_out = set()


def free_port():
    """A free loopback port never handed out before in this process: the kernel may offer a
    port again as soon as the probing socket closes, and a cluster picks its raft, client and
    admin ports before any node binds them (a repeat made two nodes collide once)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no fresh free port")


def port_open(port, timeout=0.2):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def rill_bin():
    return os.environ.get("RILL_BIN") or os.path.join(REPO, "target", "release", "rill")


class Broker:
    def __init__(self, target, port, workdir, own_workdir, extra=None):
        self.target = target
        self.port = port
        self.workdir = workdir
        self.own_workdir = own_workdir
        self.extra = dict(extra or {})
        self.proc = None  # rill only
        # Rill's admin HTTP listener (metrics, health, console); a free port per broker, since
        # tests run several brokers at once. None for Apache Kafka.
        self.admin_port = None
        self.log_path = os.path.join(workdir, "rill.log" if target == "rill" else "kafka.log")

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    @property
    def admin_url(self):
        return f"http://127.0.0.1:{self.admin_port}" if self.admin_port else None

    @property
    def data_dir(self):
        return os.path.join(self.workdir, "data")

    @classmethod
    def external(cls, bootstrap):
        """An already running broker (env RILL_TEST_BOOTSTRAP): nothing is started or stopped."""
        host, port = bootstrap.rsplit(":", 1)
        b = cls(target(), int(port), tempfile.mkdtemp(prefix="external-broker-"), True)
        b.is_external = True
        return b

    is_external = False

    @classmethod
    def start(cls, target=None, port=None, workdir=None, extra=None, timeout=90):
        target = target or globals()["target"]()
        own = workdir is None
        workdir = workdir or tempfile.mkdtemp(prefix=f"{target}-test-")
        b = cls(target, port or free_port(), workdir, own, extra)
        try:
            b._launch(timeout)
        except BaseException:
            b.cleanup()  # the error message already carries the log tail
            raise
        return b

    def _launch(self, timeout=90):
        os.makedirs(self.data_dir, exist_ok=True)
        if self.target == "kafka":
            kv = [f"{k}={v}" for k, v in self.extra.items()]
            r = subprocess.run(["bash", KAFKA_SH, "start", str(self.port), self.workdir, *kv],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout + 60)
            if r.returncode != 0:
                raise RuntimeError(f"apache-kafka.sh start failed:\n{r.stdout}\n{r.stderr}")
            self._wait_kafka_ready(timeout)
            return
        binary = rill_bin()
        if not os.path.exists(binary):
            raise RuntimeError(f"rill binary not found: {binary} (build with cargo build --release -p rill-cli or set RILL_BIN)")
        if "admin.listener" not in self.extra:
            self.admin_port = self.admin_port or free_port()
            self.extra["admin.listener"] = f"127.0.0.1:{self.admin_port}"
        args = [binary, "broker",
                "--set", f"listeners=PLAINTEXT://127.0.0.1:{self.port}",
                "--set", f"log.dirs={self.data_dir}",
                "--set", "node.id=1"]
        for k, v in self.extra.items():
            args += ["--set", f"{k}={v}"]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_open(self.port):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"rill exited with {self.proc.returncode} during start-up:\n{self.log_tail()}")
            time.sleep(0.05)
        self.kill9()
        raise RuntimeError(f"rill did not accept connections on {self.port} within {timeout}s:\n{self.log_tail()}")

    def _wait_kafka_ready(self, timeout):
        # Port open is not enough for Kafka: wait until Metadata lists a broker (it may still be fenced).
        from confluent_kafka.admin import AdminClient
        a = AdminClient({"bootstrap.servers": self.bootstrap})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                md = a.list_topics(timeout=5)
                if md.brokers:
                    return
            except Exception:
                pass
            time.sleep(0.2)
        raise RuntimeError("kafka not ready")

    def pid(self):
        if self.target == "rill":
            return self.proc.pid if self.proc and self.proc.poll() is None else None
        try:
            with open(os.path.join(self.workdir, "kafka.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def alive(self):
        if self.target == "rill":
            return self.proc is not None and self.proc.poll() is None
        p = self.pid()
        if p is None:
            return False
        try:
            os.kill(p, 0)
            return True
        except OSError:
            return False

    def kill9(self):
        """Crash the broker (SIGKILL) and wait until it is gone."""
        if self.target == "kafka":
            subprocess.run(["bash", KAFKA_SH, "kill9", str(self.port), self.workdir], timeout=30)
            return
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=20)

    def stop(self, timeout=20):
        if self.target == "kafka":
            subprocess.run(["bash", KAFKA_SH, "stop", str(self.port), self.workdir], timeout=timeout + 30)
            return
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)

    def restart(self, timeout=90):
        """Start again on the same port and data dir (after stop() or kill9())."""
        self._launch(timeout)

    def cleanup(self):
        if not self.is_external:
            self.stop()
        # RILL_KEEP_LOGS=<dir>: each broker's log outlives its work directory, for post-mortems.
        keep = os.environ.get("RILL_KEEP_LOGS")
        if keep and os.path.exists(self.log_path):
            os.makedirs(keep, exist_ok=True)
            shutil.copy(self.log_path, os.path.join(keep, os.path.basename(self.workdir.rstrip("/")) + ".log"))
        if self.own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_tail(self, since=0, max_lines=200):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError as e:
            return f"<no log: {e}>"
        return "\n".join(lines[-max_lines:])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
