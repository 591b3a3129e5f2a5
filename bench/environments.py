"""Per-endpoint environments: deploy-to-servable time of a new environment, and redeploys.

Ours only (TabPy has no environments). Starts our server on a free port with a fresh state
path, then measures with the real client and the real uv:

* ``plain``: a deploy without requirements (today's figure, the baseline);
* ``cold``: a deploy with a new spec and an empty uv cache (``UV_CACHE_DIR`` set to a new folder
  for the server), so every package is downloaded;
* ``warm``: the same packages in a new state path with the now-warm uv cache;
* ``unchanged``: a redeploy with an unchanged spec (no resolve, no install; no rebuild);
* ``restart``: server start to the endpoint servable again, environment reused.

    python bench/environments.py [--packages "six==1.16.0"] [--record]

``--record`` appends the table to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tabpy.tabpy_tools.client import Client  # noqa: E402

READY = re.compile(r"Web service listening on port (\d+)")
REPEATS = 3


def model(x: list[int]) -> list[int]:
    return x


@contextlib.contextmanager
def server(
    state: Path, uv_cache: Path, settings: dict[str, str] | None = None
) -> Iterator[tuple[str, float]]:
    """A started server (its URL, and the seconds it took to listen); ``settings``: more
    ``TABPY_*`` lines for its config file."""
    state.mkdir(parents=True, exist_ok=True)
    config = state.parent / f"{state.name}.conf"
    extra = "".join(f"{key} = {value}\n" for key, value in (settings or {}).items())
    config.write_text(
        f"[TabPy]\nTABPY_PORT = 0\nTABPY_STATE_PATH = {state}\n{extra}", encoding="utf-8"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TABPY_")}
    env.update(UV_CACHE_DIR=str(uv_cache), PYTHONPATH=str(ROOT))
    started = time.monotonic()
    log = state.parent / f"{state.name}.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "tabpy.cli.server", "--config", str(config),
             "--disable-auth-warning"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=env,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (match := READY.search(log.read_text())):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start:\n{log.read_text()}")
            time.sleep(0.01)
        url = f"http://127.0.0.1:{match.group(1)}/"
        listening = time.monotonic() - started
        warm_up(url)
        yield url, listening
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def warm_up(url: str) -> None:
    """Until a worker answers a trivial script: what every measurement starts from."""
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            reply = httpx.post(url + "evaluate", json={"script": "return 1", "data": {}})
            if reply.status_code == 200:
                return
        time.sleep(0.02)
    raise RuntimeError("no worker answered")


def servable(url: str, name: str) -> None:
    """Until ``/query/<name>`` answers 200 (``deploy`` has already waited for the load)."""
    client = Client(url)
    deadline = time.monotonic() + 600
    while True:
        with contextlib.suppress(Exception):
            if client.query(name, [1])["response"] == [1]:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} never became servable")
        time.sleep(0.02)


def timed_deploy(url: str, name: str, requirements: list[str] | None, override: bool) -> float:
    client = Client(url, deploy_timeout=600)
    started = time.monotonic()
    client.deploy(name, model, "bench", override=override, requirements=requirements)
    servable(url, name)
    return time.monotonic() - started


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def run(packages: list[str]) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    work = Path(tempfile.mkdtemp(prefix="tabpy-bench-envs-"))
    try:
        cold_cache = work / "uv-cache"
        plain, cold, warm, unchanged = [], [], [], []
        for attempt in range(REPEATS):
            shutil.rmtree(cold_cache, ignore_errors=True)
            with server(work / f"cold-{attempt}", cold_cache) as (url, _):
                plain.append(timed_deploy(url, "plain", None, False))
                cold.append(timed_deploy(url, "model", packages, False))
            with server(work / f"warm-{attempt}", cold_cache) as (url, _):
                warm.append(timed_deploy(url, "model", packages, False))
                for _ in range(3):
                    unchanged.append(timed_deploy(url, "model", packages, True))
        with server(work / f"warm-{REPEATS - 1}", cold_cache) as (url, listening):
            started = time.monotonic()
            servable(url, "model")
            restart = listening + time.monotonic() - started
        spec = ", ".join(packages)
        rows += [
            ("plain deploy (no requirements)", f"{median(plain):.2f} s", "baseline"),
            (f"new environment, cold uv cache ({spec})", f"{median(cold):.2f} s", "info"),
            (f"new environment, warm uv cache ({spec})", f"{median(warm):.2f} s", "info"),
            ("redeploy, unchanged spec (no rebuild)", f"{median(unchanged):.2f} s",
             f"~ plain ({median(unchanged) / median(plain):.2f}x)"),
            ("restart to servable, environment reused", f"{restart:.2f} s", "no rebuild"),
        ]  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", default="six==1.16.0")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    rows = run(args.packages.split())
    table = ["| measurement | median | note |", "|---|---|---|"]
    table += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    print("\n".join(table))
    if args.record:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        with (ROOT / "bench" / "RESULTS.md").open("a", encoding="utf-8") as out:
            out.write(
                f"\n## {stamp}: per-endpoint environments\n\nCommand: "
                f"`python bench/environments.py --packages \"{args.packages}\"` "
                f"(median of {REPEATS}; ours only: TabPy has no environments)\n\n"
                + "\n".join(table) + "\n"
            )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
