"""Stand-ins for the server, so worker-side logic runs without one."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import cloudpickle

from tabpy.runtime.endpoint_cache import EndpointCache
from tabpy.runtime.outcomes import error_of
from tabpy.runtime.protocol import Artifact, EndpointRef, Reply
from tabpy.server.http_errors import envelope, status_of


def as_http(reply: Reply) -> tuple[int, bytes]:
    """The status and body the server answers a worker's ``reply`` with."""
    error = error_of(reply)
    if error is None:
        return 200, bytes(reply.body)
    return status_of(error), envelope(error.message, error.info)


class FakeServer:
    """Answers a worker's ``tabpy.query`` questions the way the pool does.

    Every function is deployed as version 1 of an endpoint with the same name; its pickle is
    sent with the first answer that names it, as the pool sends it once per worker.
    """

    def __init__(self, cache: EndpointCache, functions: dict[str, Callable[..., Any]]) -> None:
        self.cache = cache
        self.pickles = {name: cloudpickle.dumps(function) for name, function in functions.items()}
        self.sent: set[str] = set()
        self.asked: list[str] = []

    def ask(self, name: str) -> EndpointRef | None:
        self.asked.append(name)
        data = self.pickles.get(name)
        if data is None:
            return None
        sha256 = hashlib.sha256(data).hexdigest()
        if sha256 not in self.sent:
            self.sent.add(sha256)
            self.cache.install(Artifact(sha256, data), data)
        return EndpointRef(name, 1, "model", sha256)
