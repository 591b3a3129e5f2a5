"""docs/quickstart.md, run as written: every shell and Python block, checked against its output.

The page is read the way its maintainer comment says. Two runs:

* ``test_quickstart_runs_as_written`` runs every block except the install block, with a stand-in
  for the virtual environment the install block would make (``tabpy`` and friends running this
  checkout); it needs no package index.
* ``test_quickstart_install_runs_as_written`` also runs the install block, in a copy of the
  checkout, so it needs the package index (marked ``reference``).

The only change made to the commands is the port: the default port becomes a free one, and
the session's ``TABPY_PORT`` says the same for the commands that rely on the default. The
session also sets ``TABPY_HEALTH_CHECKS_PUBLIC``, so that the harness can tell when a server
is ready.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
from doc_session import (
    LOG_SETTLE_TIMEOUT,
    Block,
    ShellSession,
    blocks,
    copy_checkout,
    free_port,
    index_problem,
    output_matches,
    with_outputs,
    without_proxy_for_localhost,
)

from tabpy.config import DEFAULT_PORT

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "docs" / "quickstart.md"
DOC_PORT = str(DEFAULT_PORT)  # the port the page names
INSTALL_TIMEOUT = 900.0
SAVED_AS = re.compile(r"#\s*(\S+\.py)\s*$")
COMMANDS = {
    "tabpy": "tabpy.cli.server",
    "tabpy-user": "tabpy.cli.user",
    "tabpy-deploy-models": "tabpy.cli.deploy_models",
}

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("bash", "curl", "openssl", "setsid", "tee", "git")),
    reason="needs bash, curl, openssl, setsid, tee and git",
)


def is_install(block: Block) -> bool:
    return "pip install" in block.text


def is_server(block: Block) -> bool:
    lines = [line for line in block.text.splitlines() if line.strip()]
    return len(lines) == 1 and re.match(r"tabpy(\s|$)", lines[0]) is not None


def reads_the_log(block: Block) -> bool:
    return "tabpy.log" in block.text


def session_environment(home: Path, port: int) -> dict[str, str]:
    """The reader's terminal: their PATH, nothing of ours (no TABPY_*, no virtualenv)."""
    dropped = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in dropped and not name.startswith(("TABPY_", "XDG_", "PIP_"))
    }
    # TABPY_HEALTH_CHECKS_PUBLIC lets the harness see when a server is ready (doc_session).
    env.update(
        HOME=str(home), TABPY_PORT=str(port), TABPY_HEALTH_CHECKS_PUBLIC="true", LC_ALL="C.UTF-8"
    )
    return without_proxy_for_localhost(env)


def fake_virtualenv(home: Path) -> None:
    """What ``pip install .`` into ``~/tabpy-venv`` would give, running this checkout instead."""
    bin_dir = home / "tabpy-venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "activate").write_text(f'export PATH="{bin_dir}:$PATH"\n')
    shims = {name: f"-m {module}" for name, module in COMMANDS.items()}
    shims["python"] = ""
    for name, arguments in shims.items():
        shim = bin_dir / name
        shim.write_text(
            f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" {arguments} "$@"\n'
        )
        shim.chmod(0o755)


def wait_until(check: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if check():  # type: ignore[operator]
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def walk(session: ShellSession, page: list[Block], port: int, install: bool, logs: Path) -> None:
    """Run the page's blocks in order (see the module docstring); fail on the first mismatch."""
    for number, (raw_block, raw_expected) in enumerate(with_outputs(page)):
        block = raw_block.replace(DOC_PORT, str(port))
        expected = raw_expected.replace(DOC_PORT, str(port)).text if raw_expected else None
        where = f"block {number} of {QUICKSTART.name}:\n{raw_block.text}"
        if block.language == "python":
            saved = SAVED_AS.match(block.text.splitlines()[0])
            assert saved, f"a Python block must start with '# <name>.py': {where}"
            assert expected is None, f"the output goes after the command that runs it: {where}"
            session.save(saved.group(1), block.text)
            continue
        if block.language != "sh":
            continue  # calculated fields for Tableau, shown only
        if is_install(block):
            if install:
                output = session.run(block, timeout=INSTALL_TIMEOUT)
                assert expected is None or output_matches(expected, output), where
            continue
        if is_server(block):
            log = logs / f"server{number}.log"
            session.start_server(block, port, log)
            if expected is not None:
                shown = wait_until(
                    lambda log=log, expected=expected: output_matches(
                        expected, log.read_text(errors="replace")
                    ),
                    LOG_SETTLE_TIMEOUT,
                )
                assert shown, f"{where}\nexpected:\n{expected}\nlog:\n{log.read_text()}"
            continue
        if reads_the_log(block):
            # The server writes its log a moment after it answers: run the block again until
            # it prints what the page says, as a reader looking a second later would see.
            results: list[tuple[int, str]] = []

            def settled(
                block: Block = block,
                expected: str | None = expected,
                results: list[tuple[int, str]] = results,
            ) -> bool:
                results.append(session.run_apart(block))
                status, printed = results[-1]
                return status == 0 and (expected is None or output_matches(expected, printed))

            assert wait_until(settled, LOG_SETTLE_TIMEOUT), (
                f"{where}\nexpected:\n{expected}\nlast run (exit {results[-1][0]}):\n"
                f"{results[-1][1]}"
            )
            continue
        output = session.run(block)
        if expected is not None:
            assert output_matches(expected, output), (
                f"{where}\nexpected:\n{expected}\nprinted:\n{output}"
            )


def run_quickstart(tmp_path: Path, *, install: bool) -> ShellSession:
    page = blocks(QUICKSTART.read_text(encoding="utf-8"))
    assert sum(is_install(b) for b in page if b.language == "sh") == 1, "one install block"
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    env = session_environment(home, port)
    if install:
        start = copy_checkout(ROOT, tmp_path / "checkout")
        cache = Path.home() / ".cache" / "pip"
        if cache.is_dir():
            env["PIP_CACHE_DIR"] = str(cache)  # where the reader's pip keeps its downloads
    else:
        start = home
        fake_virtualenv(home)
    session = ShellSession(tmp_path / "blocks", start, env)
    try:
        walk(session, page, port, install, tmp_path)
    except BaseException:
        print(session.transcript[-8000:])
        raise
    finally:
        session.close()
    return session


def test_quickstart_runs_as_written(tmp_path: Path) -> None:
    session = run_quickstart(tmp_path, install=False)
    transcript = session.transcript
    assert "Traceback" not in transcript
    # The log the page keeps in step 6 holds the whole HTTPS part, passwords never among it.
    log = (tmp_path / "home" / "tabpy-first-hour" / "tabpy.log").read_text()
    assert "Web service listening" in log
    assert "first hour" not in log


@pytest.mark.reference
def test_quickstart_install_runs_as_written(tmp_path: Path) -> None:
    problem = index_problem(sys.executable)
    if problem is not None:
        pytest.skip(f"the install step needs the package index: {problem}")
    run_quickstart(tmp_path, install=True)
    installed = tmp_path / "home" / "tabpy-venv" / "bin" / "tabpy"
    assert installed.is_file()
