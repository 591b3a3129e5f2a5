"""Fixtures for the integration tests (the helpers live in ``live_server``).

Servers are expensive to start (about a second), so tests that only read share one
(``default_server``, or a module-scoped fixture built with ``module_server``); tests that need
special settings or kill things start their own with ``launch``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from live_server import DEFAULT_WORKERS, ServerProcess, ServerSettings, module_server


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start per-test servers (not yet warm): ``launch({"TABPY_WORKERS": "1"})``.

    Every server started through it is killed at teardown, whatever the test did.
    """
    servers: list[ServerProcess] = []

    def start(settings: ServerSettings | None = None, **kwargs: Any) -> ServerProcess:
        server = ServerProcess(tmp_path / f"server{len(servers)}", settings, **kwargs)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.kill()


@pytest.fixture(scope="session")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with default settings, shared by every test that only reads."""
    yield from module_server(tmp_path_factory, {"TABPY_WORKERS": str(DEFAULT_WORKERS)})
