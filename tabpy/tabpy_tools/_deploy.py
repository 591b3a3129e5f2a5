"""The parts of ``Client.deploy`` that need no network: naming, packing, request bodies, waiting.

Waiting takes the status lookup, the clock and the sleep as arguments so that it can be tested
without a server and without real time passing.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import os
import re
import sys
import sysconfig
import time
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import cloudpickle

from tabpy.tabpy_tools.custom_query_object import CustomQueryObject
from tabpy.tabpy_tools.errors import DeploymentTimeoutError, InvalidArgumentError, LoadFailedError

logger = logging.getLogger("tabpy.tabpy_tools.client")

# The server's rule (ASCII only). TabPy's client allowed any Unicode letter, which the server
# then refused with a 400; checking the server's rule here fails before anything is uploaded.
_NAME = re.compile(r"[A-Za-z0-9_ -]+")

#: First pause between two ``/status`` polls; it grows by half each time up to the maximum.
FIRST_POLL_DELAY = 0.02
MAX_POLL_DELAY = 0.25


def check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"endpoint name must be a string, not {type(name).__name__}")
    if not _NAME.fullmatch(name):
        raise InvalidArgumentError(
            f"endpoint name {name} can only contain: a-z, A-Z, 0-9, underscore, hyphens and spaces."
        )
    return name


@dataclass(frozen=True)
class Artifact:
    """A function pickled for deployment, with the hash the server checks it against."""

    data: bytes
    sha256: str
    docstring: str


def pack(obj: Callable[..., Any], description: str) -> Artifact:
    wrapped = CustomQueryObject(query=obj, description=description)
    with _by_value(_user_module(obj)):
        data = cloudpickle.dumps(wrapped)
    return Artifact(data, hashlib.sha256(data).hexdigest(), wrapped.get_docstring())


def _user_module(obj: Any) -> types.ModuleType | None:
    """The module ``obj`` was defined in, if it is the user's own code.

    cloudpickle stores functions from importable modules by reference, so a
    function from the user's ``models.py`` would fail to load on a server that
    lacks that file.  Code outside the installed libraries and the standard
    library is therefore sent by value; installed packages stay references.
    """
    module = sys.modules.get(getattr(obj, "__module__", None) or "")
    path = getattr(module, "__file__", None)
    if module is None or path is None or module.__name__ == "__main__":
        return None
    installed = {
        sysconfig.get_paths()[key] for key in ("purelib", "platlib", "stdlib", "platstdlib")
    }
    resolved = os.path.realpath(path)
    if any(resolved.startswith(os.path.realpath(root) + os.sep) for root in installed):
        return None
    return module


@contextlib.contextmanager
def _by_value(module: types.ModuleType | None) -> Iterator[None]:
    if module is None:
        yield
        return
    cloudpickle.register_pickle_by_value(module)
    try:
        yield
    finally:
        cloudpickle.unregister_pickle_by_value(module)


def endpoint_body(
    name: str,
    version: int,
    artifact: Artifact,
    *,
    description: str,
    schema: Any,
    is_public: bool,
    update: bool,
    src_path: str | None = None,
) -> dict[str, Any]:
    """The ``POST /endpoints`` (or, with ``update``, ``PUT /endpoints/<name>``) body.

    TabPy's fields, with ``schema`` as a JSON value rather than its Python repr, and
    ``artifact`` (the uploaded object's SHA-256) unless ``src_path`` names a shared folder.
    """
    body: dict[str, Any] = {
        "name": name,
        "type": "model",
        "version": version,
        "description": description,
        "dependencies": [],
        "docstring": artifact.docstring,
        "methods": [{"method": "query"}],
        "required_files": [],
        "required_packages": [],
        "is_public": is_public,
        # Always sent, null included: a deploy defines the whole endpoint, so a redeploy without
        # a schema must not keep the previous function's schema (our server keeps absent fields).
        "schema": copy.copy(schema),
    }
    if src_path is None:
        body["artifact"] = artifact.sha256
    else:
        body["src_path"] = src_path
    if update:
        body["should_update_version"] = True
    return body


def wait_until_loaded(
    get_status: Callable[[], Mapping[str, Any]],
    name: str,
    version: int,
    timeout: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Poll ``/status`` until ``name`` is ``LoadSuccessful`` at ``version`` or later.

    The first check is immediate (a server that loads before replying is done at once), then the
    pause grows from 20 ms to 250 ms. A ``LoadFailed`` entry raises ``LoadFailedError`` unless it
    belongs to an older version, which the server may still report while the new one loads.
    """
    logger.info("Waiting for endpoint %s to deploy to version %d", name, version)
    deadline = clock() + timeout
    delay = FIRST_POLL_DELAY
    entry: Any = None
    while True:
        entry = get_status().get(name)
        if isinstance(entry, Mapping):
            status, reported = entry.get("status"), entry.get("version")
            current = not isinstance(reported, int) or reported >= version
            if status == "LoadSuccessful" and isinstance(reported, int) and reported >= version:
                logger.info("Endpoint %s version %d is loaded", name, reported)
                return
            if status == "LoadFailed" and current:
                raise LoadFailedError(name, version, entry.get("last_error"))
        remaining = deadline - clock()
        if remaining <= 0:
            break
        sleep(min(delay, remaining))
        delay = min(delay * 1.5, MAX_POLL_DELAY)
    if isinstance(entry, Mapping):
        last = f"{entry.get('status')} at version {entry.get('version')}"
    else:
        last = "not listed in /status"
    raise DeploymentTimeoutError(
        f"Waited more than {timeout:g} s for endpoint {name} to load version {version} "
        f"(last status: {last})"
    )
