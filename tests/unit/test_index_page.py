"""The status page in-process: its inline style and script, the policy that allows them by hash,
autoescaping of everything users and admins typed, and the documentation it links."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from tabpy.cli.wiring import build_context
from tabpy.config import Settings, load_settings
from tabpy.registry.endpoint import Endpoint
from tabpy.runtime.catalog import LoadState
from tabpy.server.app import create_app
from tabpy.server.context import ServerContext
from tabpy.server.index import Index, PageAssets, health_checks_text

HOSTILE = "<script>alert(1)</script>"
STATE_INI = f"""\
[Service Info]
Name = {HOSTILE}
Description = Models & <b>more</b> "quoted"
Creation Time = 0

[Meta]
Revision Number = 1
"""


def endpoint(name: str, description: str, docstring: str = "", schema: Any = None) -> Endpoint:
    return Endpoint(
        name,
        "model",
        2,
        description,
        docstring,
        schema,
        True,
        [],
        None,
        1_700_000_000,
        1_700_000_100,
    )


@pytest.fixture
def context(tmp_path: Path) -> Iterator[ServerContext]:
    """A real server context (registry, unstarted pool) with two endpoints in its catalog."""
    (tmp_path / "state.ini").write_text(STATE_INI, encoding="utf-8")
    settings = load_settings(None, {"TABPY_STATE_PATH": str(tmp_path), "TABPY_WORKERS": "1"})
    context = build_context(settings)
    catalog = context.catalog
    catalog.endpoints["add"] = endpoint(
        "add", f"Adds {HOSTILE}", "Doc <img src=x onerror=alert(2)>", {"input": "<i>x</i>"}
    )
    catalog.endpoints["broken"] = endpoint("broken", "")
    catalog.states["add"] = LoadState(2, "model", "LoadSuccessful")
    catalog.states["broken"] = LoadState(2, "model", "LoadFailed", f"Load failed: {HOSTILE}")
    yield context
    context.auth.close()


@pytest.fixture
def client(context: ServerContext) -> TestClient:
    """The whole application, without its lifespan: the catalog keeps what the test put in."""
    return TestClient(create_app(context))


def inline(page: str, tag: str) -> str:
    elements = re.findall(rf"<{tag}>(.*?)</{tag}>", page, re.S)
    assert len(elements) == 1, f"expected one <{tag}> element, found {len(elements)}"
    return elements[0]


def csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for directive in policy.split(";"):
        name, *sources = directive.split()
        parsed[name] = sources
    return parsed


def test_style_and_script_are_inline_plain_elements(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    page = response.text
    assert "<style>" in page and "<script>" in page  # no attributes at all, not even a nonce
    assert "setUpSearch" in inline(page, "script") and "--accent" in inline(page, "style")
    assert "styles.css" not in page and "app.js" not in page
    assert not re.search(r"<script[^>]*\bsrc=|<link[^>]*stylesheet", page)
    assert set(re.findall(r'\bsrc="([^"]+)"', page)) == {"_tabpy/favicon.svg"}  # the icon only


def test_policy_allows_exactly_the_served_inline_text(client: TestClient) -> None:
    response = client.get("/")
    page = response.text
    header = directives(response.headers["Content-Security-Policy"])
    assert header["script-src"] == [csp_hash(inline(page, "script"))]
    assert header["style-src"] == [csp_hash(inline(page, "style"))]
    assert header["default-src"] == ["'none'"] and header["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]
    # The same policy travels inside the page (minus what a <meta> policy may not carry).
    meta = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page)
    assert meta is not None
    assert directives(meta.group(1)) == {k: v for k, v in header.items() if k != "frame-ancestors"}
    assert page.index("Content-Security-Policy") < page.index("<script>")  # applies to it
    # As TabPy's page test finds it: the first <script>'s hash right after "script-src ".
    assert f"script-src {csp_hash(inline(page, 'script'))}" in page


def test_hostile_service_info_and_endpoint_text_is_escaped(client: TestClient) -> None:
    page = client.get("/").text
    assert page.count("<script") == 1  # only ours
    assert "<img src=x" not in page and "<i>x</i>" not in page and "<b>more</b>" not in page
    escaped = html.escape(HOSTILE)
    assert f"<h1>{escaped}</h1>" in page
    assert f"<title>{escaped}: tabpy" in page
    assert "Models &amp; &lt;b&gt;more&lt;/b&gt; &#34;quoted&#34;" in page
    assert f'<p class="description">Adds {escaped}</p>' in page
    assert f"<strong>Last error:</strong> Load failed: {escaped}</p>" in page
    assert f'data-search="add adds {html.escape(HOSTILE.lower())} doc' in page
    # The JSON view is text too, and still parses back to what /endpoints says.
    raw = re.search(r'<pre id="endpoints-json" tabindex="0">(.*?)</pre>', page, re.S)
    assert raw is not None
    document = json.loads(html.unescape(raw.group(1)))
    assert document["add"]["description"] == f"Adds {HOSTILE}"
    assert document["broken"]["last_error"] == f"Load failed: {HOSTILE}"


def test_page_keeps_every_piece_of_information(client: TestClient) -> None:
    page = client.get("/").text
    for label in (
        "Version", "Uptime", "Listening on", "Authentication", "Ad-hoc scripts (/evaluate)",
        "Script timeout", "Workers", "Environment pools", "Worker memory limit",
        "Maximum request size",
        "Gzip request bodies", "State location", "Instance", "Registry", "Log format",
        "Call context logging", "Health checks",
    ):  # fmt: skip
        assert f'<th scope="row">{label}</th>' in page, label
    assert 'Deployed endpoints <span class="count">(2)</span>' in page
    assert '<span class="badge ok">loaded</span>' in page
    assert '<span class="badge failed">load failed</span>' in page
    assert '<span class="muted">No description.</span>' in page  # "broken" has none
    assert "&#34;input&#34;: &#34;&lt;i&gt;x&lt;/i&gt;&#34;" in page  # the schema, as JSON text
    assert '<time datetime="2023-11-14T22:13:20Z">2023-11-14 22:13:20 UTC</time>' in page
    for href in ("info", "status", "endpoints", "metrics", "health", "ready"):
        assert f'<a href="{href}">' in page


def test_documentation_links_are_served(client: TestClient) -> None:
    page = client.get("/").text
    links = re.findall(r'href="(_tabpy/docs/[^"]+)"', page)
    assert len(links) == 8
    for link in links:
        document = client.get("/" + link)
        assert document.status_code == 200, link
        assert document.headers["content-type"] == "text/plain; charset=utf-8"
        assert document.text.startswith("# ")
    assert client.get("/_tabpy/docs/tabpy.service").status_code == 200
    assert client.get("/_tabpy/docs/models.md").status_code == 404  # not in the allowed set


def test_template_is_compiled_once_not_per_request(
    context: ServerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = Index(context)
    app = TestClient(Starlette(routes=[Route("/", page.handle)]))
    assert app.get("/").status_code == 200  # the first page compiles it

    def compile_again(*args: object, **kwargs: object) -> None:
        raise AssertionError("the template was compiled again while serving a request")

    monkeypatch.setattr(jinja2.Environment, "compile", compile_again)
    assert app.get("/").status_code == 200
    assert app.get("/").status_code == 200


@pytest.mark.parametrize("part", ["style", "script"])
def test_inline_text_that_would_end_its_element_is_refused(part: str) -> None:
    assets = PageAssets.load()
    with pytest.raises(ValueError, match=f"</{part}"):
        changes: dict[str, Any] = {part: f"a = '</{part.upper()} >';"}
        dataclasses.replace(assets, **changes)


def settings_with(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, **changes)


@pytest.mark.parametrize("public", [False, True])
def test_health_checks_are_open_while_authentication_is_off(
    context: ServerContext, public: bool
) -> None:
    settings = settings_with(context.settings, health_checks_public=public)
    assert health_checks_text(settings).startswith("open to anyone")
    assert "credentials" not in health_checks_text(settings)


@pytest.mark.parametrize(
    "auth",
    [
        {"pwd_file": Path("/p")},
        {"oauth_enabled": True},
        {"pwd_file": Path("/p"), "oauth_enabled": True},
    ],
)
def test_health_checks_wording_when_authentication_is_on(
    context: ServerContext, auth: dict[str, Any]
) -> None:
    closed = settings_with(context.settings, health_checks_public=False, **auth)
    assert health_checks_text(closed) == "need credentials, like every route"
    opened = settings_with(context.settings, health_checks_public=True, **auth)
    assert health_checks_text(opened).startswith("open without credentials")


def test_page_states_the_health_check_wording(context: ServerContext) -> None:
    page = TestClient(Starlette(routes=[Route("/", Index(context).handle)])).get("/").text
    assert (
        '<th scope="row">Health checks</th><td>open to anyone, as every route is while '
        "authentication is off</td>" in page
    )
    assert "need credentials" not in page


def test_page_shows_a_registry_outage_as_degraded(
    context: ServerContext, client: TestClient
) -> None:
    context.catalog.registry_reachable = False
    page = client.get("/").text
    assert "unavailable; serving the endpoints loaded before (degraded)" in page


def test_the_fleet_members_are_listed_with_what_each_loaded(
    context: ServerContext, client: TestClient
) -> None:
    from tabpy.registry.members import Loaded, Member, now_ms

    assert "Fleet members" not in client.get("/").text  # a lone instance: as before
    assert context.fleet is not None
    now = now_ms()
    me = context.fleet.instance_id
    context.fleet.members = [
        Member(
            me,
            "http://me:47112",
            None,
            "3.0.0",
            now,
            now,
            Loaded(3, {"add": (2, "LoadSuccessful")}),
        ),
        Member(
            "web-<2>",
            "http://web-2:47112",
            "grpc+tcp://web-2:47113",
            "3.0.0",
            now,
            now - 2500,
            Loaded(3, {"add": (2, "LoadInProgress"), "broken": (2, "LoadFailed")}),
        ),
    ]
    page = client.get("/").text
    assert "Fleet members <span" in page
    assert f"{html.escape(me)} (this one)" in page
    assert "web-&lt;2&gt;" in page and "web-<2>" not in page
    assert "0 of 2 endpoints loaded" in page and "1 of 1 endpoints loaded" in page
    assert "last heartbeat 2.5 s ago" in page and "Flight grpc+tcp://web-2:47113" in page
