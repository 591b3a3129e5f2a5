"""The ``[Service Info]`` part of ``state.ini``: the server's name, description and CORS values.

These are not config-file settings; TabPy keeps them in ``<state>/state.ini`` and existing
deployments have edited them there, so we read them from the same place and the same keys.
"""

from __future__ import annotations

import configparser
import logging
from dataclasses import dataclass
from pathlib import Path

from tabpy._files import write_atomically
from tabpy.config import ConfigError

__all__ = ["STATE_FILE", "ServiceInfo", "load_service_info", "template_text"]

logger = logging.getLogger(__name__)

STATE_FILE = "state.ini"
SECTION = "Service Info"

# What TabPy 2.16 writes on first start, byte for byte (note the trailing spaces after the empty
# values), so a state directory we create can be handed back to TabPy unchanged.
_TEMPLATE = """\
[Service Info]
Name = TabPy Server
Description = 
Creation Time = 0
Access-Control-Allow-Origin = 
Access-Control-Allow-Headers = 
Access-Control-Allow-Methods = 

[Query Objects Service Versions]

[Query Objects Docstrings]

[Meta]
Revision Number = 1
"""  # noqa: W291


@dataclass(frozen=True)
class ServiceInfo:
    """Server identity and CORS values, verbatim from ``state.ini`` ("" when absent)."""

    name: str
    description: str
    creation_time: str
    subdirectory: str  # URL prefix without a leading slash; "" for none
    cors_allow_origin: str
    cors_allow_headers: str
    cors_allow_methods: str


# (field, key in state.ini, value when the key is missing). Keys are case-sensitive, as in TabPy.
_FIELDS = (
    ("name", "Name", "TabPy Server"),
    ("description", "Description", ""),
    ("creation_time", "Creation Time", "0"),
    ("subdirectory", "Subdirectory", ""),
    ("cors_allow_origin", "Access-Control-Allow-Origin", ""),
    ("cors_allow_headers", "Access-Control-Allow-Headers", ""),
    ("cors_allow_methods", "Access-Control-Allow-Methods", ""),
)


def template_text() -> str:
    """Return the initial ``state.ini`` contents."""
    return _TEMPLATE


def load_service_info(state_path: Path) -> ServiceInfo:
    """Read ``[Service Info]`` from ``<state_path>/state.ini``, creating the file if missing."""
    path = state_path / STATE_FILE
    if not path.exists():
        _create_from_template(path)

    # No interpolation: values are taken verbatim, so a "%" typed into a description is just a
    # "%". TabPy crashed on it.
    parser = configparser.ConfigParser(interpolation=None, allow_no_value=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        with path.open(encoding="utf-8") as file:
            parser.read_file(file)
    except (configparser.Error, OSError, UnicodeDecodeError) as err:
        detail = (str(err).splitlines() or [""])[0]
        raise ConfigError(
            f"Config error: cannot read {path} ({detail}): fix the file, "
            f"or move it away to start with a fresh one."
        ) from None
    if not parser.has_section(SECTION):
        raise ConfigError(
            f"Config error: Expected [{SECTION}] section in {path}: add a [{SECTION}] "
            'line with at least "Name = TabPy Server" under it.'
        )
    section = parser[SECTION]
    values = {field: section.get(key, default) or "" for field, key, default in _FIELDS}
    return ServiceInfo(**values)


def _create_from_template(path: Path) -> None:
    """Write the template atomically, so a crash never leaves a half-written state file."""
    try:
        write_atomically(path, _TEMPLATE)
    except OSError as err:
        raise ConfigError(
            f"Cannot create {path} ({err.strerror or err}): make TABPY_STATE_PATH a "
            "writable directory."
        ) from None
    logger.info("Created %s from the built-in template", path)
