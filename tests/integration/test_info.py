"""``GET /info``, CORS headers, ``OPTIONS`` preflight, and the replies to unknown paths (404) and
wrong methods (405)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from live_server import CORS_HEADERS, ServerProcess, module_server, state_ini

import tabpy

NOT_FOUND_PAGE = b"<html><title>404: Not Found</title><body>404: Not Found</body></html>"
METHOD_NOT_ALLOWED_PAGE = (
    b"<html><title>405: Method Not Allowed</title><body>405: Method Not Allowed</body></html>"
)


@pytest.fixture(scope="module")
def cors_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose ``state.ini`` names it and sets every CORS value."""
    service_info = {"Name": "My TabPy", "Description": "test server", "Creation Time": "1600000000"}
    yield from module_server(
        tmp_path_factory, state_ini=state_ini({**service_info, **CORS_HEADERS})
    )


def expected_info(server: ServerProcess, **overrides: object) -> bytes:
    """The exact /info body: keys in TabPy's order, Python's JSON separators."""
    document = {
        "description": "",
        "creation_time": "0",
        "state_path": str(server.state_path),
        "server_version": tabpy.__version__,
        "name": "TabPy Server",
        "versions": {
            "v1": {
                "features": {"evaluate_enabled": True, "gzip_enabled": True, "arrow_enabled": False}
            }
        },
    }
    document.update(overrides)
    return json.dumps(document).encode()


def cors_headers_of(response: httpx.Response) -> dict[str, str]:
    return {name: response.headers[name] for name in CORS_HEADERS if name in response.headers}


def test_info_is_exact_and_has_no_authentication_key(default_server: ServerProcess) -> None:
    response = default_server.http.get("/info")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == expected_info(default_server)
    assert "authentication" not in response.json()["versions"]["v1"]["features"]


def test_info_reports_service_info_from_state_file(cors_server: ServerProcess) -> None:
    response = cors_server.http.get("/info")

    assert response.status_code == 200
    assert response.content == expected_info(
        cors_server, description="test server", creation_time="1600000000", name="My TabPy"
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/info", None, 200),
        ("POST", "/evaluate", {"script": "return 1", "data": {}}, 200),
        ("POST", "/evaluate", {"data": {}}, 400),  # error replies carry them too
        ("POST", "/evaluate", {"script": "1/0", "data": {}}, 500),
        ("OPTIONS", "/evaluate", None, 200),
        ("OPTIONS", "/info", None, 200),
    ],
)
def test_cors_headers_come_from_state_file(
    cors_server: ServerProcess, method: str, path: str, body: object, status: int
) -> None:
    response = cors_server.http.request(method, path, json=body)

    assert response.status_code == status, response.text
    assert cors_headers_of(response) == CORS_HEADERS


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/info", None),
        ("POST", "/evaluate", {"script": "return 1", "data": {}}),
        ("OPTIONS", "/evaluate", None),
    ],
)
def test_no_cors_headers_when_state_file_leaves_them_empty(
    default_server: ServerProcess, method: str, path: str, body: object
) -> None:
    response = default_server.http.request(method, path, json=body)

    assert response.status_code == 200
    assert cors_headers_of(response) == {}


def test_options_evaluate_answers_empty_object(default_server: ServerProcess) -> None:
    response = default_server.http.options("/evaluate")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=UTF-8"
    assert response.content == b"{}"


def test_unknown_path_is_html_404(default_server: ServerProcess) -> None:
    response = default_server.http.get("/no/such/route")

    assert response.status_code == 404
    assert response.headers["content-type"] == "text/html; charset=UTF-8"
    assert response.content == NOT_FOUND_PAGE


def test_get_evaluate_is_html_405(default_server: ServerProcess) -> None:
    response = default_server.http.get("/evaluate")

    assert response.status_code == 405
    assert response.headers["content-type"] == "text/html; charset=UTF-8"
    assert response.content == METHOD_NOT_ALLOWED_PAGE


@pytest.mark.parametrize("path", ["/evaluate/", "/info/", "/status/"])
def test_trailing_slash_is_not_redirected_to_the_host_header(
    default_server: ServerProcess, path: str
) -> None:
    response = httpx.post(
        default_server.url + path, headers={"Host": "attacker.example"}, follow_redirects=False
    )
    assert response.status_code in (404, 405)
    assert "location" not in response.headers
