"""The documentation under docs/ against the code it describes, so the two cannot drift."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # the test extra brings tomli there (through import-linter)
    import tomli as tomllib

from tabpy import DISTRIBUTION_NAME, __version__
from tabpy.arrow import INSTALL_HINT
from tabpy.config import _KEYS, load_settings
from tabpy.models.errors import INSTALL_COMMAND
from tabpy.server.index import _DOCS
from tests.components import SYSTEMD, missing

DOCS = Path(__file__).resolve().parents[2] / "docs"
ROW = re.compile(r"^\| `(TABPY_[A-Z0-9_]+)` \| ([^|]*) \| ([^|]*) \| ([^|]*) \|$", re.M)


def reference_rows() -> dict[str, tuple[str, str, str]]:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    return {
        m.group(1): (m.group(2).strip(), m.group(3).strip(), m.group(4)) for m in ROW.finditer(text)
    }


def test_configuration_reference_lists_every_key_once() -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    documented = [m.group(1) for m in ROW.finditer(text)]
    assert sorted(documented) == sorted(key.name for key in _KEYS)
    assert len(documented) == len(set(documented))


@pytest.mark.parametrize("key", _KEYS, ids=lambda key: key.name)
def test_documented_default_matches_the_code(key: object) -> None:
    default_cell, example_cell, meaning = reference_rows()[key.name]  # type: ignore[attr-defined]
    default = key.default  # type: ignore[attr-defined]
    assert example_cell and meaning.strip(), "every key needs an example and a description"
    if callable(default):
        return  # computed from other settings or the machine: described in words
    if default is None or default == ():
        assert default_cell == "unset"
        return
    value = default_cell.strip("`")
    if isinstance(default, bool):
        assert value == str(default).lower()
    elif isinstance(default, (int, float)):
        assert float(value) == float(default)
    else:
        assert value == default


def test_every_linked_page_exists() -> None:
    for path in [*DOCS.glob("*.md"), DOCS.parent / "README.md"]:
        text = path.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            assert (path.parent / target).exists(), f"{path.name} links to missing {target}"


def test_status_page_and_readme_link_the_admin_guides() -> None:
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    for name, _ in _DOCS:
        assert (DOCS / name).is_file()
        assert f"(docs/{name})" in readme


@pytest.mark.systemd
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        missing(SYSTEMD, "no systemd-analyze on PATH")
    unit = (DOCS / "tabpy.service").read_text(encoding="utf-8")
    assert "ExecStart=/opt/tabpy/venv/bin/tabpy --config /etc/tabpy/tabpy.conf" in unit
    # verify checks that the program exists: point it at this environment's tabpy.
    tabpy = Path(sys.executable).with_name("tabpy")
    if not tabpy.exists():
        missing(SYSTEMD, f"no tabpy command next to {sys.executable}")
    copy = tmp_path / "tabpy.service"
    copy.write_text(unit.replace("/opt/tabpy/venv/bin/tabpy", str(tabpy)), encoding="utf-8")
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    output = result.stdout + result.stderr
    if result.returncode != 0 and "Failed to" in output and "bus" in output.lower():
        missing(SYSTEMD, f"systemd-analyze cannot run here: {output.strip()}")
    assert result.returncode == 0, output
    assert str(copy) not in output, output  # no warnings about lines of the unit


# --- install commands and the distribution's name ------------------------------------------------

ROOT = DOCS.parent
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
PIP_INSTALL = re.compile(r"\bpip3?\s+install\b([^\n`]*)")
# Options of pip install that take a value, so that the value is not read as a requirement.
_VALUED = frozenset(
    {"-r", "-c", "-e", "-i", "-f", "-t", "--target", "--index-url", "--constraint",
     "--requirement", "--extra-index-url", "--find-links", "--editable"}
)  # fmt: skip
REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9._-]+|\.|[./~][^\[]*)(?:\[(?P<extras>[^\]]*)\])?")


def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def install_commands() -> list[tuple[str, str]]:
    """``(page, requirement)`` for every requirement of every ``pip install`` in the docs."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8").replace("\\\n", " ")
        for match in PIP_INSTALL.finditer(text):
            command = re.split(r"\s#|&&|\|\||;|\|", match.group(1))[0]
            words = iter(shlex.split(command))
            for word in words:
                if word in _VALUED:
                    next(words, None)
                elif not word.startswith("-"):
                    found.append((page.name, word))
    return found


