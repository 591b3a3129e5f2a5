"""What the server process imports: features that are not configured cost no memory at idle.

The server runs with ``PYTHONPROFILEIMPORTTIME=1``, so the interpreter itself writes a line
to stderr for every module it imports, whenever it imports it. (Worker templates run with
``-I``, which ignores the variable, so every line is the server's own.)
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.integration.live_server import running_server, wait_for

#: ``import time:   self [us] | cumulative | <indent>name``
_IMPORT_LINE = re.compile(r"^import time:\s+\d+\s+\|\s+\d+\s+\|\s+(\S+)\s*$", re.MULTILINE)
#: Loaded only by bearer authentication (PyJWT, which loads cryptography) or by HTTPS.
_SECURITY_PACKAGES = {"jwt", "cryptography"}
#: Loaded only to render the status page.
_PAGE_PACKAGES = {"jinja2", "markupsafe"}


def _imported(stderr: str) -> set[str]:
    return {name.split(".")[0] for name in _IMPORT_LINE.findall(stderr)}


def test_an_idle_server_has_not_loaded_jwt_cryptography_or_jinja2(tmp_path: Path) -> None:
    with running_server(tmp_path, env={"PYTHONPROFILEIMPORTTIME": "1"}) as server:
        idle = _imported(server.stderr.text)
        assert {"uvicorn", "sqlalchemy", "tabpy"} <= idle  # the probe sees the server's imports
        assert idle & (_SECURITY_PACKAGES | _PAGE_PACKAGES) == set()

        # The status page still renders, and loads Jinja2 for it (and nothing for security).
        page = server.http.get("/")
        assert page.status_code == 200, page.text
        assert "<html" in page.text.lower()
        loaded = wait_for(
            lambda: _imported(server.stderr.text) & _PAGE_PACKAGES,
            10,
            "the import lines of Jinja2",
        )
        assert loaded == _PAGE_PACKAGES
        assert _imported(server.stderr.text) & _SECURITY_PACKAGES == set()
