"""Fixtures for the black-box suite.

RILL_TEST_TARGET=rill (default) | kafka selects the broker under test (see tests/support/broker.py).
`broker`       — one broker for the whole session (tests use unique topic names).
`fresh_broker` — a factory for brokers private to one test (crash tests), cleaned up afterwards.
On a test failure the broker log written during that test is printed.
"""
import gc
import glob
import os
import subprocess
import sys
import uuid

import pytest

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TESTS, "support"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from broker import Broker, target  # noqa: E402

TARGET = target()


def pytest_report_header(config):
    return f"broker under test: {TARGET}"


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _failed(request):
    return any(getattr(getattr(request.node, "rep_" + w, None), "failed", False) for w in ("setup", "call"))


@pytest.fixture(scope="session")
def broker():
    ext = os.environ.get("RILL_TEST_BOOTSTRAP")
    b = Broker.external(ext) if ext else Broker.start()
    try:
        yield b
    finally:
        b.__dict__.pop("_admin", None)  # let the cached AdminClient go before the broker does
        gc.collect()  # destroy leftover librdkafka clients now, not after pytest's summary
        b.cleanup()


@pytest.fixture(autouse=True)
def _dump_log_on_failure(request):
    if "broker" not in request.fixturenames:
        yield
        return
    b = request.getfixturevalue("broker")
    start = b.log_size()
    yield
    if _failed(request):
        print(f"\n===== {b.target} broker log during {request.node.name} ({b.log_path}) =====")
        print(b.log_tail(since=start))


@pytest.fixture
def fresh_broker(request):
    made = []

    def make(**kw):
        b = Broker.start(**kw)
        made.append(b)
        return b

    yield make
    for b in made:
        if _failed(request):
            print(f"\n===== {b.target} broker log ({b.log_path}) =====")
            print(b.log_tail())
        b.__dict__.pop("_admin", None)
        gc.collect()
        b.cleanup()


@pytest.fixture
def topic_name(request):
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60]
    return f"{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def java_cp():
    """Classpath of Maven-resolved Kafka 4.x jars + compiled tests/java/src programs."""
    try:
        cp = subprocess.run(["bash", os.path.join(TESTS, "support", "classpath.sh")], check=True,
                            capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL).stdout.strip()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        pytest.fail(f"could not resolve Maven classpath: {getattr(e, 'stderr', e)}")
    src = sorted(glob.glob(os.path.join(TESTS, "java", "src", "*.java")))
    out = os.path.join(TESTS, "java", "target", "classes")
    stamp = os.path.join(out, ".stamp")
    newest = max(os.path.getmtime(p) for p in src)
    if not os.path.exists(stamp) or os.path.getmtime(stamp) < newest:
        os.makedirs(out, exist_ok=True)
        r = subprocess.run(["javac", "-nowarn", "-d", out, "-cp", cp, *src], capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            pytest.fail(f"javac failed:\n{r.stdout}\n{r.stderr}")
        open(stamp, "w").close()
    return out + os.pathsep + cp
