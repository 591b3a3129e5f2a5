"""The fleet nginx config (deploy/nginx/fleet.conf): read against the server's routes, then
run in a real nginx in front of stand-in instances on local ports."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tabpy.config import DEFAULT_ARROWFLIGHT_PORT, DEFAULT_EVALUATE_TIMEOUT, DEFAULT_PORT
from tests.nginx_support import write_main_config
from tests.unit.deploy_checks import FLEET_NGINX, find_tool, run, server_routes, stub_server

# The routes whose requests nginx may send to a second instance.
RETRIED_PATHS = frozenset({"/evaluate", "/query/{name}"})
# A connection error or timeout, whatever the method and whether the request was sent or not.
RETRY_ANY_FAILURE = frozenset({"error", "timeout", "non_idempotent"})


@dataclass
class Block:
    """One nginx block (http, upstream, server, location): its directives and inner blocks."""

    name: str
    args: list[str]
    lines: list[list[str]] = field(default_factory=list)  # directives, name first
    blocks: list[Block] = field(default_factory=list)

    def all(self, name: str) -> list[list[str]]:
        return [line[1:] for line in self.lines if line[0] == name]

    def get(self, name: str) -> list[str] | None:
        values = self.all(name)
        assert len(values) <= 1, f"{name} appears {len(values)} times in one block"
        return values[0] if values else None

    def inner(self, name: str) -> list[Block]:
        return [block for block in self.blocks if block.name == name]


def parse_nginx(text: str) -> Block:
    tokens = re.findall(r'"[^"]*"|[{};]|[^\s{};"]+', re.sub(r"#[^\n]*", "", text))
    stack = [Block("http", [])]
    words: list[str] = []
    for token in tokens:
        if token == "{":
            block = Block(words[0], words[1:])
            stack[-1].blocks.append(block)
            stack.append(block)
            words = []
        elif token == "}":
            stack.pop()
        elif token == ";":
            stack[-1].lines.append(words)
            words = []
        else:
            words.append(token.strip('"'))
    assert len(stack) == 1 and not words, "unbalanced braces in the nginx config"
    return stack[0]


def location_for(server: Block, path: str) -> Block:
    """nginx's choice among exact and prefix locations (the config has no regex ones)."""
    exact = [b for b in server.inner("location") if b.args[0] == "=" and b.args[1] == path]
    if exact:
        return exact[0]
    prefixes = [b for b in server.inner("location") if len(b.args) == 1]
    assert all(not b.args[0].startswith("~") for b in prefixes)
    matching = [b for b in prefixes if path.startswith(b.args[0])]
    return max(matching, key=lambda b: len(b.args[0]))


def retry_policy(server: Block, location: Block, prefix: str = "proxy") -> list[str]:
    """The effective proxy_next_upstream (or grpc_next_upstream) of a location.

    nginx's default, "error timeout", already retries any request that never reached an
    instance (a refused connection), and retries PUT and DELETE even after sending them,
    because HTTP calls them idempotent. tabpy's PUT deploys a new version, so anything but
    "off" would let a deploy happen twice.
    """
    name = f"{prefix}_next_upstream"
    return location.get(name) or server.get(name) or ["error", "timeout"]


def fleet_servers() -> tuple[Block, Block, Block]:
    config = parse_nginx(FLEET_NGINX.read_text(encoding="utf-8"))
    http, flight = config.inner("server")
    assert http.get("listen") == [str(DEFAULT_PORT)]
    assert flight.get("listen") == [str(DEFAULT_ARROWFLIGHT_PORT), "http2"]
    return config, http, flight


def test_nginx_retries_scripts_and_queries_never_deploys(tmp_path: Path) -> None:
    _, http, _ = fleet_servers()
    checked = set()
    for route in server_routes(tmp_path):
        path = route.path_format.replace("{name}", "model").replace("{sha256}", "ab12")
        location = location_for(http, path)
        assert location.get("proxy_pass") == ["http://tabpy_http"]
        for method in route.methods or ():
            policy = retry_policy(http, location)
            if route.path in RETRIED_PATHS:
                assert set(policy) >= RETRY_ANY_FAILURE, f"{method} {route.path}"
                # nginx can only resend a body it has kept.
                assert location.get("proxy_request_buffering") == ["on"]
            else:
                assert policy == ["off"], f"{method} {route.path} may be retried"
            checked.add((method, route.path))
    assert {("POST", "/endpoints"), ("PUT", "/artifacts/{sha256}")} <= checked
    assert {("DELETE", "/endpoints/{name}"), ("POST", "/endpoints/{name}/rollback")} <= checked


def test_nginx_upstreams_keep_connections_and_readmit_quickly() -> None:
    config, http, flight = fleet_servers()
    upstreams = {block.args[0]: block for block in config.inner("upstream")}
    ports = {"tabpy_http": DEFAULT_PORT, "tabpy_flight": DEFAULT_ARROWFLIGHT_PORT}
    assert set(upstreams) == set(ports)
    for name, upstream in upstreams.items():
        assert int((upstream.get("keepalive") or ["0"])[0]) > 0
        assert len(upstream.all("server")) == 3
        for address, *options in upstream.all("server"):
            assert address.endswith(f":{ports[name]}")
            parameters = dict(option.split("=") for option in options)
            assert parameters["max_fails"] == "1"
            assert int(parameters["fail_timeout"].removesuffix("s")) <= 2  # nginx's default: 10
    # Keep-alive to the upstream needs HTTP/1.1 without "Connection: close".
    assert http.get("proxy_http_version") == ["1.1"]
    assert ["Connection", ""] in http.all("proxy_set_header")
    assert not any(location.all("proxy_set_header") for location in http.inner("location"))
    read_timeout = (http.get("proxy_read_timeout") or ["0s"])[0]
    assert float(read_timeout.removesuffix("s")) > DEFAULT_EVALUATE_TIMEOUT
    (grpc,) = flight.inner("location")
    assert grpc.get("grpc_pass") == ["grpc://tabpy_flight"]
    # Every gRPC call is a POST, so without non_idempotent nothing sent would be retried.
    assert set(retry_policy(flight, grpc, prefix="grpc")) >= RETRY_ANY_FAILURE


