"""Java kafka-clients 4.x programs (tests/java/src) against the broker under test."""
import subprocess

from helpers import create_topic

JAVA_OPTS = ["-Xmx256m", "-XX:TieredStopAtLevel=1", "-Dlog4j.configuration=file:/dev/null",
             "-Dlog4j.rootLogger=WARN", "-Djava.awt.headless=true"]


def run_java(cp, main, *args, timeout=120):
    r = subprocess.run(["java", *JAVA_OPTS, "-cp", cp, main, *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"{main} exited {r.returncode}:\n{out[-5000:]}"
    return out


def test_java_producer_profile_then_consumer_assign(broker, java_cp, topic_name):
    create_topic(broker, topic_name, partitions=3, config={"retention.ms": str(7 * 86400000)})
    out = run_java(java_cp, "ProducerCheck", broker.bootstrap, topic_name, 2000)
    assert "OK produced 2000" in out
    out = run_java(java_cp, "ConsumerCheck", broker.bootstrap, topic_name, 2000)
    assert "OK consumed 2000" in out


def test_java_admin(broker, java_cp, topic_name):
    out = run_java(java_cp, "AdminCheck", broker.bootstrap, topic_name)
    assert "OK admin" in out
