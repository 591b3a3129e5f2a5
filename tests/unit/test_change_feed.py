"""The LISTEN feed's thread: notifications reach subscribers; a lost connection is retried."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

from tabpy.registry import change_feed
from tabpy.registry.change_feed import ChangeFeed, open_change_feed


@dataclass
class Notify:
    payload: str


@dataclass
class FakeConnection:
    """Delivers ``batches`` (one per ``notifies`` call), then fails like a dropped socket,
    or (``stays``) waits for more like an idle one."""

    batches: list[list[str]]
    stays: bool = False
    executed: list[str] = field(default_factory=list)
    closed: bool = False

    def execute(self, sql: str) -> None:
        self.executed.append(sql)

    def notifies(self, timeout: float) -> list[Notify]:
        if not self.batches:
            if not self.stays:
                raise OSError("server closed the connection unexpectedly")
            time.sleep(0.01)  # nothing arrived within the timeout
            return []
        return [Notify(p) for p in self.batches.pop(0)]

    def close(self) -> None:
        self.closed = True


def wait_until(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_notifications_and_reconnections_reach_subscribers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(change_feed, "FIRST_PAUSE", 0.01)
    connections = [
        FakeConnection([["endpoints"], ["access"]]),
        FakeConnection([["settings"]], stays=True),
    ]
    attempts: list[int] = []

    def connect() -> object:
        attempts.append(1)
        if len(attempts) == 2:  # the database is down once between the two connections
            raise OSError("connection refused")
        return connections.pop(0)

    feed = ChangeFeed(connect)
    told: list[str] = []
    lock = threading.Lock()

    def subscriber(topic: str) -> None:
        with lock:
            told.append(topic)

    feed.subscribe(subscriber)
    wait_until(lambda: "settings" in told)
    assert feed.listening
    # Up ("*"), two changes, down ("*": poll meanwhile), up again ("*": re-read all), a change.
    assert told[:6] == ["*", "endpoints", "access", "*", "*", "settings"]
    assert len(attempts) == 3
    feed.close()
    assert not feed.listening


def test_a_failing_subscriber_does_not_silence_the_others() -> None:
    subscribed = threading.Event()

    def connect() -> FakeConnection:
        # The first subscription starts the feed: connect once both are in.
        subscribed.wait(5)
        return FakeConnection([["endpoints"]], stays=True)

    feed = ChangeFeed(connect)
    told: list[str] = []

    def broken(topic: str) -> None:
        raise RuntimeError("boom")

    feed.subscribe(broken)
    feed.subscribe(told.append)
    subscribed.set()
    wait_until(lambda: "endpoints" in told)
    feed.close()


def test_only_postgresql_has_a_feed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert open_change_feed(sa.create_engine(f"sqlite:///{tmp_path / 'r.db'}")) is None
    engine = sa.create_engine("postgresql+psycopg://u:secret@db.example/tabpy")
    assert isinstance(open_change_feed(engine), ChangeFeed)
