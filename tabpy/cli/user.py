"""``tabpy-user``: manage the password file (see the security issue)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    sys.stderr.write("tabpy-user is not available in this build yet.\n")
    return 2
