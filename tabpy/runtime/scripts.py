"""Turning a Tableau script into a callable, the way TabPy does.

Tableau sends a function *body*.  TabPy wraps it as::

    def _user_script(tabpy, _arg1, _arg2):
     <each line, prefixed with one space>

so results are produced with ``return`` and top-level lines start at column 0.
Argument names are sorted as strings (``_arg1, _arg10, _arg2``).  We keep that
contract exactly, but compile each distinct script once per worker and run
every call in a fresh copy of the namespace, so one request's globals never
leak into another's.

Unlike TabPy, line numbers (in a ``SyntaxError``, in tracebacks) are the user's: the
wrapper's ``def`` line is numbered 0, so the script's first line is line 1.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Callable, Mapping
from types import CodeType, TracebackType
from typing import Any

from tabpy.errors import InvalidRequest

FUNCTION_NAME = "_user_script"
#: The file name scripts are compiled under; it appears in SyntaxError messages, as in TabPy.
SCRIPT_FILENAME = "<string>"
_ARG_NAME = re.compile(r"_arg([1-9][0-9]*)\Z")
_ON_LINE = re.compile(r"\bon line (\d+)")


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
    try:
        tree = ast.parse(wrap_script(script, argument_names), SCRIPT_FILENAME)
    except SyntaxError as error:
        raise _in_user_lines(error) from None
    ast.increment_lineno(tree, -1)  # the def line becomes 0: line n is the script's line n
    return compile(tree, SCRIPT_FILENAME, "exec")


def _in_user_lines(error: SyntaxError) -> SyntaxError:
    """The error with the script's own line and column numbers, not the wrapper's."""
    if error.lineno is not None and error.lineno > 1:
        error.lineno -= 1
        if error.end_lineno is not None:
            error.end_lineno -= 1
        if error.offset is not None and error.offset > 1:
            error.offset -= 1  # the space each line got
        if error.end_offset is not None and error.end_offset > 1:
            error.end_offset -= 1
        if error.text is not None and error.text.startswith(" "):
            error.text = error.text[1:]
    if error.msg:
        error.msg = _ON_LINE.sub(lambda m: f"on line {max(int(m.group(1)) - 1, 1)}", error.msg)
    return error


def user_line(error: BaseException) -> int | None:
    """The line of the script where ``error`` was raised (or found, for a SyntaxError)."""
    if isinstance(error, SyntaxError) and error.filename == SCRIPT_FILENAME:
        return error.lineno
    line = None
    traceback: TracebackType | None = error.__traceback__
    while traceback is not None:  # the innermost frame of the script's own code wins
        if traceback.tb_frame.f_code.co_filename == SCRIPT_FILENAME:
            line = traceback.tb_lineno
        traceback = traceback.tb_next
    return line


def is_blank(script: str) -> bool:
    """True for a script with nothing to run (empty, or only whitespace)."""
    return not script or script.isspace()


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
