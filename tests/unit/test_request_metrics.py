"""The request metrics, kept as plain numbers, expose what prometheus_client's own
instruments expose for the same observations, in both exposition formats."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest as text_format
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_format

from tabpy.server.request_metrics import LATENCY_BUCKETS, SIZE_BUCKETS, RequestMetrics

REQUESTS = [
    ("/evaluate", "POST", 200, 0.0013, 120),
    ("/evaluate", "POST", 200, 0.001, 256),  # exactly on a bucket bound: counted in it
    ("/evaluate", "POST", 500, 400.0, 300 * 2**20),  # past the last bound: +Inf only
    ("/query/{name}", "GET", 404, 0.0001, None),
    ("/info", "GET", 200, 2.0, 0),
]
ENDPOINTS = [("add", 0.2), ("add", 0.001), ("x", 1e-9)]


def reference(in_flight: int) -> CollectorRegistry:
    """The same series built with prometheus_client's instruments."""
    registry = CollectorRegistry()
    requests = Counter(
        "tabpy_http_requests",
        "HTTP requests answered, by route template, method and status code.",
        ["route", "method", "status"],
        registry=registry,
    )
    latency = Histogram(
        "tabpy_http_request_duration_seconds",
        "Time from receiving a request to sending the end of its response, by route.",
        ["route", "method"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    Gauge(
        "tabpy_http_requests_in_flight", "Requests being handled right now.", registry=registry
    ).set(in_flight)
    sizes = Histogram(
        "tabpy_http_request_size_bytes",
        "Request body sizes as sent (before gzip decompression), by route.",
        ["route"],
        buckets=SIZE_BUCKETS,
        registry=registry,
    )
    endpoints = Histogram(
        "tabpy_endpoint_query_duration_seconds",
        "Duration of /query/<name> requests, by deployed endpoint.",
        ["endpoint"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    for route, method, status, seconds, size in REQUESTS:
        requests.labels(route, method, str(status)).inc()
        latency.labels(route, method).observe(seconds)
        if size is not None:
            sizes.labels(route).observe(size)
    for name, seconds in ENDPOINTS:
        endpoints.labels(name).observe(seconds)
    return registry


def ours(in_flight: int) -> CollectorRegistry:
    registry = CollectorRegistry()
    metrics = RequestMetrics()
    registry.register(metrics)
    for route, method, status, seconds, size in REQUESTS:
        metrics.request(route, method, status, seconds, size)
    for name, seconds in ENDPOINTS:
        metrics.endpoints.observe((name,), seconds)
    metrics.in_flight = in_flight
    return registry


def without_times(exposition: bytes) -> str:
    """The exposition with the ``_created`` timestamps (which differ by construction) masked."""
    return re.sub(r"(_created(\{.*\})?) \S+", r"\1 <time>", exposition.decode())


@pytest.mark.parametrize("render", [text_format, openmetrics_format])
def test_the_exposition_is_prometheus_clients_own(render: Callable[..., bytes]) -> None:
    expected = without_times(render(reference(in_flight=3)))
    assert without_times(render(ours(in_flight=3))) == expected
    assert 'tabpy_http_request_duration_seconds_bucket{le="0.001",method="POST"' in expected
    assert "tabpy_http_requests_created" in expected


def test_created_is_when_a_series_first_appeared() -> None:
    metrics = RequestMetrics()
    metrics.request("/evaluate", "POST", 200, 0.1, None)
    first = {m.name: m.samples for m in metrics.collect()}
    metrics.request("/evaluate", "POST", 200, 0.1, None)
    second = {m.name: m.samples for m in metrics.collect()}
    created = [s for s in second["tabpy_http_requests"] if s.name.endswith("_created")]
    assert created == [s for s in first["tabpy_http_requests"] if s.name.endswith("_created")]
    totals = [s.value for s in second["tabpy_http_requests"] if s.name.endswith("_total")]
    assert totals == [2.0]
