"""The access log: one line per request, TabPy's ``<status> <METHOD> <path> (<ip>) <ms>ms``.

Written by :class:`~tabpy.server.observe.Observe` after the response is sent, at INFO below
400, WARNING for 4xx and ERROR for 5xx, as TabPy does. The same values are passed as
``extra`` fields, which the JSON log format turns into ``status``, ``method``, ``path``,
``client`` and ``duration_ms``.
"""

from __future__ import annotations

import logging

from starlette.types import Scope

from tabpy.security.log_text import printable

logger = logging.getLogger("tabpy.access")


def log_access(scope: Scope, status: int, seconds: float) -> None:
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    if not logger.isEnabledFor(level):
        return
    client = scope.get("client")
    address = client[0] if client else "-"
    milliseconds = seconds * 1000
    # Both come from the client: escape control characters so one request stays one line.
    method, path = printable(scope["method"]), printable(scope["path"])
    logger.log(
        level,
        "%d %s %s (%s) %.2fms",
        status,
        method,
        path,
        address,
        milliseconds,
        extra={
            "status": status,
            "method": method,
            "path": path,
            "client": address,
            "duration_ms": round(milliseconds, 2),
        },
    )
