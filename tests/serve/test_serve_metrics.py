"""The /metrics body: names, types and values a Prometheus scraper reads, one registry per server."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from qcoder.serve.metrics import ServerMetrics

STATS = {"running": 2, "waiting": 1, "kv_usage": 0.5, "prompt_tokens_computed": 40, "prompt_tokens_cached": 32}


def scrape(metrics: ServerMetrics, stats: dict | None = None) -> dict[str, float]:
    """Every sample of the rendered body, keyed by name plus sorted labels, as a scraper parses it."""
    samples = {}
    for family in text_string_to_metric_families(metrics.render(stats)):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def test_counter_with_labels_and_escaping():
    metrics = ServerMetrics()
    metrics.requests.labels(endpoint="/a", status="200").inc()
    metrics.requests.labels(endpoint="/a", status="200").inc(2)
    metrics.requests.labels(endpoint='/we"ird', status="400").inc()
    samples = scrape(metrics)
    assert samples['qcoder_requests_total{endpoint="/a",status="200"}'] == 3
    assert samples['qcoder_requests_total{endpoint="/we"ird",status="400"}'] == 1
    assert 'endpoint="/we\\"ird"' in metrics.render()  # escaped on the wire


def test_histogram_buckets_are_cumulative():
    metrics = ServerMetrics()
    for value in (0.05, 0.1, 0.5, 3.0):
        metrics.e2e.observe(value)
    samples = scrape(metrics)
    name = "qcoder_e2e_request_latency_seconds"
    assert samples[f'{name}_bucket{{le="0.1"}}'] == 2  # le is inclusive
    assert samples[f'{name}_bucket{{le="1.0"}}'] == 3
    assert samples[f'{name}_bucket{{le="+Inf"}}'] == 4
    assert samples[f"{name}_count"] == 4
    assert abs(samples[f"{name}_sum"] - 3.65) < 1e-9


def test_render_has_help_type_and_engine_gauges():
    metrics = ServerMetrics()
    metrics.generation_tokens.inc(7)
    text = metrics.render(STATS)
    lines = text.splitlines()
    assert "# TYPE qcoder_time_to_first_token_seconds histogram" in lines
    assert "# TYPE qcoder_generation_tokens_total counter" in lines
    assert "# TYPE qcoder_num_requests_waiting gauge" in lines  # what the Helm chart's HPA scales on
    samples = scrape(metrics, STATS)
    assert samples["qcoder_generation_tokens_total"] == 7
    assert samples["qcoder_num_requests_running"] == 2
    assert samples["qcoder_num_requests_waiting"] == 1
    assert samples["qcoder_kv_cache_usage_perc"] == 0.5
    assert samples["qcoder_engine_prompt_tokens_computed_total"] == 40
    assert samples["qcoder_engine_prompt_tokens_cached_total"] == 32
    assert not any(name.endswith("_created") for name in samples)
    names = [line.split()[2] for line in lines if line.startswith("# TYPE")]
    assert len(names) == len(set(names))
    assert text.endswith("\n")


def test_engine_gauges_follow_each_scrape():
    metrics = ServerMetrics()
    assert scrape(metrics, STATS)["qcoder_num_requests_waiting"] == 1
    assert scrape(metrics, {**STATS, "waiting": 0})["qcoder_num_requests_waiting"] == 0
    assert scrape(metrics)["qcoder_num_requests_waiting"] == 0  # no stats: zero, not the last scrape's


def test_each_server_has_its_own_registry():
    first, second = ServerMetrics(), ServerMetrics()  # two apps in one process must not collide
    first.generation_tokens.inc(5)
    assert scrape(first)["qcoder_generation_tokens_total"] == 5
    assert scrape(second)["qcoder_generation_tokens_total"] == 0
