"""Running the application under uvicorn, with TabPy's start-up and shutdown behaviour."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import gc
import logging
import math
import os
import resource
import signal
import socket
import ssl
import time
from collections.abc import Callable
from types import FrameType

import prometheus_client
import uvicorn

from tabpy.config import ConfigError, Settings
from tabpy.logs import set_instance_id
from tabpy.runtime.tables import TableService
from tabpy.security.tls import server_context
from tabpy.server.acceptors import Supervisor
from tabpy.server.app import create_app
from tabpy.server.context import ServerContext
from tabpy.server.http_limits import bounded_protocol
from tabpy.server.tls_handshake import HandshakeReporter, report_handshake_failures

logger = logging.getLogger("tabpy.server")

#: File descriptors kept for what is not a client connection (workers, registry, logs).
_SPARE_FILES = 256


class TabPyServer(uvicorn.Server):
    """uvicorn's server, logging the lines admins know from TabPy."""

    #: Called once the server listens (tells a supervisor that this acceptor serves).
    on_serving: Callable[[], None] | None = None
    #: Called on SIGHUP (reloads the password file); uvicorn leaves that signal alone.
    on_hangup: Callable[[], None] | None = None
    #: The table service (Arrow Flight), started after HTTP and stopped beside it.
    tables: TableService | None = None
    failed = False
    #: Seconds of "not ready" between SIGTERM and closing the listener (TABPY_DRAIN_SECONDS).
    drain_seconds = 0.0
    #: Called when the drain starts (marks the context so that /ready answers 503).
    on_drain: Callable[[], None] | None = None
    _drain_ends: float | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        if self.config.ssl is not None:
            HandshakeReporter().install(asyncio.get_running_loop())
        await super().startup(sockets)
        if self.started:
            # Everything loaded so far (modules, settings, the catalog) lives as long as the
            # process: out of the collector's sight, a full collection no longer walks it all,
            # which, with the allocations of each request, it did every few hundred requests.
            gc.collect()
            gc.freeze()
            if self.on_hangup is not None:
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.on_hangup)
            logger.info("Web service listening on port %d", self.bound_port())
            if self.on_serving is not None:
                self.on_serving()
            if self.tables is not None:
                try:
                    self.tables.start(asyncio.get_running_loop())
                except ConfigError as error:
                    logger.critical("%s", error)
                    self.failed = self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.tables is None:
            await super().shutdown(sockets)
            return
        # Both listeners drain at once; the stored tables go only when neither needs them.
        flight = asyncio.ensure_future(self.tables.stop(self.config.timeout_graceful_shutdown or 0))
        try:
            await super().shutdown(sockets)
        finally:
            await flight
            self.tables.close()

    def bound_port(self) -> int:
        """The real port, which differs from the setting when that is 0."""
        for server in self.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return self.config.port

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """SIGTERM first drains: /ready says 503 while everything else still serves, so that
        load balancers and Kubernetes stop sending new work before the listener closes. A
        second signal, or SIGINT, stops at once (in-flight requests still finish)."""
        first_term = sig == signal.SIGTERM and self._drain_ends is None and not self.should_exit
        if first_term and self.drain_seconds > 0:
            logger.info(
                "Draining on signal %d: not ready for %g s, then exiting...",
                sig,
                self.drain_seconds,
            )
            self._drain_ends = time.monotonic() + self.drain_seconds
            if self.on_drain is not None:
                self.on_drain()
            return
        if not self.should_exit:
            logger.info("Exiting on signal %d...", sig)
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        # The main loop ticks every 0.1 s; the drain ends on the first tick past its deadline.
        ends = self._drain_ends
        if ends is not None and not self.should_exit and time.monotonic() >= ends:
            logger.info("Drain finished; exiting...")
            self._captured_signals.append(signal.SIGTERM)
            self.should_exit = True
        return await super().on_tick(counter)


