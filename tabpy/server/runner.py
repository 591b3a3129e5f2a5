"""Running the application under uvicorn, with TabPy's start-up and shutdown behaviour."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import socket
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

import prometheus_client
import uvicorn

from tabpy.config import ConfigError, Settings
from tabpy.registry.legacy import import_legacy_state
from tabpy.registry.service_info import load_service_info
from tabpy.registry.store import Registry, display_url
from tabpy.runtime.catalog import Catalog
from tabpy.runtime.pool import PoolOptions, WorkerPool
from tabpy.security.tls import server_context
from tabpy.server.app import create_app
from tabpy.server.auth import build_authenticator
from tabpy.server.context import ServerContext

if TYPE_CHECKING:
    from tabpy.arrow.service import ArrowService

logger = logging.getLogger("tabpy.server")


class TabPyServer(uvicorn.Server):
    """uvicorn's server, logging the lines admins know from TabPy."""

    #: Called on SIGHUP (reloads the password file); uvicorn leaves that signal alone.
    on_hangup: Callable[[], None] | None = None
    #: Arrow Flight, started after HTTP and stopped beside it.
    arrow: ArrowService | None = None
    failed = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            if self.on_hangup is not None:
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.on_hangup)
            logger.info("Web service listening on port %d", self.bound_port())
            if self.arrow is not None:
                try:
                    self.arrow.start(asyncio.get_running_loop())
                except ConfigError as error:
                    logger.critical("%s", error)
                    self.failed = self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.arrow is None:
            await super().shutdown(sockets)
            return
        # Both listeners drain at once; the stored tables go only when neither needs them.
        flight = asyncio.ensure_future(self.arrow.stop(self.config.timeout_graceful_shutdown or 0))
        try:
            await super().shutdown(sockets)
        finally:
            await flight
            self.arrow.close()

    def bound_port(self) -> int:
        """The real port, which differs from the setting when that is 0."""
        for server in self.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return self.config.port

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            logger.info("Exiting on signal %d...", sig)
        super().handle_exit(sig, frame)


def build_context(settings: Settings) -> ServerContext:
    service_info = load_service_info(settings.state_path)
    logger.info("State is stored in %s", settings.state_path)
    auth = build_authenticator(settings, service_info)
    logger.info("Call context logging is %s", "enabled" if settings.log_details else "disabled")
    registry = open_registry(settings)
    import_legacy_state(registry, settings.state_path)
    # Arrow plugs in here: a job handler in the workers and the table strategy of /evaluate.
    extensions: dict[str, str] = {}
    if settings.arrow_enabled:
        from tabpy.arrow import WORKER_HANDLERS

        extensions.update(WORKER_HANDLERS)
    options = PoolOptions(
        size=settings.workers,
        memory_limit_mb=settings.worker_memory_limit_mb,
        timeout=settings.evaluate_timeout,
        timeout_text=settings.evaluate_timeout_text,
        table_requests=settings.arrow_enabled,
        extensions=extensions,
    )
    pool = WorkerPool(options)
    arrow = None
    if settings.arrow_enabled:
        from tabpy.arrow import create_service  # pyarrow only when Arrow is on

        arrow = create_service(settings, auth, pool)
    return ServerContext(
        settings=settings,
        service_info=service_info,
        pool=pool,
        catalog=Catalog(registry, pool),
        auth=auth,
        arrow=arrow,
        tables=arrow,
    )


def open_registry(settings: Settings) -> Registry:
    try:
        registry = Registry(settings.registry_url)
    except Exception as exc:  # noqa: BLE001 - any driver error means the same to the admin
        raise ConfigError(
            f"TABPY_REGISTRY_URL: cannot open the registry database ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0]}); check the URL, the server and its credentials."
        ) from None
    logger.info("Registry: %s", display_url(settings.registry_url))
    return registry


def serve(settings: Settings) -> int:
    """Run until SIGINT or SIGTERM; in-flight requests get ``shutdown_timeout``."""
    tls = server_context(settings)
    # Process-wide, hence here: *_created series double what Prometheus stores, for nothing
    # that process_start_time_seconds does not already say.
    prometheus_client.disable_created_metrics()
    context = build_context(settings)
    config = uvicorn.Config(
        create_app(context),
        host=settings.bind_address,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout),
        # Our own context: checked at start-up with clear messages (tabpy.security.tls).
        ssl_context_factory=(lambda config, default: tls) if tls is not None else None,
    )
    server = TabPyServer(config)
    server.on_hangup = context.auth.reload
    server.arrow = context.arrow
    # uvicorn re-raises the shutdown signal after a graceful stop; with these
    # handlers in place by then, the process still exits 0.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _already_handled)
    # run() (not asyncio.run) so uvicorn installs the configured uvloop event loop.
    server.run()
    code = 1 if not server.started or server.failed else 0
    if code == 0:
        logger.info("Shutting down TabPy...")
    if context.arrow is not None and not context.arrow.stopped:
        # A Flight call that never ends would make pyarrow's exit-time cleanup wait forever.
        logging.shutdown()
        os._exit(code)
    return code


def _already_handled(signum: int, frame: FrameType | None) -> None:
    """The server has already shut down for this signal."""
