"""The suite's own rule: a missing outside component skips a test locally and fails it in CI."""

from __future__ import annotations

import importlib.machinery
import json
import types
from pathlib import Path

import pytest

from tests.components import ALL, NGINX, REFERENCE, in_ci, missing, require_module

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
LOCAL: dict[str, str] = {}
CI = {"CI": "true"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("TRUE", True), ("1", True), ("yes", True), ("false", False), ("", False)],
)
def test_ci_is_recognised_from_the_variable(value: str, expected: bool) -> None:
    assert in_ci({"CI": value}) is expected
    assert in_ci({}) is False


def test_locally_a_missing_component_skips_and_says_how_to_get_it() -> None:
    with pytest.raises(pytest.skip.Exception) as skipped:
        missing(NGINX, "no nginx on PATH", environ=LOCAL)
    message = str(skipped.value)
    assert "nginx: not available (no nginx on PATH)" in message
    assert "apt-get install -y nginx-light" in message
    assert "-m nginx" in message


def test_under_ci_a_missing_component_fails_and_says_how_to_leave_it_out() -> None:
    with pytest.raises(pytest.fail.Exception) as failed:
        missing(REFERENCE, "nothing at the default location", environ=CI)
    message = str(failed.value)
    assert message.startswith("CI=true but a virtualenv holding TabPy 2.16.0")
    assert "(nothing at the default location)" in message
    assert "scripts/reference-venv" in message
    assert "-m 'not reference'" in message


def test_require_module_imports_or_reports_the_component() -> None:
    assert require_module("json", NGINX, environ=CI) is json
    with pytest.raises(pytest.skip.Exception, match="import no_such_module_xyz failed"):
        require_module("no_such_module_xyz", NGINX, environ=LOCAL)
    with pytest.raises(pytest.fail.Exception, match="import no_such_module_xyz failed"):
        require_module("no_such_module_xyz", NGINX, environ=CI)


def test_every_component_has_a_registered_marker(pytestconfig: pytest.Config) -> None:
    registered = {line.split(":")[0] for line in pytestconfig.getini("markers")}
    assert {component.marker for component in ALL} <= registered


SKIPPING_TESTS = """
import pytest

pytestmark = pytest.mark.filterwarnings("ignore")


def test_importorskip():
    pytest.importorskip("no_such_module_xyz")


def test_bare_skip():
    pytest.skip("no reason given")


@pytest.mark.skip(reason="written next to the test")
def test_declared_skip():
    pass


@pytest.mark.xfail(reason="a known bug", strict=True)
def test_expected_failure():
    assert False


def test_passes():
    pass
"""

SKIPPED_MODULE = """
import pytest

pytest.importorskip("no_such_module_xyz")


def test_never_collected():
    pass
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(
        "from tests.components import pytest_make_collect_report, pytest_runtest_makereport\n"
    )
    pytester.makepyfile(test_skipping=SKIPPING_TESTS, test_skipped_module=SKIPPED_MODULE)
    return pytester


def test_locally_undeclared_skips_stay_skips(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    result = suite.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=4, xfailed=1)


def test_under_ci_undeclared_skips_become_failures(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest_inprocess("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*Interrupted: 1 error during collection*"])
    result = suite.runpytest_inprocess("-p", "no:cacheprovider", "--continue-on-collection-errors")
    # importorskip, the bare skip and the skipped module fail; the declared skip and the xfail
    # are decisions written in the code, so they keep their outcome.
    result.assert_outcomes(passed=1, failed=2, skipped=1, xfailed=1, errors=1)
    result.stdout.fnmatch_lines(["*CI=true forbids skipping: *no_such_module_xyz*"])
    result.stdout.fnmatch_lines(["*CI=true forbids skipping a module: *no_such_module_xyz*"])


def test_reference_tests_look_where_the_build_script_builds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    loader = importlib.machinery.SourceFileLoader("reference_venv", str(SCRIPTS / "reference-venv"))
    script = types.ModuleType(loader.name)
    loader.exec_module(script)
    from tests.integration import reference_tabpy

    assert script.REFERENCE_VERSION == reference_tabpy.REFERENCE_VERSION
    assert script.default_venv("3.12") == reference_tabpy.default_venv("3.12")
    assert reference_tabpy.default_venv("3.12").is_relative_to(tmp_path)
