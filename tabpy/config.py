"""Server settings, read once at start-up into an immutable :class:`Settings`.

Everything configurable about the server comes through :func:`load_settings`; the rest of the
package receives the resulting object and never looks at ``os.environ`` or the config file itself.

Sources, lowest priority first:

1. built-in defaults (the ``DEFAULT_*`` constants below);
2. the ``[TabPy]`` section of the config file;
3. ``TABPY_*`` environment variables.

The environment wins over the file, as TabPy's documentation promises (TabPy 2.16 itself does
the reverse). Values may contain ``%(NAME)s`` references, resolved case-insensitively against the
environment and then the ``[TabPy]`` section, and ``%%`` for a literal ``%``; existing TabPy config
files rely on this. An empty value means "not set", so ``TABPY_PORT=`` falls back to the default.

In the file, ``#`` or ``;`` after whitespace starts a comment, also at the end of a value
(``TABPY_PORT = 9004  # the default``), as ``configparser``'s ``inline_comment_prefixes`` does.
TabPy keeps such a comment as part of the value, which turns a copied example into a path that
does not exist. A ``#`` with no whitespace before it (``pa#ss``, ``/srv/tabpy#2``) stays in the
value; a value that really contains `` #`` can come from the environment, where nothing is a
comment, directly or through a ``%(NAME)s`` reference.

Every key is described by one line in :data:`_KEYS`; parsing, validation, defaults, the recorded
source and the start-up DEBUG lines are all driven from that table.
"""

from __future__ import annotations

import configparser
import difflib
import ipaddress
import logging
import math
import os
import pwd
import re
import socket
import ssl
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from tabpy import __version__
from tabpy.errors import TabPyError

__all__ = [
    "DEFAULT_ARROWFLIGHT_PORT",
    "DEFAULT_ARROW_ENTRY_TTL_SECONDS",
    "DEFAULT_ARROW_MAX_STORE_MB",
    "DEFAULT_BIND_ADDRESS",
    "DEFAULT_EVALUATE_TIMEOUT",
    "DEFAULT_LOG_FORMAT",
    "DEFAULT_MAX_REQUEST_SIZE_MB",
    "DEFAULT_MINIMUM_TLS_VERSION",
    "DEFAULT_PORT",
    "DEFAULT_DEPLOY_WAIT_SECONDS",
    "DEFAULT_DRAIN_SECONDS",
    "DEFAULT_MEMBER_HEARTBEAT_SECONDS",
    "DEFAULT_REGISTRY_CONNECT_TIMEOUT",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "LOG_FORMATS",
    "ConfigError",
    "HttpLimits",
    "Settings",
    "describe_settings",
    "load_settings",
]

logger = logging.getLogger(__name__)

DEFAULT_PORT = 9004
DEFAULT_BIND_ADDRESS = "0.0.0.0"
DEFAULT_TRANSFER_PROTOCOL = "http"
DEFAULT_MINIMUM_TLS_VERSION = "TLSv1_2"
DEFAULT_MAX_REQUEST_SIZE_MB = 100
# An int on purpose: TabPy prints the Python value in its 408 message, so the default reads "30"
# while a configured "30" reads "30.0". Clients have seen both.
DEFAULT_EVALUATE_TIMEOUT = 30
DEFAULT_ARROWFLIGHT_PORT = 13622
# Arrow Flight store: TabPy's is unbounded and never forgets a table nobody fetches.
DEFAULT_ARROW_MAX_STORE_MB = 1024
DEFAULT_ARROW_ENTRY_TTL_SECONDS = 600
DEFAULT_OAUTH_QUERY_SCOPE = "tabpy:query"
DEFAULT_OAUTH_EVALUATE_SCOPE = "tabpy:evaluate"
DEFAULT_OAUTH_DEPLOY_SCOPE = "tabpy:deploy"
DEFAULT_SHUTDOWN_TIMEOUT = 10.0
#: How long start-up keeps retrying a registry database that does not answer.
DEFAULT_REGISTRY_CONNECT_TIMEOUT = 60.0
#: Seconds of "not ready" after SIGTERM before the listener closes (0: close at once).
DEFAULT_DRAIN_SECONDS = 0.0
#: Seconds between two membership heartbeats (tabpy.registry.members).
DEFAULT_MEMBER_HEARTBEAT_SECONDS = 5.0
#: Longest wait of a deploy for the fleet's other members to load the new version.
DEFAULT_DEPLOY_WAIT_SECONDS = 10.0
#: Worker pools of per-endpoint Python environments: workers each, idle time before they stop,
#: and how many run at once (the least recently used stops to make room).
DEFAULT_ENV_POOL_SIZE = 1
DEFAULT_ENV_IDLE_SECONDS = 300.0
DEFAULT_ENV_MAX_POOLS = 8
# Failed logins per minute from one address as one user name before 429 (0: no limit).
DEFAULT_AUTH_MAX_FAILURES = 10
# How long verified Basic credentials stay cached after their last use (0: no cache).
DEFAULT_AUTH_CACHE_SECONDS = 600
# The HTTP edge (tabpy.server.http_limits): TabPy's web framework refuses heads over 64 KiB too.
DEFAULT_MAX_HEADER_KB = 64
DEFAULT_MAX_HEADER_COUNT = 100
DEFAULT_HEADER_TIMEOUT = 10.0
# Longer than the 60 s idle timeout of common proxies and load balancers, so that they close an
# idle kept-alive connection first and never send a request on one the server is closing.
DEFAULT_KEEPALIVE_TIMEOUT = 65.0
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_LOG_FORMAT = "text"
LOG_FORMATS = ("text", "json")
# Share of physical memory the worker pool may use by default; the rest is left to the server
# process, the OS and whatever else runs on the machine.
DEFAULT_MEMORY_SHARE = 0.75
# Per-endpoint environments: a build (resolve and install) may take this long and this much
# disk; an environment no endpoint uses is removed after the grace period (a day, so that a
# redeploy or rollback soon after does not build it again).
DEFAULT_ENV_BUILD_TIMEOUT = 600.0
DEFAULT_ENV_MAX_DISK_MB = 10240
DEFAULT_ENV_GC_GRACE_SECONDS = 86400.0

