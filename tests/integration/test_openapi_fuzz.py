"""Schemathesis against a live server with a password file, driven by ``GET /openapi.json``.

The ``schemathesis`` command runs every phase (examples, coverage, fuzzing, stateful) on every
operation of the document, with valid Basic credentials (and, in its auth checks, without or
with wrong ones). It passes when:

* no response is a 5xx, except the documented script failures (``fuzz_checks.py``);
* every response matches the document: status code, exact content type, headers, body.

Its HAR report records every exchange, so the test also counts the cases and re-checks the
5xx rule on its own. Two endpoints are deployed first, so ``/query/<name>`` reaches real code
as well as the 404 of an unknown name: ``echo`` returns whatever arguments it gets (any JSON
the fuzzer makes goes in and has to come back out), ``fail`` always raises.

Reproducing a failure: the output names each failing case with a curl command; the run is
deterministic for a given ``SEED``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from deploy_support import client_for
from live_server import ServerProcess, clean_environment, running_server
from security_support import password_line

pytestmark = [
    pytest.mark.fuzz,
    # schemathesis needs 3.11; on 3.11 its generator can hit a CPython bug ("SystemError: AST
    # constructor recursion depth mismatch", python/cpython#106905) and stop with an error.
    pytest.mark.skipif(sys.version_info < (3, 12), reason="the fuzzer needs Python 3.12+"),
]

USER, PASSWORD = "fuzzer", "fuzz-pass-1"
#: Fixed, so that a failure in CI can be replayed; FUZZ_SEED (and FUZZ_EXAMPLES) explore more.
SEED = int(os.environ.get("FUZZ_SEED", "20240611"))
#: Cases per operation and phase: about 2,000 in all (15 to 50 s on a 2-core machine, idle
#: to loaded).
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "50"))
MIN_CASES = 500
#: Far more than the run takes (about a minute); a hung run fails instead of blocking CI.
MAX_SECONDS = 600
HOOKS = Path(__file__).with_name("fuzz_checks.py")

#: The built-in checks that apply (not_a_server_error is replaced by fuzz_checks.py's).
CHECKS = [
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "unsupported_method",
    "allow_header_conformance",
    "ignored_auth",
]


def echo(*args: Any, **kwargs: Any) -> Any:
    return {"args": list(args), "kwargs": kwargs}


def fail(*args: Any, **kwargs: Any) -> Any:
    raise ValueError("this endpoint always fails")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("fuzz")
    passwords = directory / "passwords.txt"
    passwords.write_text(password_line(USER, PASSWORD), encoding="utf-8")
    settings = {
        "TABPY_PWD_FILE": str(passwords),
        "TABPY_WORKERS": "2",
        # A generated `while True:` costs two seconds, not thirty.
        "TABPY_EVALUATE_TIMEOUT": "2",
        # No failed-login throttle: schemathesis sends wrong credentials by the hundred, and
        # its auth check wants each refused with 401, not 429 (test_security_throttle.py
        # covers the throttle).
        "TABPY_AUTH_MAX_FAILURES": "0",
    }
    with running_server(directory, settings, client={"auth": (USER, PASSWORD)}) as server:
        client = client_for(server)
        client.set_credentials(USER, PASSWORD)
        client.deploy("echo", echo, "Returns its arguments.")
        client.deploy("fail", fail, "Always raises.")
        yield server


def config_file(directory: Path, server: ServerProcess) -> Path:
    """A schemathesis.toml: credentials, limits, and real endpoint names for ``{name}``."""
    lines = [
        f"seed = {SEED}",
        "workers = 2",
        "request-timeout = 30",
        "[auth.basic]",
        f'username = "{USER}"',
        f'password = "{PASSWORD}"',
        "[generation]",
        f"max-examples = {MAX_EXAMPLES}",
        'database = "none"',
        "[dictionaries.endpoints]",
        'values = ["echo", "fail"]',
        "[parameters]",
        '"path.name" = { dictionary = "endpoints", probability = 0.5 }',
    ]
    path = directory / "schemathesis.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(
    server: ServerProcess, tmp_path: Path
) -> None:
    har = tmp_path / "exchanges.har"
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config_file(tmp_path, server)),
        "--no-color",
        "run",
        f"{server.url}/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--report",
        "har",
        "--report-har-path",
        str(har),
    ]
    env = {**clean_environment(), "SCHEMATHESIS_HOOKS": str(HOOKS)}
    env.pop("PYTHONWARNINGS", None)
    result = subprocess.run(
        command,
        cwd=tmp_path,  # schemathesis writes its cache and reports next to itself
        env=env,
        capture_output=True,
        text=True,
        timeout=MAX_SECONDS,
    )
    output = result.stdout + result.stderr
    exchanges = json.loads(har.read_text(encoding="utf-8"))["log"]["entries"]
    print(output)
    print(f"{len(exchanges)} requests:", summary(exchanges))
    assert result.returncode == 0, output[-20000:]

    assert len(exchanges) >= MIN_CASES
    tested = {operation_of(entry) for entry in exchanges}
    # Schemathesis leaves out the operation it loaded the document from.
    documented = operations(server.http.get("/openapi.json").json()) - {("GET", "/openapi.json")}
    assert documented <= tested, f"never called: {sorted(documented - tested)}"
    unexpected = [
        entry
        for entry in exchanges
        if entry["response"]["status"] >= 500 and not script_error(entry)
    ]
    assert unexpected == [], [describe(entry) for entry in unexpected[:5]]
    assert "Traceback" not in server.stderr.text


# --- reading the HAR ------------------------------------------------------------------------------


def path_of(entry: dict[str, Any]) -> str:
    return urlsplit(entry["request"]["url"]).path or "/"


def operation_of(entry: dict[str, Any]) -> tuple[str, str]:
    """(method, documented path) of an exchange: path parameters folded back into names."""
    parts = path_of(entry).split("/")
    if len(parts) >= 3 and parts[1] in ("query", "endpoints", "artifacts") and parts[2]:
        parts[2] = {"query": "{name}", "endpoints": "{name}", "artifacts": "{sha256}"}[parts[1]]
    return entry["request"]["method"], "/".join(parts)


def operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }


def script_error(entry: dict[str, Any]) -> bool:
    from fuzz_checks import is_script_error  # here: schemathesis is installed on 3.12+ only

    text = entry["response"]["content"].get("text", "")
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    return is_script_error(operation_of(entry)[1], entry["response"]["status"], body)


def describe(entry: dict[str, Any]) -> str:
    request = entry["request"]
    body = (request.get("postData") or {}).get("text", "")
    reply = entry["response"]["content"].get("text", "")
    status = entry["response"]["status"]
    return f"{request['method']} {request['url']} {body[:300]!r} -> {status} {reply[:300]!r}"


def summary(exchanges: list[dict[str, Any]]) -> dict[str, int]:
    statuses = Counter(
        f"{operation_of(e)[0]} {operation_of(e)[1]} {e['response']['status']}" for e in exchanges
    )
    return dict(sorted(statuses.items()))
