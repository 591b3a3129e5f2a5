"""Logging set-up: our default handler, or the config file's own logging sections."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tabpy.config import ConfigError
from tabpy.logs import DEFAULT_FORMAT, configure_logging


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[logging.Logger]:
    """configure_logging changes process-wide state; put it back for the other tests."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def ours(root: logging.Logger) -> list[logging.Handler]:
    return [h for h in root.handlers if h.get_name() == "tabpy-default"]


def test_default_handler_without_config_file(restore_root_logger: logging.Logger) -> None:
    configure_logging(None)
    [handler] = ours(restore_root_logger)
    assert isinstance(handler, logging.StreamHandler)
    assert handler.level == logging.INFO
    assert handler.formatter is not None
    assert handler.formatter._fmt == DEFAULT_FORMAT
    assert restore_root_logger.level == logging.INFO
    assert not restore_root_logger.isEnabledFor(logging.DEBUG)


def test_default_output_format(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(None)
    logging.getLogger("tabpy.sample").info("hello")
    logging.getLogger("tabpy.sample").debug("hidden")
    err = capsys.readouterr().err
    assert "[INFO] tabpy.sample: hello" in err
    assert "hidden" not in err


def test_configuring_twice_keeps_one_handler(restore_root_logger: logging.Logger) -> None:
    configure_logging(None)
    configure_logging(None, default_level=logging.WARNING)
    [handler] = ours(restore_root_logger)
    assert handler.level == logging.WARNING


def test_config_file_without_logging_sections_gets_default(
    tmp_path: Path, restore_root_logger: logging.Logger
) -> None:
    path = tmp_path / "tabpy.conf"
    path.write_text("[TabPy]\nTABPY_PORT = 9100\n", encoding="utf-8")
    configure_logging(path)
    assert len(ours(restore_root_logger)) == 1


def test_missing_config_file_gets_default(
    tmp_path: Path, restore_root_logger: logging.Logger
) -> None:
    # load_settings reports the missing file; logging must still work to show it.
    configure_logging(tmp_path / "nope.conf")
    assert len(ours(restore_root_logger)) == 1


def test_logging_sections_are_applied(tmp_path: Path) -> None:
    log_file = tmp_path / "out.log"
    path = tmp_path / "tabpy.conf"
    path.write_text(
        "[TabPy]\nTABPY_PORT = 9100\n\n"
        "[loggers]\nkeys=root\n\n"
        "[handlers]\nkeys=file\n\n"
        "[formatters]\nkeys=plain\n\n"
        "[logger_root]\nlevel=DEBUG\nhandlers=file\n\n"
        f"[handler_file]\nclass=FileHandler\nlevel=DEBUG\nformatter=plain\nargs=({str(log_file)!r},)\n\n"
        "[formatter_plain]\nformat=%(levelname)s|%(message)s\n",
        encoding="utf-8",
    )
    existing = logging.getLogger("tabpy.already.there")
    configure_logging(path)
    existing.debug("still enabled")
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert log_file.read_text(encoding="utf-8") == "DEBUG|still enabled\n"


def test_broken_logging_sections(tmp_path: Path) -> None:
    path = tmp_path / "tabpy.conf"
    path.write_text("[loggers]\nkeys=root\n", encoding="utf-8")  # no [formatters]/[handlers]
    with pytest.raises(ConfigError) as info:
        configure_logging(path)
    message = str(info.value)
    assert message.startswith(f"Logging configuration in {path} is invalid")
    assert "\n" not in message
