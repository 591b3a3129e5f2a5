"""Names that TabPy scripts may use without importing them.

TabPy runs scripts inside its own handler module, so scripts grew to rely on
that module's imports (``pandas``, ``json``, ...).  We offer the same names in
a clean namespace built once per worker at start-up.  Optional libraries that
are not installed are simply absent.
"""

from __future__ import annotations

import importlib
import json
import logging
import traceback
import uuid
from datetime import timedelta
from typing import Any

OPTIONAL_MODULES = ("pandas", "simplejson", "requests", "pyarrow")


def build_namespace() -> dict[str, Any]:
    names: dict[str, Any] = {
        "__builtins__": __builtins__,
        "__name__": "tabpy_script",
        "json": json,
        "logging": logging,
        "uuid": uuid,
        "timedelta": timedelta,
        "format_exception": traceback.format_exception,
    }
    for module_name in OPTIONAL_MODULES:
        try:
            names[module_name] = importlib.import_module(module_name)
        except ImportError:
            continue
    return names
