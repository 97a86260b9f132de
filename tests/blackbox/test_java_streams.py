"""A Kafka Streams 4.x application (tests/java/src/StreamsCheck.java) against the broker under test:
a stateless map and a count through a state store, so Streams creates its repartition and changelog
topics with CreateTopics and runs its group with StreamsPartitionAssignor over the classic protocol
(the broker must pass the "stream" protocol's userData through untouched)."""
import uuid

from helpers import create_topic
from test_java_clients import run_java


def test_streams_upper_and_count(broker, java_cp, topic_name):
    for t in (topic_name, topic_name + "-upper", topic_name + "-counts"):
        create_topic(broker, t, partitions=2)
    app = f"streams-{uuid.uuid4().hex[:8]}"
    out = run_java(java_cp, "StreamsCheck", broker.bootstrap, topic_name, app, timeout=240)
    assert f"group {app} assignor=stream" in out and "OK streams upper=30" in out
