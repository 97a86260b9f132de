"""kcat (librdkafka CLI) against the broker under test: -L, -P with keys, -C -e."""
import shutil
import subprocess

import pytest

from helpers import create_topic

pytestmark = pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed (apt-get install kcat)")


def kcat(b, *args, input=None):
    r = subprocess.run(["kcat", "-b", b.bootstrap, *args], input=input, capture_output=True, timeout=60)
    assert r.returncode == 0, f"kcat {args} failed ({r.returncode}): {r.stderr.decode(errors='replace')}"
    return r.stdout.decode()


def test_kcat_metadata(broker, topic_name):
    create_topic(broker, topic_name, partitions=3)
    out = kcat(broker, "-L", "-t", topic_name, "-m", "20")
    assert "1 brokers:" in out
    assert f"127.0.0.1:{broker.port}" in out
    assert f'topic "{topic_name}" with 3 partitions' in out
    for p in range(3):
        assert f"partition {p}, leader 1, replicas: 1, isrs: 1" in out


def test_kcat_produce_consume_exact(broker, topic_name):
    create_topic(broker, topic_name)
    lines = [f"key{i}:value {i} with spaces ✓" for i in range(100)]
    kcat(broker, "-P", "-t", topic_name, "-p", "0", "-K:", "-X", "acks=all", input="\n".join(lines).encode() + b"\n")
    out = kcat(broker, "-C", "-t", topic_name, "-p", "0", "-o", "beginning", "-e", "-q", "-f", "%o|%k|%s\n", "-m", "20")
    want = "".join(f"{i}|key{i}|value {i} with spaces ✓\n" for i in range(100))
    assert out == want
