"""Who may do what: roles from the registry's grants, endpoint owners and callers.

One :class:`Authorization` per server. The authenticator asks it to fill in each principal's
roles (:meth:`Authorization.resolve`), so HTTP and Arrow Flight see the same ones; the routes ask
it to decide (``require_*``), which raises :class:`~tabpy.errors.PermissionDenied` naming the
missing role or ownership.

The rules live in the registry, so every instance of a fleet shares them; this object keeps an
immutable copy (:class:`AccessRules`) and replaces it when the registry's access revision moves
(polled every :data:`POLL_SECONDS`, and at once after a change made here; with PostgreSQL's
change feed, at once after any instance's change and otherwise every
:data:`SAFETY_POLL_SECONDS`). A decision is then a few set lookups with no I/O, which keeps
``/query`` and ``/evaluate`` as fast with ``TABPY_AUTHZ`` on as off.

With ``TABPY_AUTHZ`` off (the default) every principal holds every role and nothing is refused
here, exactly as in TabPy; the registry is not even read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from tabpy.config import Settings
from tabpy.errors import PermissionDenied
from tabpy.security.principal import Principal
from tabpy.security.roles import (
    ADMIN,
    GROUP_PREFIX,
    USER_PREFIX,
    Role,
    references_of,
    roles_from_claim,
)

__all__ = [
    "POLL_SECONDS",
    "SAFETY_POLL_SECONDS",
    "AccessRules",
    "AccessSource",
    "Authorization",
    "ChangeFeed",
    "StoredRules",
]

logger = logging.getLogger(__name__)

#: How often the registry's access revision is checked (changes by other instances).
POLL_SECONDS = 0.5
#: How often while a change feed is listening: a safety net for a lost notification.
SAFETY_POLL_SECONDS = 30.0

#: What a role allows, for refusal messages.
_PURPOSE: Mapping[str, str] = {
    "admin": "managing roles, reading the audit trail and changing any endpoint",
    "deployer": "deploying, updating and removing endpoints",
    "caller": "querying deployed endpoints (/query)",
    "evaluator": "running ad-hoc scripts (/evaluate and Arrow Flight tables)",
}


class StoredRules(Protocol):
    """The registry's access tables at one revision (``tabpy.registry`` provides them)."""

    @property
    def revision(self) -> int: ...
    @property
    def grants(self) -> Mapping[str, Collection[str]]: ...
    @property
    def owners(self) -> Mapping[str, Collection[str]]: ...
    @property
    def callers(self) -> Mapping[str, Collection[str]]: ...


class AccessSource(Protocol):
    """Where the rules come from: :class:`tabpy.registry.store.Registry` (blocking calls)."""

    def access_revision(self) -> int: ...
    def access_rules(self) -> StoredRules: ...


class ChangeFeed(Protocol):
    """Tells about registry changes as they commit (``tabpy.registry.change_feed``).

    Subscribers are called from another thread, with the changed topic ("access" here), and
    with ``"*"`` whenever :attr:`listening` changes.
    """

    @property
    def listening(self) -> bool: ...
    def subscribe(self, subscriber: Callable[[str], None]) -> None: ...


@dataclass(frozen=True)
class AccessRules:
    """An immutable copy of the rules: reference -> roles, endpoint -> owner / caller references.

    An endpoint missing from ``callers`` may be queried by every caller.
    """

    revision: int = -1
    grants: Mapping[str, frozenset[str]] = field(default_factory=dict)
    owners: Mapping[str, frozenset[str]] = field(default_factory=dict)
    callers: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, stored: StoredRules) -> AccessRules:
        def frozen(table: Mapping[str, Collection[str]]) -> dict[str, frozenset[str]]:
            return {key: frozenset(values) for key, values in table.items()}

        return cls(
            stored.revision, frozen(stored.grants), frozen(stored.owners), frozen(stored.callers)
        )

    def granted(self, user: str | None, groups: Collection[str]) -> frozenset[str]:
        """The roles granted in the registry to ``user`` and to its groups."""
        found: set[str] = set()
        if user is not None:
            found.update(self.grants.get(USER_PREFIX + user.lower(), ()))
        for group in groups:
            found.update(self.grants.get(GROUP_PREFIX + group, ()))
        return frozenset(found)


