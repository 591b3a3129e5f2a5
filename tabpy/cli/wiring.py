"""Wiring the application: which registry, pool, authenticator and feature packages to use.

The commands layer is the one place that knows every package, so optional features (Arrow
Flight) plug in here and the HTTP transport and the core stay unaware of them.
"""

from __future__ import annotations

import logging
from typing import cast

from tabpy.config import ConfigError, Settings
from tabpy.registry.change_feed import open_change_feed
from tabpy.registry.connect import connect_registry
from tabpy.registry.fleet_settings import fleet_service_info, sync_service_info
from tabpy.registry.legacy import import_legacy_state
from tabpy.registry.service_info import load_service_info
from tabpy.registry.store import Registry, display_url
from tabpy.runtime.catalog import Catalog
from tabpy.runtime.containment import ContainmentMode
from tabpy.runtime.pool import PoolOptions, WorkerPool
from tabpy.security.authenticator import build_authenticator
from tabpy.server.context import ServerContext

__all__ = ["build_context", "open_registry", "registry_password"]

logger = logging.getLogger("tabpy.server")


def build_context(settings: Settings) -> ServerContext:
    local_info = load_service_info(settings.state_path)
    logger.info("State is stored in %s", settings.state_path)
    auth = build_authenticator(settings)
    logger.info("Call context logging is %s", "enabled" if settings.log_details else "disabled")
    registry = open_registry(settings)
    # PostgreSQL: one LISTEN connection tells the catalog and the access rules about changes.
    changes = open_change_feed(registry.engine)
    auth.authorization.read_rules_from(registry, changes)
    import_legacy_state(registry, settings.state_path)
    # Name, description and CORS: one copy in the registry for every instance.
    service_info = sync_service_info(registry, local_info, settings.state_path)
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
        containment=cast(ContainmentMode, settings.worker_containment),
        isolate_callers=settings.isolate_callers,
        worker_user=settings.worker_user,
    )
    pool = WorkerPool(options)
    arrow = None
    if settings.arrow_enabled:
        from tabpy.arrow import create_service  # pyarrow only when Arrow is on

        arrow = create_service(settings, auth, pool, registry)
    context = ServerContext(
        settings=settings,
        service_info=service_info,
        pool=pool,
        catalog=Catalog(registry, pool, changes),
        auth=auth,
        tables=arrow,
    )
    if changes is not None:

        def reread_service_info(topic: str) -> None:
            """In the feed's thread: another instance changed the shared values."""
            if topic not in ("settings", "*"):
                return
            try:
                context.use_service_info(fleet_service_info(registry, local_info))
            except Exception as exc:  # noqa: BLE001 - keep serving the values we have
                logger.debug("Re-reading the service info failed: %s", exc)

        changes.subscribe(reread_service_info)
    return context


def open_registry(settings: Settings) -> Registry:
    """The registry, waited for up to ``TABPY_REGISTRY_CONNECT_TIMEOUT``; else one line."""
    try:
        registry = connect_registry(
            settings.registry_url,
            password=registry_password(settings),
            timeout=settings.registry_connect_timeout,
            audit_retention_days=settings.audit_retention_days,
        )
    except ConfigError:  # a registry we must not use (newer schema): its message says why
        raise
    except Exception as exc:  # noqa: BLE001 - any driver error means the same to the admin
        waited = (
            f" after trying for {settings.registry_connect_timeout:g} s"
            if settings.registry_connect_timeout
            else ""
        )
        raise ConfigError(
            f"TABPY_REGISTRY_URL: cannot open the registry database{waited} "
            f"({type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}); check the URL, "
            "the server and its credentials."
        ) from None
    logger.info("Registry: %s", display_url(settings.registry_url))
    return registry


def registry_password(settings: Settings) -> str | None:
    """``TABPY_REGISTRY_PASSWORD_FILE``'s content without its trailing newline; never logged."""
    path = settings.registry_password_file
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"TABPY_REGISTRY_PASSWORD_FILE = {path} cannot be read ({type(err).__name__}): "
            "make it a UTF-8 text file readable by the server's user."
        ) from None
    return text.rstrip("\r\n")