def serve(settings: Settings, build_context: Callable[[Settings], ServerContext]) -> int:
    """Run until SIGINT or SIGTERM; in-flight requests get ``shutdown_timeout``.

    ``build_context`` wires the application (``tabpy.cli.wiring``); it runs once the port is
    bound, so that a port in use is reported before anything else starts.
    """
    _allow_open_files(settings.max_connections)
    tls = server_context(settings)
    if tls is not None:
        report_handshake_failures(tls)
    if settings.acceptors > 1:
        return _supervise(settings, build_context, tls)
    # Before anything else starts: a port in use is a one-line ConfigError, not an exit code 3
    # after "Application startup complete".
    listeners = bind_listeners(settings.bind_address, settings.port)
    settings = with_bound_instance_id(settings, listeners)
    settings = with_bound_advertise_url(settings, listeners)
    # Text lines name the instance when a fleet names it; the default (host:port) would only
    # lengthen every line of a lone server.
    set_instance_id(
        settings.instance_id, in_text=settings.sources.get("TABPY_INSTANCE_ID") != "default"
    )
    try:
        return _serve_on(settings, build_context(settings), tls, listeners)
    finally:
        for listener in listeners:
            listener.close()


def _supervise(
    settings: Settings,
    build_context: Callable[[Settings], ServerContext],
    tls: ssl.SSLContext | None,
) -> int:
    """``TABPY_ACCEPTORS`` > 1: this process supervises that many acceptors on one port."""

    def bind(host: str, port: int) -> list[socket.socket]:
        return bind_listeners(host, port, reuse_port=True)

    def run_acceptor(
        acceptor: Settings, listeners: list[socket.socket], serving: Callable[[], None]
    ) -> int:
        set_instance_id(acceptor.instance_id, in_text=True)  # the lines of N processes mix
        try:
            return _serve_on(acceptor, build_context(acceptor), tls, listeners, serving)
        finally:
            for listener in listeners:
                listener.close()

    reservation = bind(settings.bind_address, settings.port)
    try:
        settings = with_bound_instance_id(settings, reservation)
        return Supervisor(settings, reservation, bind, run_acceptor).run()
    finally:
        for sock in reservation:
            sock.close()


def _serve_on(
    settings: Settings,
    context: ServerContext,
    tls: ssl.SSLContext | None,
    listeners: list[socket.socket],
    on_serving: Callable[[], None] | None = None,
) -> int:
    # Process-wide, hence here: *_created series double what Prometheus stores, for nothing
    # that process_start_time_seconds does not already say.
    prometheus_client.disable_created_metrics()
    context.metrics.instance.info({"instance_id": settings.instance_id})
    config = uvicorn.Config(
        create_app(context),
        host=settings.bind_address,
        port=settings.port,
        loop="uvloop",
        http=bounded_protocol(settings.http_limits, context.metrics.http_refused_for),
        timeout_keep_alive=math.ceil(settings.keepalive_timeout),
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        # Forwarded headers are read by tabpy.server.proxy_headers, from TABPY_TRUSTED_PROXIES
        # only; uvicorn's own handling would trust 127.0.0.1 whatever that setting says.
        proxy_headers=False,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout),
        # Our own context: checked at start-up with clear messages (tabpy.security.tls).
        ssl_context_factory=(lambda config, default: tls) if tls is not None else None,
    )
    server = TabPyServer(config)
    connections = server.server_state.connections
    context.metrics.http_connections.set_function(lambda: len(connections))
    server.on_hangup = context.auth.reload
    server.on_serving = on_serving
    server.drain_seconds = settings.drain_seconds

    def drain() -> None:
        context.draining = True

    server.on_drain = drain
    server.tables = context.tables
    # uvicorn re-raises the shutdown signal after a graceful stop; with these
    # handlers in place by then, the process still exits 0.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _already_handled)
    # run() (not asyncio.run) so uvicorn installs the configured uvloop event loop.
    server.run(sockets=listeners)
    code = 1 if not server.started or server.failed else 0
    if code == 0:
        logger.info("Shutting down TabPy...")
    if context.tables is not None and not context.tables.stopped:
        # A Flight call that never ends would make pyarrow's exit-time cleanup wait forever.
        logging.shutdown()
        os._exit(code)
    return code


