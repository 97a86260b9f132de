"""Reading Rill's admin HTTP listener from tests: /metrics parsed into samples, /v1 JSON."""
import json
import re
import urllib.error
import urllib.request

import pytest

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def admin_url(b):
    if b.target != "rill" or not b.admin_url:
        pytest.skip("the admin HTTP listener is Rill's")
    return b.admin_url


def http_get(b, path, timeout=10):
    """(status, content type, body bytes) of GET admin_url + path; HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(admin_url(b) + path, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def get_json(b, path):
    status, ctype, body = http_get(b, path)
    assert ctype.startswith("application/json"), (path, status, ctype)
    return status, json.loads(body)


def parse(text):
    """Prometheus text format -> {(name, frozenset(labels.items())): value}, plus the set of
    family names declared by # TYPE lines."""
    samples, families = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            families.add(line.split()[2])
            continue
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"unparseable metrics line: {line!r}"
        labels = {k: v.encode().decode("unicode_escape") for k, v in _LABEL.findall(m.group(2) or "")}
        samples[(m.group(1), frozenset(labels.items()))] = float(m.group(3))
    return samples, families


class Scrape:
    def __init__(self, b):
        status, ctype, body = http_get(b, "/metrics")
        assert status == 200 and ctype.startswith("text/plain"), (status, ctype)
        self.text = body.decode()
        self.samples, self.families = parse(self.text)

    def value(self, name, default=0.0, **labels):
        """The sample with exactly these labels (for histograms, labels other than le)."""
        return self.samples.get((name, frozenset((k, str(v)) for k, v in labels.items())), default)

    def names(self):
        return {n for (n, _) in self.samples} | self.families

    def series(self, name):
        return {labels: v for (n, labels), v in self.samples.items() if n == name}
