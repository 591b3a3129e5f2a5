"""Turning a Tableau script into a callable, the way TabPy does.

Tableau sends a function *body*.  TabPy wraps it as::

    def _user_script(tabpy, _arg1, _arg2):
     <each line, prefixed with one space>

so results are produced with ``return`` and top-level lines start at column 0.
Argument names are sorted as strings (``_arg1, _arg10, _arg2``).  We keep that
contract exactly, but compile each distinct script once per worker and run
every call in a fresh copy of the namespace, so one request's globals never
leak into another's.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from types import CodeType
from typing import Any

from tabpy.errors import InvalidRequest

FUNCTION_NAME = "_user_script"
_ARG_NAME = re.compile(r"_arg([1-9][0-9]*)\Z")


def validate_arguments(data: Any) -> dict[str, Any]:
    """Check ``data`` is ``{"_arg1": ..., ..., "_argN": ...}`` with no gaps."""
    if not isinstance(data, dict):
        raise InvalidRequest("Script parameters need to be provided as a dictionary.")
    count = len(data)
    for name in data:
        match = _ARG_NAME.match(name)
        if match is None or int(match.group(1)) > count:
            raise InvalidRequest("Variables names should follow the format _arg1, _arg2, _argN")
    return data


def wrap_script(script: str, argument_names: list[str] | tuple[str, ...]) -> str:
    header = f"def {FUNCTION_NAME}(tabpy, {', '.join(sorted(argument_names))}):\n"
    return header + "".join(f" {line}\n" for line in script.splitlines())


@functools.lru_cache(maxsize=512)
def compile_script(script: str, argument_names: tuple[str, ...]) -> CodeType:
    """Compile once per distinct (script, arguments); Tableau repeats scripts."""
    return compile(wrap_script(script, argument_names), "<string>", "exec")


def run_script(
    script: str,
    arguments: Mapping[str, Any],
    namespace: Mapping[str, Any],
    tabpy: object,
) -> Any:
    code = compile_script(script, tuple(sorted(arguments)))
    scope = dict(namespace)
    exec(code, scope)
    function: Callable[..., Any] = scope[FUNCTION_NAME]
    return function(tabpy, **arguments)
