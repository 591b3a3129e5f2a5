"""Logging set-up for the server process.

TabPy config files may carry Python ``logging.config.fileConfig`` sections next to ``[TabPy]``;
those are honoured so existing deployments keep their log files. Without them we install one
plain stderr handler at INFO. TabPy fell back to DEBUG for everything, which buried the few
lines that matter and printed every setting value.

Every record logged while a request is handled carries that request's id as
``record.request_id`` (``-`` outside requests), so formats in the config file may use
``%(request_id)s``. The default text format appends ``[request <id>]``; the JSON format
(``TABPY_LOG_FORMAT = json``) has a ``request_id`` field.

Once the settings are known, every record also carries ``record.instance_id``
(``TABPY_INSTANCE_ID``), so the lines of a fleet can be told apart: JSON lines always have an
``instance_id`` field, and text lines get `` [instance <id>]`` when the setting is given (a
fleet sets it; a lone server's text lines stay as TabPy's). A config file's formats may use
``%(instance_id)s``.
"""

from __future__ import annotations

import configparser
import contextvars
import datetime
import logging
import logging.config
import sys
from pathlib import Path
from typing import Any

import orjson

from tabpy.config import ConfigError

__all__ = [
    "DEFAULT_FORMAT",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "current_request_id",
    "set_instance_id",
    "set_log_format",
]

DEFAULT_FORMAT = "%(asctime)s [%(levelname)s] %(name)s: %(message)s"
_LOGGING_SECTIONS = ("loggers", "handlers", "formatters")
# Named so that configuring twice replaces our handler instead of adding a second one, while
# handlers installed by others (test runners, embedders) are left alone.
_HANDLER_NAME = "tabpy-default"
_NO_REQUEST = "-"
_NO_INSTANCE = "-"

#: The id of the request being handled; set by the server's outermost middleware. Tasks and
#: threads started during a request (``asyncio.to_thread``) inherit it.
current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar(
    "tabpy_request_id", default=_NO_REQUEST
)


def configure_logging(config_file: Path | None, *, default_level: int = logging.INFO) -> None:
    """Apply the config file's logging sections if it has any, else install the default handler.

    A file that cannot be read or parsed gets the default handler here: :func:`load_settings`
    reports that problem with a better message.
    """
    _install_record_factory()
    if config_file is not None and _has_logging_sections(config_file):
        try:
            logging.config.fileConfig(
                config_file, disable_existing_loggers=False, encoding="utf-8-sig"
            )
        except Exception as err:  # fileConfig raises almost anything for a bad section
            detail = (str(err).splitlines() or [""])[0]
            raise ConfigError(
                f"Logging configuration in {config_file} is invalid "
                f"({type(err).__name__}: {detail}): fix the [loggers], [handlers] and "
                "[formatters] sections, or remove them to use the default logging."
            ) from None
        return

    root = logging.getLogger()
    for handler in _default_handlers():
        root.removeHandler(handler)
        handler.close()
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setLevel(default_level)
    handler.setFormatter(TextFormatter(DEFAULT_FORMAT))
    root.addHandler(handler)
    root.setLevel(default_level)


class _Identity:
    """Which instance this process is; logging is process-wide, so is this one value."""

    instance_id = _NO_INSTANCE
    in_text = False


_identity = _Identity()


def set_instance_id(instance_id: str, *, in_text: bool = True) -> None:
    """Stamp ``instance_id`` on every record made from now on (``TABPY_INSTANCE_ID``);
    ``in_text``: also append it to the default text lines."""
    _identity.instance_id = instance_id
    _identity.in_text = in_text


def set_log_format(log_format: str) -> None:
    """Apply ``TABPY_LOG_FORMAT`` once the settings are known.

    ``json`` puts every handler in the process on JSON lines, those of the config file's
    logging sections included: a shipper needs all of them parseable. ``text`` keeps the
    formats as configured.
    """
    if log_format != "json":
        return
    formatter = JsonFormatter()
    for handler in _all_handlers():
        handler.setFormatter(formatter)


class TextFormatter(logging.Formatter):
    """The format it is given, plus `` [request <id>]`` on lines logged during a request."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        line = super().formatMessage(record)
        instance_id = getattr(record, "instance_id", _NO_INSTANCE)
        if instance_id != _NO_INSTANCE and _identity.in_text:
            line = f"{line} [instance {instance_id}]"
        request_id = _request_id_of(record)
        return line if request_id == _NO_REQUEST else f"{line} [request {request_id}]"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, ``request_id``.

    Values passed with ``extra=`` become fields too (the access log adds ``status``,
    ``method``, ``path``, ``client`` and ``duration_ms``), and a traceback goes to
    ``exception``. The constructor takes ``logging.Formatter``'s arguments and ignores the
    format, so a config file can name this class in a ``[formatter_*]`` section.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        document: dict[str, Any] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        instance_id = getattr(record, "instance_id", _NO_INSTANCE)
        if instance_id != _NO_INSTANCE:
            document["instance_id"] = instance_id
        request_id = _request_id_of(record)
        if request_id != _NO_REQUEST:
            document["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and key not in document:
                document[key] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(document, default=str).decode()


_RECORD_ATTRIBUTES = frozenset(
    [
        *logging.LogRecord("", 0, "", 0, "", None, None).__dict__,
        "message",
        "asctime",
        "request_id",
        "instance_id",
        "taskName",
    ]
)


def _request_id_of(record: logging.LogRecord) -> str:
    # Records made before the factory was installed (an embedder's own set-up) lack the
    # attribute; the context variable is still right for a handler that formats at once.
    return getattr(record, "request_id", None) or current_request_id.get()


def _install_record_factory() -> None:
    """Stamp every record with the current request id when it is created.

    At creation, not at formatting, because a handler may format later on another thread.
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "tabpy_request_id", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = current_request_id.get()
        record.instance_id = _identity.instance_id
        return record

    factory.tabpy_request_id = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def _default_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if h.get_name() == _HANDLER_NAME]


def _all_handlers() -> list[logging.Handler]:
    loggers = [logging.getLogger()]
    loggers += [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    return list({id(h): h for logger in loggers for h in logger.handlers}.values())


def _has_logging_sections(config_file: Path) -> bool:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(config_file, encoding="utf-8-sig")
    except (configparser.Error, OSError, UnicodeDecodeError):
        return False
    return any(parser.has_section(name) for name in _LOGGING_SECTIONS)