def with_bound_instance_id(settings: Settings, listeners: list[socket.socket]) -> Settings:
    """The default ``TABPY_INSTANCE_ID`` (host:port) with the real port when the setting is 0."""
    if settings.sources.get("TABPY_INSTANCE_ID") != "default" or settings.port or not listeners:
        return settings
    port = listeners[0].getsockname()[1]
    return dataclasses.replace(settings, instance_id=f"{socket.gethostname()}:{port}")


def with_bound_advertise_url(settings: Settings, listeners: list[socket.socket]) -> Settings:
    """The default ``TABPY_ADVERTISE_URL`` (this host's name and the bound port)."""
    if settings.advertise_url is not None or not listeners:
        return settings
    port = listeners[0].getsockname()[1]
    url = f"{settings.transfer_protocol}://{socket.gethostname()}:{port}"
    return dataclasses.replace(settings, advertise_url=url)


def _allow_open_files(connections: int) -> None:
    """Raise the soft open-file limit so that ``TABPY_MAX_CONNECTIONS`` can really be reached.

    Each connection is a file descriptor; so are the workers' sockets, the registry and the log
    files, hence the margin. Without this, a default soft limit of 1024 would make the server
    fail to accept (and log nothing useful) before the connection cap answers 503.
    """
    wanted = connections + _SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < wanted:
            logger.warning(
                "TABPY_MAX_CONNECTIONS = %d needs about %d open files, but the hard limit is "
                "%d: raise it (LimitNOFILE= under systemd, ulimit -Hn) or lower the setting",
                connections,
                wanted,
                hard,
            )


def _already_handled(signum: int, frame: FrameType | None) -> None:
    """The server has already shut down for this signal."""


def bind_listeners(host: str, port: int, *, reuse_port: bool = False) -> list[socket.socket]:
    """Bound (not yet listening) sockets for ``host``:``port``, as the event loop would make.

    ``reuse_port``: with ``SO_REUSEPORT``, so that several acceptors can each bind the port.

    One per address ``host`` resolves to (``localhost`` may give an IPv4 and an IPv6 one); with
    port 0 they all share the first one's free port. Raises :class:`ConfigError` naming the
    setting to change when the address cannot be used.
    """
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as err:
        raise ConfigError(
            f"TABPY_BIND_ADDRESS = {host!r} cannot be used ({err.strerror}): set it to an "
            "address of this machine, such as 0.0.0.0 (every interface) or 127.0.0.1."
        ) from None
    listeners: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            listener = socket.socket(family, kind, proto)
            listeners.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            # With port 0, the first socket picks a free port and the others follow it.
            target = port if port or len(listeners) == 1 else listeners[0].getsockname()[1]
            try:
                listener.bind((address[0], target, *address[2:]))
            except OSError as err:
                raise _bind_error(err, host, target) from None
    except BaseException:
        for listener in listeners:
            listener.close()
        raise
    return listeners


def _bind_error(err: OSError, host: str, port: int) -> ConfigError:
    where = f"{host}:{port}"
    if err.errno == errno.EADDRINUSE:
        return ConfigError(
            f"TABPY_PORT = {port}: the port is already in use on {host} (by another tabpy or "
            f"TabPy?): stop that program (ss -ltnp | grep :{port} shows it) or set TABPY_PORT "
            "to a free port."
        )
    if err.errno == errno.EACCES:
        return ConfigError(
            f"TABPY_PORT = {port}: not allowed to listen on {where} (ports below 1024 need "
            "privileges): use a port above 1023, or put nginx in front."
        )
    if err.errno == errno.EADDRNOTAVAIL:
        return ConfigError(
            f"TABPY_BIND_ADDRESS = {host}: not an address of this machine: use one of its "
            "addresses, 0.0.0.0 (every interface) or 127.0.0.1."
        )
    return ConfigError(
        f"Cannot listen on {where} ({err.strerror or err}): check TABPY_BIND_ADDRESS and "
        "TABPY_PORT."
    )
