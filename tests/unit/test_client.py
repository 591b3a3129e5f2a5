"""The client against an in-memory fake server (``httpx.MockTransport``), and once over a socket.

``FakeServer`` is also used by ``test_client_deploy.py``.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import logging
import ssl
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import unquote

import certifi
import cloudpickle
import httpx
import pytest

from tabpy.tabpy_tools import rest
from tabpy.tabpy_tools.client import Client
from tabpy.tabpy_tools.endpoints import AliasEndpoint, Endpoint, ModelEndpoint
from tabpy.tabpy_tools.errors import (
    AuthenticationError,
    ClientError,
    EndpointNotFoundError,
    InvalidArgumentError,
    InvalidEndpointInfoError,
    NotFoundError,
    RequestTimeoutError,
    ResponseError,
    ServerError,
    ServerUnreachableError,
)
from tabpy.tabpy_tools.query_object import ARCHIVE_NAME, QueryObject

PASSWORD = "s3cr3t-Pa55"
_JSON = {"Content-Type": "application/json"}


def envelope(status: int, message: str, info: Any = None) -> httpx.Response:
    return httpx.Response(status, json={"message": message, "info": {} if info is None else info})


class FakeServer:
    """Just enough of the server's endpoint routes, in memory.

    ``upload_route=False`` answers ``PUT artifacts/...`` like TabPy 2.16 (405); then deployments
    must name a ``src_path`` holding a ``pickle_archive`` on the local disk. ``polls_in_progress``
    makes ``/status`` report ``LoadInProgress`` that many times after each deployment, and
    ``load_error`` makes every load fail with that ``last_error``.
    """

    def __init__(
        self,
        *,
        prefix: str = "/",
        upload_route: bool = True,
        upload_status: int = 405,
        polls_in_progress: int = 0,
        load_error: str | None = None,
        upload_destination: str = "/srv/tabpy/staging",
    ) -> None:
        self.prefix = prefix
        self.upload_route = upload_route
        self.upload_status = upload_status
        self.polls_in_progress = polls_in_progress
        self.load_error = load_error
        self.upload_destination = upload_destination
        self.requests: list[httpx.Request] = []
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.status: dict[str, dict[str, Any]] = {}
        self.artifacts: dict[str, bytes] = {}
        self.objects: dict[str, QueryObject] = {}
        self._pending: dict[str, int] = {}

    def client(self, endpoint: str = "http://tabpy.test:9400/", **kwargs: Any) -> Client:
        return Client(endpoint, transport=httpx.MockTransport(self), **kwargs)

    def add(self, name: str, version: int = 1, **info: Any) -> None:
        """Pretend ``name`` was deployed earlier."""
        self.endpoints[name] = {
            "description": "",
            "type": "model",
            "version": version,
            "dependencies": [],
            "target": None,
            "creation_time": 1795828910,
            "last_modified_time": 1795828910,
            "schema": None,
            "is_public": False,
            "docstring": "-- no docstring found in query function --",
            **info,
        }
        self.status[name] = {
            "version": version,
            "type": "model",
            "status": "LoadSuccessful",
            "last_error": None,
        }

    def sent(self, method: str, route: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and self._route(r) == route]

    def routes(self) -> list[str]:
        return [f"{r.method} {self._route(r)}" for r in self.requests]

    def _route(self, request: httpx.Request) -> str:
        path = request.url.raw_path.decode().split("?")[0]
        assert path.startswith(self.prefix), path
        return path[len(self.prefix) :]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self._route(request)
        head, _, rest_of_path = route.partition("/")
        name = unquote(rest_of_path)
        handler = getattr(self, f"_{request.method.lower()}_{head}", None)
        if handler is None:
            html = f"<html><title>405: Method Not Allowed</title>{route}</html>"
            return httpx.Response(405, text=html)
        response: httpx.Response = handler(request, name)
        return response

    def _get_status(self, request: httpx.Request, name: str) -> httpx.Response:
        status = {k: dict(v) for k, v in self.status.items()}
        for key, left in self._pending.items():
            if left > 0:
                self._pending[key] -= 1
                status[key]["status"] = "LoadInProgress"
                status[key]["version"] -= 1
        return httpx.Response(200, json=status)

    def _get_endpoints(self, request: httpx.Request, name: str) -> httpx.Response:
        if not name:
            return httpx.Response(200, json=self.endpoints)
        if name not in self.endpoints:
            return envelope(404, "Unknown endpoint", f"Endpoint {name} is not found")
        return httpx.Response(200, json=self.endpoints[name])

    def _get_configurations(self, request: httpx.Request, name: str) -> httpx.Response:
        assert name == "endpoint_upload_destination"
        return httpx.Response(200, json={"path": self.upload_destination})

    def _put_artifacts(self, request: httpx.Request, sha256: str) -> httpx.Response:
        if not self.upload_route:
            return httpx.Response(self.upload_status, text="<html>not here</html>")
        data = request.read()
        if hashlib.sha256(data).hexdigest() != sha256:
            return envelope(400, "artifact hash mismatch")
        known = sha256 in self.artifacts
        self.artifacts[sha256] = data
        return httpx.Response(200 if known else 201, json={"sha256": sha256, "size": len(data)})

    def _post_endpoints(self, request: httpx.Request, name: str) -> httpx.Response:
        body = json.loads(request.content)
        if body["name"] in self.endpoints:
            return envelope(400, f"endpoint {body['name']} already exists.")
        return self._store(body["name"], body, 1, 201)

    def _put_endpoints(self, request: httpx.Request, name: str) -> httpx.Response:
        if name not in self.endpoints:
            return envelope(404, f"endpoint {name} does not exist.")
        body = json.loads(request.content)
        old = self.endpoints[name]["version"]
        return self._store(name, body, old + 1 if body.get("should_update_version") else old, 200)

    def _store(self, name: str, body: dict[str, Any], version: int, code: int) -> httpx.Response:
        info = dict(self.endpoints.get(name, {}))
        changed = info.get("version") != version
        for key in ("description", "schema", "is_public", "docstring"):
            if key in body:
                info[key] = body[key]
        self.add(name, version)
        self.endpoints[name].update(info, version=version)
        if changed:
            self._load(name, body)
        return httpx.Response(code, json={name: self.endpoints[name]})

    def _load(self, name: str, body: dict[str, Any]) -> None:
        if self.load_error is not None:
            self.status[name].update(status="LoadFailed", last_error=self.load_error)
            return
        if "artifact" in body:
            data = self.artifacts[body["artifact"]]
        else:
            with open(f"{body['src_path']}/{ARCHIVE_NAME}", "rb") as f:
                data = f.read()
        self.objects[name] = cloudpickle.loads(data)
        self._pending[name] = self.polls_in_progress

    def _delete_endpoints(self, request: httpx.Request, name: str) -> httpx.Response:
        if name not in self.endpoints:
            return envelope(404, f"endpoint {name} does not exist.")
        del self.endpoints[name], self.status[name]
        return httpx.Response(204)

    def _post_query(self, request: httpx.Request, name: str) -> httpx.Response:
        if name not in self.objects:
            return envelope(404, "UnknownURI", f"Endpoint '{name}' does not exist")
        data = json.loads(request.content)["data"]
        obj = self.objects[name]
        try:
            result = obj.query(*data) if isinstance(data, list) else obj.query(**data)
        except Exception as err:
            error = f"{type(err).__name__} : {err}"
            info = {"uri": name, "error": error, "type": "QueryFailed"}
            return envelope(500, f"Error querying function '{name}'", info)
        version = self.endpoints[name]["version"]
        reply = {"response": result, "version": version, "model": name, "uuid": str(uuid.uuid4())}
        # Python's encoder, like TabPy's: NaN goes out as a bare token.
        return httpx.Response(200, content=json.dumps(reply).encode(), headers=_JSON)


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


# --- URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "base"),
    [
        ("http://localhost:9400/", "http://localhost:9400/"),
        ("http://localhost:9400", "http://localhost:9400/"),
        ("http://localhost", "http://localhost/"),
        ("https://tabpy.example.com:443", "https://tabpy.example.com:443/"),
        ("http://h:9400/tabpy", "http://h:9400/tabpy/"),
        ("http://h:9400/tabpy/", "http://h:9400/tabpy/"),
        ("http://h/a/b.v1", "http://h/a/b.v1/"),
        ("http://my_host-1.local:80", "http://my_host-1.local:80/"),
        ("http://[::1]:9400", "http://[::1]:9400/"),
    ],
)
def test_base_url_adds_one_trailing_slash_and_keeps_the_path(endpoint: str, base: str) -> None:
    assert rest.base_url(endpoint) == base


@pytest.mark.parametrize(
    "endpoint",
    [
        "localhost:9400",
        "ftp://localhost:9400",
        "http://",
        "http://host:port/",
        "http://host:99999",
        "http://host name:9400",
        "http://host:9400/?x=1",
        "http://host:9400/#top",
    ],
)
def test_malformed_urls_are_value_errors(endpoint: str) -> None:
    with pytest.raises(ValueError, match=r"should be in http\(s\)://<hostname>\[:<port>\]"):
        Client(endpoint)


def test_url_type_and_emptiness() -> None:
    with pytest.raises(TypeError, match="^Endpoint name must be a string$"):
        Client(9400)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^Endpoint name cannot be empty$"):
        Client("")


def test_url_with_credentials_is_refused_without_echoing_them() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        Client(f"http://alice:{PASSWORD}@h:9400/")
    assert PASSWORD not in str(caught.value)
    assert "set_credentials" in str(caught.value)


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("http://h:9400", "http://h:9400/status"),
        ("http://h:9400/", "http://h:9400/status"),
        ("http://h:9400/tabpy", "http://h:9400/tabpy/status"),
        ("http://h:9400/tabpy/", "http://h:9400/tabpy/status"),
    ],
)
def test_requests_go_under_the_base_url(endpoint: str, url: str) -> None:
    prefix = httpx.URL(url).path.removesuffix("status")
    fake = FakeServer(prefix=prefix)
    fake.add("add")
    assert fake.client(endpoint).get_status()["add"]["status"] == "LoadSuccessful"
    assert str(fake.requests[0].url) == url


def test_names_are_percent_encoded_as_one_segment(server: FakeServer) -> None:
    server.add("Sentiment Analysis")
    client = server.client()
    client.remove("Sentiment Analysis")
    assert server.requests[0].url.raw_path == b"/endpoints/Sentiment%20Analysis"


def test_repr_shows_the_endpoint_as_given() -> None:
    client = Client("http://h:9400")
    assert repr(client).startswith("<Client object at 0x")
    assert repr(client).endswith("connected to 'http://h:9400'>")
    client.close()


# --- TLS, timeouts and network errors -----------------------------------------------------


def test_tls_verification_is_on_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    real = httpx.Client

    def capture(**kwargs: Any) -> httpx.Client:
        seen.append(kwargs["verify"])
        return real(**kwargs)

    monkeypatch.setattr(httpx, "Client", capture)
    Client("https://h:9400/").close()
    Client("https://h:9400/", verify=False).close()
    Client("https://h:9400/", verify=certifi.where()).close()
    assert seen[0] is True
    assert seen[1] is False
    assert isinstance(seen[2], ssl.SSLContext)
    assert seen[2].verify_mode == ssl.CERT_REQUIRED and seen[2].check_hostname


def test_verify_path_must_exist(tmp_path: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="neither a CA bundle"):
        Client("https://h:9400/", verify=str(tmp_path / "missing.pem"))


def test_query_timeout_is_seconds_and_setter_ignores_bad_values(server: FakeServer) -> None:
    client = server.client()
    assert client.query_timeout == 1000
    client.query_timeout = 2.5
    assert client.query_timeout == 2.5
    assert client._connection._http.timeout.read == 2.5
    for bad in (0, -1, "10", None, True, float("nan")):
        client.query_timeout = bad  # type: ignore[assignment]
        assert client.query_timeout == 2.5
    client.query_timeout = float("inf")
    assert client._connection._http.timeout.read is None


@pytest.mark.parametrize("bad", [0, -5, "1000", None])
def test_constructor_replaces_a_bad_query_timeout_with_the_default(
    bad: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        client = Client("http://h:9400/", query_timeout=bad)
    assert client.query_timeout == 1000
    assert "not a positive number of seconds" in caplog.text


def test_timeout_and_connection_errors_are_typed() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(RequestTimeoutError) as timeout:
        Client("http://h:9400/", transport=httpx.MockTransport(slow)).query("add", 1)
    assert isinstance(timeout.value, TimeoutError)
    with pytest.raises(ServerUnreachableError, match="connection refused") as refusal:
        Client("http://h:9400/", transport=httpx.MockTransport(refused)).get_status()
    assert isinstance(refusal.value, ConnectionError)


# --- ResponseError --------------------------------------------------------------------------


def test_response_error_formatting() -> None:
    error = ResponseError(400, "Error when changing TabPy state: x", {})
    assert str(error) == "(400) Error when changing TabPy state: x {}"
    assert (error.status_code, error.message, error.info) == (
        400,
        "Error when changing TabPy state: x",
        {},
    )
    assert isinstance(error, RuntimeError) and isinstance(error, ClientError)
    assert rest.ResponseError is ResponseError


def test_response_error_from_envelope_and_from_html() -> None:
    request = httpx.Request("GET", "http://h/")
    envelope_reply = httpx.Response(
        500,
        json={"message": "Error querying function 'f'", "info": {"type": "QueryFailed"}},
        request=request,
    )
    error = ResponseError.from_response(envelope_reply)
    assert type(error) is ServerError
    assert str(error) == "(500) Error querying function 'f' {'type': 'QueryFailed'}"
    html = "<html><title>404: Not Found</title><body>404: Not Found</body></html>"
    error = ResponseError.from_response(httpx.Response(404, text=html, request=request))
    assert type(error) is NotFoundError
    assert (error.message, error.info) == (html, None)
    error = ResponseError.from_response(httpx.Response(406, json={"message": "x", "info": "y"}))
    assert type(error) is AuthenticationError
    assert type(ResponseError.from_response(httpx.Response(418, text="tea"))) is ResponseError


def test_pickled_response_error_keeps_its_fields() -> None:
    import pickle

    error = pickle.loads(pickle.dumps(NotFoundError(404, "UnknownURI", "Endpoint 'x'")))
    assert (type(error), error.status_code, error.message) == (NotFoundError, 404, "UnknownURI")


# --- query ----------------------------------------------------------------------------------


def _deploy_directly(server: FakeServer, name: str, func: Any) -> None:
    """Make ``func`` callable on the fake without going through ``Client.deploy``."""
    from tabpy.tabpy_tools.custom_query_object import CustomQueryObject

    server.add(name)
    server.objects[name] = CustomQueryObject(func)


def test_query_sends_positional_arguments_as_a_list(server: FakeServer) -> None:
    _deploy_directly(server, "add", lambda x, y: x + y)
    reply = server.client().query("add", 1, 2)
    assert reply["response"] == 3 and reply["model"] == "add" and reply["version"] == 1
    request = server.sent("POST", "query/add")[0]
    assert json.loads(request.content) == {"data": [1, 2]}
    assert request.headers["content-type"] == "application/json"


def test_query_sends_keyword_arguments_as_an_object(server: FakeServer) -> None:
    _deploy_directly(server, "add", lambda x, y: x + y)
    assert server.client().query("add", x=1, y=2)["response"] == 3
    assert json.loads(server.requests[0].content) == {"data": {"x": 1, "y": 2}}


def test_query_without_arguments_sends_an_empty_object(server: FakeServer) -> None:
    _deploy_directly(server, "answer", lambda: 42)
    assert server.client().query("answer")["response"] == 42
    assert json.loads(server.requests[0].content) == {"data": {}}


def test_query_refuses_mixed_arguments_before_sending(server: FakeServer) -> None:
    with pytest.raises(
        ValueError,
        match=r"^Mixing of keyword arguments and positional arguments when querying an "
        r"endpoint is not supported\.$",
    ):
        server.client().query("add", 1, y=2)
    assert server.requests == []


def test_query_errors_carry_the_server_message(server: FakeServer) -> None:
    _deploy_directly(server, "boom", lambda: 1 / 0)
    client = server.client()
    with pytest.raises(NotFoundError) as missing:
        client.query("nope", 1)
    assert str(missing.value) == "(404) UnknownURI Endpoint 'nope' does not exist"
    with pytest.raises(ServerError) as failed:
        client.query("boom")
    assert failed.value.info["error"] == "ZeroDivisionError : division by zero"


def test_query_nan_travels_like_tabpys_client(server: FakeServer) -> None:
    _deploy_directly(server, "same", lambda x: x)
    reply = server.client().query("same", float("nan"))
    assert server.requests[0].content == b'{"data": [NaN]}'
    assert reply["response"] != reply["response"]  # NaN came back


# --- get_status / get_endpoints -------------------------------------------------------------


def test_get_status_returns_the_servers_dict(server: FakeServer) -> None:
    server.add("add", 3)
    assert server.client().get_status() == {
        "add": {"version": 3, "type": "model", "status": "LoadSuccessful", "last_error": None}
    }


def test_get_endpoints_builds_endpoint_objects(server: FakeServer) -> None:
    server.add("mul", 2, description="multiply v2", last_modified_time=1795828921, is_public=1)
    server.add("other", target="mul", type="alias")
    server.add("odd", type="weird")
    endpoints = server.client().get_endpoints()
    mul = endpoints["mul"]
    assert type(mul) is ModelEndpoint and isinstance(mul, dict)
    assert mul.name == mul["name"] == "mul"
    assert mul.version == 2 and mul.description == "multiply v2"
    assert mul.creation_time == datetime(2026, 11, 28, 1, 21, 50)
    assert mul.last_modified_time == datetime(2026, 11, 28, 1, 22, 1)
    assert mul.creation_time.tzinfo is None
    assert mul.is_public is True
    assert mul.schema is None and mul.dependencies == []
    assert type(endpoints["other"]) is AliasEndpoint and endpoints["other"].target == "mul"
    assert type(endpoints["odd"]) is Endpoint  # TabPy's client raised KeyError here
    with pytest.raises(AttributeError):
        _ = mul.required_files
    assert repr(mul).startswith("ModelEndpoint({")


def test_get_endpoints_filters_by_type(server: FakeServer) -> None:
    server.add("mul")
    server.add("other", type="alias", target="mul")
    client = server.client()
    assert list(client.get_endpoints(type="alias")) == ["other"]
    assert server.requests[0].url.params["type"] == "alias"
    assert list(client.get_endpoints()) == ["mul", "other"]
    assert "type" not in server.requests[1].url.params


# --- remove ---------------------------------------------------------------------------------


def test_remove_sends_delete(server: FakeServer) -> None:
    server.add("mul")
    server.client().remove("mul")
    assert server.routes() == ["DELETE endpoints/mul"]
    assert "mul" not in server.endpoints


def test_remove_unknown_endpoint(server: FakeServer) -> None:
    with pytest.raises(NotFoundError) as caught:
        server.client().remove("mul")
    assert isinstance(caught.value, RuntimeError)  # TabPy raised RuntimeError
    assert caught.value.message == "endpoint mul does not exist."
    assert str(caught.value) == "(404) endpoint mul does not exist. {}"


def test_remove_other_failures() -> None:
    def failing(request: httpx.Request) -> httpx.Response:
        return envelope(500, "AttributeError : 'ValueError' object has no attribute 'message'")

    client = Client("http://h:9400/", transport=httpx.MockTransport(failing))
    with pytest.raises(ServerError, match=r"^\(500\) AttributeError"):
        client.remove("x")


# --- update_endpoint_info -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"description": 5}, "Type of description must be string"),
        ({"schema": "{'a': 1}"}, "Type of schema must be dictionary"),
        ({"is_public": "yes"}, "Type of is_public must be bool"),
        ({"is_public": 1}, "Type of is_public must be bool"),
    ],
)
def test_update_endpoint_info_checks_types_before_sending(
    server: FakeServer, kwargs: dict[str, Any], message: str
) -> None:
    server.add("mul")
    with pytest.raises(RuntimeError, match=f"^{message}$") as caught:
        server.client().update_endpoint_info("mul", **kwargs)
    assert isinstance(caught.value, InvalidEndpointInfoError)
    assert server.requests == []


def test_update_endpoint_info_unknown_name(server: FakeServer) -> None:
    with pytest.raises(EndpointNotFoundError) as caught:
        server.client().update_endpoint_info("mul", description="x")
    assert str(caught.value) == (
        "No endpoint with that name (mul) exists Please select an existing endpoint to update"
    )
    assert isinstance(caught.value, RuntimeError)


def test_update_endpoint_info_sends_the_change_and_keeps_the_rest(server: FakeServer) -> None:
    schema = {"input": {"type": "integer"}, "sample": 1, "output": {"type": "integer"}}
    server.add("mul", 2, description="old", schema=schema, is_public=True)
    server.client().update_endpoint_info("mul", description="new")
    assert server.routes() == [
        "GET endpoints/mul",
        "GET configurations/endpoint_upload_destination",
        "PUT endpoints/mul",
    ]
    body = json.loads(server.requests[-1].content)
    assert body == {
        "description": "new",
        "schema": schema,
        "is_public": True,
        "src_path": "/srv/tabpy/staging/endpoints/mul/2",
        "should_update_version": False,
    }
    assert server.endpoints["mul"]["version"] == 2


def test_update_endpoint_info_changes_schema_and_visibility(server: FakeServer) -> None:
    server.add("mul", description="keep")
    server.client().update_endpoint_info("mul", schema={"a": 1}, is_public=True)
    body = json.loads(server.requests[-1].content)
    assert "description" not in body
    assert body["schema"] == {"a": 1} and body["is_public"] is True
    assert server.endpoints["mul"]["description"] == "keep"


# --- credentials and logs -------------------------------------------------------------------


def test_set_credentials_sends_basic_auth_and_never_logs_the_password(
    server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.add("mul")
    with caplog.at_level(logging.DEBUG):
        client = server.client()
        client.set_credentials("alice", PASSWORD)
        client.get_status()
        with pytest.raises(NotFoundError):
            client.remove("missing")
    expected = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    assert all(r.headers["authorization"] == f"Basic {expected}" for r in server.requests)
    assert "Setting credentials (username: alice)" in caplog.text
    assert PASSWORD not in caplog.text and expected not in caplog.text


class _StatusHandler(http.server.BaseHTTPRequestHandler):
    """``GET /tabpy/status`` behind Basic auth; everything else 404."""

    expected_auth = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.headers.get("Authorization") != self.expected_auth:
            self._reply(401, {"message": "Invalid credentials provided.", "info": {}})
        elif self.path == "/tabpy/status":
            self._reply(200, {"f": {"version": 1, "status": "LoadSuccessful"}})
        else:
            self._reply(404, {"message": "nope", "info": {}})

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StatusHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_over_a_real_socket_with_a_path_and_no_trailing_slash(
    http_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG), Client(f"{http_server}/tabpy", query_timeout=5) as client:
        with pytest.raises(AuthenticationError, match=r"^\(401\) Invalid credentials"):
            client.get_status()
        client.set_credentials("alice", PASSWORD)
        assert client.get_status() == {"f": {"version": 1, "status": "LoadSuccessful"}}
    assert PASSWORD not in caplog.text
    assert base64.b64encode(f"alice:{PASSWORD}".encode()).decode() not in caplog.text