SECTION = "TabPy"
_ENV_PREFIX = "TABPY_"
_MB = 1024 * 1024
# Close enough that an unknown key is almost certainly a typo of a known one (TABPY_PROT,
# TABPY_WORKER), yet unrelated variables such as TABPY_HOME are merely warned about.
_TYPO_CUTOFF = 0.85
# Same depth limit as configparser, which also turns reference loops into an error.
_MAX_INTERPOLATION_DEPTH = 10
_REFERENCE = re.compile(r"%(?:%|\(([^)]*)\)s)")
_INLINE_COMMENT = ("#", ";")  # each starts a comment after whitespace, as in whole-line comments
_CONTAINMENT_MODES = ("auto", "cgroup", "subreaper")
_TRUE = frozenset({"1", "yes", "true", "on"})
_FALSE = frozenset({"0", "no", "false", "off"})


class ConfigError(TabPyError):
    """A configuration mistake the user has to fix.

    ``str(err)`` is a single line naming the setting, the offending value and the fix; the CLI
    prints it and exits 1 without a traceback, because a stack trace does not help anyone
    correct a typo in a config file.
    """


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What one client may make the HTTP edge hold: head size and count, and waiting time."""

    max_head_bytes: int = DEFAULT_MAX_HEADER_KB * 1024
    max_header_count: int = DEFAULT_MAX_HEADER_COUNT
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting the server uses, validated and typed. Built only by :func:`load_settings`."""

    config_file: Path | None
    port: int
    bind_address: str
    state_path: Path
    query_object_path: Path
    static_path: Path | None
    pwd_file: Path | None
    transfer_protocol: str
    certificate_file: Path | None
    key_file: Path | None
    minimum_tls_version: str
    log_details: bool
    max_request_size_mb: int
    evaluate_enabled: bool
    evaluate_timeout: float
    evaluate_timeout_text: str
    gzip_enabled: bool
    arrow_enabled: bool
    arrowflight_port: int
    arrow_bind_address: str
    arrow_max_store_mb: int
    arrow_entry_ttl_seconds: float
    arrow_admin_users: tuple[str, ...]
    authz: bool
    oauth_roles_claim: str | None
    oauth_role_map: tuple[tuple[str, str], ...]
    audit_retention_days: int
    env_build_timeout: float
    env_max_disk_mb: int
    env_gc_grace_seconds: float
    oauth_enabled: bool
    oauth_issuer: str | None
    oauth_jwks_uri: str | None
    oauth_allow_nonpublic_jwks: bool
    oauth_audience: str | None
    oauth_required_scopes: tuple[str, ...]
    oauth_enforce_endpoint_scopes: bool
    oauth_query_scope: str
    oauth_evaluate_scope: str
    oauth_deploy_scope: str
    oauth_log_user: bool
    auth_max_failures: int
    auth_cache_seconds: float
    trusted_proxies: tuple[str, ...]
    workers: int
    acceptors: int
    worker_memory_limit_mb: int
    shutdown_timeout: float
    registry_url: str
    registry_password_file: Path | None
    registry_connect_timeout: float
    drain_seconds: float
    instance_id: str
    member_heartbeat_seconds: float
    deploy_wait_seconds: float
    advertise_url: str | None
    advertise_flight: str | None
    internal_credentials_file: Path | None
    log_format: str
    health_checks_public: bool
    max_header_kb: int
    max_header_count: int
    header_timeout: float
    keepalive_timeout: float
    max_connections: int
    worker_containment: str
    isolate_callers: bool
    worker_user: str | None
    env_pool_size: int
    env_idle_seconds: float
    env_max_pools: int
    sources: Mapping[str, str]

    @property
    def http_limits(self) -> HttpLimits:
        return HttpLimits(
            max_head_bytes=self.max_header_kb * 1024,
            max_header_count=self.max_header_count,
            header_timeout=self.header_timeout,
            keepalive_timeout=self.keepalive_timeout,
            max_connections=self.max_connections,
        )

    @property
    def max_request_size_bytes(self) -> int:
        """The request-size limit in bytes (TabPy counts a megabyte as 1024 * 1024)."""
        return self.max_request_size_mb * _MB


