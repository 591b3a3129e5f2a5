"""The documentation under docs/ against the code it describes, so the two cannot drift."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tabpy.config import _KEYS
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