def test_docs_show_install_commands() -> None:
    requirements = {requirement for _, requirement in install_commands()}
    assert ".[models]" in requirements and f"{DISTRIBUTION_NAME}[models]" in requirements


@pytest.mark.parametrize(("page", "requirement"), install_commands())
def test_install_commands_install_this_project(page: str, requirement: str) -> None:
    """Never upstream TabPy: every requirement is a checkout, ``tabpyx`` or another library."""
    match = REQUIREMENT.match(requirement)
    assert match, f"{page}: cannot read requirement {requirement!r}"
    local = match.group("name").startswith((".", "/", "~"))  # a checkout or a wheel
    name = re.sub(r"[-_.]+", "-", match.group("name")).lower()
    assert local or name != "tabpy", f"{page}: {requirement!r} installs Tableau's TabPy"
    extras = match.group("extras")
    if extras is not None:
        assert local or name == DISTRIBUTION_NAME, f"{page}: extras of another project"
        optional = pyproject()["project"]["optional-dependencies"]  # type: ignore[index]
        for extra in extras.split(","):
            assert extra.strip() in optional, f"{page}: {requirement!r} names no known extra"


def test_no_page_or_message_refers_to_tabpy_extras() -> None:
    pattern = re.compile(r"\btabpy\[")
    sources = [*PAGES, ROOT / "pyproject.toml", *sorted((ROOT / "tabpy").rglob("*.py"))]
    offenders = [
        str(path.relative_to(ROOT)) for path in sources if pattern.search(path.read_text())
    ]
    assert offenders == []


def test_distribution_name_and_version_have_one_source() -> None:
    project = pyproject()["project"]
    assert project["name"] == DISTRIBUTION_NAME  # type: ignore[index]
    assert project["dynamic"] == ["version"]  # type: ignore[index]
    dynamic = pyproject()["tool"]["setuptools"]["dynamic"]  # type: ignore[index]
    assert dynamic["version"] == {"attr": "tabpy.__version__"}
    test_extra = project["optional-dependencies"]["test"]  # type: ignore[index]
    own = [r for r in test_extra if r.split("[")[0].lower() in ("tabpy", DISTRIBUTION_NAME)]
    assert own and all(r.startswith(f"{DISTRIBUTION_NAME}[") for r in own)


def test_version_is_semver_and_pep440_alike() -> None:
    """pip normalises PEP 440 versions; one that is also SemVer reads the same everywhere."""
    semver = r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?"
    assert re.fullmatch(semver, __version__)
    version = pytest.importorskip("packaging.version")
    assert str(version.Version(__version__)) == __version__


def test_install_hints_in_messages_name_the_distribution() -> None:
    hints = (INSTALL_COMMAND, INSTALL_HINT)
    assert hints == (
        f"pip install '{DISTRIBUTION_NAME}[models]'",
        f"pip install '{DISTRIBUTION_NAME}[arrow]'",
    )


def test_timeout_message_is_quoted_as_the_server_words_it() -> None:
    """The 408 says "30 s" with the default and "30.0 s" once set; the README says both."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    default = load_settings(None, {"TABPY_STATE_PATH": str(ROOT)}).evaluate_timeout_text
    configured = load_settings(
        None, {"TABPY_STATE_PATH": str(ROOT), "TABPY_EVALUATE_TIMEOUT": "30"}
    ).evaluate_timeout_text
    assert f"Timeout is set to {default} s." in readme
    assert f"`{configured} s` once" in readme


def test_readme_creates_etc_tabpy_before_using_it() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_use = readme.index("/etc/tabpy/")
    assert 'install -d -o "$USER" /etc/tabpy' in readme[:first_use]
