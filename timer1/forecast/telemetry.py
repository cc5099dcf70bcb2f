"""The service's own numbers, in Prometheus' text exposition format (version 0.0.4), standard library only.

    GET /metrics ->
    # HELP timer1_requests_total Requests answered, by path and HTTP status.
    # TYPE timer1_requests_total counter
    timer1_requests_total{path="/forecast",status="200"} 3
    # TYPE timer1_request_duration_seconds histogram
    timer1_request_duration_seconds_bucket{path="/forecast",le="0.1"} 1
    ...
    timer1_request_duration_seconds_bucket{path="/forecast",le="+Inf"} 3
    timer1_request_duration_seconds_sum{path="/forecast"} 0.42
    timer1_request_duration_seconds_count{path="/forecast"} 3
    timer1_queue_depth 0
    timer1_model_load_seconds 1.02

The format follows https://prometheus.io/docs/instrumenting/exposition_formats/: one ``# HELP`` and one
``# TYPE`` line per metric family before its samples, histogram buckets cumulative with ``le`` upper
bounds ending at ``+Inf`` (equal to ``_count``). Paths outside the service's routes count as ``other``,
so a scan of random URLs cannot grow the label set without bound.
"""

from __future__ import annotations

import threading
from collections import Counter

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)  # seconds: health checks to cold slow thinking


class ServiceMetrics:
    """Request counts by (path, status) and a latency histogram by path, updated from the connection
    threads under one lock; the queue depth and the model's load time are read when rendered."""

    def __init__(self, routes, model_load_seconds: float | None = None):
        self.routes = frozenset(routes)
        self.model_load_seconds = model_load_seconds
        self._lock = threading.Lock()
        self._requests: Counter = Counter()        # (path, status) -> requests
        self._buckets: dict[str, list[int]] = {}   # path -> requests per bucket (not cumulative; last: over the top)
        self._sums: Counter = Counter()            # path -> seconds in all

    def observe(self, path: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        path = path if path in self.routes else "other"
        index = next((i for i, bound in enumerate(LATENCY_BUCKETS) if seconds <= bound), len(LATENCY_BUCKETS))
        with self._lock:
            self._requests[path, status] += 1
            self._buckets.setdefault(path, [0] * (len(LATENCY_BUCKETS) + 1))[index] += 1
            self._sums[path] += seconds

    def render(self, queue_depth: int) -> str:
        """The exposition text, every line ending in a newline."""
        with self._lock:
            requests, buckets, sums = dict(self._requests), {p: list(b) for p, b in self._buckets.items()}, dict(self._sums)
        lines = family("timer1_requests_total", "counter", "Requests answered, by path and HTTP status.")
        lines += [f'timer1_requests_total{{path="{p}",status="{s}"}} {n}' for (p, s), n in sorted(requests.items())]
        lines += family("timer1_request_duration_seconds", "histogram",
                        "Seconds from a request's first line to its answer, by path.")
        for path in sorted(buckets):
            lines += histogram_lines("timer1_request_duration_seconds", path, buckets[path], sums[path])
        lines += family("timer1_queue_depth", "gauge", "Forecast requests waiting for the worker.")
        lines.append(f"timer1_queue_depth {queue_depth}")
        if self.model_load_seconds is not None:
            lines += family("timer1_model_load_seconds", "gauge", "Seconds the model took to load at start.")
            lines.append(f"timer1_model_load_seconds {self.model_load_seconds:.6g}")
        return "\n".join(lines) + "\n"


def family(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def histogram_lines(name: str, path: str, counts: list[int], total_seconds: float) -> list[str]:
    """The ``_bucket`` lines (cumulative, ``+Inf`` last), ``_sum`` and ``_count`` of one path."""
    bounds = [f"{b:g}" for b in LATENCY_BUCKETS] + ["+Inf"]
    running, out = 0, []
    for bound, count in zip(bounds, counts):
        running += count
        out.append(f'{name}_bucket{{path="{path}",le="{bound}"}} {running}')
    out += [f'{name}_sum{{path="{path}"}} {total_seconds:.6g}', f'{name}_count{{path="{path}"}} {running}']
    return out
