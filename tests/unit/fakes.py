"""Stand-ins for the registry, so worker-side logic runs without a database."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cloudpickle

from tabpy.registry.endpoint import Endpoint


class FakeRegistry:
    """Every function is deployed as version 1 of an endpoint with the same name."""

    def __init__(self, functions: dict[str, Callable[..., Any]]) -> None:
        self.functions = functions

    def snapshot(self) -> tuple[int, dict[str, Endpoint]]:
        endpoints = {
            name: Endpoint(name, "model", 1, "", "", None, False, [], None, 0, 0)
            for name in self.functions
        }
        return 1, endpoints

    def artifact_of(self, name: str, version: int) -> bytes:
        return cloudpickle.dumps(self.functions[name])
