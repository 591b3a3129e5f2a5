"""The status page at ``/``: its HTTP contract, a real headless Chromium using it, and its
documentation links served from an installed wheel."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import Browser
from deploy_support import client_for, deploy_raw
from live_server import ServerProcess, clean_environment, running_server, state_ini, wait_for
from security_support import basic, password_line

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
USER, PASSWORD = "alice", "P@ssw0rd"
ALICE = basic(USER, PASSWORD)
ICON = "/_tabpy/favicon.svg"


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


def inline(page: str, tag: str) -> str:
    """The text of the page's one ``<tag>`` element (plain, without attributes)."""
    elements = re.findall(rf"<{tag}>(.*?)</{tag}>", page, re.S)
    assert len(elements) == 1, elements
    return elements[0]


def csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_page_needs_credentials_and_its_icon_does_not(server: ServerProcess) -> None:
    assert server.http.get("/", auth=None).status_code == 401
    response = server.http.get(ICON, auth=None)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    # The style and script are in the page now, not separate files.
    for former in ("/_tabpy/index.css", "/_tabpy/index.js"):
        assert server.http.get(former, auth=None).status_code == 404


def test_page_is_complete_and_allows_only_its_own_inline_code(server: ServerProcess) -> None:
    response = server.http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    page = response.text
    assert "<h1>Team Analytics</h1>" in page
    for name in ("add", "sentiment_score", "clean_text", "broken"):
        assert f"<h3>{name}</h3>" in page
    assert "Normalises text &lt;b&gt;safely&lt;/b&gt;" in page  # escaped, never markup
    assert "Last error:" in page and "load failed" in page
    assert "Adds two columns elementwise." in page  # the docstring
    assert "need credentials, like every route" in page  # a password file is in use
    for link in ('href="info"', 'href="status"', 'href="metrics"', 'href="_tabpy/docs/'):
        assert link in page
    # What TabPy's own page tests require: plain inline elements, no separate style or script.
    assert "<style>" in page and "<script>" in page
    assert "styles.css" not in page and "app.js" not in page
    assert not re.search(r"<script[^>]*\bsrc=", page) and " style=" not in page
    # And a strict policy: exactly those two texts, by hash; nothing inline by permission.
    policy = response.headers["Content-Security-Policy"]
    assert f"script-src {csp_hash(inline(page, 'script'))};" in policy
    assert f"style-src {csp_hash(inline(page, 'style'))};" in policy
    assert "'unsafe-inline'" not in policy and "default-src 'none'" in policy
    assert f"script-src {csp_hash(inline(page, 'script'))};" in page  # the <meta> copy
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
    script = inline(server.http.get("/").text, "script")
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
        assert f'"{ICON[1:]}"' in page  # relative, so it resolves below the prefix
        assert running.http.get(f"/analytics{ICON}").status_code == 200
        docs = re.findall(r'href="(_tabpy/docs/[^"]+)"', page)
        assert docs and running.http.get(f"/analytics/{docs[0]}").status_code == 200


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


# What the wheel test runs, outside this checkout: the installed package's page and its links.
_SERVE_FROM_WHEEL = """
import json, re, sys
from pathlib import Path
import tabpy
from starlette.testclient import TestClient
from tabpy.config import load_settings
from tabpy.server.app import create_app
from tabpy.cli.wiring import build_context

site, state = Path(sys.argv[1]), sys.argv[2]
assert Path(tabpy.__file__).is_relative_to(site), tabpy.__file__
context = build_context(load_settings(None, {"TABPY_STATE_PATH": state, "TABPY_WORKERS": "1"}))
client = TestClient(create_app(context))
page = client.get("/").text
result = {}
for link in re.findall(r'href="(_tabpy/docs/[^"]+)"', page):
    reply = client.get("/" + link)
    result[link] = [reply.status_code, reply.text[:60]]
context.auth.close()
print(json.dumps(result))
"""


def test_documentation_links_work_from_an_installed_wheel(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy, so the build leaves nothing in this checkout
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes((ROOT / name).read_bytes())
    for folder in ("tabpy", "docs"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                target = source / path.relative_to(ROOT)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes())
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr  # needs setuptools>=77 here (the test extra)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    shipped = {name.removeprefix("tabpy/docs/") for name in names if name.startswith("tabpy/docs/")}
    assert shipped == {p.name for p in (ROOT / "docs").iterdir() if p.is_file()}
    assert {"tabpy/templates/index.html", "tabpy/static/favicon.svg"} <= names

    environment = {k: v for k, v in clean_environment().items() if k != "PYTHONPATH"}
    environment["PYTHONPATH"] = str(tmp_path / "site")
    (tmp_path / "state").mkdir()
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_SERVE_FROM_WHEEL)]
        + [str(tmp_path / "site"), str(tmp_path / "state")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # not this checkout, whose tabpy would shadow the wheel's
        env=environment,
    )
    assert run.returncode == 0, run.stderr
    served = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(served) == 8, served
    for link, (status, text) in served.items():
        assert status == 200 and text.startswith("# "), (link, status, text)
