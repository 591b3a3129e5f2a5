"""The documented nginx configuration (docs/nginx-tabpy.conf) in front of a real server.

Runs nginx from the PATH on ephemeral loopback ports, with the documented site file and only
the host-specific values replaced. Marker ``nginx``: skipped when nginx is not installed, and
failed under CI.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live_server import ServerProcess, module_server, wait_for
from security_support import Authority, write_pair

from tabpy.config import DEFAULT_PORT
from tests.components import NGINX, missing
from tests.nginx_support import write_main_config

pytestmark = pytest.mark.nginx

SITE = Path(__file__).resolve().parents[2] / "docs" / "nginx-tabpy.conf"


def nginx_binary() -> str:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    missing(NGINX, "no nginx on PATH or in /usr/sbin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def tabpy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    settings = {"TABPY_WORKERS": "1", "TABPY_BIND_ADDRESS": "127.0.0.1"}
    yield from module_server(tmp_path_factory, settings)


@pytest.fixture(scope="module")
def nginx(tabpy: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    binary = nginx_binary()
    directory = tmp_path_factory.mktemp("nginx")
    directory.chmod(0o755)  # nginx's workers run as an unprivileged user when we are root
    authority = Authority()
    cert, key = write_pair(directory, "tabpy", *authority.issue())
    (directory / "ca.pem").write_bytes(authority.pem())
    https_port, http_port = free_port(), free_port()
    site = SITE.read_text(encoding="utf-8")
    replacements = {
        f"server 127.0.0.1:{DEFAULT_PORT};": f"server 127.0.0.1:{tabpy.port};",
        "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "/etc/nginx/tls/tabpy.example.com.crt": str(cert),
        "/etc/nginx/tls/tabpy.example.com.key": str(key),
        "/var/log/nginx/tabpy.access.log": str(directory / "access.log"),
    }
    for documented, local in replacements.items():
        assert documented in site, f"docs/nginx-tabpy.conf no longer contains {documented!r}"
        site = site.replace(documented, local)
    (directory / "site.conf").write_text(site, encoding="utf-8")
    write_main_config(directory, connections=64, access_log=False)
    command = [binary, "-p", str(directory), "-c", str(directory / "nginx.conf")]
    check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen(
        [*command, "-g", "daemon off;"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        client = httpx.Client(
            base_url=f"https://127.0.0.1:{https_port}",
            verify=ssl.create_default_context(cafile=str(directory / "ca.pem")),
            timeout=60,
        )

        def answers() -> bool:
            with contextlib.suppress(httpx.TransportError):
                return client.get("/health").status_code == 200
            return False

        wait_for(answers, 30, "nginx to answer")
        yield {"client": client, "directory": directory, "http_port": http_port}
        client.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


def test_requests_pass_through_tls(tabpy: ServerProcess, nginx: dict) -> None:
    client: httpx.Client = nginx["client"]
    direct = tabpy.http.get("/info")
    proxied = client.get("/info")
    assert proxied.status_code == 200
    assert proxied.content == direct.content
    assert proxied.headers["strict-transport-security"] == "max-age=31536000"
    result = client.post(
        "/evaluate", json={"script": "return sum(_arg1)", "data": {"_arg1": [1, 2]}}
    )
    assert (result.status_code, result.content) == (200, b"3")


def test_plain_http_redirects_to_https(nginx: dict) -> None:
    response = httpx.get(f"http://127.0.0.1:{nginx['http_port']}/info", follow_redirects=False)
    assert response.status_code == 301
    assert response.headers["location"].startswith("https://")


def test_one_request_id_in_nginx_tabpy_and_the_reply(tabpy: ServerProcess, nginx: dict) -> None:
    response = nginx["client"].get("/status")
    request_id = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)  # nginx's $request_id, kept by tabpy
    access_log: Path = nginx["directory"] / "access.log"
    wait_for(
        lambda: access_log.exists() and f"request_id={request_id}" in access_log.read_text(),
        10,
        "nginx's access-log line",
    )
    wait_for(
        lambda: (
            "200 GET /status (127.0.0.1)" in tabpy.stderr.text
            and f"[request {request_id}]" in tabpy.stderr.text
        ),
        10,
        "tabpy's access-log line with nginx's id",
    )
