"""The web console in headless Chromium (Debian's chromium + chromium-driver, driven by
Selenium) against a live broker: every page renders, and the numbers it shows are the ones the
Kafka API gives. Screenshots go to $RILL_TEST_ARTIFACTS/console (default <repo>/tmp/artifacts)."""
import os
import shutil
import struct
import time
import uuid

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition

from helpers import admin, create_topic
from metricskit import admin_url

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARTIFACTS = os.path.join(os.environ.get("RILL_TEST_ARTIFACTS") or os.path.join(REPO, "tmp", "artifacts"), "console")


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver must be installed (.ci/run installs them)")
        pytest.skip("chromium / chromedriver not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1100"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    os.makedirs(ARTIFACTS, exist_ok=True)
    try:
        yield d
    finally:
        d.quit()


def show(d, b, hash_):
    """Opens a console page and waits until it has rendered from fresh /v1 data."""
    d.get(f"{admin_url(b)}/{hash_}")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if d.execute_script("return document.getElementById('view').dataset.loaded") == hash_:
            err = d.execute_script("const e = document.querySelector('[data-testid=error]'); return e && e.textContent")
            assert not err, f"console shows an error on {hash_}: {err}"
            return
        time.sleep(0.1)
    raise AssertionError(f"console page {hash_} did not render")


def values(d, selector, attr="data-value"):
    """Attribute (or text) of every element matching a CSS selector, read in one script so a
    refresh cannot swap the DOM in between."""
    return d.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => arguments[1] ? e.getAttribute(arguments[1]) : e.textContent)",
        selector, attr)


def shot(d, name):
    path = os.path.join(ARTIFACTS, f"{name}.png")
    assert d.save_screenshot(path), path
    assert os.path.getsize(path) > 5000, "screenshot looks empty"


def test_console_pages_show_what_the_kafka_api_says(browser, broker, topic_name):
    d = browser
    create_topic(broker, topic_name, partitions=3)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5})
    counts = {0: 25, 1: 10, 2: 4}
    for part, n in counts.items():
        for i in range(n):
            p.produce(topic_name, key=b"k-%d-%d" % (part, i), value=b"message %d of partition %d" % (i, part),
                      partition=part)
    # The newest record of partition 0 is in Confluent's Avro wire format, schema id 7.
    p.produce(topic_name, value=b"\x00" + struct.pack(">i", 7) + b"\x06abc", partition=0)
    counts[0] += 1
    assert p.flush(30) == 0
    group = f"console-{uuid.uuid4().hex[:8]}"
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic_name])
    deadline = time.monotonic() + 30
    while not c.assignment() and time.monotonic() < deadline:
        c.poll(0.2)
    c.commit(offsets=[TopicPartition(topic_name, 0, 5), TopicPartition(topic_name, 1, 10),
                      TopicPartition(topic_name, 2, 1)], asynchronous=False)
    try:
        md = admin(broker).list_topics(timeout=10)
        watermarks = {part: c.get_watermark_offsets(TopicPartition(topic_name, part), timeout=10)[1] for part in counts}
        committed = {tp.partition: tp.offset for tp in admin(broker).list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)])[group].result(timeout=30).topic_partitions}

        # Overview
        show(d, broker, "#/")
        assert values(d, "[data-testid=cluster-id]") == [md.cluster_id]
        assert values(d, "[data-testid=node-id]") == [str(md.controller_id)]
        assert values(d, "[data-testid=ready]") == ["true"]
        assert values(d, "[data-testid=topic-count]") == [str(len(md.topics))]
        assert values(d, "[data-testid=partition-count]") == [str(sum(len(t.partitions) for t in md.topics.values()))]
        assert values(d, "[data-testid=broker-count]") == [str(len(md.brokers))]
        shot(d, "01-overview")

        # Topics list
        show(d, broker, "#/topics")
        row = f"tr[data-topic='{topic_name}']"
        assert values(d, f"{row} [data-testid=partitions]") == ["3"]
        assert values(d, f"{row} [data-testid=messages]") == [str(sum(watermarks.values()))]
        listed = set(values(d, "tr[data-topic]", "data-topic"))
        assert listed == set(md.topics), "the console lists exactly the topics Metadata returns"
        shot(d, "02-topics")

        # One topic: its partitions' log end offsets are the high watermarks
        show(d, broker, f"#/topics/{topic_name}")
        ends = values(d, "[data-testid=partitions-table] tr[data-partition] [data-testid=log-end]")
        assert [int(x) for x in ends] == [watermarks[i] for i in range(3)]
        leaders = values(d, "[data-testid=partitions-table] [data-testid=leader]")
        assert [int(x) for x in leaders] == [md.topics[topic_name].partitions[i].leader for i in range(3)]
        shot(d, "03-topic")

        # Groups, with lag = high watermark - committed offset per partition
        show(d, broker, "#/groups")
        expected_lag = sum(watermarks[i] - committed[i] for i in range(3))
        assert values(d, f"tr[data-group='{group}'] [data-testid=lag]") == [str(expected_lag)]
        assert values(d, f"tr[data-group='{group}'] [data-testid=state]", None) == ["Stable"]
        shot(d, "04-groups")

        show(d, broker, f"#/groups/{group}")
        for i in range(3):
            r = f"[data-testid=lag-table] tr[data-partition='{i}']"
            assert values(d, f"{r} [data-testid=committed]") == [str(committed[i])]
            assert values(d, f"{r} [data-testid=lag]") == [str(watermarks[i] - committed[i])]
        assert values(d, "[data-testid=member-count]") == ["1"]
        shot(d, "05-group")

        # Message browser: newest 5 of partition 0, newest first, as text then hex then Avro
        show(d, broker, f"#/browse/{topic_name}/0?limit=5&fmt=text")
        offsets = [int(x) for x in values(d, "[data-testid=records-table] [data-testid=offset]")]
        assert offsets == list(range(watermarks[0] - 1, watermarks[0] - 6, -1))
        texts = values(d, "[data-testid=records-table] [data-testid=value]", None)
        assert texts[1:] == [f"message {i} of partition 0" for i in (24, 23, 22, 21)]
        shot(d, "06-browse-text")
        show(d, broker, f"#/browse/{topic_name}/0?limit=5&fmt=hex")
        hexes = values(d, "[data-testid=records-table] [data-testid=value]", None)
        assert hexes[1] == b"message 24 of partition 0".hex()
        show(d, broker, f"#/browse/{topic_name}/0?limit=5&fmt=avro")
        avro = values(d, "[data-testid=records-table] [data-testid=value]", None)
        assert avro[0] == "schema 7: " + b"\x06abc".hex()
        shot(d, "07-browse-avro")
    finally:
        c.close()
