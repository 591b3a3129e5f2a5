"""``GET /health`` (liveness) and ``GET /ready`` (readiness), for load balancers and orchestrators.

``/health`` answers 200 as long as the event loop runs; it touches nothing else, so a slow
database or a busy worker pool never makes a healthy process look dead (and get restarted).

``/ready`` answers 200 when this instance can serve: at least one worker process is ready and
its catalog has been loaded from the registry once. Otherwise, or while it drains after SIGTERM
(``TABPY_DRAIN_SECONDS``), 503 with the reasons, so traffic goes elsewhere.

The shared registry database is not a condition: every instance of a fleet shares it, so
tying readiness to it would take the whole fleet out of a load balancer at once, while each
instance still serves every endpoint from memory. A database that does not answer a one-row
query within :data:`REGISTRY_TIMEOUT` seconds makes the reply ``"status": "degraded"`` (still
200; deploys answer 503 meanwhile). The query runs in a thread; at most one runs at a time,
and its answer is reused for :data:`CACHE_SECONDS`, so a flood of probes costs the database one
query per second at most.

Both need credentials like every route, unless ``TABPY_HEALTH_CHECKS_PUBLIC`` is on. Public
replies leave out the database's error text (it can name hosts and paths); the log has it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from starlette.requests import Request
from starlette.responses import Response

from tabpy.server.context import ServerContext
from tabpy.server.responses import JSON, RawResponse

__all__ = ["CACHE_SECONDS", "REGISTRY_TIMEOUT", "Health"]

logger = logging.getLogger(__name__)

REGISTRY_TIMEOUT = 2.0
CACHE_SECONDS = 1.0
_NO_STORE = {"Cache-Control": "no-store"}


class Health:
    def __init__(self, context: ServerContext) -> None:
        self.context = context
        self._probe: asyncio.Task[int] | None = None
        self._checked_at = -CACHE_SECONDS
        self._registry_error: str | None = None
        self._failing = False

    async def live(self, request: Request) -> Response:
        return RawResponse(b'{"status": "ok"}', 200, JSON, _NO_STORE)

    async def ready(self, request: Request) -> Response:
        pool = self.context.pool
        reasons = []
        if self.context.draining:
            reasons.append("draining: this instance is shutting down")
        if pool.ready_workers == 0:
            reasons.append(f"no worker process is ready (0 of {pool.size} started)")
        if self.context.catalog.revision < 0:
            reasons.append("the endpoints have not been loaded from the registry yet")
        registry_error = await self._check_registry()
        status = "not ready" if reasons else "degraded" if registry_error else "ready"
        body: dict[str, object] = {
            "status": status,
            "workers": {"ready": pool.ready_workers, "configured": pool.size},
            "registry": "unavailable" if registry_error else "ok",
        }
        if reasons:
            body["reasons"] = reasons
        if registry_error:
            body["degraded"] = [registry_error]
        return RawResponse(json.dumps(body).encode(), 503 if reasons else 200, JSON, _NO_STORE)

    async def _check_registry(self) -> str | None:
        loop = asyncio.get_running_loop()
        if loop.time() - self._checked_at < CACHE_SECONDS:
            return self._registry_error
        if self._probe is None or self._probe.done():
            registry = self.context.catalog.registry
            self._probe = loop.create_task(asyncio.to_thread(registry.revision))
            self._probe.add_done_callback(_retrieve)
        started = time.monotonic()
        error: str | None = None
        detail: str | None = None
        try:
            # shield: a probe that times out keeps running, and the next request waits for it
            # instead of starting another thread against a database that hangs.
            await asyncio.wait_for(asyncio.shield(self._probe), REGISTRY_TIMEOUT)
        except asyncio.TimeoutError:
            error = f"the registry did not answer within {REGISTRY_TIMEOUT:g} s"
            detail = f"no answer after {time.monotonic() - started:.1f} s"
        except Exception as exc:  # noqa: BLE001 - any driver error means "not ready"
            error = f"the registry cannot be read ({type(exc).__name__})"
            detail = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
        if detail is not None:
            if not self._failing:
                logger.warning("Degraded: registry check failed (%s)", detail)
            if not self.context.settings.health_checks_public:
                error = f"the registry cannot be read ({detail})"
        elif self._failing:
            logger.info("No longer degraded: the registry answers")
        self._failing = detail is not None
        self._checked_at, self._registry_error = loop.time(), error
        return error


def _retrieve(task: asyncio.Task[int]) -> None:
    """Mark a finished probe's exception as seen; the request that awaited it may be gone."""
    if not task.cancelled():
        task.exception()
