"""``GET /``: the status page for admins and analysts.

The page is rendered here, complete, so it reads fine without JavaScript; ``index.js`` only
adds the endpoint search, the theme switch and local times. Its stylesheet, script and icon
are package files served under ``/_tabpy/`` (:data:`ASSETS_PATH`), so it works offline, and the
Content-Security-Policy allows nothing else: no inline script or style, no other origin.

The page needs credentials like every route. The assets do not: they are the same bytes in
every installation and contain no data, as TabPy's static files are public too. A browser
that has just been asked for the page's password would otherwise fetch them with it anyway.

Secrets never appear: the page says which authentication is on, not with what, and the
registry URL is shown without its password.
"""

from __future__ import annotations

import datetime
import html
import json
import time
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tabpy import __version__
from tabpy.registry.endpoint import Endpoint
from tabpy.registry.store import display_url
from tabpy.runtime.catalog import LoadState, LoadStatus
from tabpy.server.context import ServerContext
from tabpy.server.responses import RawResponse

__all__ = [
    "ASSETS_DIRECTORY",
    "ASSETS_PATH",
    "CSP",
    "DOCS_DIRECTORY",
    "DOCUMENTATION_FILES",
    "Index",
]

#: Where the page's own files are served, below the server's Subdirectory.
ASSETS_PATH = "/_tabpy"
ASSETS_DIRECTORY = Path(__file__).resolve().parent.parent / "static"
#: The documentation, when tabpy runs from a source tree (served under ``/_tabpy/docs``).
DOCS_DIRECTORY = Path(__file__).resolve().parents[2] / "docs"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
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
_DOCS = (
    ("configuration.md", "Configuration reference"),
    ("service.md", "Running as a service"),
    ("nginx.md", "Behind nginx with TLS"),
    ("monitoring.md", "Monitoring: health, metrics, logs"),
    ("tableau.md", "Connecting Tableau"),
    ("migrating.md", "Migrating from TabPy"),
    ("troubleshooting.md", "Troubleshooting"),
)


#: What ``/_tabpy/docs/`` may serve: the pages above and the files they link.
DOCUMENTATION_FILES = frozenset([*(name for name, _ in _DOCS), "tabpy.service", "nginx-tabpy.conf"])


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h {minutes}m {secs}s" if days else f"{hours}h {minutes}m {secs}s"


def _time(timestamp: float) -> str:
    """A ``<time>`` in UTC; the script shows it in the reader's time zone."""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    machine = moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    return f'<time datetime="{machine}">{moment:%Y-%m-%d %H:%M:%S} UTC</time>'


def _public_text(is_public: object) -> str:
    if isinstance(is_public, bool):
        return "public" if is_public else "not public"
    return f"is_public: {_e(json.dumps(is_public))}"  # stored as the client sent it


class Index:
    def __init__(self, context: ServerContext) -> None:
        self.context = context
        self.docs = [(f, t) for f, t in _DOCS if (DOCS_DIRECTORY / f).is_file()]

    async def handle(self, request: Request) -> Response:
        body = self.render(request).encode("utf-8")
        return RawResponse(body, 200, "text/html; charset=utf-8", _HEADERS)

    # --- content -------------------------------------------------------------------------------

    def settings_rows(self, port: int) -> list[tuple[str, str]]:
        settings = self.context.settings
        pool = self.context.pool
        if settings.pwd_file is not None and settings.oauth_enabled:
            auth = "Basic (password file) and OAuth 2.0 bearer tokens"
        elif settings.pwd_file is not None:
            auth = "Basic (password file)"
        elif settings.oauth_enabled:
            auth = "OAuth 2.0 bearer tokens"
        else:
            auth = "off: anyone who can reach this port can run scripts"
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
            ("Authentication", auth),
            ("Ad-hoc scripts (/evaluate)", "on" if settings.evaluate_enabled else "off"),
            ("Script timeout", f"{settings.evaluate_timeout_text} s"),
            ("Workers", workers),
            ("Worker memory limit", memory),
            ("Maximum request size", f"{settings.max_request_size_mb} MB"),
            ("Gzip request bodies", "accepted" if settings.gzip_enabled else "refused"),
            ("State location", str(settings.state_path)),
            ("Registry", display_url(settings.registry_url)),
            ("Log format", settings.log_format),
            ("Call context logging", "on" if settings.log_details else "off"),
            (
                "Health checks",
                "public" if settings.health_checks_public else "need credentials",
            ),
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

    def render(self, request: Request) -> str:
        info = self.context.service_info
        server = request.scope.get("server")
        port = self.context.settings.port or (server[1] if server else 0)
        rows = "\n".join(
            f'<tr><th scope="row">{_e(k)}</th><td>{_e(v)}</td></tr>'
            for k, v in self.settings_rows(port)
        )
        catalog = self.context.catalog
        endpoints = sorted(catalog.endpoints.items())
        cards = "\n".join(
            self._endpoint_card(endpoint, catalog.states.get(name)) for name, endpoint in endpoints
        )
        document = json.dumps(self.endpoints_document(), indent=2, ensure_ascii=False)
        count = len(endpoints)
        description = info.description or "Analytics extension for Tableau"
        listing = (
            f'<div id="endpoint-list" class="cards">{cards}</div>'
            if count
            else '<p class="empty">No endpoints are deployed on this server yet. Deploy one '
            "with <code>tabpy.tabpy_tools.client.Client.deploy</code>.</p>"
        )
        return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{_e(info.name)}: tabpy {_e(__version__)}</title>