# --- value parsers -------------------------------------------------------------------------------
# Each takes the key name and the (interpolated, stripped, non-empty) text and returns the typed
# value, or raises ConfigError saying what to write instead.

Parser = Callable[[str, str], Any]


def _show(value: str) -> str:
    """Quote a value for an error message, keeping the message on one line."""
    return '"' + value.replace("\n", "\\n") + '"'


def _text(key: str, value: str) -> str:
    return value


def _boolean(key: str, value: str) -> bool:
    # Strict on purpose: TabPy treats anything but "false" as true for TABPY_LOG_DETAILS, so
    # "0" or "off" silently enabled it.
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(
        f"{key} = {_show(value)} is not a boolean: use true or false "
        "(1/yes/on and 0/no/off also work)."
    )


def _port(key: str, value: str) -> int:
    """0 asks the OS for a free port (the start-up log names it): handy for tests."""
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ConfigError(
            f"{key} = {_show(value)} is not a valid port: use a whole number between 1 and 65535 "
            "(or 0 for any free port)."
        )
    return port


def _whole_number(minimum: int, fix: str) -> Parser:
    def parse(key: str, value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = minimum - 1
        if number < minimum:
            raise ConfigError(f"{key} = {_show(value)} is not valid: use a whole number {fix}.")
        return number

    return parse


def _seconds(allow_zero: bool) -> Parser:
    def parse(key: str, value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
            bound = "zero or more" if allow_zero else "greater than zero"
            raise ConfigError(
                f"{key} = {_show(value)} is not a valid duration: "
                f"use a number of seconds {bound}, such as 30 or 2.5."
            )
        return number

    return parse


def _protocol(key: str, value: str) -> str:
    protocol = value.lower()
    if protocol not in ("http", "https"):
        raise ConfigError(f"Unsupported transfer protocol: {protocol}. Set {key} to http or https.")
    return protocol


def _tls_version(key: str, value: str) -> str:
    # TabPy falls back rather than failing here; keep that, but say so loudly.
    if value not in ssl.TLSVersion.__members__:
        logger.warning("Unrecognized value for %s: %s", key, value)
        return DEFAULT_MINIMUM_TLS_VERSION
    return value


def _log_format(key: str, value: str) -> str:
    log_format = value.lower()
    if log_format not in LOG_FORMATS:
        raise ConfigError(
            f"{key} = {_show(value)} is not a log format: use text (one readable line per "
            "message) or json (one JSON object per line, for log shippers)."
        )
    return log_format


def _containment(key: str, value: str) -> str:
    mode = value.lower()
    if mode not in _CONTAINMENT_MODES:
        raise ConfigError(
            f"{key} = {_show(value)} is not a containment mode: use auto (a cgroup where the "
            "machine allows it, else a subreaper), cgroup or subreaper."
        )
    return mode


def _os_user(key: str, value: str) -> str:
    """An existing account, usable only by a server running as root (it switches to it)."""
    try:
        pwd.getpwnam(value)
    except KeyError:
        raise ConfigError(
            f"{key} = {_show(value)} is not a user on this machine: name an existing "
            "unprivileged account, such as nobody, or create one for the workers."
        ) from None
    if os.geteuid() != 0:
        raise ConfigError(
            f"{key} = {_show(value)} needs the server to start as root, so that its workers can "
            "switch to that user: start it as root, or leave the setting out."
        )
    return value


def _default_isolate_callers(resolve: Resolve) -> bool:
    """Keep callers apart whenever there are callers to tell apart."""
    return bool(resolve("pwd_file") is not None or resolve("oauth_enabled"))


def _scopes(key: str, value: str) -> tuple[str, ...]:
    return tuple(scope.strip() for scope in value.split(",") if scope.strip())


def _role_map(key: str, value: str) -> tuple[tuple[str, str], ...]:
    """``claim value = role`` pairs, comma-separated; a value may map to several roles.

    The role names are checked with the other authorization settings
    (:mod:`tabpy.security.roles`); here only the shape is.
    """
    pairs = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        # The last "=": a claim value may contain one (a role name never does).
        claim, equals, role = item.rpartition("=")
        if not equals or not claim.strip() or not role.strip():
            raise ConfigError(
                f"{key} = {_show(value)}: {_show(item)} is not <claim value>=<role>; write "
                "comma-separated pairs such as tabpy-admins=admin, data-science=deployer."
            )
        pairs.append((claim.strip(), role.strip().lower()))
    return tuple(pairs)


def _path(value: str) -> Path:
    return Path(value).expanduser().resolve()


def _any_path(key: str, value: str) -> Path:
    return _path(value)


def _directory(key: str, value: str) -> Path:
    path = _path(value)
    if not path.is_dir():
        found = "is a file" if path.exists() else "does not exist"
        raise ConfigError(
            f"{key} = {_show(value)} is not an existing directory ({path} {found}): "
            f"create it (mkdir -p {path}) or point {key} at one that exists."
        )
    return path


def _readable_file(key: str, value: str) -> Path:
    path = _path(value)
    problem = _file_problem(path)
    if problem is None and not os.access(path, os.R_OK):
        problem = f"{path} cannot be read by this user"
    if problem is not None:
        raise ConfigError(
            f"{key} = {_show(value)} is not a readable file ({problem}): create it (for "
            f"example with tabpy-user add -u NAME -f {path}) or correct the path."
        )
    return path


def _file_problem(path: Path) -> str | None:
    """Why ``path`` is not an existing regular file, naming the path tried; None if it is one.

    The path is the resolved one, because a relative value is taken from the current folder,
    which is not always the one the admin has in mind (a service starts in ``/``).
    """
    if path.is_file():
        return None
    if path.is_dir():
        return f"{path} is a folder"
    return f"{path} does not exist"


# --- computed defaults ---------------------------------------------------------------------------
# A default may depend on other settings; ``resolve`` returns another field's final value.

Resolve = Callable[[str], Any]


def _default_state_path(resolve: Resolve) -> Path:
    # A per-user data directory rather than TabPy's package directory, which is read-only in
    # most installs and lost on upgrade.
    path = Path(platformdirs.user_data_dir("tabpy")).resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"Cannot create the default state directory {path} ({err.strerror}): "
            "set TABPY_STATE_PATH to an existing writable directory."
        ) from None
    return path


def _default_query_object_path(resolve: Resolve) -> Path:
    state_path: Path = resolve("state_path")
    return state_path / "query_objects"


def _default_registry_url(resolve: Resolve) -> str:
    state_path: Path = resolve("state_path")
    return f"sqlite:///{state_path / 'registry.db'}"


def _database_url(key: str, value: str) -> str:
    if "://" not in value:
        raise ConfigError(
            f"{key} = {_show(value)} is not a database URL: use e.g. sqlite:////var/lib/tabpy/"
            "registry.db or postgresql+psycopg://user@host/tabpy."
        )
    return value


def _default_instance_id(resolve: Resolve) -> str:
    # Port 0 (pick a free one) is replaced by the bound port once it is known (runner.py).
    return f"{socket.gethostname()}:{resolve('port')}"


def _instance_id(key: str, value: str) -> str:
    # It goes into a response header and every log line: printable ASCII without spaces.
    if len(value) > 128 or not all(33 <= ord(c) < 127 for c in value):
        raise ConfigError(
            f"{key} = {_show(value)}: use up to 128 printable ASCII characters without spaces "
            "(for example the pod or host name)."
        )
    return value


def _advertised(*schemes: str) -> Parser:
    """An address the fleet's other members reach this one at (``TABPY_ADVERTISE_*``)."""

    def parse(key: str, value: str) -> str:
        if not value.startswith(schemes) or not value.partition("://")[2].strip("/"):
            raise ConfigError(
                f"{key} = {_show(value)} is not an address the other instances can use: "
                f"write it as {schemes[0]}<host>:<port>, with a host name or address they reach."
            )
        return value.rstrip("/")

    return parse


def _default_arrow_bind_address(resolve: Resolve) -> str:
    # Flight has the same authentication and TLS as HTTP, so it is no more exposed than HTTP;
    # loopback by default would silently break Tableau Prep on another machine.
    address: str = resolve("bind_address")
    return address


def _default_workers(resolve: Resolve) -> int:
    return os.cpu_count() or 1


def _default_worker_memory_limit(resolve: Resolve) -> int:
    """Split most of the physical memory between the workers; 0 (no limit) if it is unknown."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 0
    workers: int = resolve("workers")
    return max(1, int(total * DEFAULT_MEMORY_SHARE / workers / _MB))


_megabytes = _whole_number(1, "of megabytes greater than 0")
_processes = _whole_number(1, "of processes, at least 1")
_pools = _whole_number(1, "of pools, at least 1")
_memory_limit = _whole_number(0, "of megabytes, or 0 for no limit")
_failure_limit = _whole_number(0, "of failed logins per minute, or 0 for no limit")
_retention_days = _whole_number(0, "of days, or 0 to keep the audit trail forever")
_disk_limit = _whole_number(0, "of megabytes, or 0 for no limit")
_kilobytes = _whole_number(1, "of KiB, at least 1")
_header_count = _whole_number(1, "of headers, at least 1")
_connections = _whole_number(1, "of connections, at least 1")


def _networks(key: str, value: str) -> tuple[str, ...]:
    """Comma-separated addresses or networks, each normalised (``10.0.0.0/8``, ``::1/128``)."""
    networks = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ConfigError(
                f"{key} = {_show(value)}: {_show(item)} is not an IP address or network; list "
                "your reverse proxies' addresses, such as 127.0.0.1, 10.0.0.0/8 (comma-separated)."
            ) from None
    return tuple(networks)


# --- the table -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Key:
    """One ``TABPY_*`` setting: where it lands, its default, and how its text is parsed."""

    name: str
    field: str
    default: Any
    parse: Parser
    log_name: str = ""  # TabPy's name in the start-up DEBUG lines; the field name if empty

    def default_value(self, resolve: Resolve) -> Any:
        return self.default(resolve) if callable(self.default) else self.default


# In the order of TabPy's start-up DEBUG lines, with the keys TabPy lacks at the end.
_KEYS: tuple[_Key, ...] = (
    _Key("TABPY_PORT", "port", DEFAULT_PORT, _port),
    _Key("TABPY_EVALUATE_ENABLE", "evaluate_enabled", True, _boolean),
    _Key("TABPY_EVALUATE_TIMEOUT", "evaluate_timeout", DEFAULT_EVALUATE_TIMEOUT, _seconds(False)),
    _Key("TABPY_QUERY_OBJECT_PATH", "query_object_path", _default_query_object_path, _any_path,
         "upload_dir"),
    _Key("TABPY_TRANSFER_PROTOCOL", "transfer_protocol", DEFAULT_TRANSFER_PROTOCOL, _protocol),
    _Key("TABPY_CERTIFICATE_FILE", "certificate_file", None, _any_path),
    _Key("TABPY_KEY_FILE", "key_file", None, _any_path),
    _Key("TABPY_MINIMUM_TLS_VERSION", "minimum_tls_version", DEFAULT_MINIMUM_TLS_VERSION,
         _tls_version),
    _Key("TABPY_STATE_PATH", "state_path", _default_state_path, _directory, "state_file_path"),
    _Key("TABPY_STATIC_PATH", "static_path", None, _directory),
    _Key("TABPY_PWD_FILE", "pwd_file", None, _readable_file, "TABPY_PWD_FILE"),
    _Key("TABPY_LOG_DETAILS", "log_details", False, _boolean, "log_request_context"),
    _Key("TABPY_MAX_REQUEST_SIZE_MB", "max_request_size_mb", DEFAULT_MAX_REQUEST_SIZE_MB,
         _megabytes, "max_request_size_in_mb"),
    _Key("TABPY_GZIP_ENABLE", "gzip_enabled", True, _boolean),
    _Key("TABPY_ARROW_ENABLE", "arrow_enabled", False, _boolean),
    _Key("TABPY_ARROWFLIGHT_PORT", "arrowflight_port", DEFAULT_ARROWFLIGHT_PORT, _port),
    _Key("TABPY_OAUTH_ENABLED", "oauth_enabled", False, _boolean),
    _Key("TABPY_OAUTH_ISSUER", "oauth_issuer", None, _text),
    _Key("TABPY_OAUTH_JWKS_URI", "oauth_jwks_uri", None, _text),
    _Key("TABPY_OAUTH_ALLOW_NONPUBLIC_JWKS", "oauth_allow_nonpublic_jwks", False, _boolean),
    _Key("TABPY_OAUTH_AUDIENCE", "oauth_audience", None, _text),
    _Key("TABPY_OAUTH_REQUIRED_SCOPES", "oauth_required_scopes", (), _scopes),
    _Key("TABPY_OAUTH_ENFORCE_ENDPOINT_SCOPES", "oauth_enforce_endpoint_scopes", False, _boolean),
    _Key("TABPY_OAUTH_QUERY_SCOPE", "oauth_query_scope", DEFAULT_OAUTH_QUERY_SCOPE, _text),
    _Key("TABPY_OAUTH_EVALUATE_SCOPE", "oauth_evaluate_scope", DEFAULT_OAUTH_EVALUATE_SCOPE, _text),
    _Key("TABPY_OAUTH_DEPLOY_SCOPE", "oauth_deploy_scope", DEFAULT_OAUTH_DEPLOY_SCOPE, _text),
    _Key("TABPY_OAUTH_LOG_USER", "oauth_log_user", False, _boolean),
    _Key("TABPY_AUTH_MAX_FAILURES", "auth_max_failures", DEFAULT_AUTH_MAX_FAILURES,
         _failure_limit),
    _Key("TABPY_AUTH_CACHE_SECONDS", "auth_cache_seconds", DEFAULT_AUTH_CACHE_SECONDS,
         _seconds(True)),
    _Key("TABPY_TRUSTED_PROXIES", "trusted_proxies", (), _networks),
    _Key("TABPY_BIND_ADDRESS", "bind_address", DEFAULT_BIND_ADDRESS, _text),
    _Key("TABPY_WORKERS", "workers", _default_workers, _processes),
    _Key("TABPY_ACCEPTORS", "acceptors", 1, _processes),
    _Key("TABPY_WORKER_MEMORY_LIMIT_MB", "worker_memory_limit_mb", _default_worker_memory_limit,
         _memory_limit),
    _Key("TABPY_SHUTDOWN_TIMEOUT", "shutdown_timeout", DEFAULT_SHUTDOWN_TIMEOUT, _seconds(True)),
    _Key("TABPY_REGISTRY_URL", "registry_url", _default_registry_url, _database_url),
    _Key("TABPY_REGISTRY_PASSWORD_FILE", "registry_password_file", None, _any_path),
    _Key("TABPY_REGISTRY_CONNECT_TIMEOUT", "registry_connect_timeout",
         DEFAULT_REGISTRY_CONNECT_TIMEOUT, _seconds(True)),
    _Key("TABPY_DRAIN_SECONDS", "drain_seconds", DEFAULT_DRAIN_SECONDS, _seconds(True)),
    _Key("TABPY_INSTANCE_ID", "instance_id", _default_instance_id, _instance_id),
    _Key("TABPY_MEMBER_HEARTBEAT_SECONDS", "member_heartbeat_seconds",
         DEFAULT_MEMBER_HEARTBEAT_SECONDS, _seconds(False)),
    _Key("TABPY_DEPLOY_WAIT_SECONDS", "deploy_wait_seconds", DEFAULT_DEPLOY_WAIT_SECONDS,
         _seconds(True)),
    _Key("TABPY_ADVERTISE_URL", "advertise_url", None, _advertised("http://", "https://")),
    _Key("TABPY_ADVERTISE_FLIGHT", "advertise_flight", None,
         _advertised("grpc://", "grpc+tcp://", "grpc+tls://")),
    _Key("TABPY_INTERNAL_CREDENTIALS_FILE", "internal_credentials_file", None, _any_path),
    _Key("TABPY_LOG_FORMAT", "log_format", DEFAULT_LOG_FORMAT, _log_format),
    _Key("TABPY_HEALTH_CHECKS_PUBLIC", "health_checks_public", False, _boolean),
    _Key("TABPY_MAX_HEADER_KB", "max_header_kb", DEFAULT_MAX_HEADER_KB, _kilobytes),
    _Key("TABPY_MAX_HEADER_COUNT", "max_header_count", DEFAULT_MAX_HEADER_COUNT, _header_count),
    _Key("TABPY_HEADER_TIMEOUT", "header_timeout", DEFAULT_HEADER_TIMEOUT, _seconds(False)),
    _Key("TABPY_KEEPALIVE_TIMEOUT", "keepalive_timeout", DEFAULT_KEEPALIVE_TIMEOUT,
         _seconds(False)),
    _Key("TABPY_MAX_CONNECTIONS", "max_connections", DEFAULT_MAX_CONNECTIONS, _connections),
    _Key("TABPY_ARROW_BIND_ADDRESS", "arrow_bind_address", _default_arrow_bind_address, _text),
    _Key("TABPY_ARROW_MAX_STORE_MB", "arrow_max_store_mb", DEFAULT_ARROW_MAX_STORE_MB, _megabytes),
    _Key("TABPY_ARROW_ENTRY_TTL_SECONDS", "arrow_entry_ttl_seconds",
         DEFAULT_ARROW_ENTRY_TTL_SECONDS, _seconds(False)),
    _Key("TABPY_ARROW_ADMIN_USERS", "arrow_admin_users", (), _scopes),
    _Key("TABPY_WORKER_CONTAINMENT", "worker_containment", "auto", _containment),
    _Key("TABPY_ISOLATE_CALLERS", "isolate_callers", _default_isolate_callers, _boolean),
    _Key("TABPY_WORKER_USER", "worker_user", None, _os_user),
    _Key("TABPY_ENV_POOL_SIZE", "env_pool_size", DEFAULT_ENV_POOL_SIZE, _processes),
    _Key("TABPY_ENV_IDLE_SECONDS", "env_idle_seconds", DEFAULT_ENV_IDLE_SECONDS, _seconds(False)),
    _Key("TABPY_ENV_MAX_POOLS", "env_max_pools", DEFAULT_ENV_MAX_POOLS, _pools),
    _Key("TABPY_AUTHZ", "authz", False, _boolean),
    _Key("TABPY_OAUTH_ROLES_CLAIM", "oauth_roles_claim", None, _text),
    _Key("TABPY_OAUTH_ROLE_MAP", "oauth_role_map", (), _role_map),
    _Key("TABPY_AUDIT_RETENTION_DAYS", "audit_retention_days", 0, _retention_days),
    _Key("TABPY_ENV_BUILD_TIMEOUT", "env_build_timeout", DEFAULT_ENV_BUILD_TIMEOUT,
         _seconds(False)),
    _Key("TABPY_ENV_MAX_DISK_MB", "env_max_disk_mb", DEFAULT_ENV_MAX_DISK_MB, _disk_limit),
    _Key("TABPY_ENV_GC_GRACE_SECONDS", "env_gc_grace_seconds", DEFAULT_ENV_GC_GRACE_SECONDS,
         _seconds(True)),
)  # fmt: skip

_BY_NAME: Mapping[str, _Key] = {key.name: key for key in _KEYS}
_BY_FIELD: Mapping[str, _Key] = {key.field: key for key in _KEYS}


# --- loading -------------------------------------------------------------------------------------


def load_settings(
    config_file: str | os.PathLike[str] | None, environ: Mapping[str, str]
) -> Settings:
    """Build the settings from defaults, the config file and ``environ``, in rising priority.

    ``environ`` is passed in (normally ``os.environ``) so tests and embedders control it.
    Raises :class:`ConfigError` for anything the user must fix; warnings for ignorable oddities
    (an unrelated ``TABPY_*`` variable, an unknown TLS version name) go to the log.
    """
    path = Path(config_file).expanduser() if config_file is not None else None
    file_values = _read_section(path) if path is not None else {}
    env_values = {
        name.upper(): value
        for name, value in environ.items()
        if name.upper().startswith(_ENV_PREFIX)
    }

    # A reference resolves to what that name would be as a setting: environment first.
    lookup = {name.lower(): value for name, value in file_values.items()}
    lookup.update({name.lower(): value for name, value in environ.items()})
    referenced: set[str] = set()

    raw: dict[str, str] = {}
    sources = {key.name: "default" for key in _KEYS}
    for key in _KEYS:
        for values, source in ((env_values, "environment"), (file_values, "file")):
            value = values.get(key.name, "").strip()
            if value:  # empty means "not set": fall through to the next layer
                text = _interpolate(key.name, value, lookup, referenced).strip()
                if text:
                    raw[key.name] = text
                    sources[key.name] = source
                break

    _check_unknown(file_values, f"[{SECTION}] of {path}", referenced)
    _check_unknown(env_values, "the environment", referenced)

    parsed = {_BY_NAME[name].field: _BY_NAME[name].parse(name, text) for name, text in raw.items()}

    def resolve(field: str) -> Any:
        if field not in parsed:
            parsed[field] = _BY_FIELD[field].default_value(resolve)
        return parsed[field]

    for key in _KEYS:
        resolve(key.field)
    _check_https(parsed)
    _check_acceptors(parsed)

    timeout = parsed.pop("evaluate_timeout")
    return Settings(
        config_file=path,
        evaluate_timeout=float(timeout),
        evaluate_timeout_text=str(timeout),
        sources=types.MappingProxyType(sources),
        **parsed,
    )


def _check_acceptors(parsed: dict[str, Any]) -> None:
    # Flight keeps the tables it receives in the memory of one process; with several acceptors
    # an /evaluate naming one could land on another.
    if parsed["acceptors"] > 1 and parsed["arrow_enabled"]:
        raise ConfigError(
            f"TABPY_ACCEPTORS = {parsed['acceptors']} cannot be combined with "
            "TABPY_ARROW_ENABLE = true yet: set TABPY_ACCEPTORS = 1 to serve Arrow Flight."
        )


def _read_section(path: Path) -> dict[str, str]:
    """Return the raw ``[TabPy]`` values, keys upper-cased; other sections are not ours."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        tried = "" if path.is_absolute() else f" (looked for {path.absolute()})"
        raise ConfigError(
            f"Config file {path} not found{tried}: check the path given to --config."
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"Config file {path} is not UTF-8 text: save it as UTF-8.") from None
    except OSError as err:
        raise ConfigError(
            f"Cannot read config file {path} ({err.strerror or err}): check the path and "
            "its permissions."
        ) from None
    if not text.strip():
        raise ConfigError(
            f"Config file {path} is empty: add a [{SECTION}] section, "
            "or leave out --config to use the defaults."
        )
    no_sections = ConfigError(
        f"Config file {path} has no section headers: put the settings under a [{SECTION}] line."
    )
    # Raw values: interpolation is ours, so that it can also see the environment. Inline
    # comments are dropped (see the module docstring for why and for values containing " #").
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=_INLINE_COMMENT)
    try:
        parser.read_string(text, source=str(path))
    except configparser.MissingSectionHeaderError:
        raise no_sections from None
    except configparser.Error as err:
        detail = " ".join(line.strip() for line in str(err).splitlines())
        raise ConfigError(
            f"Config file {path} is not valid INI ({detail}): correct the line it names."
        ) from None
    if not parser.sections():  # only comments
        raise no_sections
    if not parser.has_section(SECTION):
        return {}
    return {name.upper(): value for name, value in parser.items(SECTION)}


