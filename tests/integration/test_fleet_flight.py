"""Arrow Flight as one service across a fleet: a table put on one instance is used on another.

Three real servers (A, B, C) share one registry and one password file. Tableau Prep's steps
land on different instances, as behind a round-robin load balancer: DoPut on A, ``/evaluate``
with the ``dataPath`` on B, DoGet of B's output on A or C. The instance lacking a table fetches
it from its owner over internal Flight, authenticated with its own credentials.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.components import ARROW, require_module

pytestmark = pytest.mark.arrow
pa = require_module("pyarrow", ARROW)
flight = require_module("pyarrow.flight", ARROW)

from live_server import ServerProcess, wait_for  # noqa: E402
from security_support import basic, password_line  # noqa: E402
from test_arrow_flight import ADD_TOTAL, flight_port, sample  # noqa: E402

PREP = ("prep", "Pr3p!flow")
INTERNAL_PASSWORD = "int3rnal-s3cret"


def member_settings(tmp_path: Path, name: str, passwords: Path) -> dict[str, str]:
    """One member of a fleet on a shared SQLite registry, with Flight and Basic auth."""
    return {
        "TABPY_REGISTRY_URL": f"sqlite:///{tmp_path / 'shared.db'}",
        "TABPY_INSTANCE_ID": name,
        "TABPY_MEMBER_HEARTBEAT_SECONDS": "0.3",
        "TABPY_WORKERS": "1",
        "TABPY_ARROW_ENABLE": "true",
        "TABPY_ARROWFLIGHT_PORT": "0",
        "TABPY_ARROW_BIND_ADDRESS": "127.0.0.1",
        "TABPY_PWD_FILE": str(passwords),
    }


@pytest.fixture
def fleet(
    launch: Callable[..., ServerProcess], tmp_path: Path
) -> Iterator[dict[str, ServerProcess]]:
    passwords = tmp_path / "passwords.txt"
    passwords.write_text(password_line(*PREP) + password_line("tabpy-internal", INTERNAL_PASSWORD))
    internal = tmp_path / "internal"
    internal.write_text(f"tabpy-internal:{INTERNAL_PASSWORD}\n")
    servers = {}
    for name in ("a", "b", "c"):
        settings = {
            **member_settings(tmp_path, name, passwords),
            "TABPY_INTERNAL_CREDENTIALS_FILE": str(internal),
        }
        servers[name] = launch(settings, client={"auth": PREP})
    for server in servers.values():
        server.wait_until_warm()

    def flight_members() -> bool:
        view = servers["b"].http.get("/status?members=1").json()["members"]
        return len([m for m in view if m["flight_url"]]) == 3

    wait_for(flight_members, 10, "three members with their Flight addresses")
    yield servers


def connect(server: ServerProcess) -> flight.FlightClient:
    return flight.connect(f"grpc+tcp://127.0.0.1:{flight_port(server)}")


OPTIONS = flight.FlightCallOptions(headers=[(b"authorization", basic(*PREP).encode())])


def put_as_prep(server: ServerProcess, table: pa.Table) -> str:
    with connect(server) as client:
        token = client.authenticate_basic_token(*PREP)
        options = flight.FlightCallOptions(headers=[token])
        path = next(iter(client.do_action(flight.Action("getUniquePath", b""), options)))
        path = path.body.to_pybytes().decode()
        descriptor = flight.FlightDescriptor.for_path(path)
        writer, _ = client.do_put(descriptor, table.schema, options)
        writer.write_table(table, max_chunksize=256)
        writer.close()
    return path


def get_as_prep(server: ServerProcess, path: str) -> pa.Table:
    """DoGet with the ticket a Prep client builds from the path (no GetFlightInfo first)."""
    ticket = flight.Ticket(repr((1, None, (path.encode(),))).encode())
    with connect(server) as client:
        return client.do_get(ticket, OPTIONS).read_all()


def evaluate_on(server: ServerProcess, path: str) -> str:
    response = server.http.post("/evaluate", json={"script": ADD_TOTAL, "dataPath": path})
    assert response.status_code == 200, response.text + server.stderr.text[-3000:]
    return str(response.json()["outputDataPath"])


def test_put_on_a_evaluate_on_b_fetch_on_a_and_on_c(fleet: dict[str, ServerProcess]) -> None:
    a, b, c = fleet["a"], fleet["b"], fleet["c"]
    table = sample(5000)
    expected = table.append_column("total", pa.compute.add(table["a"], table["b"]))

    output = evaluate_on(b, put_as_prep(a, table))
    assert get_as_prep(a, output).equals(expected)

    output = evaluate_on(b, put_as_prep(a, table))
    with connect(c) as client:  # GetFlightInfo on C, as some clients do before DoGet
        info = client.get_flight_info(flight.FlightDescriptor.for_path(output), OPTIONS)
        assert info.total_records == 5000
        assert client.do_get(info.endpoints[0].ticket, OPTIONS).read_all().equals(expected)

    # Each table still lives in one place: fetched once, it is gone from the whole fleet.
    with pytest.raises(KeyError, match="Flight not found"):  # gRPC NOT_FOUND
        get_as_prep(b, output)
    response = c.http.post("/evaluate", json={"script": ADD_TOTAL, "dataPath": output})
    assert response.status_code == 500
    assert "No table is stored under dataPath" in response.json()["info"]

    for server in fleet.values():
        assert INTERNAL_PASSWORD not in server.stderr.text + server.stdout.text


def test_without_internal_credentials_the_owner_refuses_and_says_why(
    launch: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    passwords = tmp_path / "passwords.txt"
    passwords.write_text(password_line(*PREP))
    servers = []
    for name in ("a", "b"):
        settings = {
            **member_settings(tmp_path, name, passwords),
        }
        servers.append(launch(settings, client={"auth": PREP}))
    a, b = servers
    wait_for(
        lambda: (
            len([m for m in a.http.get("/status?members=1").json()["members"] if m["flight_url"]])
            == 2
        ),  # fmt: skip
        10,
        "two members with their Flight addresses",
    )
    path = put_as_prep(a, sample(10))
    with pytest.raises(KeyError, match="Flight not found"):  # gRPC NOT_FOUND
        get_as_prep(b, path)
    assert "TABPY_INTERNAL_CREDENTIALS_FILE" in b.stderr.text
    assert get_as_prep(a, path).num_rows == 10  # the owner kept it