# --- the fleet nginx config in a real nginx ------------------------------------------------------


@dataclass
class Nginx:
    http_port: int
    flight_port: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A port that refuses connections (bound, never listening), like a dead instance."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def local_fleet_config(directory: Path, http: list[int], flight: list[int]) -> tuple[Path, Nginx]:
    """fleet.conf with its hosts replaced by local ports, inside a minimal nginx.conf."""
    site = FLEET_NGINX.read_text(encoding="utf-8")
    ports = Nginx(free_port(), free_port())
    replacements = {
        f"listen {DEFAULT_PORT};": f"listen 127.0.0.1:{ports.http_port};",
        f"listen {DEFAULT_ARROWFLIGHT_PORT} http2;": f"listen 127.0.0.1:{ports.flight_port} http2;",
        "/var/log/nginx/": f"{directory}/",
    }
    for number, (http_port, flight_port) in enumerate(zip(http, flight, strict=True), start=1):
        replacements[f"server tabpy{number}:{DEFAULT_PORT} "] = f"server 127.0.0.1:{http_port} "
        replacements[f"server tabpy{number}:{DEFAULT_ARROWFLIGHT_PORT} "] = (
            f"server 127.0.0.1:{flight_port} "
        )
    for documented, local in replacements.items():
        assert documented in site, f"fleet.conf no longer contains {documented!r}"
        site = site.replace(documented, local)
    assert not re.search(r"tabpy\d:", site), "an instance address was left unreplaced"
    (directory / "site.conf").write_text(site, encoding="utf-8")
    return write_main_config(directory, connections=64), ports


@contextlib.contextmanager
def running_nginx(directory: Path, http: list[int], flight: list[int]) -> Iterator[Nginx]:
    binary = find_tool("nginx", "Debian: apt-get install -y nginx-light")
    directory.chmod(0o755)
    config, ports = local_fleet_config(directory, http, flight)
    command = [binary, "-p", str(directory), "-c", str(config)]
    process = subprocess.Popen(
        [*command, "-g", "daemon off;"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", ports.http_port), timeout=1),
            ):
                break
            assert process.poll() is None, (directory / "error.log").read_text()
            assert time.monotonic() < deadline, "nginx did not start listening"
            time.sleep(0.05)
        yield ports
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


@pytest.mark.nginx
def test_nginx_accepts_the_fleet_config(tmp_path: Path) -> None:
    binary = find_tool("nginx", "Debian: apt-get install -y nginx-light")
    with refusing_port() as port:
        config, _ = local_fleet_config(tmp_path, [port] * 3, [port] * 3)
        result = run([binary, "-p", str(tmp_path), "-c", str(config), "-t"])
    assert result.returncode == 0, result.stderr


REQUESTS = {
    "POST /evaluate": ("POST", "/evaluate", True),
    "POST /query": ("POST", "/query/model", True),
    "POST /endpoints": ("POST", "/endpoints", False),
    "PUT /endpoints": ("PUT", "/endpoints/model", False),
    "DELETE /endpoints": ("DELETE", "/endpoints/model", False),
    "POST rollback": ("POST", "/endpoints/model/rollback", False),
    "PUT /artifacts": ("PUT", "/artifacts/ab12", False),
}


@pytest.mark.nginx
@pytest.mark.parametrize("request_name", REQUESTS)
def test_nginx_retries_on_a_dead_instance_only_where_allowed(
    tmp_path: Path, request_name: str
) -> None:
    """The first instance is dead; nginx's round robin starts with it in a fresh nginx."""
    method, path, retried = REQUESTS[request_name]
    with refusing_port() as dead, stub_server({"*": 200}) as live:
        port = live.server_address[1]
        with running_nginx(tmp_path, [dead, port, port], [dead, dead, dead]) as nginx:
            url = f"http://127.0.0.1:{nginx.http_port}{path}"
            reply = httpx.request(method, url, content=b'{"data": {}}', timeout=30)
        seen = live.seen  # type: ignore[attr-defined]
    if retried:
        assert reply.status_code == 200 and seen == [(method, path)]
    else:
        assert reply.status_code == 502 and seen == []


@pytest.mark.nginx
def test_nginx_carries_flight_grpc_past_a_dead_instance(tmp_path: Path) -> None:
    flight = pytest.importorskip("pyarrow.flight")

    class Pong(flight.FlightServerBase):  # type: ignore[misc,name-defined]
        def do_action(self, context: Any, action: Any) -> Iterator[Any]:
            yield flight.Result(b"pong:" + action.body.to_pybytes())

    server = Pong("grpc://127.0.0.1:0")
    try:
        with (
            refusing_port() as dead,
            running_nginx(tmp_path, [dead] * 3, [dead, server.port, server.port]) as nginx,
        ):
            client = flight.FlightClient(f"grpc://127.0.0.1:{nginx.flight_port}")
            options = flight.FlightCallOptions(timeout=20)
            results = list(client.do_action(flight.Action("ping", b"1"), options))
            client.close()
    finally:
        server.shutdown()
    assert [result.body.to_pybytes() for result in results] == [b"pong:1"]