def _interpolate(
    key: str,
    value: str,
    lookup: Mapping[str, str],
    referenced: set[str],
    depth: int = 0,
) -> str:
    """Expand ``%(NAME)s`` and ``%%`` in ``value``; errors name ``key``, the setting being read."""
    parts: list[str] = []
    position = 0
    while (percent := value.find("%", position)) >= 0:
        parts.append(value[position:percent])
        match = _REFERENCE.match(value, percent)
        if match is None:
            raise ConfigError(
                f"{key} = {_show(value)} contains a % that does not start %(NAME)s; "
                "write %% for a literal %."
            )
        reference = match.group(1)
        if reference is None:
            parts.append("%")
        else:
            name = reference.lower()
            if name not in lookup:
                raise ConfigError(
                    f"{key} = {_show(value)} refers to %({reference})s, which is neither an "
                    f"environment variable nor a [{SECTION}] key; write %% for a literal %."
                )
            if depth >= _MAX_INTERPOLATION_DEPTH:
                raise ConfigError(
                    f"{key} = {_show(value)} nests %(NAME)s references too deeply: "
                    "remove the reference loop."
                )
            referenced.add(name.upper())
            parts.append(_interpolate(key, lookup[name], lookup, referenced, depth + 1))
        position = match.end()
    parts.append(value[position:])
    return "".join(parts)


