"""The real server, with each endpoint's environment taken from a file: for tests only.

The registry does not record an endpoint's environment yet (the deploy side adds it), so the
integration tests of the running side pin endpoints to environments here: the catalog reads
the registry as usual, then each endpoint named in the JSON file that ``TEST_ENVIRONMENT_PINS``
names (``{"name": {"key": ..., "python": ...}}``) runs in that environment. The file is read at
every refresh, so a test can move an endpoint. Everything else is the server's own code::

    python -m tests.env_server --config FILE
"""

from __future__ import annotations

import dataclasses
import json
import os
import runpy
from pathlib import Path
from typing import Any

PINS_VARIABLE = "TEST_ENVIRONMENT_PINS"


def main() -> None:
    from tabpy.runtime.catalog import Catalog
    from tabpy.runtime.environments import Interpreter

    pins_file = Path(os.environ.pop(PINS_VARIABLE))
    read = Catalog._read

    def pinned(self: Catalog, known: int, held: Any) -> Any:
        result = read(self, known, held)
        if result is None:
            return None
        revision, endpoints, deployed = result
        pins = json.loads(pins_file.read_text(encoding="utf-8"))
        for name, pin in pins.items():
            if name in deployed:
                deployed[name] = dataclasses.replace(deployed[name], interpreter=Interpreter(**pin))
        return revision, endpoints, deployed

    Catalog._read = pinned  # type: ignore[method-assign]
    runpy.run_module("tabpy.cli.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
