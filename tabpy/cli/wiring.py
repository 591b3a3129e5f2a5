"""Wiring the application: which registry, pool, authenticator and feature packages to use.

The commands layer is the one place that knows every package, so optional features (Arrow
Flight) plug in here and the HTTP transport and the core stay unaware of them.
"""

from __future__ import annotations

import logging
import platform
import socket
import sys
from typing import TYPE_CHECKING, cast

from tabpy import __version__
from tabpy.config import ConfigError, Settings
from tabpy.environments import BuildLimits, BuildState, Environments, EnvironmentSpec, Toolchain
from tabpy.registry.audit import Actor, Outcome
from tabpy.registry.change_feed import open_change_feed
from tabpy.registry.connect import connect_registry
from tabpy.registry.fleet_settings import fleet_service_info, sync_service_info
from tabpy.registry.legacy import import_legacy_state
from tabpy.registry.service_info import load_service_info
from tabpy.registry.store import Registry, display_url
from tabpy.runtime.catalog import Catalog
from tabpy.runtime.containment import ContainmentMode
from tabpy.runtime.environments import WORKER_RUNTIME_REQUIREMENTS, install_worker_runtime
from tabpy.runtime.fleet import Fleet, MemberAddress
from tabpy.runtime.pool import PoolOptions, WorkerPool
from tabpy.runtime.pools import EnvPoolLimits, PoolSet
from tabpy.security.authenticator import build_authenticator
from tabpy.server.context import ServerContext

if TYPE_CHECKING:
    from tabpy.arrow.service import ArrowService

__all__ = [
    "advertised_host",
    "build_context",
    "member_address",
    "open_registry",
    "registry_password",
]

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
    pools = PoolSet(
        pool,
        EnvPoolLimits(
            size=settings.env_pool_size,
            idle_seconds=settings.env_idle_seconds,
            max_pools=settings.env_max_pools,
        ),
    )
    arrow = None
    if settings.arrow_enabled:
        from tabpy.arrow import create_service  # pyarrow only when Arrow is on

        arrow = create_service(settings, auth, pool, registry)
        arrow.peers = lambda: [m.flight_url for m in fleet.peers() if m.flight_url]
    catalog = Catalog(registry, pools, build_environments(settings, registry), changes)
    fleet = Fleet(
        registry.engine, catalog, member_address(settings, arrow), settings.member_heartbeat_seconds
    )
    context = ServerContext(
        settings=settings,
        service_info=service_info,
        pool=pool,
        pools=pools,
        catalog=catalog,
        auth=auth,
        tables=arrow,
        fleet=fleet,
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


def build_environments(settings: Settings, registry: Registry) -> Environments:
    """Per-endpoint environments under ``<state path>/environments``, built from this Python.

    Each build's outcome goes to the audit trail (a build is caused by a deploy, and runs
    package installers on this machine).
    """
    actor = Actor(principal=f"server:{settings.instance_id}")

    def audit(spec: EnvironmentSpec, state: BuildState) -> None:
        if state.built is not None:
            outcome: Outcome = "allowed"
            detail = f"built {state.built.key} in {state.elapsed():.1f} s"
        else:
            outcome, detail = "failed", state.error or "failed"
        try:
            registry.record(
                actor, "environment build", outcome, detail=f"{spec.summary()}: {detail}"
            )
        except Exception as exc:  # noqa: BLE001 - the build's outcome stands; the log keeps it
            logger.warning("Could not audit an environment build: %s", exc)

    environments = Environments(
        settings.state_path / "environments",
        Toolchain(
            python=sys.executable,
            python_version=platform.python_version(),
            runtime_requirements=WORKER_RUNTIME_REQUIREMENTS,
            install_runtime=install_worker_runtime,
            shared_with_workers=settings.worker_user is not None,
        ),
        BuildLimits(settings.env_build_timeout, settings.env_max_disk_mb * 1024 * 1024),
        gc_grace_seconds=settings.env_gc_grace_seconds,
        on_build=audit,
        book=registry,
    )
    environments.start()
    return environments


#: Bind addresses meaning "every interface": they say nothing about where others reach us.
ANY_ADDRESS = frozenset({"", "0.0.0.0", "::", "[::]"})


def advertised_host(bind_address: str) -> str:
    """The host part of a default advertised address, for a listener bound to ``bind_address``.

    A listener bound to one address is reachable there and nowhere else, while the host name
    may resolve to another one (``127.0.1.1`` on Debian, or the same name for every instance
    sharing a host's UTS namespace): then the bound address is what the others must use.
    Bound to every interface, the host name is the best guess.
    """
    if bind_address in ANY_ADDRESS:
        return socket.gethostname()
    if ":" in bind_address and not bind_address.startswith("["):
        return f"[{bind_address}]"
    return bind_address


def member_address(settings: Settings, arrow: ArrowService | None) -> MemberAddress:
    """Where the fleet's other members reach this one: ``TABPY_ADVERTISE_URL`` and
    ``TABPY_ADVERTISE_FLIGHT``, by default the bound address (the host name when bound to
    every interface) with the bound ports."""
    host = advertised_host(settings.bind_address)
    http_url = settings.advertise_url or f"{settings.transfer_protocol}://{host}:{settings.port}"
    flight = settings.advertise_flight
    flight_host = advertised_host(settings.arrow_bind_address)

    def flight_url() -> str | None:
        if flight is not None:
            return flight
        port = arrow.port if arrow is not None else None
        if port is None:
            return None
        scheme = "grpc+tls" if settings.transfer_protocol == "https" else "grpc+tcp"
        return f"{scheme}://{flight_host}:{port}"

    return MemberAddress(settings.instance_id, http_url, flight_url, __version__)


def open_registry(settings: Settings) -> Registry:
    """The registry, waited for up to ``TABPY_REGISTRY_CONNECT_TIMEOUT``; else one line."""
    try:
        registry = connect_registry(
            settings.registry_url,
            password=registry_password(settings),
            timeout=settings.registry_connect_timeout,
            audit_retention_days=settings.audit_retention_days,
            migrate_apart=True,  # Alembic would stay in the server's memory for good
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
