"""Shared by the deploy tests: where the artifacts are, how to read the Dockerfile, the tools.

The tests check deploy/ against the server without a container runtime. An external tool
(hadolint, kustomize, checkov, nginx) that is missing skips its tests, except under
``CI=true``, where it fails them: CI must install every tool.
"""

from __future__ import annotations

import configparser
import contextlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from starlette.routing import Route

from tabpy.config import Settings, load_settings
from tabpy.registry.service_info import ServiceInfo
from tabpy.server.app import api_routes
from tabpy.server.context import ServerContext

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
FLEET_NGINX = DEPLOY / "nginx" / "fleet.conf"
K8S = DEPLOY / "k8s"
# Where scripts/check-deploy installs the tools that do not belong in the test extra.
TOOLS = Path(
    os.environ.get("DEPLOY_TOOLS_DIR")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tabpy-deploy-tools"
)


# --- tools ---------------------------------------------------------------------------------------


def find_tool(name: str, hint: str) -> str:
    """The tool's path; skip without it, or fail under CI, which must have every tool."""
    candidates = [
        shutil.which(name),
        str(Path(sys.executable).with_name(name)),  # the test venv, even when not activated
        str(TOOLS / "bin" / name),
        f"/usr/sbin/{name}",
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    message = f"{name} is not installed: {hint}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)


# --- the Dockerfile ------------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [rest for word, rest in self.instructions if word == keyword]


def dockerfile_stages() -> list[Stage]:
    """The Dockerfile's stages, each a list of (INSTRUCTION, arguments), continuations joined."""
    text = re.sub(r"\\\n(\s*#.*\n)*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word == "FROM":
            base, _, name = rest.partition(" AS ")
            stages.append(Stage(base.strip(), name.strip()))
        else:
            stages[-1].instructions.append((word, " ".join(rest.split())))
    return stages


def runtime_stage() -> Stage:
    return dockerfile_stages()[-1]


def image_environment() -> dict[str, str]:
    """What the image's ENV lines set."""
    environment: dict[str, str] = {}
    for rest in runtime_stage().all("ENV"):
        for pair in shlex.split(rest):
            name, _, value = pair.partition("=")
            environment[name] = value
    return environment


def image_uid() -> int:
    user = runtime_stage().all("USER")[-1]
    return int(user.partition(":")[0])


def exec_form(rest: str) -> list[str]:
    value = json.loads(rest)
    assert isinstance(value, list), f"use the exec (JSON) form, not a shell string: {rest}"
    return [str(part) for part in value]


def healthcheck_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_healthcheck", DEPLOY / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def stub_server(status: Mapping[str, int]) -> Iterator[ThreadingHTTPServer]:
    """An HTTP server answering each path with the given status (404 otherwise)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._answer()

        do_POST = do_PUT = do_DELETE = do_GET

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            self.server.seen.append((self.command, self.path))  # type: ignore[attr-defined]
            code = status.get(self.path.split("?")[0], status.get("*", 404))
            body = b'{"stub": true}'
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def settings_for(
    tmp_path: Path, environment: Mapping[str, str], config: Path | None = None
) -> Settings:
    """The server's settings for this environment and config file, files replaced by stand-ins.

    Paths that exist only inside the container are pointed at temporary files, so the values
    are parsed and validated exactly as the server would.
    """
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    passwords = tmp_path / "passwords.txt"
    passwords.write_text("# stand-in\n", encoding="utf-8")
    overrides = {"TABPY_STATE_PATH": str(state)}
    if "TABPY_PWD_FILE" in environment or "TABPY_PWD_FILE" in config_values(config):
        overrides["TABPY_PWD_FILE"] = str(passwords)
    return load_settings(config, {**environment, **overrides})


def config_values(config: Path | None) -> dict[str, str]:
    """The [TabPy] section as written, every key included (pending ones too)."""
    if config is None:
        return {}
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(config, encoding="utf-8")
    return dict(parser["TabPy"])


def image_settings() -> Settings:
    # Only the image's environment: a state path that exists here stands in for its own.
    return load_settings(None, {**image_environment(), "TABPY_STATE_PATH": str(ROOT)})


def server_routes(tmp_path: Path) -> list[Route]:
    settings = load_settings(None, {"TABPY_STATE_PATH": str(tmp_path)})
    info = ServiceInfo("TabPy Server", "", "0", "", "", "", "")
    context = ServerContext(settings, info, pool=None, catalog=None, auth=None)  # type: ignore[arg-type]
    return [route for route in api_routes(context) if isinstance(route, Route)]


def untracked_secrets(directory: str, names: list[str]) -> set[str]:
    """For copytree: the files a secrets/.gitignore keeps out of git."""
    if Path(directory).name != "secrets":
        return set()
    return {name for name in names if name != ".gitignore" and not name.endswith(".example")}
