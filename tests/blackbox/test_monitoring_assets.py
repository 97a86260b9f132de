"""monitoring/: the Grafana dashboard and the Prometheus alert rules load, are well formed,
and every metric they use exists on a live broker's /metrics."""
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import yaml
from broker import free_port
from confluent_kafka import Consumer, Producer

import kproto
import metricskit
from helpers import create_topic
from metricskit import Scrape

MONITORING = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "monitoring")

# PromQL words that look like metric names but are not.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
            "inf", "nan",
            # aggregation operators, which may be followed by "by (...)" instead of "("
            "sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk", "bottomk", "quantile",
            "count_values"}


def metric_names(expr):
    """Metric names a PromQL expression selects: identifiers that are not functions, keywords,
    label names (inside {...} or after by/on/...), durations or strings."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)            # string literals
    e = re.sub(r"\{[^}]*\}", "", e)                          # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)                         # range selectors
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", e)
    names = set()
    for m in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def test_metric_name_extraction():
    assert metric_names('histogram_quantile(0.99, sum by (instance, le) (rate(a_bucket{x="y"}[5m]))) > 0.1') == {"a_bucket"}
    assert metric_names("a - on(instance, topic) group_left b < on(t) group_left() (0.1 * (c - d)) and e > 0") == \
        {"a", "b", "c", "d", "e"}


def load_rules():
    with open(os.path.join(MONITORING, "alerts.yml")) as f:
        doc = yaml.safe_load(f)
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert rules
    return rules


def load_dashboard():
    with open(os.path.join(MONITORING, "grafana-dashboard.json")) as f:
        return json.load(f)


def dashboard_exprs(d):
    return [(p["title"], t["expr"]) for p in d["panels"] if p.get("type") != "row" for t in p.get("targets", [])]


def test_alert_rules_are_well_formed():
    rules = load_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)), "alert names are unique"
    for r in rules:
        assert r["expr"].strip() and re.fullmatch(r"\d+[smh]", r["for"]), r["alert"]
        assert r["labels"]["severity"] in ("warning", "critical"), r["alert"]
        assert r["annotations"]["summary"] and r["annotations"]["description"], r["alert"]
        assert r["expr"].count("(") == r["expr"].count(")"), r["alert"]
    # What issue 9 asks the rules to cover.
    for wanted in ("RillConsumerLagGrowing", "RillConsumerLagNearRetention", "RillUnderReplicatedPartitions",
                   "RillDiskNearlyFull", "RillFsyncLatencyHigh"):
        assert wanted in names


def test_dashboard_is_well_formed():
    d = load_dashboard()
    assert d["uid"] and d["title"] and d["schemaVersion"] >= 30
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    exprs = dashboard_exprs(d)
    assert len(exprs) >= 20
    for title, e in exprs:
        assert e.count("(") == e.count(")") and e.count("{") == e.count("}"), title
    for p in d["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]


def test_every_metric_used_exists_on_a_live_broker(broker, topic_name):
    # Traffic of every kind the assets look at, so that histograms and labelled series exist.
    create_topic(broker, topic_name, partitions=2)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for i in range(20):
        p.produce(topic_name, value=b"x%d" % i, partition=i % 2)
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"assets-{topic_name}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        c.subscribe([topic_name])
        got, deadline = 0, time.monotonic() + 30
        while got < 5 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got += 1
        c.commit(asynchronous=False)
    finally:
        c.close()
    s = kproto.connect(broker)
    try:
        _, apis = kproto.api_versions(s)
        kproto.produce(s, apis, topic_name, 9, kproto.record_batch([(None, b"x")]))  # an error code
    finally:
        s.close()

    available = Scrape(broker).names()
    used = {}
    for r in load_rules():
        for n in metric_names(r["expr"]):
            used.setdefault(n, []).append(f"alert {r['alert']}")
    for title, e in dashboard_exprs(load_dashboard()):
        for n in metric_names(e):
            used.setdefault(n, []).append(f"panel {title!r}")
    assert len(used) >= 20
    missing = {n: where for n, where in used.items() if n not in available}
    assert not missing, f"metrics used by monitoring/ but absent from /metrics: {missing}"


# ---------------------------------------------------------------- with a real Prometheus
# Debian's prometheus package (.ci/run installs it) gives promtool, and a server that scrapes
# the live broker, evaluates the alert rules and answers every dashboard query.

def _need(binary):
    path = shutil.which(binary)
    if not path:
        if os.environ.get("CI"):
            pytest.fail(f"{binary} must be installed (Debian package prometheus; .ci/run installs it)")
        pytest.skip(f"{binary} not installed (apt-get install prometheus)")
    return path


def test_promtool_accepts_the_rules():
    r = subprocess.run([_need("promtool"), "check", "rules", os.path.join(MONITORING, "alerts.yml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(load_rules())} rules found" in r.stdout


@pytest.fixture
def prometheus(broker, tmp_path):
    binary = _need("prometheus")
    admin = metricskit.admin_url(broker).split("//", 1)[1]
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{os.path.join(MONITORING, 'alerts.yml')!r}]\n"
        f"scrape_configs: [{{job_name: rill, static_configs: [{{targets: [{admin!r}]}}]}}]\n")
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
        log.close()


def _api(base, path, **params):
    url = f"{base}{path}?{urllib.parse.urlencode(params)}" if params else f"{base}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())


def test_prometheus_scrapes_the_broker_and_runs_every_rule_and_panel_query(broker, topic_name, prometheus):
    base, proc = prometheus
    create_topic(broker, topic_name, partitions=1)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for i in range(10):
        p.produce(topic_name, value=b"p%d" % i)
    assert p.flush(30) == 0

    def scraped():
        if proc.poll() is not None:
            raise AssertionError("prometheus exited")
        try:
            r = _api(base, "/api/v1/query", query='up{job="rill"}')
        except (OSError, ValueError):
            # Still starting: connection refused, or a plain-text 503 "Service Unavailable".
            return False
        res = r.get("data", {}).get("result", [])
        return bool(res) and res[0]["value"][1] == "1"

    deadline = time.monotonic() + 60
    while not scraped():
        assert time.monotonic() < deadline, "prometheus never scraped the broker successfully"
        time.sleep(0.5)
    # The stored series include the topic just written to.
    r = _api(base, "/api/v1/query", query=f'kafka_log_log_logendoffset{{topic="{topic_name}"}}')
    assert [s["value"][1] for s in r["data"]["result"]] == ["10"]

    # Every panel query parses and evaluates.
    for title, expr in dashboard_exprs(load_dashboard()):
        r = _api(base, "/api/v1/query", query=expr.replace("$instance", ".*"))
        assert r["status"] == "success", (title, expr, r)

    # Every rule has been evaluated without error.
    deadline = time.monotonic() + 30
    while True:
        rules = [r for g in _api(base, "/api/v1/rules")["data"]["groups"] for r in g["rules"]]
        if len(rules) == len(load_rules()) and all(r.get("lastEvaluation", "").startswith("2") and
                                                   not r["lastEvaluation"].startswith("0001") for r in rules):
            break
        assert time.monotonic() < deadline, rules
        time.sleep(0.5)
    bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not bad, bad
    # A healthy broker fires none of them.
    firing = [r["name"] for r in rules if r["state"] == "firing"]
    assert not firing, firing


def test_promtool_accepts_the_exposition(broker, topic_name):
    create_topic(broker, topic_name, partitions=1)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce(topic_name, value=b"x")
    assert p.flush(30) == 0
    text = Scrape(broker).text
    r = subprocess.run([_need("promtool"), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    # 0: clean; 3: only lint findings; anything else is an exposition format error.
    assert r.returncode in (0, 3), r.stdout + r.stderr
    # The lints allowed are names kept on purpose so existing dashboards work: Kafka's label
    # delayedOperation and metric connection-count (as the JMX exporter spells them), and
    # kafka_exporter's kafka_consumergroup_lag_sum.
    allowed = ("kafka_server_delayedoperationpurgatory_purgatorysize label names should be written in 'snake_case'",
               'kafka_server_socketservermetrics_connection_count non-histogram and non-summary metrics should not '
               'have "_count" suffix',
               'kafka_consumergroup_lag_sum non-histogram and non-summary metrics should not have "_sum" suffix')
    lints = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    assert all(ln.startswith(allowed) for ln in lints), lints
