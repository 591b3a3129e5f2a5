from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from tabpy.config import load_settings
from tabpy.errors import NotAuthenticated
from tabpy.registry.service_info import ServiceInfo
from tabpy.security.authorization import parse_basic, parse_bearer
from tabpy.security.principal import Principal
from tabpy.server.app import api_routes, create_app
from tabpy.server.context import ServerContext


def basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


def test_parses_credentials() -> None:
    assert parse_basic(basic("alice:P@ss")) == ("alice", "P@ss")


def test_password_may_contain_colons() -> None:
    assert parse_basic(basic("alice:a:b")) == ("alice", "a:b")


@pytest.mark.parametrize(
    "header",
    ["Bearer abc", basic("nocolon"), "Basic  " + basic("a:b")[6:], "Basic !!!", "Basic"],
)
def test_malformed_headers(header: str) -> None:
    assert parse_basic(header) is None


def test_scheme_is_case_insensitive() -> None:
    assert parse_basic("bAsIc " + basic("a:b")[6:]) == ("a", "b")


# --- every route is protected --------------------------------------------------------------------


class DenyAll:
    """Refuses everything and records what it was asked about."""

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, str, str | None]] = []

    async def authenticate(
        self, authorization: str | None, address: str, required_scope: str | None = None
    ) -> Principal:
        self.seen.append((authorization, address, required_scope))
        raise NotAuthenticated("basic")

    def reload(self) -> None:
        pass

    def close(self) -> None:
        pass


def context_for(tmp_path: Path, auth: Any, subdirectory: str = "") -> ServerContext:
    settings = load_settings(None, {"TABPY_STATE_PATH": str(tmp_path)})
    info = ServiceInfo("TabPy Server", "", "0", subdirectory, "", "", "")
    return ServerContext(settings, info, pool=None, catalog=None, auth=auth)  # type: ignore[arg-type]


def api_requests(context: ServerContext) -> list[tuple[str, str]]:
    """(method, path) for every method of every API route, with sample path parameters."""
    requests = []
    for route in api_routes(context):
        if isinstance(route, Route):
            path = route.path_format.replace("{name}", "model").replace("{sha256}", "ab12")
            requests += [(method, path) for method in sorted(route.methods or ())]
    return requests


@pytest.mark.parametrize("subdirectory", ["", "analytics.v1"])
def test_every_api_route_authenticates_before_its_handler(
    tmp_path: Path, subdirectory: str
) -> None:
    auth = DenyAll()
    context = context_for(tmp_path, auth, subdirectory)
    prefix = f"/{subdirectory}" if subdirectory else ""
    client = TestClient(create_app(context), raise_server_exceptions=True)
    requests = api_requests(context)
    assert ("POST", "/evaluate") in requests and ("GET", "/") in requests
    for method, path in requests:
        response = client.request(method, prefix + path)
        preflight = method == "OPTIONS" and not path.startswith("/query/")
        if preflight:
            assert response.status_code == 200, (method, path)
        else:
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["WWW-Authenticate"] == 'Basic realm="TabPy Server"'
    assert len(auth.seen) == sum(
        1 for m, p in requests if m != "OPTIONS" or p.startswith("/query/")
    )


def test_static_files_unknown_paths_and_wrong_methods_skip_authentication(
    tmp_path: Path,
) -> None:
    auth = DenyAll()
    client = TestClient(create_app(context_for(tmp_path, auth)))
    assert client.get("/no/such/page").status_code == 404
    assert client.get("/evaluate").status_code == 405
    assert auth.seen == []


def test_parse_bearer() -> None:
    assert parse_bearer("Bearer abc.def.ghi") == "abc.def.ghi"
    assert parse_bearer("bearer x") == "x"
    for header in ("Bearer", "Bearer  x", "Basic x", "Bearer "):
        assert parse_bearer(header) is None


@pytest.mark.parametrize("subdirectory", ["", "analytics.v1"])
def test_the_authenticator_gets_header_address_and_endpoint_scope(
    tmp_path: Path, subdirectory: str
) -> None:
    auth = DenyAll()
    client = TestClient(create_app(context_for(tmp_path, auth, subdirectory)))
    prefix = f"/{subdirectory}" if subdirectory else ""
    client.post(f"{prefix}/evaluate", headers={"Authorization": "Basic eA=="})
    client.get(f"{prefix}/query/model")
    client.get(f"{prefix}/info", headers={"X-Forwarded-For": "203.0.113.9"})
    assert auth.seen == [
        ("Basic eA==", "testclient", "tabpy:evaluate"),
        (None, "testclient", "tabpy:query"),
        (None, "testclient", None),  # no trusted proxies: the header is not believed
    ]
