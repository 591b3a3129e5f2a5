"""What every handler needs, built once at start-up and passed explicitly."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from starlette.requests import Request

from tabpy.config import Settings
from tabpy.registry.service_info import ServiceInfo
from tabpy.runtime.catalog import Catalog
from tabpy.runtime.pool import WorkerPool
from tabpy.runtime.tables import TableEvaluator
from tabpy.server.cors import cors_headers
from tabpy.server.metrics import Metrics
from tabpy.server.principal import Principal

if TYPE_CHECKING:
    from tabpy.arrow.service import ArrowService


class Authenticator(Protocol):
    """Decides who sent a request. ``AuthMiddleware`` calls it for every API route."""

    async def authenticate(self, request: Request) -> Principal:
        """Who sent ``request``; raise a ``tabpy.errors`` refusal to turn it away."""

    def check(self, request: Request) -> None:
        """Raise unless ``AuthMiddleware`` has already authenticated ``request``."""

    def reload(self) -> None:
        """Re-read the credentials (SIGHUP)."""

    def close(self) -> None:
        """Release threads; called once at shutdown."""


@dataclass
class ServerContext:
    settings: Settings
    service_info: ServiceInfo
    pool: WorkerPool
    catalog: Catalog
    auth: Authenticator
    #: Arrow Flight, when ``TABPY_ARROW_ENABLE`` is true.
    arrow: ArrowService | None = None
    #: Runs ``/evaluate`` requests that name a stored table (``dataPath``); None: no tables.
    tables: TableEvaluator | None = None
    started_at: float = field(default_factory=time.time)
    cors: dict[str, str] = field(init=False)
    metrics: Metrics = field(init=False)

    def __post_init__(self) -> None:
        self.cors = cors_headers(self.service_info)
        self.metrics = Metrics()
        self.metrics.watch(lambda: self.pool, lambda: self.catalog)

    @property
    def staging_path(self) -> Path:
        """Where TabPy 2.16's client writes pickles for the shared-disk deploy flow."""
        return self.settings.state_path / "staging"
