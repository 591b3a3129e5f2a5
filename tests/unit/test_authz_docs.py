"""The permission table of docs/security.md says what the code decides."""

from __future__ import annotations

import re
from pathlib import Path

from tabpy.security.roles import FLIGHT_ROLES, ROLES, route_role

SECURITY = Path(__file__).resolve().parents[2] / "docs" / "security.md"
COLUMNS = (*ROLES, None)  # the table's columns: each role, then "no role"
METHODS = {"GET", "POST", "PUT", "DELETE"}
FLIGHT_NAMES = {"DoPut", "DoGet", "GetFlightInfo", "ListFlights", "ListActions"}


def table_rows() -> list[list[str]]:
    text = SECURITY.read_text(encoding="utf-8")
    start = text.index("| Route | `admin` |")
    rows = []
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def http_calls(cell: str) -> list[tuple[str, str]]:
    """(method, path) for each route a cell names.

    A method alone shares the next path ("`GET`, `POST /query/<name>`"); a path alone takes the
    methods before it ("`GET /`, `/info`").
    """
    calls: list[tuple[str, str]] = []
    pending: list[str] = []
    current: list[str] = []
    for token in re.findall(r"`([^`]+)`", cell):
        if token in METHODS:
            pending.append(token)
        elif " " in token:
            method, path = token.split(" ", 1)
            current, pending = [*pending, method], []
            calls += [(m, path) for m in current]
        else:
            calls += [(m, token) for m in current]
    return calls


def flight_calls(cell: str) -> list[str]:
    names = re.findall(r"`([^`]+)`", cell)
    return [name if name in FLIGHT_NAMES else f"action:{name}" for name in names]


def allowed(cells: list[str]) -> list[bool]:
    return [cell != "—" for cell in cells]


def expected(role: str | None) -> list[bool]:
    return [role is None or column in (role, "admin") for column in COLUMNS]


def test_the_table_matches_the_route_roles() -> None:
    rows = table_rows()
    seen_http, seen_flight = 0, set()
    for first, *cells in rows:
        assert len(cells) == len(COLUMNS), first
        if first.startswith("Flight"):
            for call in flight_calls(first):
                assert allowed(cells) == expected(FLIGHT_ROLES[call]), call
                seen_flight.add(call)
            continue
        for method, path in http_calls(first):
            role = route_role(path.replace("<name>", "x").replace("<sha256>", "ab"), method)
            assert allowed(cells) == expected(role), (method, path)
            seen_http += 1
    assert seen_flight == set(FLIGHT_ROLES)
    assert seen_http >= 20
