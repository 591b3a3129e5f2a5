"""The client side of per-endpoint environments: the ``requirements=`` argument, and waiting
for the server's build with progress on a terminal.

``requirements`` may be a list of requirement strings, or the path of a ``requirements.txt``,
``uv.lock`` or ``pylock.toml`` file, whose text is sent (the server resolves nothing from the
client's disk). The server checks the content; this module only picks the form.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO, Union

from tabpy.tabpy_tools._deploy import FIRST_POLL_DELAY, MAX_POLL_DELAY
from tabpy.tabpy_tools.errors import DeploymentTimeoutError, InvalidArgumentError, LoadFailedError

__all__ = ["Requirements", "requirements_body", "wait_for_environment"]

#: What ``Client.deploy(requirements=...)`` takes.
Requirements = Union[list[str], tuple[str, ...], str, "os.PathLike[str]"]

_PYLOCK = re.compile(r"^pylock(\.[^.]+)?\.toml$")


def requirements_body(requirements: Requirements) -> list[str] | dict[str, str]:
    """The deploy body's ``requirements`` value."""
    if isinstance(requirements, (list, tuple)):
        if not all(isinstance(item, str) for item in requirements):
            raise InvalidArgumentError("requirements must be a list of requirement strings")
        return list(requirements)
    if not isinstance(requirements, (str, os.PathLike)):
        raise InvalidArgumentError(
            "requirements must be a list of requirement strings or the path of a "
            f"requirements.txt, uv.lock or pylock.toml file, not {type(requirements).__name__}"
        )
    path = Path(requirements)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise InvalidArgumentError(
            f"requirements: cannot read {path} ({err.strerror or err}); pass a list for "
            "requirement strings, or the path of a requirements.txt, uv.lock or pylock.toml file"
        ) from None
    if path.name == "uv.lock":
        fmt = "uv.lock"
    elif _PYLOCK.match(path.name):
        fmt = "pylock.toml"
    else:
        fmt = "requirements.txt"
    return {"lock": text, "format": fmt}


def wait_for_environment(
    get_status: Callable[[], Mapping[str, Any]],
    name: str,
    version: int,
    timeout: float,
    *,
    stream: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Wait until ``name`` serves ``version``: through the server's build, then its load check.

    While the server reports the build moving, the wait goes on (the server stops a build
    at its own ``TABPY_ENV_BUILD_TIMEOUT``); ``timeout`` bounds the rest. Progress (phase and
    elapsed time) goes to ``stream``, standard error by default, only if it is a terminal.
    """
    out = stream if stream is not None else sys.stderr
    show = out.isatty()
    started = clock()
    deadline = started + timeout
    entry: Any = None
    shown = False
    delay = FIRST_POLL_DELAY
    try:
        while True:
            entry = get_status().get(name)
            if isinstance(entry, Mapping) and _is_version(entry, version):
                status = entry.get("status")
                if status == "LoadSuccessful":
                    return
                if status == "LoadFailed":
                    raise LoadFailedError(name, version, entry.get("last_error"))
                environment = entry.get("environment")
                if isinstance(environment, Mapping) and environment.get("phase") not in (
                    "ready",
                    "failed",
                ):
                    deadline = clock() + timeout  # the build is moving: keep waiting
                    if show:
                        phase = environment.get("phase", "building")
                        out.write(f"\r{name}: {phase} ({clock() - started:.0f} s)\033[K")
                        out.flush()
                        shown = True
            if clock() >= deadline:
                break
            sleep(delay)
            delay = min(delay * 1.5, MAX_POLL_DELAY)
    finally:
        if shown:
            out.write("\n")
            out.flush()
    last = (
        f"{entry.get('status')} at version {entry.get('version')}"
        if isinstance(entry, Mapping)
        else "not listed in /status"
    )
    raise DeploymentTimeoutError(
        f"Waited more than {timeout:g} s for endpoint {name} to load version {version} "
        f"(last status: {last})"
    )


def _is_version(entry: Mapping[str, Any], version: int) -> bool:
    reported = entry.get("version")
    return isinstance(reported, int) and reported >= version
