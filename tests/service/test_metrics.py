"""Prometheus text output, checked by parsing it back (an independent reader of the format)."""

from __future__ import annotations

import re
import threading

from lookalike.service.metrics import BUCKETS, Metrics

_LINE = re.compile(r"^([a-z_]+)\{(.*)\} (\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    """Samples of the exposition text: (name, labels) -> value; checks the HELP/TYPE lines."""
    out = {}
    typed = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("#") or not line:
            continue
        m = _LINE.match(line)
        if m is None:  # an unlabelled sample
            name, value = line.split(" ")
            labels = frozenset()
        else:
            name, raw, value = m.groups()
            labels = frozenset(
                (k, v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\"))
                for k, v in _LABEL.findall(raw)
            )
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or base in typed, f"sample {name} without a TYPE line"
        out[(name, labels)] = float(value)
    return out


def test_counts_and_cumulative_histogram():
    m = Metrics()
    latencies = [0.0005, 0.003, 0.003, 0.2, 7.0]
    for s in latencies:
        m.observe("POST", "/search", 200, s)
    m.observe("POST", "/search", 415, 0.001)
    samples = parse(m.render())
    key = frozenset({("method", "POST"), ("route", "/search"), ("status", "200")})
    assert samples[("lookalike_requests_total", key)] == 5
    key415 = frozenset({("method", "POST"), ("route", "/search"), ("status", "415")})
    assert samples[("lookalike_requests_total", key415)] == 1
    every = [*latencies, 0.001]
    for bound in BUCKETS:
        labels = frozenset({("method", "POST"), ("route", "/search"), ("le", repr(bound))})
        expected = sum(1 for s in every if s <= bound)
        assert samples[("lookalike_request_duration_seconds_bucket", labels)] == expected, bound
    base = frozenset({("method", "POST"), ("route", "/search")})
    inf = base | {("le", "+Inf")}
    assert samples[("lookalike_request_duration_seconds_bucket", inf)] == 6
    assert samples[("lookalike_request_duration_seconds_count", base)] == 6
    assert abs(samples[("lookalike_request_duration_seconds_sum", base)] - sum(every)) < 1e-9


def test_gauges_and_label_escaping():
    m = Metrics({"lookalike_index_items": ("Items.", lambda: 42)})
    m.observe("GET", 'we"ird\\route\n', 404, 0.01)
    samples = parse(m.render())
    assert samples[("lookalike_index_items", frozenset())] == 42
    assert samples[("lookalike_requests_in_flight", frozenset())] == 0
    key = frozenset({("method", "GET"), ("route", 'we"ird\\route\n'), ("status", "404")})
    assert samples[("lookalike_requests_total", key)] == 1


def test_thread_safe_counts():
    m = Metrics()

    def work():
        for _ in range(500):
            m.observe("GET", "/health", 200, 0.001)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    key = frozenset({("method", "GET"), ("route", "/health"), ("status", "200")})
    assert parse(m.render())[("lookalike_requests_total", key)] == 2000
