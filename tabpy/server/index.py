"""``GET /``: the status page for admins and analysts.

The page is rendered from the package's ``templates/index.html`` with Jinja2's autoescaping, so
every name, description, docstring and error is text, never markup. It reads fine without
JavaScript; the script only adds the endpoint search, the theme switch and local times.

The stylesheet and the script are inline ``<style>`` and ``<script>`` elements without
attributes (TabPy's own page tests look for exactly those tags), and the Content-Security-Policy
allows them by their SHA-256, computed once at start from the very text the page carries. So
nothing inline runs unless it is ours, ``'unsafe-inline'`` is never needed, and nothing from
another origin loads. Only the icon is a separate file, under ``/_tabpy/`` (:data:`ASSETS_PATH`).

The page needs credentials like every route. The icon and the documentation do not: they are
the same bytes in every installation and contain no data, as TabPy's static files are public too.

Secrets never appear: the page says which authentication is on, not with what, and the
registry URL is shown without its password.

With ``TABPY_AUTHZ`` on, an admin also sees the last changes from the audit trail
(:data:`RECENT_CHANGES` of them; ``GET /admin/audit`` has the rest).

Jinja2 is imported, and the template compiled, when the page is first asked for: a server whose
status page nobody opens never holds them (a few MB).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import functools
import hashlib
import json
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from tabpy import __version__
from tabpy.config import Settings
from tabpy.registry import members
from tabpy.registry.audit import AuditEntry, AuditQuery
from tabpy.registry.endpoint import Endpoint
from tabpy.registry.store import display_url
from tabpy.runtime.catalog import Catalog, LoadState, LoadStatus
from tabpy.server.actors import principal_of
from tabpy.server.context import ServerContext
from tabpy.server.responses import RawResponse

if TYPE_CHECKING:
    import jinja2

__all__ = [
    "ASSETS_DIRECTORY",
    "ASSETS_PATH",
    "DOCS_DIRECTORY",
    "DOCUMENTATION_FILES",
    "Index",
    "PageAssets",
    "RECENT_CHANGES",
    "authentication_text",
    "health_checks_text",
]

_PACKAGE = Path(__file__).resolve().parent.parent

#: Where the page's icon is served, below the server's Subdirectory.
ASSETS_PATH = "/_tabpy"
ASSETS_DIRECTORY = _PACKAGE / "static"


def _documentation_directory() -> Path | None:
    """The documentation: shipped in the package (a wheel), else a source checkout's ``docs/``.

    The build copies the repository's ``docs/`` into the wheel as ``tabpy/docs`` (``setup.py``),
    so an installed server serves the same pages as a checkout. ``tabpy/docs`` does not exist in
    a checkout or an editable install; there the repository's own folder is used, recognised by
    the ``pyproject.toml`` beside it, so an unrelated ``site-packages/docs`` is never served.
    """
    if (_PACKAGE / "docs" / "configuration.md").is_file():
        return _PACKAGE / "docs"
    checkout = _PACKAGE.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "docs/configuration.md").is_file():
        return checkout / "docs"
    return None


#: Served under ``/_tabpy/docs``; None if this installation has no documentation.
DOCS_DIRECTORY = _documentation_directory()

_DOCS = (
    ("configuration.md", "Configuration reference"),
    ("service.md", "Running as a service"),
    ("nginx.md", "Behind nginx with TLS"),
    ("monitoring.md", "Monitoring: health, metrics, logs"),
    ("tableau.md", "Connecting Tableau"),
    ("fleet.md", "Running a fleet"),
    ("migrating.md", "Migrating from TabPy"),
    ("troubleshooting.md", "Troubleshooting"),
)
#: What ``/_tabpy/docs/`` may serve: the pages above and the files they link.
DOCUMENTATION_FILES = frozenset([*(name for name, _ in _DOCS), "tabpy.service", "nginx-tabpy.conf"])

#: The page's links to the API: (href, label, what it is).
_LINKS = (
    ("info", "/info", "server and feature information (Tableau's connection test)"),
    ("status", "/status", "load status of each endpoint"),
    ("endpoints", "/endpoints", "deployed endpoints as JSON"),
    ("metrics", "/metrics", "Prometheus metrics"),
    ("health", "/health", "liveness"),
    ("ready", "/ready", "readiness"),
)
#: Audit entries the page shows an admin.
RECENT_CHANGES = 10
_STATUS_CLASS = {
    LoadStatus.SUCCESSFUL: "ok",
    LoadStatus.FAILED: "failed",
    LoadStatus.IN_PROGRESS: "loading",
}
_STATUS_TEXT = {
    LoadStatus.SUCCESSFUL: "loaded",
    LoadStatus.FAILED: "load failed",
    LoadStatus.IN_PROGRESS: "loading",
}


def _csp_hash(text: str) -> str:
    """A CSP source matching an inline element whose content is exactly ``text``."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


