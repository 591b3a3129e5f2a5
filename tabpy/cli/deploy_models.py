"""``tabpy-deploy-models``: deploy the pre-built models (see the models issue)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    sys.stderr.write("tabpy-deploy-models is not available in this build yet.\n")
    return 2
