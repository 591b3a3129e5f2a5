"""``[Service Info]`` in state.ini: template creation and verbatim reading."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tabpy.config import ConfigError
from tabpy.registry.service_info import ServiceInfo, load_service_info, template_text


def test_template_matches_tabpy_byte_for_byte() -> None:
    text = template_text()
    assert text.startswith("[Service Info]\nName = TabPy Server\nDescription = \n")
    assert "Access-Control-Allow-Methods = \n\n[Query Objects Service Versions]\n" in text
    assert text.endswith("[Meta]\nRevision Number = 1\n")


def test_missing_state_file_is_created_from_template(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="tabpy.registry.service_info"):
        info = load_service_info(tmp_path)
    state_file = tmp_path / "state.ini"
    assert state_file.read_text(encoding="utf-8") == template_text()
    assert info == ServiceInfo(
        name="TabPy Server",
        description="",
        creation_time="0",
        subdirectory="",
        cors_allow_origin="",
        cors_allow_headers="",
        cors_allow_methods="",
    )
    assert any(str(state_file) in message for message in caplog.messages)
    # Written through a temporary file that must not be left behind.
    assert [p.name for p in tmp_path.iterdir()] == ["state.ini"]


def test_existing_state_file_is_read_verbatim_and_not_rewritten(tmp_path: Path) -> None:
    state_file = tmp_path / "state.ini"
    body = (
        "[Service Info]\n"
        "Name = Analytics 100%\n"
        "Description = Team %(server)s\n"
        "Creation Time = 1795828910\n"
        "Subdirectory = tabpy\n"
        "Access-Control-Allow-Origin = *\n"
        "Access-Control-Allow-Headers = Content-Type\n"
        "Access-Control-Allow-Methods = POST, GET\n"
        "\n[Meta]\nRevision Number = 7\n"
    )
    state_file.write_text(body, encoding="utf-8")
    info = load_service_info(tmp_path)
    assert info.name == "Analytics 100%"
    assert info.description == "Team %(server)s"
    assert info.creation_time == "1795828910"
    assert info.subdirectory == "tabpy"
    assert info.cors_allow_origin == "*"
    assert info.cors_allow_headers == "Content-Type"
    assert info.cors_allow_methods == "POST, GET"
    assert state_file.read_text(encoding="utf-8") == body


def test_keys_are_case_sensitive_like_tabpy(tmp_path: Path) -> None:
    (tmp_path / "state.ini").write_text("[Service Info]\nname = lower\n", encoding="utf-8")
    assert load_service_info(tmp_path).name == "TabPy Server"


def test_value_less_key_reads_as_empty(tmp_path: Path) -> None:
    (tmp_path / "state.ini").write_text("[Service Info]\nSubdirectory\n", encoding="utf-8")
    assert load_service_info(tmp_path).subdirectory == ""


def test_missing_service_info_section(tmp_path: Path) -> None:
    state_file = tmp_path / "state.ini"
    state_file.write_text("[Meta]\nRevision Number = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_service_info(tmp_path)
    message = str(info.value)
    assert message.startswith(f"Config error: Expected [Service Info] section in {state_file}")
    assert "Name = TabPy Server" in message  # the fix
    assert "\n" not in message


def test_unparseable_state_file(tmp_path: Path) -> None:
    (tmp_path / "state.ini").write_text("no header here\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot read") as info:
        load_service_info(tmp_path)
    assert "\n" not in str(info.value)


def test_unwritable_state_directory(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    with pytest.raises(ConfigError, match="TABPY_STATE_PATH"):
        load_service_info(missing)
