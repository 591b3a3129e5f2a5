"""The status page at ``/``: its HTTP contract, and a real headless Chromium using it."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import Browser
from deploy_support import client_for, deploy_raw
from live_server import ServerProcess, running_server, state_ini, wait_for
from security_support import basic, password_line

from tabpy.server.index import CSP

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
USER, PASSWORD = "alice", "P@ssw0rd"
ALICE = basic(USER, PASSWORD)
ASSETS = ("/_tabpy/index.css", "/_tabpy/index.js", "/_tabpy/favicon.svg")


def add(x: list[float], y: list[float]) -> list[float]:
    """Adds two columns elementwise."""
    return [a + b for a, b in zip(x, y, strict=True)]


def sentiment_score(texts: list[str]) -> list[float]:
    """Scores each text from -1 (negative) to 1 (positive)."""
    return [0.0 for _ in texts]


def clean_text(texts: list[str]) -> list[str]:
    """Lowercases and strips punctuation."""
    return [t.lower() for t in texts]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("users")
    pwd_file = directory / "passwords.txt"
    pwd_file.write_text(password_line(USER, PASSWORD), encoding="utf-8")
    with running_server(
        tmp_path_factory.mktemp("server"),
        {"TABPY_PWD_FILE": str(pwd_file), "TABPY_WORKERS": "1"},
        state_ini=state_ini({"Name": "Team Analytics", "Description": "Models for the sales team"}),
        client={"auth": (USER, PASSWORD)},
    ) as running:
        client = client_for(running)
        client.set_credentials(USER, PASSWORD)
        client.deploy("add", add, "Adds two columns", override=True)
        client.deploy("sentiment_score", sentiment_score, "Sentiment of short texts", override=True)
        client.deploy("clean_text", clean_text, "Normalises text <b>safely</b>", override=True)
        deploy_raw(running.http, "broken", b"not a pickle", description="Never loads")
        wait_for(
            lambda: (
                running.http.get("/status").json().get("broken", {}).get("status") == "LoadFailed"
            ),
            30,
            "the broken endpoint's load check",
        )
        yield running


def test_page_needs_credentials_and_its_assets_do_not(server: ServerProcess) -> None:
    assert server.http.get("/", auth=None).status_code == 401
    for asset in ASSETS:
        response = server.http.get(asset, auth=None)
        assert response.status_code == 200, asset
        assert response.headers["content-type"].split(";")[0] in (
            "text/css",
            "text/javascript",
            "image/svg+xml",
        )


def test_page_is_complete_without_scripts(server: ServerProcess) -> None:
    response = server.http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["Content-Security-Policy"] == CSP
    assert response.headers["Cache-Control"] == "no-store"
    page = response.text
    assert "<h1>Team Analytics</h1>" in page
    for name in ("add", "sentiment_score", "clean_text", "broken"):
        assert f"<h3>{name}</h3>" in page
    assert "Normalises text &lt;b&gt;safely&lt;/b&gt;" in page  # escaped, never markup
    assert "Last error:" in page and "load failed" in page
    assert "Adds two columns elementwise." in page  # the docstring
    for link in ('href="info"', 'href="status"', 'href="metrics"', 'href="_tabpy/docs/'):
        assert link in page
    # Strict CSP: no inline script or style anywhere.
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)
    assert "<style" not in page and " style=" not in page
    assert PASSWORD not in page


def test_json_view_has_every_endpoint_with_its_status(server: ServerProcess) -> None:
    page = server.http.get("/").text
    raw = re.search(r'<pre id="endpoints-json" tabindex="0">(.*?)</pre>', page, re.S)
    assert raw is not None
    document = json.loads(html.unescape(raw.group(1)))
    assert sorted(document) == ["add", "broken", "clean_text", "sentiment_score"]
    assert document["add"]["status"] == "LoadSuccessful"
    assert document["broken"]["status"] == "LoadFailed" and document["broken"]["last_error"]
    assert document["add"]["docstring"] == "Adds two columns elementwise."


def test_documentation_is_served_as_text_and_nothing_else(server: ServerProcess) -> None:
    page = server.http.get("/_tabpy/docs/monitoring.md", auth=None)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/plain; charset=utf-8"
    assert page.text.startswith("# Monitoring")
    assert server.http.get("/_tabpy/docs/tabpy.service", auth=None).status_code == 200
    for other in ("/_tabpy/docs/", "/_tabpy/docs/../README.md", "/_tabpy/docs/models.md"):
        assert server.http.get(other, auth=None).status_code == 404, other


def test_script_builds_no_markup_from_strings(server: ServerProcess) -> None:
    script = server.http.get("/_tabpy/index.js").text
    for forbidden in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert forbidden not in script


def test_page_works_under_a_subdirectory(tmp_path: Path) -> None:
    with running_server(
        tmp_path,
        {"TABPY_WORKERS": "1"},
        warm=False,
        state_ini=state_ini({"Subdirectory": "analytics"}),
    ) as running:
        page = running.http.get("/analytics/").text
        for asset in ASSETS:
            assert f'"{asset[1:]}"' in page  # relative, so it resolves below the prefix
            assert running.http.get(f"/analytics{asset}").status_code == 200


@pytest.mark.chromium
def test_a_browser_shows_searches_and_themes_the_page(server: ServerProcess) -> None:
    browser = Browser()
    try:
        browser.send("Network.enable")
        browser.send("Network.setExtraHTTPHeaders", {"headers": {"Authorization": ALICE}})
        browser.prefer_dark(False)
        browser.open(server.url + "/")

        assert browser.evaluate("document.querySelector('h1').innerText") == "Team Analytics"
        visible = "Array.from(document.querySelectorAll('.endpoint')).filter(e => e.offsetParent)"
        names = f"{visible}.map(e => e.dataset.name)"
        assert browser.evaluate(names) == ["add", "broken", "clean_text", "sentiment_score"]
        body = browser.evaluate("document.body.innerText")
        assert "Models for the sales team" in body
        assert "Version" in body and "Workers" in body and "1 of 1 ready" in body
        assert "load failed" in body and "Last error:" in body
        assert (
            browser.evaluate("getComputedStyle(document.querySelector('.search')).display")
            != "none"
        )
        browser.screenshot(ARTIFACTS / "status-page-light.png")

        # Keyboard: the first Tab reaches the skip link; "/" jumps to the search box.
        browser.press("Tab", "Tab", 9)
        assert browser.evaluate("document.activeElement.className") == "skip"
        browser.press("/", "Slash", 191)
        assert browser.evaluate("document.activeElement.id") == "search"
        browser.type("senti")
        browser.wait_for(f"{names}.length === 1", "the search to filter")
        assert browser.evaluate(names) == ["sentiment_score"]
        status = "document.getElementById('search-status').innerText"
        assert browser.evaluate(status) == "Showing 1 of 4 endpoints."
        json_view = "Object.keys(JSON.parse(document.getElementById('endpoints-json').textContent))"
        assert browser.evaluate(json_view) == ["sentiment_score"]
        browser.screenshot(ARTIFACTS / "status-page-search.png")

        browser.type("zzz")
        browser.wait_for(f"{names}.length === 0", "no match")
        assert browser.evaluate(status) == "No endpoint matches \u201csentizzz\u201d."
        browser.press("Escape", "Escape", 27)
        browser.wait_for(f"{names}.length === 4", "Escape to clear the search")
        assert len(browser.evaluate(json_view)) == 4

        # Theme: automatic (light here) -> light -> dark, remembered across a reload.
        background = "getComputedStyle(document.body).backgroundColor"
        light = browser.evaluate(background)
        browser.evaluate("document.getElementById('theme').click()")
        browser.evaluate("document.getElementById('theme').click()")
        assert browser.evaluate("document.documentElement.dataset.theme") == "dark"
        assert browser.evaluate(background) != light
        browser.open(server.url + "/")
        assert browser.evaluate("document.documentElement.dataset.theme") == "dark"
        assert browser.evaluate("document.getElementById('theme').innerText") == "Theme: dark"
        browser.screenshot(ARTIFACTS / "status-page-dark.png")

        assert browser.problems() == []  # no CSP violation, no script error
    finally:
        browser.close()
    assert (ARTIFACTS / "status-page-light.png").stat().st_size > 10_000
