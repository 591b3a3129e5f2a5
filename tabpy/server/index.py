"""``GET /``: a small, self-contained status page for admins and analysts.

Rendered on the server with no scripts and no external assets, so it works
offline and under a strict Content-Security-Policy.  It never shows secrets:
only whether authentication is on, not how.
"""

from __future__ import annotations

import base64
import hashlib
import html
import time

from starlette.requests import Request
from starlette.responses import Response

from tabpy import __version__
from tabpy.server.context import ServerContext
from tabpy.server.responses import RawResponse

_STYLE = """
:root { color-scheme: light dark; --bg: #fafafa; --fg: #1d1d1f; --muted: #5f6368;
  --card: #ffffff; --line: #e0e0e0; --accent: #1f6feb; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #111418; --fg: #e8eaed; --muted: #9aa0a6; --card: #1b1f24;
    --line: #30363d; --accent: #58a6ff; }
}
body { margin: 0; font: 15px/1.5 system-ui, sans-serif; background: var(--bg); color: var(--fg); }
main { max-width: 60rem; margin: 0 auto; padding: 2rem 1rem; }
h1 { margin: 0 0 .25rem; font-size: 1.6rem; }
h2 { font-size: 1.1rem; margin: 2rem 0 .5rem; }
p.sub { margin: 0; color: var(--muted); }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: .5rem 1rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { color: var(--muted); font-weight: 600; width: 16rem; }
tr:last-child th, tr:last-child td { border-bottom: 0; }
a { color: var(--accent); }
a:focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; }
code { font: 13px ui-monospace, monospace; }
"""


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
    return f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'self'"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h {minutes}m {secs}s" if days else f"{hours}h {minutes}m {secs}s"


class Index:
    def __init__(self, context: ServerContext) -> None:
        self.context = context
        self.headers = {"Content-Security-Policy": _csp(), "Cache-Control": "no-store"}

    def settings_rows(self) -> list[tuple[str, str]]:
        settings = self.context.settings
        pool = self.context.pool
        if settings.pwd_file is not None and settings.oauth_enabled:
            auth = "Basic and OAuth 2.0 (JWT)"
        elif settings.pwd_file is not None:
            auth = "Basic (password file)"
        elif settings.oauth_enabled:
            auth = "OAuth 2.0 (JWT)"
        else:
            auth = "off"
        memory = (
            f"{settings.worker_memory_limit_mb} MB per worker"
            if settings.worker_memory_limit_mb
            else "unlimited"
        )
        return [
            ("Version", __version__),
            ("Uptime", _duration(time.time() - self.context.started_at)),
            (
                "Listening on",
                f"{settings.transfer_protocol}://{settings.bind_address}:{settings.port}",
            ),
            ("Authentication", auth),
            ("Ad-hoc scripts (/evaluate)", "enabled" if settings.evaluate_enabled else "disabled"),
            ("Script timeout", f"{settings.evaluate_timeout_text} s"),
            ("Workers", f"{pool.ready_workers} ready of {pool.size}"),
            ("Worker memory limit", memory),
            ("Maximum request size", f"{settings.max_request_size_mb} MB"),
            ("Gzip request bodies", "accepted" if settings.gzip_enabled else "not accepted"),
            ("State location", str(settings.state_path)),
        ]

    def render(self) -> str:
        info = self.context.service_info
        rows = "\n".join(
            f"<tr><th scope=row>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in self.settings_rows()
        )
        description = (
            html.escape(info.description) if info.description else "Tableau analytics extension"
        )
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(info.name)}</title><style>{_STYLE}</style></head>
<body><main>
<h1>{html.escape(info.name)}</h1>
<p class="sub">{description}</p>
<h2 id="settings">Server</h2>
<section aria-labelledby="settings"><table>{rows}</table></section>
<h2 id="endpoints">Deployed endpoints</h2>
<section aria-labelledby="endpoints"><p>No endpoints are deployed on this server.</p></section>
<h2 id="links">Links</h2>
<section aria-labelledby="links"><ul>
<li><a href="info"><code>info</code></a>: the document Tableau reads to test the connection</li>
<li>Tableau Desktop: Help &gt; Settings and Performance &gt; Manage Analytics Extension
Connection, then choose TabPy and enter this host and port {self.context.settings.port}.</li>
</ul></section>
</main></body></html>
"""

    async def handle(self, request: Request) -> Response:
        return RawResponse(
            self.render().encode("utf-8"), 200, "text/html; charset=utf-8", self.headers
        )
