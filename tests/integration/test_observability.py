"""Metrics, request ids and JSON logs on the real server, after known traffic."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from deploy_support import client_for
from live_server import ServerProcess, module_server, wait_for
from prometheus_client.parser import text_string_to_metric_families

TIMEOUT_SECONDS = "2"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    settings = {
        "TABPY_WORKERS": "2",
        "TABPY_EVALUATE_TIMEOUT": TIMEOUT_SECONDS,
        "TABPY_LOG_FORMAT": "json",
    }
    yield from module_server(tmp_path_factory, settings)


def scrape(server: ServerProcess) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    response = server.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            found.setdefault(sample.name, {})[labels] = sample.value
    return found


def value(metrics: dict[str, Any], name: str, **labels: str) -> float:
    return float(metrics.get(name, {}).get(tuple(sorted(labels.items())), 0.0))


def json_lines(server: ServerProcess) -> list[dict[str, Any]]:
    lines = []
    for line in server.stderr.text.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_metrics_follow_known_traffic(server: ServerProcess) -> None:
    def add(x: list[int], y: list[int]) -> list[int]:
        return [a + b for a, b in zip(x, y, strict=True)]

    client_for(server).deploy("add", add, "Adds two lists", override=True)
    before = scrape(server)

    for _ in range(3):
        assert server.http.get("/info").status_code == 200
    assert server.evaluate("return 1/0").status_code == 500
    timed_out = server.evaluate("import time\ntime.sleep(60)\nreturn 1")
    assert timed_out.status_code == 408
    for _ in range(2):
        assert server.http.post("/query/add", json={"data": [[1], [2]]}).status_code == 200
    assert server.http.post("/query/nope", json={"data": []}).status_code == 404
    default = (("environment", "default"),)
    wait_for(lambda: scrape(server)["tabpy_workers_ready"][default] == 2, 30, "the replacement")

    after = scrape(server)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("tabpy_http_requests_total", route="/info", method="GET", status="200") == 3
    assert delta("tabpy_http_requests_total", route="/evaluate", method="POST", status="408") == 1
    assert (
        delta("tabpy_http_requests_total", route="/query/{name}", method="POST", status="404") == 1
    )
    assert (
        delta("tabpy_http_request_duration_seconds_count", route="/query/{name}", method="POST")
        == 3
    )
    assert delta("tabpy_endpoint_query_duration_seconds_count", endpoint="add") == 2
    assert value(after, "tabpy_endpoint_query_duration_seconds_count", endpoint="nope") == 0
    assert delta("tabpy_script_errors_total", source="evaluate", cause="exception") == 1
    assert delta("tabpy_script_errors_total", source="evaluate", cause="timeout") == 1
    assert delta("tabpy_worker_restarts_total", cause="timeout", environment="default") == 1
    assert delta("tabpy_worker_restarts_total", cause="crash", environment="default") == 0
    assert delta("tabpy_http_request_size_bytes_count", route="/evaluate") == 2
    assert value(after, "tabpy_endpoints", status="LoadSuccessful") == 1
    assert value(after, "tabpy_http_requests_in_flight") >= 1
    # Labels are templates: no raw path ever becomes a series.
    routes = {dict(labels).get("route") for labels in after["tabpy_http_requests_total"]}
    assert "/query/add" not in routes and "/query/nope" not in routes


def test_request_ids_match_between_header_and_json_logs(server: ServerProcess) -> None:
    response = server.http.get("/status")
    request_id = response.headers["X-Request-ID"]
    echoed = server.http.get("/status", headers={"X-Request-ID": "lb-7f3a2c"})
    assert echoed.headers["X-Request-ID"] == "lb-7f3a2c"

    def access_line(rid: str) -> dict[str, Any] | None:
        return next(
            (
                line
                for line in json_lines(server)
                if line.get("request_id") == rid and line["logger"] == "tabpy.access"
            ),
            None,
        )

    line = wait_for(lambda: access_line(request_id), 10, "the JSON access-log line")
    assert line["status"] == 200 and line["path"] == "/status" and line["method"] == "GET"
    assert isinstance(line["duration_ms"], float)
    assert line["message"].startswith("200 GET /status (127.0.0.1) ")
    assert wait_for(lambda: access_line("lb-7f3a2c"), 10, "the echoed id in the log")


def test_lines_logged_inside_a_request_carry_its_id(server: ServerProcess) -> None:
    response = server.evaluate("import time\ntime.sleep(60)\nreturn 1")
    assert response.status_code == 408
    request_id = response.headers["X-Request-ID"]

    def replaced() -> dict[str, Any] | None:
        return next(
            (
                line
                for line in json_lines(server)
                if line["message"].startswith("Replacing worker")
                and line.get("request_id") == request_id
            ),
            None,
        )

    line = wait_for(replaced, 10, "the worker-replacement line with the request id")
    assert line["level"] == "WARNING" and line["message"].endswith("(timeout)")
    text_lines = [line for line in server.stderr.text.splitlines() if not line.startswith("{")]
    assert text_lines == []  # every line is JSON, uvicorn's included