#: Read by tabpy-deploy-models, not by the server; they may share an environment.
_CLIENT_VARIABLES = frozenset({"TABPY_USERNAME", "TABPY_PASSWORD"})


def _check_unknown(values: Mapping[str, str], where: str, referenced: set[str]) -> None:
    """Reject likely typos of known keys; warn about other unknown ``TABPY_*`` names.

    Keys used only as ``%(NAME)s`` helpers are intentional, so they pass silently.
    """
    for name in values:
        if name in _BY_NAME or name in referenced or name in _CLIENT_VARIABLES:
            continue
        close = difflib.get_close_matches(name, _BY_NAME, n=1, cutoff=_TYPO_CUTOFF)
        if close:
            raise ConfigError(f"Unknown setting {name} in {where}: did you mean {close[0]}?")
        logger.warning("Unknown setting %s in %s is ignored", name, where)


def _check_https(values: Mapping[str, Any]) -> None:
    """Apply TabPy's HTTPS checks, with its exact messages, which users may search for."""
    if values["transfer_protocol"] != "https":
        return
    files: dict[str, Path | None] = {
        "TABPY_CERTIFICATE_FILE": values["certificate_file"],
        "TABPY_KEY_FILE": values["key_file"],
    }
    unset = [name for name, file in files.items() if file is None]
    if unset:
        raise ConfigError(f"Error using HTTPS: The parameter(s) {' and '.join(unset)} must be set.")
    problems = {name: _file_problem(file) for name, file in files.items() if file is not None}
    missing = {name: problem for name, problem in problems.items() if problem is not None}
    if missing:
        # TabPy's sentence first (admins search for it), then the paths that were tried.
        raise ConfigError(
            f"Error using HTTPS: The parameter(s) {' and '.join(missing)} "
            f"must point to an existing file: {'; '.join(missing.values())}."
        )


