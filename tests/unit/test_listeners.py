"""Binding the HTTP port before anything starts, and the one-line errors when that fails."""

from __future__ import annotations

import os
import socket

import pytest

from tabpy.config import ConfigError
from tabpy.server.runner import bind_listeners


def close_all(listeners: list[socket.socket]) -> None:
    for listener in listeners:
        listener.close()


def test_port_zero_gives_one_free_port_for_every_address() -> None:
    listeners = bind_listeners("localhost", 0)
    try:
        ports = {listener.getsockname()[1] for listener in listeners}
        assert len(ports) == 1 and ports.pop() > 0
        families = {listener.family for listener in listeners}
        assert socket.AF_INET in families
    finally:
        close_all(listeners)


def test_bound_but_not_yet_listening() -> None:
    """Nobody can connect before the server is ready to answer."""
    (listener,) = bind_listeners("127.0.0.1", 0)
    try:
        with socket.socket() as client:
            refused = client.connect_ex(listener.getsockname())
        assert refused != 0
    finally:
        listener.close()


def test_port_in_use_is_a_config_error_naming_the_port() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ConfigError) as info:
            bind_listeners("127.0.0.1", port)
    message = str(info.value)
    assert message.startswith(f"TABPY_PORT = {port}: the port is already in use on 127.0.0.1")
    assert f"grep :{port}" in message and "\n" not in message


def test_address_of_another_machine() -> None:
    # 192.0.2.0/24 is reserved for documentation: never an address of this machine.
    with pytest.raises(ConfigError, match=r"^TABPY_BIND_ADDRESS = 192\.0\.2\.1: not an address"):
        bind_listeners("192.0.2.1", 0)


def test_unresolvable_bind_address(monkeypatch: pytest.MonkeyPatch) -> None:
    def unknown(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unknown)  # no name lookup leaves the machine
    with pytest.raises(ConfigError) as info:
        bind_listeners("tabpy.invalid", 0)
    assert str(info.value).startswith(
        "TABPY_BIND_ADDRESS = 'tabpy.invalid' cannot be used (Name or service not known)"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root may listen on any port")
def test_privileged_port() -> None:
    with pytest.raises(ConfigError, match=r"^TABPY_PORT = 80: not allowed to listen"):
        bind_listeners("127.0.0.1", 80)
