"""Request counts and latencies in the Prometheus text exposition format (version 0.0.4).

Series exposed by ``GET /metrics``:

- ``lookalike_requests_total{method, route, status}`` (counter): answered requests, by route template
  (``/items/{item_id}``, not the concrete path, so the label set stays small; ``unmatched`` for paths
  no route serves) and status code.
- ``lookalike_request_duration_seconds{method, route}`` (histogram): latency from the first byte
  received to the response started, buckets :data:`BUCKETS`, with ``_sum`` and ``_count``.
- ``lookalike_requests_in_flight`` (gauge) and ``lookalike_index_items`` (gauge).

Convention:
    Label values are escaped as the format requires (backslash, double quote, newline).
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Callable

__all__ = ["BUCKETS", "CONTENT_TYPE", "Metrics"]

#: Upper bounds (seconds) of the latency histogram buckets (``+Inf`` is added).
BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


class Metrics:
    """Thread-safe request counters and latency histograms.

    Args:
        gauges: extra gauges, name -> ``(help text, callable returning the value)``, read at render.

    Example:
        >>> m = Metrics()
        >>> m.observe("GET", "/health", 200, 0.002)
        >>> 'lookalike_requests_total{method="GET",route="/health",status="200"} 1' in m.render()
        True
    """

    def __init__(self, gauges: dict[str, tuple[str, Callable[[], float]]] | None = None) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, int], int] = defaultdict(int)
        self._buckets: dict[tuple[str, str], list[int]] = {}
        self._sums: dict[tuple[str, str], float] = defaultdict(float)
        self.in_flight = 0
        self._gauges = dict(gauges or {})

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        key = (method, route)
        with self._lock:
            self._counts[(method, route, int(status))] += 1
            counts = self._buckets.setdefault(key, [0] * (len(BUCKETS) + 1))
            counts[bisect.bisect_left(BUCKETS, seconds)] += 1
            self._sums[key] += seconds

    def render(self) -> str:
        """The metrics in the Prometheus text format."""
        with self._lock:
            counts = sorted(self._counts.items())
            buckets = {k: list(v) for k, v in sorted(self._buckets.items())}
            sums = dict(self._sums)
        lines = [
            "# HELP lookalike_requests_total Requests answered, by method, route template and status.",
            "# TYPE lookalike_requests_total counter",
        ]
        for (method, route, status), n in counts:
            labels = _labels(method=method, route=route, status=str(status))
            lines.append(f"lookalike_requests_total{labels} {n}")
        name = "lookalike_request_duration_seconds"
        lines += [
            f"# HELP {name} Request latency in seconds, by method and route template.",
            f"# TYPE {name} histogram",
        ]
        for (method, route), per_bucket in buckets.items():
            total = 0
            for bound, n in zip([*BUCKETS, float("inf")], per_bucket):
                total += n
                le = "+Inf" if bound == float("inf") else repr(bound)
                lines.append(f"{name}_bucket{_labels(method=method, route=route, le=le)} {total}")
            labels = _labels(method=method, route=route)
            lines.append(f"{name}_sum{labels} {_number(sums[(method, route)])}")
            lines.append(f"{name}_count{labels} {total}")
        gauges = {
            "lookalike_requests_in_flight": ("Requests being handled.", lambda: self.in_flight),
            **self._gauges,
        }
        for gauge, (text, read) in gauges.items():
            lines += [f"# HELP {gauge} {text}", f"# TYPE {gauge} gauge", f"{gauge} {read()}"]
        return "\n".join(lines) + "\n"
