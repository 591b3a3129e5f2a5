"""Where an instance tells the rest of the fleet to reach it, when nothing is advertised."""

from __future__ import annotations

import socket
import types
from pathlib import Path
from typing import Any, cast

import pytest

from tabpy.cli.wiring import advertised_host, member_address
from tabpy.config import load_settings


@pytest.mark.parametrize("bound", ["0.0.0.0", "::", ""])
def test_every_interface_advertises_the_host_name(bound: str) -> None:
    assert advertised_host(bound) == socket.gethostname()


@pytest.mark.parametrize(
    ("bound", "advertised"),
    [("10.1.2.3", "10.1.2.3"), ("127.0.0.1", "127.0.0.1"), ("fd00::5", "[fd00::5]")],
)
def test_one_bound_address_is_advertised_as_it_is(bound: str, advertised: str) -> None:
    # The host name may resolve elsewhere (127.0.1.1, or a name several instances share).
    assert advertised_host(bound) == advertised


def test_member_address_uses_each_listeners_own_bound_address(tmp_path: Path) -> None:
    settings = load_settings(
        None,
        {
            "TABPY_STATE_PATH": str(tmp_path),
            "TABPY_PORT": "9100",
            "TABPY_BIND_ADDRESS": "10.0.0.7",
            "TABPY_ARROW_BIND_ADDRESS": "10.0.1.7",
            "TABPY_ARROW_ENABLE": "true",
        },
    )
    arrow = cast(Any, types.SimpleNamespace(port=None))
    address = member_address(settings, arrow)
    assert address.http_url == "http://10.0.0.7:9100"
    assert address.flight_url() is None  # Flight has not started yet
    arrow.port = 40123
    assert address.flight_url() == "grpc+tcp://10.0.1.7:40123"


def test_advertised_settings_win_over_the_bound_address(tmp_path: Path) -> None:
    settings = load_settings(
        None,
        {
            "TABPY_STATE_PATH": str(tmp_path),
            "TABPY_BIND_ADDRESS": "10.0.0.7",
            "TABPY_ADVERTISE_URL": "http://tabpy-a.example:47112",
            "TABPY_ADVERTISE_FLIGHT": "grpc+tcp://tabpy-a.example:47113",
        },
    )
    address = member_address(settings, cast(Any, types.SimpleNamespace(port=5000)))
    assert address.http_url == "http://tabpy-a.example:47112"
    assert address.flight_url() == "grpc+tcp://tabpy-a.example:47113"
