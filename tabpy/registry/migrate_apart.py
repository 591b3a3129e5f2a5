"""Upgrading the registry's schema in a short-lived process of its own.

Alembic, and the migration it runs, would stay in the server's memory for good (about 10 MB,
a fifth of an idle server) for work done once, on the first start after an install or an
upgrade. The server therefore runs that upgrade in a child interpreter
(``python -m tabpy.registry.migrate_apart``), which gets the registry's URL and password on
its standard input (never on its command line, which other users can read) and answers with
one JSON line: the revision reached, or the error, plus the log records it made, which the
server logs as its own.

A registry at the newest revision needs no Alembic and no child; nor does an in-memory SQLite
database, which only the process that made it can see.
"""

from __future__ import annotations

import base64
import json
import logging
import pickle
import subprocess
import sys
from typing import Any

from tabpy.config import ConfigError

__all__ = ["MigrationFailed", "run_apart", "upgrade_apart"]

logger = logging.getLogger(__name__)

#: Generous: a migration on a busy database may wait for other instances' schema lock.
_TIMEOUT_SECONDS = 600.0


class MigrationFailed(ConfigError):
    """The upgrade process failed in a way its answer does not explain."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"TABPY_REGISTRY_URL: upgrading the registry's schema failed ({detail}). Check "
            "that the server's Python environment is complete and that the registry is "
            "reachable, then start the server again."
        )


def in_memory(url: str) -> bool:
    """True for SQLite databases that live in one process's memory."""
    if not url.startswith("sqlite"):
        return False
    rest = url.split(":", 1)[1].lstrip("/")
    return rest in ("", ":memory:") or "mode=memory" in url


def upgrade_apart(url: str, password: str | None) -> str:
    """Upgrade the registry at ``url`` in a child process; the revision it is at.

    Raises what the upgrade raised in the child (``RegistryTooNew``, a database error...),
    so that callers handle it as if it had happened here.
    """
    request = json.dumps({"url": url, "password": password}).encode()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tabpy.registry.migrate_apart"],
            input=request,
            capture_output=True,
            timeout=_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MigrationFailed(f"{type(exc).__name__}: {exc}") from None
    lines = done.stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, ValueError):
        stderr = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise MigrationFailed(
            stderr[-1] if stderr else f"the upgrade process exited with code {done.returncode}"
        ) from None
    for level, name, message in answer.get("logs", ()):
        logging.getLogger(name).log(level, "%s", message)
    if "revision" in answer:
        return str(answer["revision"])
    raise _error_of(answer)


def _error_of(answer: dict[str, Any]) -> BaseException:
    try:
        error = pickle.loads(base64.b64decode(answer["pickled"]))  # noqa: S301 - our own child
        if isinstance(error, BaseException):
            return error
    except Exception:  # noqa: BLE001 - not every exception survives pickling; its text does
        pass
    if answer.get("config_error"):
        return ConfigError(str(answer.get("message", "")))
    return MigrationFailed(f"{answer.get('type', 'error')}: {answer.get('message', '')}")


class _Records(logging.Handler):
    """Keeps the child's log records for its answer."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[tuple[int, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.levelno, record.name, record.getMessage()))


def run_apart() -> int:
    """The child: read the request, upgrade, write the answer."""
    request = json.loads(sys.stdin.buffer.read())
    records = _Records()
    root = logging.getLogger()
    root.addHandler(records)
    root.setLevel(logging.INFO)
    answer: dict[str, Any]
    try:
        from tabpy.registry.database import create_engine
        from tabpy.registry.migrate import upgrade_schema

        engine = create_engine(request["url"], request["password"])
        try:
            answer = {"revision": upgrade_schema(engine)}
        finally:
            engine.dispose()
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the server
        answer = {
            "type": type(exc).__name__,
            "message": str(exc),
            "config_error": isinstance(exc, ConfigError),
            "pickled": _pickled(exc),
        }
    answer["logs"] = records.records
    sys.stdout.write(json.dumps(answer) + "\n")
    return 0


def _pickled(exc: BaseException) -> str:
    try:
        data = pickle.dumps(exc)
        pickle.loads(data)  # noqa: S301 - checks that the server will be able to read it
    except Exception:  # noqa: BLE001
        return ""
    return base64.b64encode(data).decode("ascii")


if __name__ == "__main__":
    sys.exit(run_apart())
