"""Apache Kafka 4.x CLI tools (from the Maven kafka-tools jar) against the broker under test."""
import subprocess

from helpers import wait_for_leaders

JAVA_OPTS = ["-Xmx256m", "-XX:TieredStopAtLevel=1", "-Dlog4j.configuration=file:/dev/null", "-Djava.awt.headless=true"]
TOPICS = "org.apache.kafka.tools.TopicCommand"
PRODUCER = "org.apache.kafka.tools.ConsoleProducer"
CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer"


def tool(cp, main, *args, input=None, timeout=120):
    r = subprocess.run(["java", *JAVA_OPTS, "-cp", cp, main, *map(str, args)], input=input, capture_output=True,
                       text=True, timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)
    assert r.returncode == 0, f"{main} {args} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def test_kafka_topics_create_list_describe_alter_delete(broker, java_cp, topic_name):
    bs = ["--bootstrap-server", broker.bootstrap]
    out = tool(java_cp, TOPICS, *bs, "--create", "--topic", topic_name, "--partitions", 2, "--replication-factor", 1,
               "--config", "retention.ms=604800000")
    assert f"Created topic {topic_name}." in out
    assert topic_name in tool(java_cp, TOPICS, *bs, "--list").split()
    wait_for_leaders(broker, topic_name, 2)
    out = tool(java_cp, TOPICS, *bs, "--describe", "--topic", topic_name)
    assert f"Topic: {topic_name}" in out and "PartitionCount: 2" in out and "ReplicationFactor: 1" in out
    assert "retention.ms=604800000" in out
    assert "Partition: 0" in out and "Partition: 1" in out and "Leader: 1" in out
    tool(java_cp, TOPICS, *bs, "--alter", "--topic", topic_name, "--partitions", 4)
    wait_for_leaders(broker, topic_name, 4)
    out = tool(java_cp, TOPICS, *bs, "--describe", "--topic", topic_name)
    assert "PartitionCount: 4" in out and "Partition: 3" in out
    tool(java_cp, TOPICS, *bs, "--delete", "--topic", topic_name)
    import time
    deadline = time.monotonic() + 30
    while topic_name in tool(java_cp, TOPICS, *bs, "--list").split():
        assert time.monotonic() < deadline, "topic still listed after --delete"
        time.sleep(0.5)


def test_console_producer_then_console_consumer(broker, java_cp, topic_name):
    bs = ["--bootstrap-server", broker.bootstrap]
    tool(java_cp, TOPICS, *bs, "--create", "--topic", topic_name, "--partitions", 1, "--replication-factor", 1)
    wait_for_leaders(broker, topic_name, 1)
    lines = [f"k{i}\tline {i} äöü" for i in range(50)]
    tool(java_cp, PRODUCER, *bs, "--topic", topic_name, "--property", "parse.key=true",
         "--producer-property", "acks=all", input="\n".join(lines) + "\n")
    out = tool(java_cp, CONSUMER, *bs, "--topic", topic_name, "--partition", 0, "--offset", "earliest",
               "--max-messages", 50, "--timeout-ms", 30000, "--property", "print.key=true",
               "--property", "print.offset=true")
    got = [l for l in out.splitlines() if l.startswith("Offset:")]
    assert got == [f"Offset:{i}\tk{i}\tline {i} äöü" for i in range(50)]
