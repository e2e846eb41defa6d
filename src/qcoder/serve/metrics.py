"""Prometheus metrics in the text exposition format (version 0.0.4), without a client library.

Counters and histograms are updated by the request handlers; gauges that mirror engine state are read
from `engine.stats()` at scrape time, so they are never stale. Everything runs on the server's event
loop, so plain ints and floats need no locks.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    return repr(float(value)) if isinstance(value, float) and not value.is_integer() else str(int(value))


class Counter:
    kind = "counter"

    def __init__(self, name: str, help: str, labels: tuple[str, ...] = ()):
        self.name, self.help, self.label_names = name, help, labels
        self.values: dict[tuple[str, ...], float] = defaultdict(float)
        if not labels:
            self.values[()] = 0.0

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        self.values[tuple(str(labels[n]) for n in self.label_names)] += amount

    def samples(self):
        for key, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.label_names, key)} {_number(value)}"


class Gauge(Counter):
    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        self.values[tuple(str(labels[n]) for n in self.label_names)] = value


class MirroredCounter(Gauge):
    """A counter whose running total lives elsewhere (the engine) and is copied in at scrape time."""

    kind = "counter"


class Histogram:
    kind = "histogram"

    def __init__(self, name: str, help: str, buckets: tuple[float, ...] = LATENCY_BUCKETS):
        self.name, self.help = name, help
        self.bounds = tuple(sorted(buckets))
        self.counts = [0] * (len(self.bounds) + 1)  # last slot: above every bound
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def samples(self):
        cumulative = 0
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            cumulative += count
            yield f'{self.name}_bucket{{le="{_number(bound)}"}} {cumulative}'
        yield f"{self.name}_sum {_number(self.sum)}"
        yield f"{self.name}_count {self.count}"


class ServerMetrics:
    """The server's metrics; `render(engine_stats)` gives the /metrics body."""

    def __init__(self, prefix: str = "qcoder"):
        p = prefix
        self.requests = Counter(
            f"{p}_requests_total", "HTTP requests by endpoint and status code.", ("endpoint", "status")
        )
        self.prompt_tokens = Counter(f"{p}_prompt_tokens_total", "Prompt tokens of finished requests.")
        self.cached_prompt_tokens = Counter(
            f"{p}_prompt_tokens_cached_total", "Prompt tokens served from the prefix cache instead of computed."
        )
        self.generation_tokens = Counter(f"{p}_generation_tokens_total", "Generated tokens.")
        self.ttft = Histogram(f"{p}_time_to_first_token_seconds", "Time from request arrival to its first token.")
        self.itl = Histogram(f"{p}_inter_token_latency_seconds", "Time between consecutive output tokens.")
        self.e2e = Histogram(f"{p}_e2e_request_latency_seconds", "Time from request arrival to its last token.")
        self.running = Gauge(f"{p}_num_requests_running", "Sequences in the running batch.")
        self.waiting = Gauge(f"{p}_num_requests_waiting", "Sequences waiting to be scheduled.")
        self.kv_usage = Gauge(f"{p}_kv_cache_usage_perc", "Fraction of KV-cache blocks in use (0-1).")
        self.engine_prompt_computed = MirroredCounter(
            f"{p}_engine_prompt_tokens_computed_total",
            "Prompt tokens the engine has run through the model (since start).",
        )
        self.engine_prompt_cached = MirroredCounter(
            f"{p}_engine_prompt_tokens_cached_total",
            "Prompt tokens the engine took from the prefix cache (since start).",
        )

    def render(self, engine_stats: dict | None = None) -> str:
        stats = engine_stats or {}
        self.running.set(stats.get("running", 0))
        self.waiting.set(stats.get("waiting", 0))
        self.kv_usage.set(stats.get("kv_usage", 0.0))
        self.engine_prompt_computed.set(stats.get("prompt_tokens_computed", 0))
        self.engine_prompt_cached.set(stats.get("prompt_tokens_cached", 0))
        lines = []
        for metric in vars(self).values():
            lines.append(f"# HELP {metric.name} {metric.help}")
            lines.append(f"# TYPE {metric.name} {metric.kind}")
            lines.extend(metric.samples())
        return "\n".join(lines) + "\n"