@dataclass(frozen=True)
class PageAssets:
    """The inline style and script, with the policy that allows them, and the page's template.

    The style and script are read at start (:meth:`load`): the policy, sent with every page,
    hashes them. The template is compiled for the first page (:attr:`template`); every later
    request only renders.
    """

    style: str
    script: str

    @classmethod
    def load(cls) -> PageAssets:
        files = resources.files("tabpy") / "templates"
        # Text mode turns any CRLF into LF, as an HTML parser does: the browser hashes what
        # it parsed, so the hash must be of the same text.
        style = (files / "index.css").read_text(encoding="utf-8")
        script = (files / "index.js").read_text(encoding="utf-8")
        return cls(style, script)

    @functools.cached_property
    def template(self) -> jinja2.Template:
        """The compiled ``index.html`` (compiled once, by the first page)."""
        import jinja2

        environment = jinja2.Environment(
            loader=jinja2.PackageLoader("tabpy", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,  # a misspelt name fails loudly, never renders ""
            trim_blocks=True,
            lstrip_blocks=True,
        )
        return environment.get_template("index.html")

    def __post_init__(self) -> None:
        for text, end in ((self.style, "</style"), (self.script, "</script")):
            if end in text.lower():  # would end the element early: the rest would show as text
                raise ValueError(f"the status page's inline text must not contain {end}")

    def policy(self, *, in_page: bool = False) -> str:
        """The Content-Security-Policy: the inline style and script by hash, the icon, nothing else.

        ``in_page``: the copy in the page's ``<meta>`` tag. It keeps applying to a copy of the
        page saved to disk, and it is where TabPy's own page tests look for the script's hash.
        A ``<meta>`` policy may not carry ``frame-ancestors``; the header has it.
        """
        directives = [
            "default-src 'none'",
            f"script-src {_csp_hash(self.script)}",
            f"style-src {_csp_hash(self.style)}",
            "img-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
        ]
        if not in_page:
            directives.append("frame-ancestors 'none'")
        return "; ".join(directives)


@dataclass(frozen=True)
class _Moment:
    """A time as the page shows it: machine-readable UTC, and text the script localises."""

    machine: str
    text: str

    @classmethod
    def of(cls, timestamp: float) -> _Moment:
        moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
        machine = moment.isoformat(timespec="seconds").replace("+00:00", "Z")
        return cls(machine, f"{moment:%Y-%m-%d %H:%M:%S} UTC")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h {minutes}m {secs}s" if days else f"{hours}h {minutes}m {secs}s"


def registry_text(url: str, catalog: Catalog) -> str:
    """The registry without its password, and whether it answers (degraded when not)."""
    if catalog.registry_reachable:
        return display_url(url)
    return f"{display_url(url)}: unavailable; serving the endpoints loaded before (degraded)"


def _public_text(is_public: object) -> str:
    if isinstance(is_public, bool):
        return "public" if is_public else "not public"
    return f"is_public: {json.dumps(is_public)}"  # stored as the client sent it


def authentication_text(settings: Settings) -> str:
    """Which authentication is on, never with what (no file path, issuer or user)."""
    if settings.pwd_file is not None and settings.oauth_enabled:
        return "Basic (password file) and OAuth 2.0 bearer tokens"
    if settings.pwd_file is not None:
        return "Basic (password file)"
    if settings.oauth_enabled:
        return "OAuth 2.0 bearer tokens"
    return "off: anyone who can reach this port can run scripts"


def health_checks_text(settings: Settings) -> str:
    """Who may call ``/health`` and ``/ready``, true for every combination of settings."""
    if settings.pwd_file is None and not settings.oauth_enabled:
        return "open to anyone, as every route is while authentication is off"
    if settings.health_checks_public:
        return "open without credentials (TABPY_HEALTH_CHECKS_PUBLIC)"
    return "need credentials, like every route"


class Index:
    def __init__(self, context: ServerContext, assets: PageAssets | None = None) -> None:
        self.context = context
        self.assets = assets or PageAssets.load()
        self.docs = [
            {"file": f, "title": t}
            for f, t in _DOCS
            if DOCS_DIRECTORY is not None and (DOCS_DIRECTORY / f).is_file()
        ]
        self.headers = {
            "Content-Security-Policy": self.assets.policy(),
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        }
        # Safe by construction: fixed directives and base64 (no quote, ampersand or bracket).
        self._page_policy = self.assets.policy(in_page=True)

    async def handle(self, request: Request) -> Response:
        changes: list[AuditEntry] = []
        authorization = self.context.auth.authorization
        if authorization.enabled and authorization.has_role(principal_of(request), "admin"):
            query = AuditQuery(limit=RECENT_CHANGES)
            changes = await asyncio.to_thread(self.context.catalog.registry.audit, query)
        body = self.render(request, changes).encode("utf-8")
        return RawResponse(body, 200, "text/html; charset=utf-8", self.headers)

    # --- content -------------------------------------------------------------------------------

    def settings_rows(self, port: int) -> list[tuple[str, str]]:
        settings = self.context.settings
        pool = self.context.pool
        protocol = settings.transfer_protocol
        if protocol == "https":
            protocol += f" (minimum {settings.minimum_tls_version})"
        memory = (
            f"{settings.worker_memory_limit_mb} MB per worker"
            if settings.worker_memory_limit_mb
            else "no limit"
        )
        restarts = ", ".join(f"{n} {cause}" for cause, n in sorted(pool.restarts.items()) if n)
        workers = f"{pool.ready_workers} of {pool.size} ready"
        if restarts:
            workers += f"; replaced since start: {restarts}"
        subdirectory = self.context.service_info.subdirectory.strip("/")
        rows = [
            ("Version", __version__),
            ("Uptime", _duration(time.time() - self.context.started_at)),
            ("Listening on", f"{settings.bind_address} port {port}, {protocol}"),
            ("Authentication", authentication_text(settings)),
            ("Ad-hoc scripts (/evaluate)", "on" if settings.evaluate_enabled else "off"),
            ("Script timeout", f"{settings.evaluate_timeout_text} s"),
            ("Workers", workers),
            ("Environment pools", _environment_pools_text(self.context)),
            ("Worker memory limit", memory),
            ("Worker isolation", _isolation_text(self.context)),
            ("Maximum request size", f"{settings.max_request_size_mb} MB"),
            ("Gzip request bodies", "accepted" if settings.gzip_enabled else "refused"),
            ("State location", str(settings.state_path)),
            ("Instance", settings.instance_id),
            ("Registry", registry_text(settings.registry_url, self.context.catalog)),
            ("Log format", settings.log_format),
            ("Call context logging", "on" if settings.log_details else "off"),
            ("Health checks", health_checks_text(settings)),
            ("Endpoint environments", _environments_text(self.context)),
        ]
        if subdirectory:
            rows.insert(3, ("URL prefix", f"/{subdirectory}/"))
        return rows

    def endpoints_document(self) -> dict[str, dict[str, Any]]:
        """What the JSON view shows: ``GET /endpoints`` plus each endpoint's load status."""
        catalog = self.context.catalog
        document = {}
        for name, endpoint in sorted(catalog.endpoints.items()):
            state = catalog.states.get(name)
            document[name] = {
                **endpoint.info(),
                "status": state.status if state else LoadStatus.IN_PROGRESS,
                "last_error": state.last_error if state else None,
            }
        return document

    def render(self, request: Request, changes: list[AuditEntry] | None = None) -> str:
        from markupsafe import Markup  # Jinja2's own, loaded with it for the first page

        info = self.context.service_info
        settings = self.context.settings
        server = request.scope.get("server")
        port = settings.port or (server[1] if server else 0)
        catalog = self.context.catalog
        return self.assets.template.render(
            page_policy=Markup(self._page_policy),
            style=Markup(self.assets.style),
            script=Markup(self.assets.script),
            name=info.name,
            description=info.description or "Analytics extension for Tableau",
            version=__version__,
            links=_LINKS,
            docs=self.docs,
            settings=self.settings_rows(port),
            endpoints=[
                _card(endpoint, catalog.states.get(name))
                for name, endpoint in sorted(catalog.endpoints.items())
            ],
            document=json.dumps(self.endpoints_document(), indent=2, ensure_ascii=False),
            port=port,
            https=settings.transfer_protocol == "https",
            changes=[_change(entry) for entry in changes or ()],
            members=self.members_rows(),
        )

    def members_rows(self) -> list[dict[str, Any]]:
        """The fleet's live members as last read (no query); none for a lone instance."""
        fleet = self.context.fleet
        if fleet is None or len(fleet.members) < 2:
            return []
        now = members.now_ms()
        rows = []
        for member in fleet.members:
            states = [status for _, status in member.loaded.endpoints.values()]
            done = sum(1 for status in states if status == LoadStatus.SUCCESSFUL.value)
            rows.append(
                {
                    "instance_id": member.instance_id,
                    "this": member.instance_id == fleet.instance_id,
                    "loaded": f"{done} of {len(states)} endpoints loaded",
                    "version": member.version,
                    "age": f"{max(now - member.heartbeat_at, 0) / 1000:.1f}",
                    "http_url": member.http_url,
                    "flight_url": member.flight_url,
                }
            )
        return rows


def _environments_text(context: ServerContext) -> str:
    """How many per-endpoint environments are built, their disk use, and the build limits."""
    settings = context.settings
    environments = context.catalog.environments
    limits = (
        f"builds limited to {settings.env_build_timeout:g} s"
        + (f" and {settings.env_max_disk_mb} MB" if settings.env_max_disk_mb else "")
        + f"; unused ones removed after {settings.env_gc_grace_seconds:g} s"
    )
    if environments is None:
        return "not built by this server"
    usage = environments.usage()
    building = f", {usage.building} building" if usage.building else ""
    size = usage.disk_bytes / (1024 * 1024)
    return f"{usage.count} built ({size:.1f} MB on disk){building}; {limits}"


def _environment_pools_text(context: ServerContext) -> str:
    """The pools of per-endpoint environments running now, within their cap."""
    pools = context.pools
    limits = pools.limits
    running = [
        f"{label}: {pool.ready_workers} of {pool.size} ready"
        for label, pool in pools.environments()
        if pool is not pools.default
    ]
    text = f"{len(running)} running (at most {limits.max_pools}"
    text += f", each stops after {limits.idle_seconds:g} s idle)"
    return text + (f"; {', '.join(running)}" if running else "")


def _isolation_text(context: ServerContext) -> str:
    """Which containment kills what scripts start, and whether callers share workers."""
    pool = context.pool
    mechanism = pool.containment.name if pool.containment is not None else "starting"
    callers = (
        "each caller's code on its own workers"
        if pool.options.isolate_callers
        else "callers share workers"
    )
    user = context.settings.worker_user
    return f"{mechanism} containment; {callers}" + (f"; workers run as {user}" if user else "")


def _card(endpoint: Endpoint, state: LoadState | None) -> dict[str, Any]:
    """What one endpoint's card shows; the template escapes every value."""
    status = state.status if state else LoadStatus.IN_PROGRESS
    searchable = (endpoint.name, endpoint.description, endpoint.docstring, endpoint.type)
    return {
        "name": endpoint.name,
        "search": " ".join(searchable).lower(),
        "status_class": _STATUS_CLASS.get(status, "loading"),
        "status_text": _STATUS_TEXT.get(status, str(status)),
        "version": endpoint.version,
        "type": endpoint.type,
        "public_text": _public_text(endpoint.is_public),
        "description": endpoint.description,
        "last_error": state.last_error if state is not None else None,
        "environment": _environment_text(endpoint, state),
        "docstring": endpoint.docstring,
        "schema": (
            json.dumps(endpoint.schema, indent=2, ensure_ascii=False) if endpoint.schema else None
        ),
        "changed": _Moment.of(endpoint.last_modified_time),
        "created": _Moment.of(endpoint.creation_time),
    }


def _environment_text(endpoint: Endpoint, state: LoadState | None) -> str | None:
    """The version's own environment and where its build is; None for the default one."""
    if endpoint.environment is None:
        return None
    text = endpoint.environment.summary()
    view = state.as_json().get("environment") if state is not None else None
    if isinstance(view, dict):
        text += f" ({view.get('message') or view.get('phase')})"
    return text


def _change(entry: AuditEntry) -> dict[str, Any]:
    """One row of the admins' "Recent changes" table; the template escapes every value."""
    what = entry.endpoint or entry.detail or ""
    if entry.endpoint is not None and entry.version is not None:
        what += f" version {entry.version}"
    return {
        "when": _Moment.of(entry.at / 1000),
        "principal": entry.principal,
        "action": entry.action,
        "what": what,
        "outcome": entry.outcome,
    }
