"""Request ids, access-log lines and request metrics (the Observe middleware), without a server."""

from __future__ import annotations

import logging
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.testclient import TestClient

from tabpy.logs import current_request_id
from tabpy.server.metrics import Metrics, MetricsPage
from tabpy.server.observe import ENDPOINT_KEY, Observe


async def hello(request: Request) -> Response:
    logging.getLogger("tabpy.test").info("inside %s", current_request_id.get())
    return PlainTextResponse("hello")


async def query(request: Request) -> Response:
    request.scope[ENDPOINT_KEY] = request.path_params["name"]
    return PlainTextResponse("{}")


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def client(metrics: Metrics, tmp_path: object) -> TestClient:
    app = Starlette(
        routes=[
            Route("/hello", hello, methods=["GET", "POST"]),
            Route("/query/{name}", query, methods=["POST"]),
            Route("/metrics", MetricsPage(metrics).handle),
            Mount("/files", StaticFiles(directory=str(tmp_path))),
        ],
        middleware=[Middleware(Observe, metrics=metrics)],
    )
    return TestClient(app)


def samples(client: TestClient, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = client.get("/metrics").text
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_generated_request_id_is_returned_and_logged(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        response = client.get("/hello")
    request_id = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert f"inside {request_id}" in caplog.messages
    [access] = [r for r in caplog.records if r.name == "tabpy.access"]
    assert re.fullmatch(r"200 GET /hello \(testclient\) \d+\.\d\dms", access.getMessage())
    assert access.status == 200 and access.path == "/hello"  # type: ignore[attr-defined]
    assert current_request_id.get() == "-"  # reset after the request


def test_sane_incoming_request_id_is_kept(client: TestClient) -> None:
    response = client.get("/hello", headers={"X-Request-ID": "nginx-4f2a:9=ab/c+d.e_f"})
    assert response.headers["X-Request-ID"] == "nginx-4f2a:9=ab/c+d.e_f"


@pytest.mark.parametrize("incoming", ["two words", "x" * 129, "semi;colon", ""])
def test_other_incoming_request_ids_are_replaced(client: TestClient, incoming: str) -> None:
    response = client.get("/hello", headers={"X-Request-ID": incoming})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


def test_control_characters_in_paths_stay_on_one_log_line(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        client.get("/hello%0A200 GET /forged")
    [access] = [r for r in caplog.records if r.name == "tabpy.access"]
    assert "\n" not in access.getMessage()


def test_requests_are_labelled_by_route_template(client: TestClient) -> None:
    client.post("/query/add", content=b"12345")
    client.post("/query/other", content=b"1")
    client.get("/no/such/page")
    client.get("/files/missing.txt")
    client.request("BREW", "/hello")
    counts = samples(client, "tabpy_http_requests_total")
    assert counts[(("method", "POST"), ("route", "/query/{name}"), ("status", "200"))] == 2
    assert counts[(("method", "GET"), ("route", "unmatched"), ("status", "404"))] == 1
    assert counts[(("method", "GET"), ("route", "/files/*"), ("status", "404"))] == 1
    assert counts[(("method", "other"), ("route", "/hello"), ("status", "405"))] == 1
    assert not any("add" in value for labels in counts for _, value in labels)
    latency = samples(client, "tabpy_endpoint_query_duration_seconds_count")
    assert latency == {(("endpoint", "add"),): 1.0, (("endpoint", "other"),): 1.0}
    sizes = samples(client, "tabpy_http_request_size_bytes_sum")
    assert sizes[(("route", "/query/{name}"),)] == 6.0


def test_in_flight_counts_the_scrape_itself(client: TestClient) -> None:
    assert samples(client, "tabpy_http_requests_in_flight") == {(): 1.0}


def test_metrics_registries_are_per_application() -> None:
    first, second = Metrics(), Metrics()
    first.observe_request("/info", "GET", 200, 0.01, None)
    assert first.registry is not second.registry
    assert (
        second.registry.get_sample_value(
            "tabpy_http_requests_total", {"route": "/info", "method": "GET", "status": "200"}
        )
        is None
    )
