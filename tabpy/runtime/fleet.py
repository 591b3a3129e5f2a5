"""This instance as a member of the fleet: its heartbeat, and what it knows of the others.

The server keeps its row of ``tabpy_members`` (:mod:`tabpy.registry.members`) current: one
write every ``TABPY_MEMBER_HEARTBEAT_SECONDS``, and one more as soon as what it has loaded
changes (a new catalog revision, a load check finishing), so that a deploy made elsewhere
learns within a fraction of a second that this instance serves the new version. The catalog is
compared in memory every :data:`CHANGE_CHECK_SECONDS`; that costs no query.

After each write it reads the live members (a few rows), so the other instances' Flight
addresses are at hand without a query when a table is missing here. Every
:data:`EXPIRE_EVERY` beats it also deletes the rows of members that stopped beating.

A registry that cannot be reached only makes the heartbeat wait: it is logged once, the
instance keeps serving, and the others see it as gone after the expiry, then back when the
database answers again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from tabpy.registry import members
from tabpy.registry.members import MISSED_BEATS, Loaded, Member
from tabpy.runtime.catalog import Catalog

__all__ = ["CHANGE_CHECK_SECONDS", "Fleet", "MemberAddress"]

logger = logging.getLogger(__name__)

#: How often the catalog is compared with what the row last said (in memory).
CHANGE_CHECK_SECONDS = 0.1
#: A deploy waiting for the others reads their rows this often.
WAIT_POLL_SECONDS = 0.1
#: Expired rows are deleted on every this many-th heartbeat.
EXPIRE_EVERY = 12


@dataclass(frozen=True)
class MemberAddress:
    """Where this instance says it is; ``flight`` is asked on each beat (Flight starts late)."""

    instance_id: str
    http_url: str
    flight_url: Callable[[], str | None]
    version: str


class Fleet:
    def __init__(
        self,
        engine: Engine,
        catalog: Catalog,
        address: MemberAddress,
        heartbeat_seconds: float,
        *,
        clock: Callable[[], int] = members.now_ms,
    ) -> None:
        self.engine = engine
        self.catalog = catalog
        self.address = address
        self.heartbeat_seconds = heartbeat_seconds
        self.expiry_ms = int(heartbeat_seconds * MISSED_BEATS * 1000)
        self._clock = clock
        self.started_at = clock()
        #: The live members as last read (this one included), by instance id.
        self.members: list[Member] = []
        self._task: asyncio.Task[None] | None = None
        self._written: tuple[object, ...] | None = None
        self._beats = 0
        self._reachable = True

    @property
    def instance_id(self) -> str:
        return self.address.instance_id

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.beat()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Stop beating and leave the fleet (the row goes, so nobody waits for this one)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        try:
            await asyncio.to_thread(members.deregister, self.engine, self.instance_id)
        except Exception as exc:  # noqa: BLE001 - the row expires by itself anyway
            logger.warning("Could not leave the fleet's member list: %s", _first_line(exc))

    async def _run(self) -> None:
        due = time.monotonic() + self.heartbeat_seconds
        while True:
            await asyncio.sleep(CHANGE_CHECK_SECONDS)
            # While the registry fails, only the regular beat retries (no storm of retries).
            changed = self._reachable and self._state() != self._written
            if time.monotonic() >= due or changed:
                due = time.monotonic() + self.heartbeat_seconds
                await self.beat()

    # --- the row ---------------------------------------------------------------------------------

    def loaded(self) -> Loaded:
        """What this instance serves now: its catalog revision and each endpoint's state."""
        states = self.catalog.states
        endpoints = {name: (state.version, state.status.value) for name, state in states.items()}
        return Loaded(self.catalog.revision, endpoints)

    def _state(self) -> tuple[object, ...]:
        states = self.catalog.states
        return (
            self.catalog.revision,
            tuple((n, s.version, s.status) for n, s in states.items()),
            self.address.flight_url(),
        )

    async def beat(self) -> None:
        """Write this member's row, then read the live members (on a thread)."""
        state = self._state()
        member = Member(
            self.instance_id,
            self.address.http_url,
            self.address.flight_url(),
            self.address.version,
            self.started_at,
            self._clock(),
            self.loaded(),
        )
        self._beats += 1
        expire = self._beats % EXPIRE_EVERY == 1
        try:
            self.members = await asyncio.to_thread(self._write, member, expire)
        except Exception as exc:  # noqa: BLE001 - keep serving; the next beat tries again
            if self._reachable:
                logger.warning("Membership heartbeat failed: %s", _first_line(exc))
            self._reachable = False
            return
        if not self._reachable:
            logger.info("Membership heartbeat written again")
        self._reachable = True
        self._written = state

    def _write(self, member: Member, expire: bool) -> list[Member]:
        members.heartbeat(self.engine, member)
        if expire:
            gone = members.expire(self.engine, self.expiry_ms, self._clock())
            if gone:
                logger.info("Removed %d fleet member(s) that stopped beating", gone)
        return members.live_members(self.engine, self.expiry_ms, self._clock())

    # --- the others ------------------------------------------------------------------------------

    def peers(self) -> list[Member]:
        """The other live members, as last read."""
        return [m for m in self.members if m.instance_id != self.instance_id]

    def read_members(self) -> list[Member]:
        """The live members, read now (on the caller's thread); raises the driver's errors."""
        return members.live_members(self.engine, self.expiry_ms, self._clock())

    async def wait_loaded(self, name: str, revision: int, timeout: float) -> list[str] | None:
        """Wait until every other live member has loaded ``name`` at ``revision`` or later.

        Returns the ids of those that still have not when ``timeout`` passes (empty: all did),
        or None when no other member is alive: a lone instance waits for nobody.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                found = await asyncio.to_thread(self.read_members)
            except Exception as exc:  # noqa: BLE001 - the deploy itself succeeded
                logger.warning("Could not read the fleet's members: %s", _first_line(exc))
                found = self.members
            others = [m for m in found if m.instance_id != self.instance_id]
            if not others:
                return None
            pending = [m.instance_id for m in others if not m.loaded.has_loaded(name, revision)]
            if not pending or time.monotonic() >= deadline:
                if pending:
                    logger.warning(
                        "Endpoint %s: not yet loaded by %s after %g s (TABPY_DEPLOY_WAIT_SECONDS)",
                        name,
                        ", ".join(pending),
                        timeout,
                    )
                return pending
            await asyncio.sleep(min(WAIT_POLL_SECONDS, max(deadline - time.monotonic(), 0)))


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return (text.splitlines() or [type(exc).__name__])[0]