<link rel="icon" href="_tabpy/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="_tabpy/index.css">
<script src="_tabpy/index.js"></script>
</head>
<body>
<a class="skip" href="#endpoints">Skip to the endpoints</a>
<header class="top">
  <div class="brand">
    <img src="_tabpy/favicon.svg" alt="" width="40" height="40">
    <div>
      <h1>{_e(info.name)}</h1>
      <p class="sub">{_e(description)}</p>
    </div>
  </div>
  <button type="button" id="theme" class="ghost" hidden>Theme: automatic</button>
</header>
<main>
<nav aria-label="Server documents" class="links">
{self._links()}
</nav>
<section aria-labelledby="server-heading">
<h2 id="server-heading">Server</h2>
<table class="settings">{rows}</table>
</section>
<section id="endpoints" aria-labelledby="endpoints-heading">
<div class="section-head">
<h2 id="endpoints-heading">Deployed endpoints <span class="count">({count})</span></h2>
<div class="search" hidden>
<label for="search">Search endpoints</label>
<input type="search" id="search" placeholder="Name, description or docstring" autocomplete="off"
 aria-describedby="search-hint" aria-controls="endpoint-list">
<span id="search-hint" class="hint">Press <kbd>/</kbd> to search, <kbd>Esc</kbd> to clear.</span>
</div>
</div>
<p id="search-status" class="status-line" role="status" aria-live="polite"></p>
{listing}
<details class="json-view">
<summary>JSON view</summary>
<pre id="endpoints-json" tabindex="0">{_e(document)}</pre>
</details>
</section>
<section aria-labelledby="connect-heading">
<h2 id="connect-heading">Connecting Tableau</h2>
<p>In Tableau Desktop, open <em>Help &gt; Settings and Performance &gt; Manage Analytics
Extension Connection</em>, choose <em>TabPy</em>, and enter this server's host name and port
{_e(port)}{
            " with <em>Require SSL</em>"
            if self.context.settings.transfer_protocol == "https"
            else ""
        }. Tableau Server takes the same details through
<code>tsm security vizql-extsvc-ssl enable</code>.</p>
</section>
</main>
<footer><p>tabpy {_e(__version__)}, a drop-in replacement for TabPy 2.16.</p></footer>
</body>
</html>
"""

    def _links(self) -> str:
        links = [
            ("info", "/info", "server and feature information (Tableau's connection test)"),
            ("status", "/status", "load status of each endpoint"),
            ("endpoints", "/endpoints", "deployed endpoints as JSON"),
            ("metrics", "/metrics", "Prometheus metrics"),
            ("health", "/health", "liveness"),
            ("ready", "/ready", "readiness"),
        ]
        items = [
            f'<li><a href="{href}"><code>{_e(label)}</code></a> <span>{_e(text)}</span></li>'
            for href, label, text in links
        ]
        if self.docs:
            items += [f'<li><a href="_tabpy/docs/{f}">{_e(t)}</a></li>' for f, t in self.docs]
        else:
            items.append("<li>Documentation: the <code>docs/</code> folder of the source</li>")
        return "<ul>" + "\n".join(items) + "</ul>"

    def _endpoint_card(self, endpoint: Endpoint, state: LoadState | None) -> str:
        status = state.status if state else LoadStatus.IN_PROGRESS
        searchable = " ".join(
            (endpoint.name, endpoint.description, endpoint.docstring, endpoint.type)
        ).lower()
        badges = [
            f'<span class="badge {_STATUS_CLASS.get(status, "loading")}">'
            f"{_e(_STATUS_TEXT.get(status, status))}</span>",
            f'<span class="badge">version {_e(endpoint.version)}</span>',
            f'<span class="badge">{_e(endpoint.type)}</span>',
            f'<span class="badge">{_public_text(endpoint.is_public)}</span>',
        ]
        error = ""
        if state is not None and state.last_error:
            error = f'<p class="error"><strong>Last error:</strong> {_e(state.last_error)}</p>'
        schema = (
            f"<details><summary>Schema</summary><pre>"
            f"{_e(json.dumps(endpoint.schema, indent=2, ensure_ascii=False))}</pre></details>"
            if endpoint.schema
            else '<p class="muted">No schema.</p>'
        )
        description = _e(endpoint.description) or '<span class="muted">No description.</span>'
        changed, created = _time(endpoint.last_modified_time), _time(endpoint.creation_time)
        return f"""<article class="endpoint" data-search="{_e(searchable)}" \
data-name="{_e(endpoint.name)}">
<h3>{_e(endpoint.name)}</h3>
<p class="badges">{"".join(badges)}</p>
<p class="description">{description}</p>
{error}
<details><summary>Docstring</summary><pre>{_e(endpoint.docstring)}</pre></details>
{schema}
<p class="meta">Last changed {changed}; created {created}.</p>
</article>"""
