from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from tabpy.config import ConfigError
from tabpy.security.basic import BasicVerifier, Outcome
from tabpy.security.password_store import PasswordStore
from tabpy.security.passwords import hash_password, legacy_hash


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def line(name: str, password: str) -> str:
    return f"{name} {legacy_hash(name, password)}\n"


@pytest.fixture
def pwd_file(tmp_path: Path) -> Path:
    path = tmp_path / "passwords.txt"
    path.write_text(line("alice", "a"))
    return path


def test_start_up_refuses_a_bad_file_with_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("alice x y\nbob\n")
    with pytest.raises(ConfigError) as caught:
        PasswordStore(path).load()
    message = str(caught.value)
    assert message.startswith(f"Failed to read passwords file {path}: line 1: Incorrect entry")
    assert "line 2: Incorrect entry" in message and "\n" not in message


def test_start_up_refuses_a_file_without_users(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("# nobody yet\n")
    with pytest.raises(ConfigError, match="No credentials found"):
        PasswordStore(path).load()


def test_reloads_changes_at_most_once_per_interval(pwd_file: Path) -> None:
    clock = Clock()
    store = PasswordStore(pwd_file, check_interval=1.0, clock=clock)
    store.load()
    assert store.lookup("alice") is not None
    with pwd_file.open("a") as stream:
        stream.write(line("bob", "b"))
    clock.now = 0.5
    assert store.lookup("bob") is None  # not checked yet
    clock.now = 1.5
    assert store.lookup("bob") is not None


def test_bad_reload_keeps_the_last_good_users_and_logs_once(
    pwd_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    store = PasswordStore(pwd_file, clock=clock)
    store.load()
    pwd_file.write_text(line("alice", "a") + line("alice", "b"))
    with caplog.at_level(logging.ERROR):
        for step in range(1, 4):
            clock.now = step * 2
            assert store.lookup("alice") is not None
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "was not reloaded (line 2: Multiple entries for username alice" in errors[0]
    assert "still using the previous 1 user(s)" in errors[0]


def test_a_deleted_file_keeps_the_users(pwd_file: Path) -> None:
    clock = Clock()
    store = PasswordStore(pwd_file, clock=clock)
    store.load()
    pwd_file.unlink()
    clock.now = 5
    assert store.lookup("alice") is not None


def test_forced_reload_sees_changes_that_look_unchanged(pwd_file: Path) -> None:
    clock = Clock()
    store = PasswordStore(pwd_file, clock=clock)
    store.load()
    before = os.stat(pwd_file)
    pwd_file.write_text(line("alice", "z"))  # same size
    os.utime(pwd_file, ns=(before.st_atime_ns, before.st_mtime_ns))
    clock.now = 5
    assert store.lookup("alice").hash.verify("alice", "a")  # type: ignore[union-attr]
    store.reload()
    assert store.lookup("alice").hash.verify("alice", "z")  # type: ignore[union-attr]


def test_basic_verifier_caches_and_tells_failures_apart(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text(line("alice", "a") + f"colon {hash_password('x:y', iterations=1000)}\n")
    store = PasswordStore(path)
    store.load()
    verifier = BasicVerifier(store)

    async def scenario() -> list[object]:
        results: list[object] = [verifier.verify_cached("colon", "x:y")]
        # Concurrent logins with the same new credentials share one computation.
        results += await asyncio.gather(*(verifier.verify("colon", "x:y") for _ in range(5)))
        results.append(verifier.verify_cached("colon", "x:y"))
        results.append(await verifier.verify("colon", "x"))
        results.append(await verifier.verify("nobody", "x:y"))
        results.append(verifier.verify_cached("colon", "x"))
        return results

    try:
        results = asyncio.run(scenario())
    finally:
        verifier.close()
    assert results == [
        False,
        *[Outcome.ACCEPTED] * 5,
        True,
        Outcome.WRONG_PASSWORD,
        Outcome.UNKNOWN_USER,
        False,
    ]
