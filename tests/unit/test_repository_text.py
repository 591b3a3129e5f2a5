"""The repository stands on its own: no references to documents outside it, no machine paths.

A reader of the code, tests, benchmark or docs must be able to follow every reference from the
repository alone. So the text may not cite the behaviour notes that live outside it (by their
upper-case name), nor paths that exist on one machine only.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Written in pieces so that this file does not match itself.
FORBIDDEN = {
    "a reference to the external behaviour notes": re.compile("SP" + "EC"),
    "a machine path": re.compile("/wo" + "rk/|[.][.]/sha" + "red|/ro" + "ot/|/ho" + "me/[a-z]"),
}
TEXT_SUFFIXES = {"", ".py", ".md", ".toml", ".conf", ".service", ".ini", ".cfg", ".txt", ".sh"}
TEXT_SUFFIXES |= {".html", ".css", ".js", ".json", ".svg", ".yml", ".yaml"}
#: Generated or downloaded, never committed (see .gitignore).
SKIPPED_DIRECTORIES = {"__pycache__", "artifacts", ".ref-venv", ".work"}

PLACES = [
    "tests",
    "bench",
    "docs",
    "scripts",
    ".ci",
    "README.md",
    "pyproject.toml",
    "tabpy",
    "deploy",
]


def text_files(place: Path) -> list[Path]:
    if place.is_file():
        return [place]
    return sorted(
        path
        for path in place.rglob("*")
        if path.is_file()
        and path.suffix in TEXT_SUFFIXES
        and not SKIPPED_DIRECTORIES & set(path.relative_to(place).parts)
    )


@pytest.mark.parametrize("place", PLACES)
def test_no_outside_references(place: str) -> None:
    files = text_files(ROOT / place)
    assert files, f"nothing to check under {place}"
    found = []
    for path in files:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        for number, line in enumerate(lines, 1):
            for what, pattern in FORBIDDEN.items():
                if pattern.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {what}: {line.strip()}")
    assert not found, "\n".join(found)
