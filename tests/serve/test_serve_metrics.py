"""The Prometheus text format written by hand: counters with labels, cumulative histograms, scrape-time gauges."""

from __future__ import annotations

import pytest

from qcoder.serve.metrics import Counter, Histogram, ServerMetrics


def test_counter_with_labels_and_escaping():
    counter = Counter("x_total", "help", ("endpoint", "status"))
    counter.inc(endpoint="/a", status="200")
    counter.inc(2, endpoint="/a", status="200")
    counter.inc(endpoint='/we"ird', status="400")
    assert list(counter.samples()) == [
        'x_total{endpoint="/a",status="200"} 3',
        'x_total{endpoint="/we\\"ird",status="400"} 1',
    ]
    with pytest.raises(ValueError):
        counter.inc(-1, endpoint="/a", status="200")


def test_histogram_buckets_are_cumulative():
    histogram = Histogram("lat_seconds", "help", buckets=(0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        histogram.observe(value)
    assert list(histogram.samples()) == [
        'lat_seconds_bucket{le="0.1"} 2',  # le is inclusive
        'lat_seconds_bucket{le="1"} 3',
        'lat_seconds_bucket{le="+Inf"} 4',
        "lat_seconds_sum 3.65",
        "lat_seconds_count 4",
    ]


def test_render_has_help_type_and_engine_gauges():
    metrics = ServerMetrics()
    metrics.generation_tokens.inc(7)
    text = metrics.render(
        {"running": 2, "waiting": 1, "kv_usage": 0.5, "prompt_tokens_computed": 40, "prompt_tokens_cached": 32}
    )
    lines = text.splitlines()
    assert "# TYPE qcoder_time_to_first_token_seconds histogram" in lines
    assert "# TYPE qcoder_generation_tokens_total counter" in lines
    for sample in (
        "qcoder_generation_tokens_total 7",
        "qcoder_num_requests_running 2",
        "qcoder_num_requests_waiting 1",
        "qcoder_kv_cache_usage_perc 0.5",
        "qcoder_engine_prompt_tokens_computed_total 40",
        "qcoder_engine_prompt_tokens_cached_total 32",
    ):
        assert sample in lines
    names = [line.split()[2] for line in lines if line.startswith("# TYPE")]
    assert len(names) == len(set(names))
    assert text.endswith("\n")
