"""Import rules of the authentication layers: the core knows no transport.

``tabpy.security`` (who is calling) is used by HTTP and Arrow Flight, so it imports neither;
``tabpy.arrow`` reaches authentication through ``tabpy.security``, never through HTTP.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "tabpy"


def imported_modules(path: Path) -> set[str]:
    """Every absolute module a file imports, at any level (``TYPE_CHECKING`` blocks too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [("security", ("tabpy.server", "tabpy.arrow")), ("arrow", ("tabpy.server",))],
)
def test_layer_does_not_import(layer: str, forbidden: tuple[str, ...]) -> None:
    files = sorted((PACKAGE / layer).rglob("*.py"))
    assert files
    offenders = [
        f"{path.relative_to(PACKAGE)} imports {module}"
        for path in files
        for module in sorted(imported_modules(path))
        if any(module == prefix or module.startswith(prefix + ".") for prefix in forbidden)
    ]
    assert offenders == []
