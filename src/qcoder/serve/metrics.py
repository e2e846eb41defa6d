"""The server's Prometheus metrics, kept with `prometheus_client` in one registry per server instance.

Counters and histograms are updated by the request handlers; the gauges and counters that mirror engine
state are read from `engine.stats()` at scrape time (a custom collector), so they are never stale. Each
app gets its own registry rather than the process-wide default one, so several servers (as in the tests)
can live in one process without their metrics colliding.
"""

from __future__ import annotations

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

# The classic text format (what Prometheus scrapes by default); the exposition below writes exactly that.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# No `<name>_created` series beside every counter and histogram: they only multiply the series a scraper
# stores, and this server's exposition never had them. (A process-wide switch of the library.)
prometheus_client.disable_created_metrics()

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


class EngineStatsCollector:
    """Mirrors `engine.stats()` (set just before each scrape) as gauges and since-start counters."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.stats: dict = {}

    def collect(self):
        p, stats = self.prefix, self.stats
        yield GaugeMetricFamily(f"{p}_num_requests_running", "Sequences in the running batch.", stats.get("running", 0))
        yield GaugeMetricFamily(
            f"{p}_num_requests_waiting", "Sequences waiting to be scheduled.", stats.get("waiting", 0)
        )
        yield GaugeMetricFamily(
            f"{p}_kv_cache_usage_perc", "Fraction of KV-cache blocks in use (0-1).", stats.get("kv_usage", 0.0)
        )
        yield CounterMetricFamily(
            f"{p}_engine_prompt_tokens_computed",
            "Prompt tokens the engine has run through the model (since start).",
            stats.get("prompt_tokens_computed", 0),
        )
        yield CounterMetricFamily(
            f"{p}_engine_prompt_tokens_cached",
            "Prompt tokens the engine took from the prefix cache (since start).",
            stats.get("prompt_tokens_cached", 0),
        )


class ServerMetrics:
    """The server's metrics; `render(engine_stats)` gives the /metrics body."""

    def __init__(self, prefix: str = "qcoder"):
        p = prefix
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            f"{p}_requests", "HTTP requests by endpoint and status code.", ("endpoint", "status"), registry=registry
        )
        self.prompt_tokens = Counter(f"{p}_prompt_tokens", "Prompt tokens of finished requests.", registry=registry)
        self.cached_prompt_tokens = Counter(
            f"{p}_prompt_tokens_cached",
            "Prompt tokens served from the prefix cache instead of computed.",
            registry=registry,
        )
        self.generation_tokens = Counter(f"{p}_generation_tokens", "Generated tokens.", registry=registry)
        self.ttft = _latency(
            f"{p}_time_to_first_token_seconds", "Time from request arrival to its first token.", registry
        )
        self.itl = _latency(f"{p}_inter_token_latency_seconds", "Time between consecutive output tokens.", registry)
        self.e2e = _latency(
            f"{p}_e2e_request_latency_seconds", "Time from request arrival to its last token.", registry
        )
        self.engine = EngineStatsCollector(p)
        registry.register(self.engine)

    def render(self, engine_stats: dict | None = None) -> str:
        self.engine.stats = engine_stats or {}
        return generate_latest(self.registry).decode()


def _latency(name: str, help: str, registry: CollectorRegistry) -> Histogram:
    return Histogram(name, help, buckets=LATENCY_BUCKETS, registry=registry)
