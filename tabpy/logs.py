"""Logging set-up for the server process.

TabPy config files may carry Python ``logging.config.fileConfig`` sections next to ``[TabPy]``;
those are honoured so existing deployments keep their log files. Without them we install one
plain stderr handler at INFO. TabPy fell back to DEBUG for everything, which buried the few
lines that matter and printed every setting value.
"""

from __future__ import annotations

import configparser
import logging
import logging.config
import sys
from pathlib import Path

from tabpy.config import ConfigError

__all__ = ["DEFAULT_FORMAT", "configure_logging"]

DEFAULT_FORMAT = "%(asctime)s [%(levelname)s] %(name)s: %(message)s"
_LOGGING_SECTIONS = ("loggers", "handlers", "formatters")
# Named so that configuring twice replaces our handler instead of adding a second one, while
# handlers installed by others (test runners, embedders) are left alone.
_HANDLER_NAME = "tabpy-default"


def configure_logging(config_file: Path | None, *, default_level: int = logging.INFO) -> None:
    """Apply the config file's logging sections if it has any, else install the default handler.

    A file that cannot be read or parsed gets the default handler here: :func:`load_settings`
    reports that problem with a better message.
    """
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
    for handler in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(handler)
        handler.close()
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setLevel(default_level)
    handler.setFormatter(logging.Formatter(DEFAULT_FORMAT))
    root.addHandler(handler)
    root.setLevel(default_level)


def _has_logging_sections(config_file: Path) -> bool:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(config_file, encoding="utf-8-sig")
    except (configparser.Error, OSError, UnicodeDecodeError):
        return False
    return any(parser.has_section(name) for name in _LOGGING_SECTIONS)