# --- reporting -----------------------------------------------------------------------------------

_SOURCE_TEXT = {
    "default": "default value",
    "file": "config file",
    "environment": "environment variable",
}


def _without_password(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part replaced by ``***``."""
    scheme, separator, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not separator or not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{location}"


def describe_settings(settings: Settings) -> list[str]:
    """Return TabPy-style ``Parameter ...`` lines, one per setting, for the start-up DEBUG log.

    Values are shown verbatim, as TabPy does, except the one setting that may carry a secret:
    the registry URL's password is masked.
    """
    lines: list[str] = []
    for key in _KEYS:
        value: Any = getattr(settings, key.field)
        if key.field == "evaluate_timeout":
            value = settings.evaluate_timeout_text
        elif key.field == "registry_url":
            value = _without_password(value)
        elif isinstance(value, tuple):
            items = ("=".join(item) if isinstance(item, tuple) else item for item in value)
            value = ", ".join(items) or None
        name = key.log_name or key.field
        if value is None:
            lines.append(f"Parameter {name} is not set")
        else:
            origin = _SOURCE_TEXT[settings.sources[key.name]]
            lines.append(f'Parameter {name} set to "{value}" from {origin}')
    # TabPy reports its version right after the port.
    lines.insert(1, f'Parameter server_version set to "{__version__}" from default value')
    return lines
