"""What fetching a Flight table from its owner adds, on a 1M-row table (docs/fleet.md).

Two servers share one registry (a SQLite file; the table never touches it), with Basic
authentication and internal credentials, as a fleet would run. Each round puts a 1,000,000-row
table (two int64 and one float64 column, 24 MB) on A, then either:

* ``local``: ``/evaluate`` with its ``dataPath`` on A, and DoGet of the output on A;
* ``remote``: ``/evaluate`` on B (B fetches the input from A), and DoGet of B's output on A
  (A fetches it from B).

The difference of the medians is what a load balancer sending Prep's steps to different
instances costs. Run: ``PYTHONPATH=. python bench/fleet_flight.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "integration"), str(ROOT)]

from live_server import ServerProcess, wait_for  # noqa: E402
from security_support import basic, password_line  # noqa: E402

ROWS = 1_000_000
USER = ("prep", "Pr3p!flow")
SCRIPT = "df = _arg1\ndf['total'] = df['a'] + df['b']\nreturn df"


def start(directory: Path, name: str, passwords: Path, internal: Path) -> ServerProcess:
    settings = {
        "TABPY_REGISTRY_URL": f"sqlite:///{directory / 'shared.db'}",
        "TABPY_INSTANCE_ID": name,
        "TABPY_MEMBER_HEARTBEAT_SECONDS": "1",
        "TABPY_WORKERS": "1",
        "TABPY_ARROW_ENABLE": "true",
        "TABPY_ARROWFLIGHT_PORT": "0",
        "TABPY_ARROW_BIND_ADDRESS": "127.0.0.1",
        "TABPY_PWD_FILE": str(passwords),
        "TABPY_INTERNAL_CREDENTIALS_FILE": str(internal),
    }
    server = ServerProcess(directory / name, settings, client={"auth": USER}).start()
    return server.wait_until_warm()


def flight_url(server: ServerProcess) -> str:
    import re

    match = server.stderr.wait_for(re.compile(r"Arrow Flight listening on port (\d+)"), 30)
    assert match is not None
    return f"grpc+tcp://127.0.0.1:{match.group(1)}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    options = flight.FlightCallOptions(headers=[(b"authorization", basic(*USER).encode())])
    table = pa.table(
        {
            "a": pa.array(range(ROWS), pa.int64()),
            "b": pa.array(range(ROWS), pa.int64()),
            "c": pa.array([0.5 * i for i in range(ROWS)], pa.float64()),
        }
    )
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        passwords = directory / "passwords.txt"
        passwords.write_text(password_line(*USER) + password_line("internal", "in-secret"))
        internal = directory / "internal"
        internal.write_text("internal:in-secret\n")
        a = start(directory, "a", passwords, internal)
        b = start(directory, "b", passwords, internal)
        try:
            wait_for(
                lambda: (
                    sum(
                        1
                        for m in a.http.get("/status?members=1").json()["members"]
                        if m["flight_url"]
                    )
                    == 2
                ),
                10,
                "both members",
            )
            clients = {
                "a": flight.connect(flight_url(a)),
                "b": flight.connect(flight_url(b)),
            }
            results: dict[str, dict[str, list[float]]] = {}
            for mode in ("local", "remote") * rounds:
                evaluator = a if mode == "local" else b
                path = f"bench-{time.monotonic_ns()}"
                writer, _ = clients["a"].do_put(
                    flight.FlightDescriptor.for_path(path), table.schema, options
                )
                writer.write_table(table, max_chunksize=65536)
                writer.close()
                started = time.perf_counter()
                response = evaluator.http.post(
                    "/evaluate", json={"script": SCRIPT, "dataPath": path}
                )
                evaluated = time.perf_counter()
                assert response.status_code == 200, response.text
                output = response.json()["outputDataPath"]
                ticket = flight.Ticket(repr((1, None, (output.encode(),))).encode())
                fetched = clients["a"].do_get(ticket, options).read_all()
                done = time.perf_counter()
                assert fetched.num_rows == ROWS
                times = results.setdefault(mode, {"evaluate": [], "doget": []})
                times["evaluate"].append(evaluated - started)
                times["doget"].append(done - evaluated)
            for client in clients.values():
                client.close()
        finally:
            a.kill()
            b.kill()
    print(f"{ROWS} rows, {table.nbytes / 1e6:.0f} MB, {rounds} rounds each (median, ms)")
    for step in ("evaluate", "doget"):
        local = statistics.median(results["local"][step]) * 1000
        remote = statistics.median(results["remote"][step]) * 1000
        print(f"{step:9s} local {local:7.1f}  remote {remote:7.1f}  added {remote - local:7.1f}")


if __name__ == "__main__":
    main()
