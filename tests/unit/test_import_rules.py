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

# The refactor of issue 10 removes these; until then the rule is written down and known broken.
# strict: the day a contract holds, its test fails until the mark is removed, so it stays enforced.
BROKEN_TODAY = {
    "layers": "arrow imports server (principal, auth) and server wires arrow in runner/context",
    "core-without-transports": "runtime.worker imports arrow.worker for table input",
    "independent-transports": "arrow imports server.principal/auth; server imports arrow",
    "acyclic-packages": "cycles arrow -> server -> arrow and runtime -> arrow -> runtime",
}


def test_every_contract_is_checked() -> None:
    assert set(BROKEN_TODAY) <= set(CONTRACTS)
    assert len(CONTRACTS) == len(set(CONTRACTS))


@pytest.mark.parametrize(
    "contract",
    [
        pytest.param(
            contract,
            marks=pytest.mark.xfail(reason=BROKEN_TODAY[contract], strict=True),
        )
        if contract in BROKEN_TODAY
        else contract
        for contract in CONTRACTS
    ],
)
def test_import_contract_holds(contract: str) -> None:
    from importlinter.cli import lint_imports

    # no_cache: the cache would be written into the working directory.
    assert (
        lint_imports(config_filename=str(PYPROJECT), limit_to_contracts=(contract,), no_cache=True)
        == 0
    )
