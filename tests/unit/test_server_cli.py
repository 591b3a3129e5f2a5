"""``tabpy``'s own messages: help, the no-authentication prompt, the TabPy-alongside warning."""

from __future__ import annotations

import io
import logging
from importlib import metadata
from pathlib import Path

import pytest

from tabpy import DISTRIBUTION_NAME, __version__
from tabpy.cli import server
from tabpy.config import load_settings


def test_help_explains_environment_variables(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        server.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "environment variable of the same name, which overrides the file" in out
    assert "TABPY_PORT=8080 TABPY_EVALUATE_TIMEOUT=60 tabpy" in out
    assert f"docs/configuration.md ({DISTRIBUTION_NAME} {__version__})" in out


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("with_config", [True, False], ids=["config file", "environment"])
def test_declining_the_prompt_explains_how_to_add_a_password(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    with_config: bool,
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    config = tmp_path / "conf" / "tabpy.conf"
    config.parent.mkdir()
    config.write_text("[TabPy]\nTABPY_PORT = 0\n")
    monkeypatch.setenv("TABPY_STATE_PATH", str(state))
    monkeypatch.setattr("sys.stdin", _Terminal())
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    # The process-wide logging set-up is not what this test is about; keep it out of the run.
    monkeypatch.setattr(server, "configure_logging", lambda config_file: None)

    code = server.main(["--config", str(config)] if with_config else [])

    out = capsys.readouterr().out
    assert code == 0
    assert "github.com/tableau" not in out  # it used to send admins to TabPy's documentation
    pwd_file = (config.parent if with_config else state) / "passwords.txt"
    assert f"tabpy-user add -u <name> -f {pwd_file}\n" in out
    if with_config:
        assert f"[TabPy] section of {config}:\n  TABPY_PWD_FILE = {pwd_file}\n" in out
    else:
        assert f"  TABPY_PWD_FILE={pwd_file} tabpy\n" in out
    assert "docs/quickstart.md" in out
    assert "--disable-auth-warning" in out


def test_abort_message_follows_the_settings(tmp_path: Path) -> None:
    settings = load_settings(None, {"TABPY_STATE_PATH": str(tmp_path)})
    assert f"-f {tmp_path / 'passwords.txt'}" in server.abort_message(settings)


def _versions(installed: dict[str, str]):  # type: ignore[no-untyped-def]
    def version_of(name: str) -> str:
        if name not in installed:
            raise metadata.PackageNotFoundError(name)
        return installed[name]

    return version_of


@pytest.mark.parametrize(
    ("installed", "warned"),
    [
        ({"tabpy": "2.16.0"}, True),
        ({"tabpy": "0.8.9"}, True),
        ({}, False),
        ({"tabpy": "3.0.0.dev1"}, False),  # this project's own builds before the rename
    ],
)
def test_warns_when_tabpy_is_installed_alongside(
    caplog: pytest.LogCaptureFixture, installed: dict[str, str], warned: bool
) -> None:
    with caplog.at_level(logging.WARNING, logger="tabpy.server"):
        server.warn_about_upstream_tabpy(_versions(installed))
    assert bool(caplog.records) == warned
    if warned:
        message = caplog.messages[0]
        assert message.startswith(f"TabPy {installed['tabpy']} is installed in this Python")
        assert f"pip uninstall -y tabpy {DISTRIBUTION_NAME}" in message
