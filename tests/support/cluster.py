"""A local Rill cluster of real processes for black-box tests: n nodes on loopback, each a
`rill broker` with its own port, Raft port and data directory (see scripts/cluster for the
user-facing equivalent)."""
import tempfile
import time

from broker import Broker, free_port

# Fast failure detection keeps fault tests short; production defaults are 500/2000 ms.
FAST_RAFT = {"rill.raft.heartbeat.interval.ms": "100", "rill.raft.election.timeout.ms": "600",
             # Fewer offsets partitions (Raft groups) keep a 2-core CI machine responsive.
             "offsets.topic.num.partitions": "6"}


class RillCluster:
    def __init__(self, n=3, extra=None):
        raft_ports = [free_port() for _ in range(n)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{p}" for i, p in enumerate(raft_ports))
        self.voters = voters
        self.extra = dict(extra or {})
        self.nodes = {}
        for i in range(n):
            node_id = i + 1
            cfg = {"node.id": str(node_id), "controller.quorum.voters": voters, **FAST_RAFT, **(extra or {})}
            self.nodes[node_id] = Broker("rill", free_port(), tempfile.mkdtemp(prefix=f"rill-node{node_id}-"),
                                         True, cfg)

    @property
    def bootstrap(self):
        return ",".join(b.bootstrap for b in self.nodes.values())

    def start(self, timeout=90):
        # A cluster that does not come up is stopped here: the caller gets no object to
        # clean up, and its nodes would outlive the test.
        try:
            for b in self.nodes.values():
                b._launch(timeout)
            self.wait_ready(timeout)
        except BaseException:
            self.cleanup()
            raise
        return self

    def admin(self):
        # Kept alive: futures fail with _DESTROY if their client is collected.
        from confluent_kafka.admin import AdminClient
        if getattr(self, "_admin", None) is None:
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap})
        return self._admin

    def wait_ready(self, timeout=90):
        """Until every node is registered and __consumer_offsets has a leader per partition."""
        a = self.admin()
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                md = a.list_topics(timeout=5)
                offsets = md.topics.get("__consumer_offsets")
                if (len(md.brokers) == len(self.nodes) and offsets is not None and offsets.partitions
                        and all(p.leader >= 0 for p in offsets.partitions.values())):
                    return
                last = f"{len(md.brokers)} brokers, offsets topic: {offsets is not None}"
            except Exception as e:  # noqa: BLE001 - nodes still starting
                last = repr(e)
            time.sleep(0.2)
        raise RuntimeError(f"cluster not ready within {timeout}s ({last}):\n{self.logs()}")

    def leader(self, topic, partition, timeout=30, exclude=()):
        """Node id leading the partition (waiting out elections)."""
        a = self.admin()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                md = a.list_topics(topic=topic, timeout=5)
                p = md.topics[topic].partitions.get(partition)
                if p is not None and p.leader > 0 and p.leader not in exclude:
                    return p.leader
            except Exception:  # noqa: BLE001
                pass
            time.sleep(0.1)
        raise RuntimeError(f"no leader for {topic}-{partition}")

    def add_node(self, node_id, timeout=90, wait=True, raft_address=None):
        """Starts a node outside the voters; it joins the cluster as a broker (with `wait`,
        returns once every node is registered)."""
        cfg = {"node.id": str(node_id), "controller.quorum.voters": self.voters,
               "rill.raft.address": raft_address or f"127.0.0.1:{free_port()}", **FAST_RAFT, **self.extra}
        b = Broker("rill", free_port(), tempfile.mkdtemp(prefix=f"rill-node{node_id}-"), True, cfg)
        self.nodes[node_id] = b
        b._launch(timeout)
        if wait:
            self.wait_ready(timeout)
        return b

    def kill9(self, node_id):
        self.nodes[node_id].kill9()

    def restart(self, node_id, timeout=90):
        self.nodes[node_id].restart(timeout)

    def logs(self, lines=60):
        out = []
        for i, b in self.nodes.items():
            out.append(f"----- node {i} ({b.log_path}) -----\n{b.log_tail(max_lines=lines)}")
        return "\n".join(out)

    def cleanup(self):
        self._admin = None
        for b in self.nodes.values():
            b.cleanup()
