"""The import rules of the architecture (the contracts in ``pyproject.toml``) hold.

Each contract is checked on its own, so a report names the rule that broke. ``lint-imports``
prints the offending import chains; pytest shows them with the failure.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # import-linter depends on tomli there
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
CONTRACTS = [
    contract["id"]
    for contract in tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]
]


def test_every_contract_is_named_once() -> None:
    assert CONTRACTS and len(CONTRACTS) == len(set(CONTRACTS))


@pytest.mark.parametrize("contract", CONTRACTS)
def test_import_contract_holds(contract: str) -> None:
    from importlinter.cli import lint_imports

    # no_cache: the cache would be written into the working directory.
    assert (
        lint_imports(config_filename=str(PYPROJECT), limit_to_contracts=(contract,), no_cache=True)
        == 0
    )
