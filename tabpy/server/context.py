"""What every handler needs, built once at start-up and passed explicitly."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tabpy.config import Settings
from tabpy.registry.service_info import ServiceInfo
from tabpy.runtime.catalog import Catalog
from tabpy.runtime.fleet import Fleet
from tabpy.runtime.pool import WorkerPool
from tabpy.runtime.pools import PoolSet
from tabpy.runtime.tables import TableService
from tabpy.security.access import Authorization
from tabpy.security.principal import Principal
from tabpy.server.cors import cors_headers
from tabpy.server.metrics import Metrics


class Authenticator(Protocol):
    """Decides who is calling (:class:`tabpy.security.authenticator.Authenticator`).

    ``AuthMiddleware`` calls it for every API route; tests may pass a fake.
    """

    #: Who may do what (roles, owners, callers), shared with Arrow Flight.
    authorization: Authorization

    async def authenticate(
        self, authorization: str | None, address: str, required_scope: str | None = None
    ) -> Principal:
        """Who sent ``authorization`` from ``address``; raise a ``tabpy.errors`` refusal."""

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
    #: Runs ``/evaluate`` requests that name a stored table (``dataPath``) and listens for
    #: the tables themselves (Arrow Flight when ``TABPY_ARROW_ENABLE`` is true); None: no tables.
    tables: TableService | None = None
    #: This instance's membership of the fleet sharing the registry (None: not a member).
    fleet: Fleet | None = None
    #: The default pool and one per Python environment in use; by default (tests), the
    #: catalog's, or one around ``pool``.
    pools: PoolSet = field(default=None)  # type: ignore[assignment]
    started_at: float = field(default_factory=time.time)
    #: True from SIGTERM on (``TABPY_DRAIN_SECONDS``): ``/ready`` answers 503, all else serves.
    draining: bool = False
    cors: dict[str, str] = field(init=False)
    metrics: Metrics = field(init=False)

    def __post_init__(self) -> None:
        self.cors = cors_headers(self.service_info)
        if self.pools is None and self.pool is not None:
            catalog_pools = getattr(self.catalog, "pools", None)
            self.pools = catalog_pools if catalog_pools is not None else PoolSet(self.pool)
        self.metrics = Metrics()
        self.metrics.watch(lambda: self.pools, lambda: self.catalog, lambda: self.fleet)

    def use_service_info(self, info: ServiceInfo) -> None:
        """Serve new shared values (name, description, CORS) from now on.

        Called from the registry's change feed thread: each attribute is replaced whole, so a
        request reads either the old values or the new ones. ``/info`` and the CORS headers
        follow at once; the authentication realm and the OpenAPI title keep their values
        from the start.
        """
        self.cors = cors_headers(info)
        self.service_info = info

    @property
    def staging_path(self) -> Path:
        """Where TabPy 2.16's client writes pickles for the shared-disk deploy flow."""
        return self.settings.state_path / "staging"
