"""The per-request metrics, kept as plain numbers and turned into Prometheus samples on scrape.

Every request updates five series: the in-flight gauge (twice), the request counter, the
latency histogram and the request-size histogram. Through ``prometheus_client``'s instruments
each update takes a lock and walks the histogram's buckets in Python: about 2 µs of a trivial
``/evaluate``, a few per cent of the server's whole cost. The updates all happen on the event
loop, so no lock is needed: :class:`RequestMetrics` adds to integers and finds a bucket with
``bisect``, and builds the same families (names, help texts, labels, buckets and ``_created``
series) only when Prometheus asks.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

__all__ = ["LATENCY_BUCKETS", "SIZE_BUCKETS", "RequestMetrics"]

#: Seconds. Fine steps for the API's own routes, coarse ones up to the longest script timeouts.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
)  # fmt: skip
#: Bytes, from a small /evaluate to the 100 MB default size limit.
SIZE_BUCKETS = tuple(float(2**power) for power in range(8, 29, 2))


class _Histogram:
    """One labelled histogram: a count per bucket (the last is +Inf) and the sum."""

    __slots__ = ("counts", "created", "total")

    def __init__(self, size: int) -> None:
        self.counts = [0] * (size + 1)
        self.total = 0.0
        self.created = time.time()


class _Histograms:
    """A histogram family: its bucket bounds and one :class:`_Histogram` per label values."""

    def __init__(
        self, name: str, documentation: str, labels: Sequence[str], bounds: tuple[float, ...]
    ):
        self.name, self.documentation, self.labels, self.bounds = (
            name,
            documentation,
            labels,
            bounds,
        )
        self.children: dict[tuple[str, ...], _Histogram] = {}
        self._les = [*(floatToGoString(bound) for bound in bounds), "+Inf"]

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        child = self.children.get(labels)
        if child is None:
            child = self.children[labels] = _Histogram(len(self.bounds))
        child.counts[bisect_left(self.bounds, value)] += 1
        child.total += value

    def family(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, child in list(self.children.items()):
            cumulative, running = [], 0
            for le, count in zip(self._les, child.counts, strict=True):
                running += count
                cumulative.append((le, float(running)))
            family.add_metric(labels, cumulative, child.total)
            named = dict(zip(self.labels, labels, strict=True))
            family.samples.append(Sample(f"{self.name}_created", named, child.created))
        return family


class RequestMetrics:
    """A Prometheus collector of request counts, latencies and sizes; updated on the loop."""

    def __init__(self) -> None:
        #: Requests being handled right now.
        self.in_flight = 0
        self._requests: dict[tuple[str, str, str], list[float]] = {}  # [count, created]
        self.latency = _Histograms(
            "tabpy_http_request_duration_seconds",
            "Time from receiving a request to sending the end of its response, by route.",
            ("route", "method"),
            LATENCY_BUCKETS,
        )
        self.sizes = _Histograms(
            "tabpy_http_request_size_bytes",
            "Request body sizes as sent (before gzip decompression), by route.",
            ("route",),
            SIZE_BUCKETS,
        )
        self.endpoints = _Histograms(
            "tabpy_endpoint_query_duration_seconds",
            "Duration of /query/<name> requests, by deployed endpoint.",
            ("endpoint",),
            LATENCY_BUCKETS,
        )

    def request(
        self, route: str, method: str, status: int, seconds: float, size: int | None
    ) -> None:
        key = (route, method, str(status))
        counted = self._requests.get(key)
        if counted is None:
            counted = self._requests[key] = [0.0, time.time()]
        counted[0] += 1
        self.latency.observe((route, method), seconds)
        if size is not None:
            self.sizes.observe((route,), size)

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        return self._families()

    def _families(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "tabpy_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            labels=["route", "method", "status"],
        )
        for labels, (count, created) in list(self._requests.items()):
            requests.add_metric(labels, count, created=created)
        yield requests
        yield self.latency.family()
        yield GaugeMetricFamily(
            "tabpy_http_requests_in_flight",
            "Requests being handled right now.",
            value=self.in_flight,
        )
        yield self.sizes.family()
        yield self.endpoints.family()
