"""The failed-login throttle on the real server: it holds under concurrency, locks out per
address and user name, never locks out credentials in use, and believes forwarded headers only
from trusted proxies."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
from live_server import ServerProcess, wait_for
from security_support import basic, password_line

ALICE = basic("alice", "P@ssw0rd")
BOB = basic("bob", "s3cret")
WRONG_PASSWORD = 'Wrong password for user name "alice"'


def users(directory: Path, legacy: bool = True) -> Path:
    path = directory / "passwords.txt"
    path.write_text(
        password_line("alice", "P@ssw0rd", legacy=legacy) + password_line("bob", "s3cret")
    )
    return path


def status(server: ServerProcess, authorization: str, **headers: str) -> int:
    return server.http.get("/info", headers={"Authorization": authorization, **headers}).status_code


def test_concurrent_wrong_passwords_get_at_most_the_limit_of_checks(
    launch: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    # alice's hash is the slow modern one, so the 100 requests really overlap its checks.
    pwd_file = users(tmp_path, legacy=False)
    server = launch({"TABPY_PWD_FILE": str(pwd_file), "TABPY_AUTH_MAX_FAILURES": "5"})

    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:
            replies = await asyncio.gather(
                *(
                    client.get("/info", headers={"Authorization": basic("alice", f"guess-{i}")})
                    for i in range(100)
                )
            )
        return [reply.status_code for reply in replies]

    statuses = Counter(asyncio.run(burst()))
    assert set(statuses) <= {401, 429}, statuses
    assert 1 <= statuses[401] <= 5, statuses
    assert statuses[429] == 100 - statuses[401]
    # Every full check that failed logged one line: as many as the 401s, at most the limit.
    wait_for(
        lambda: server.stderr.text.count(WRONG_PASSWORD) >= statuses[401], 10, "the failure lines"
    )
    assert server.stderr.text.count(WRONG_PASSWORD) == statuses[401]

    if statuses[401] == 5:
        # alice is locked out from this address for full checks, even with her password...
        assert status(server, ALICE) == 429
    # ...but not bob: the lockout is per address and user name.
    assert status(server, BOB) == 200


def test_the_user_in_use_keeps_working_while_a_neighbour_guesses(
    launch: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    # Credentials stay cached for 1 s after their last use; the guesser keeps the lock on alice.
    server = launch(
        {
            "TABPY_PWD_FILE": str(users(tmp_path)),
            "TABPY_AUTH_MAX_FAILURES": "3",
            "TABPY_AUTH_CACHE_SECONDS": "1",
        }
    )
    assert status(server, ALICE) == 200
    stop = threading.Event()
    attacker: Counter[int] = Counter()

    def guess() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            attempt = 0
            while not stop.is_set():
                attempt += 1
                wrong = basic("alice", f"guess-{attempt}")
                attacker[client.get("/info", headers={"Authorization": wrong}).status_code] += 1
                stop.wait(0.005)  # pacing, not synchronisation

    thread = threading.Thread(target=guess, daemon=True)
    thread.start()
    try:
        wait_for(lambda: attacker[429] > 0, 10, "the guesser to be locked out")
        tableau: Counter[int] = Counter()
        deadline = time.monotonic() + 3.5  # several cache lifetimes
        while time.monotonic() < deadline:
            tableau[status(server, ALICE)] += 1
        # A new login by someone else from the same address is not blocked either.
        assert status(server, BOB) == 200
    finally:
        stop.set()
        thread.join(10)
    assert set(tableau) == {200}, tableau
    assert attacker[401] <= 3 and attacker[429] > 0, attacker


def test_forwarded_headers_count_only_from_trusted_proxies(
    launch: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    settings = {"TABPY_PWD_FILE": str(users(tmp_path)), "TABPY_AUTH_MAX_FAILURES": "2"}
    wrong = basic("alice", "guess")
    elsewhere = {"X-Forwarded-For": "203.0.113.9", "Forwarded": "for=203.0.113.9"}

    untrusting = launch(settings)
    assert [status(untrusting, wrong) for _ in range(2)] == [401, 401]
    # Claiming another address does not escape the lockout.
    assert status(untrusting, wrong, **elsewhere) == 429

    behind_proxy = launch({**settings, "TABPY_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8"})
    assert [status(behind_proxy, wrong) for _ in range(2)] == [401, 401]
    assert status(behind_proxy, wrong) == 429
    # Through the trusted proxy, the client named in the header has its own count...
    assert status(behind_proxy, wrong, **{"X-Forwarded-For": "6.6.6.6, 203.0.113.9"}) == 401
    # ...also through a second trusted proxy (10.1.1.1)...
    assert status(behind_proxy, wrong, **{"X-Forwarded-For": "203.0.113.9, 10.1.1.1"}) == 401
    # ...and the hop the client wrote itself (7.7.7.7) is not believed.
    assert status(behind_proxy, wrong, **{"X-Forwarded-For": "7.7.7.7, 203.0.113.9"}) == 429
    wait_for(
        lambda: "401 GET /info (203.0.113.9)" in behind_proxy.stderr.text,
        10,
        "the access log line with the forwarded address",
    )
