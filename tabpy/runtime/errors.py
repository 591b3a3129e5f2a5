"""How exceptions from user code are described to clients."""

from __future__ import annotations

from tabpy.runtime.encoding import NotSerializable


def describe(exc: BaseException) -> str:
    """TabPy's ``<ExceptionClass> : <message>`` form of an exception."""
    name = "TypeError" if isinstance(exc, NotSerializable) else type(exc).__name__
    return f"{name} : {exc}"
