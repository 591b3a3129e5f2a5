"""Logging set-up: our default handler, or the config file's own logging sections."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tabpy.config import ConfigError
from tabpy.logs import (
    DEFAULT_FORMAT,
    JsonFormatter,
    configure_logging,
    current_request_id,
    set_log_format,
)


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[logging.Logger]:
    """configure_logging changes process-wide state; put it back for the other tests."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    formatters = [handler.formatter for handler in handlers]  # set_log_format changes them
    yield root
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    for handler, formatter in zip(handlers, formatters, strict=True):
        handler.setFormatter(formatter)
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


# --- request ids and JSON lines ------------------------------------------------------------------


def test_text_lines_name_the_request(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(None)
    log = logging.getLogger("tabpy.sample")
    token = current_request_id.set("abc123")
    try:
        log.info("during")
    finally:
        current_request_id.reset(token)
    log.info("after")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith("[INFO] tabpy.sample: during [request abc123]")
    assert lines[1].endswith("[INFO] tabpy.sample: after")


def test_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(None)
    set_log_format("json")
    log = logging.getLogger("tabpy.sample")
    token = current_request_id.set("req-1")
    try:
        log.info("hello %s", "world", extra={"status": 200, "duration_ms": 1.5})
        try:
            raise ValueError("bad")
        except ValueError:
            log.exception("failed")
    finally:
        current_request_id.reset(token)
    log.warning("outside")
    first, second, third = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first["message"] == "hello world"
    assert (first["level"], first["logger"], first["request_id"]) == (
        "INFO",
        "tabpy.sample",
        "req-1",
    )
    assert (first["status"], first["duration_ms"]) == (200, 1.5)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert "ValueError: bad" in second["exception"]
    assert "request_id" not in third and third["level"] == "WARNING"


def test_request_id_is_stamped_when_the_record_is_made() -> None:
    configure_logging(None)
    token = current_request_id.set("made-here")
    try:
        record = logging.getLogger("x").makeRecord("x", logging.INFO, "f", 1, "m", None, None)
    finally:
        current_request_id.reset(token)
    assert record.request_id == "made-here"  # type: ignore[attr-defined]
    assert JsonFormatter().format(record).count("made-here") == 1


def test_json_format_applies_to_config_file_handlers(tmp_path: Path) -> None:
    log_file = tmp_path / "out.log"
    path = tmp_path / "tabpy.conf"
    path.write_text(
        "[loggers]\nkeys=root\n\n[handlers]\nkeys=file\n\n[formatters]\nkeys=plain\n\n"
        "[logger_root]\nlevel=INFO\nhandlers=file\n\n"
        f"[handler_file]\nclass=FileHandler\nformatter=plain\nargs=({str(log_file)!r},)\n\n"
        "[formatter_plain]\nformat=%(request_id)s|%(message)s\n",
        encoding="utf-8",
    )
    configure_logging(path)
    logging.getLogger("tabpy.sample").info("plain")
    set_log_format("json")
    logging.getLogger("tabpy.sample").info("structured")
    for handler in logging.getLogger().handlers:
        handler.flush()
    plain, structured = log_file.read_text(encoding="utf-8").splitlines()
    assert plain == "-|plain"
    assert json.loads(structured)["message"] == "structured"


def test_config_file_may_name_the_json_formatter(tmp_path: Path) -> None:
    log_file = tmp_path / "out.jsonl"
    path = tmp_path / "tabpy.conf"
    path.write_text(
        "[loggers]\nkeys=root\n\n[handlers]\nkeys=file\n\n[formatters]\nkeys=json\n\n"
        "[logger_root]\nlevel=INFO\nhandlers=file\n\n"
        f"[handler_file]\nclass=FileHandler\nformatter=json\nargs=({str(log_file)!r},)\n\n"
        "[formatter_json]\nclass=tabpy.logs.JsonFormatter\n",
        encoding="utf-8",
    )
    configure_logging(path)
    logging.getLogger("tabpy.sample").info("from the file")
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert json.loads(log_file.read_text(encoding="utf-8"))["message"] == "from the file"


def test_every_line_names_the_instance_once_it_is_known(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tabpy import logs

    configure_logging(None)
    log = logging.getLogger("tabpy.sample")
    try:
        logs.set_instance_id("host:8080", in_text=False)  # the default: JSON only
        log.info("plain")
        logs.set_instance_id("pod-3")
        log.info("text")
        set_log_format("json")
        log.info("json")
    finally:
        logs.set_instance_id("-", in_text=False)
    plain, text, document = capsys.readouterr().err.splitlines()
    assert plain.endswith("[INFO] tabpy.sample: plain")
    assert text.endswith("[INFO] tabpy.sample: text [instance pod-3]")
    assert json.loads(document)["instance_id"] == "pod-3"