class Authorization:
    def __init__(
        self,
        *,
        enabled: bool,
        role_map: tuple[tuple[str, str], ...] = (),
        source: AccessSource | None = None,
    ) -> None:
        self.enabled = enabled
        self.role_map = role_map
        self.source = source
        self.rules = AccessRules()
        #: Resolved Basic principals (the hot path), dropped whenever the rules change.
        self._basic: dict[str, Principal] = {}
        self._watcher: asyncio.Task[None] | None = None
        self.changes: ChangeFeed | None = None
        self._woken = asyncio.Event()

    @classmethod
    def from_settings(cls, settings: Settings, source: AccessSource | None) -> Authorization:
        return cls(
            enabled=settings.authz,
            role_map=settings.oauth_role_map,
            source=source,
        )

    def read_rules_from(self, source: AccessSource, changes: ChangeFeed | None = None) -> None:
        """Name the registry once it is open (it opens after the settings are checked)."""
        self.source = source
        self.changes = changes

    # --- principals ------------------------------------------------------------------------------

    def resolve(self, principal: Principal, claim: Collection[str] = ()) -> Principal:
        """``principal`` with its roles and groups; ``claim`` holds a token's roles-claim values.

        While not enforcing, ``principal`` comes back as it is: every decision below then
        allows everything, so there is nothing to look up.
        """
        if not self.enabled:
            return principal
        if principal.scheme == "basic" and principal.user is not None:
            cached = self._basic.get(principal.user)
            if cached is None:
                roles = self.rules.granted(principal.user, ())
                cached = Principal("basic", principal.user, roles=roles)
                self._basic[principal.user] = cached
            return cached
        groups = frozenset(value.lower() for value in claim)
        roles = roles_from_claim(claim, self.role_map) | self.rules.granted(principal.user, groups)
        return Principal(principal.scheme, principal.user, principal.scopes, roles, groups)

    # --- decisions -------------------------------------------------------------------------------

    def has_role(self, principal: Principal, role: Role) -> bool:
        return not self.enabled or role in principal.roles or ADMIN in principal.roles

    def role_refusal(self, principal: Principal, role: Role) -> PermissionDenied | None:
        """Why ``principal`` may not act as ``role``, or None if it holds it (or is an admin)."""
        if self.has_role(principal, role):
            return None
        held = ", ".join(sorted(principal.roles)) or "no role"
        return PermissionDenied(
            f"Permission denied: {_PURPOSE[role]} needs the {role} role.",
            f"{_who(principal)} has {held}. {_how_to_grant(principal, role)}",
        )

    def require_role(self, principal: Principal, role: Role) -> None:
        refusal = self.role_refusal(principal, role)
        if refusal is not None:
            raise refusal

    def require_owner(
        self, principal: Principal, endpoint: str, owners: Collection[str], doing: str
    ) -> None:
        """Raise unless ``principal`` is an admin, or a deployer among ``owners`` of ``endpoint``.

        ``doing`` completes "may ... " in the refusal: ``"update it"``, ``"roll it back"``.

        ``owners`` is passed in (read in the registry's transaction), not taken from the copy, so
        a change of owners by another instance cannot slip between the check and the change.
        """
        if not self.enabled or ADMIN in principal.roles:
            return
        self.require_role(principal, "deployer")
        if references_of(principal) & frozenset(owners):
            return
        listed = ", ".join(sorted(owners)) or "none: only admins may change it"
        raise PermissionDenied(
            f"Permission denied: only an owner of endpoint {endpoint} or an admin may {doing}.",
            f"Its owners: {listed}. {_who(principal)} is not one of them; an owner or an admin "
            'can add you with PUT /endpoints/<name> {"owners": [...]}.',
        )

    def query_refusal(self, principal: Principal, endpoint: str) -> PermissionDenied | None:
        """Why ``principal`` may not query ``endpoint`` (role, then its callers), or None."""
        if not self.enabled or ADMIN in principal.roles:
            return None
        refusal = self.role_refusal(principal, "caller")
        if refusal is not None:
            return refusal
        rules = self.rules
        callers = rules.callers.get(endpoint)
        if not callers:
            return None
        mine = references_of(principal)
        if mine & callers or mine & rules.owners.get(endpoint, frozenset()):
            return None
        return PermissionDenied(
            f"Permission denied: endpoint {endpoint} may be queried only by its callers.",
            f"{_who(principal)} is not among them ({', '.join(sorted(callers))}); its owners or "
            'an admin can add you with PUT /endpoints/<name> {"callers": [...]}.',
        )

    def require_caller(self, principal: Principal, endpoint: str) -> None:
        refusal = self.query_refusal(principal, endpoint)
        if refusal is not None:
            raise refusal

    # --- keeping the copy current ----------------------------------------------------------------

    async def start(self) -> None:
        """Load the rules and watch for changes (only while enforcing: nothing to do otherwise)."""
        if not self.enabled or self.source is None:
            return
        await self.refresh()
        loop = asyncio.get_running_loop()
        if self.changes is not None:
            self.changes.subscribe(lambda topic: self._wake_from_thread(loop, topic))
        self._watcher = loop.create_task(self._watch())

    def _wake_from_thread(self, loop: asyncio.AbstractEventLoop, topic: str) -> None:
        if topic in ("access", "*"):
            with contextlib.suppress(RuntimeError):  # the loop closed: the server is stopping
                loop.call_soon_threadsafe(self._woken.set)

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

    async def refresh(self) -> None:
        """Re-read the rules if the registry's access revision moved."""
        if not self.enabled or self.source is None:
            return
        source = self.source
        revision = await asyncio.to_thread(source.access_revision)
        if revision == self.rules.revision:
            return
        self.load(await asyncio.to_thread(source.access_rules))

    def load(self, stored: StoredRules) -> None:
        """Replace the copy (callers on other threads keep the one they read)."""
        self.rules = AccessRules.of(stored)
        self._basic = {}

    async def _watch(self) -> None:
        while True:
            listening = self.changes is not None and self.changes.listening
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(
                    self._woken.wait(), SAFETY_POLL_SECONDS if listening else POLL_SECONDS
                )
            self._woken.clear()
            try:
                await self.refresh()
            except Exception as exc:  # noqa: BLE001 - keep the last rules and keep watching
                logger.warning("Reading the access rules from the registry failed: %s", exc)


def _who(principal: Principal) -> str:
    if principal.scheme == "bearer":
        return f'Token subject "{principal.user}"' if principal.user else "This token"
    return f'User "{principal.user}"' if principal.user else "This caller"


def _how_to_grant(principal: Principal, role: str) -> str:
    if principal.scheme == "bearer":
        return (
            f"An admin can grant {role} to the token's subject or to one of its groups "
            "(POST /admin/principals), or map a roles-claim value to it (TABPY_OAUTH_ROLE_MAP)."
        )
    user = principal.user or "<name>"
    return (
        f"An admin can grant it: tabpy-user grant --config <config file> -u {user} "
        f"--role {role}, or POST /admin/principals."
    )
