"""The admin routes: role grants (``/admin/principals``) and the audit trail (``/admin/audit``).

Only admins reach them with ``TABPY_AUTHZ`` on (the middleware checks the role, from the path);
with it off every authenticated caller is an admin, as every caller may do everything then.

* ``GET /admin/principals``: every principal with a grant, and its roles.
* ``POST /admin/principals`` with ``{"principal": "alice", "role": "deployer"}`` grants;
  ``DELETE`` with the same body revokes (refused for the last admin grant). Both answer with
  the principal's roles afterwards, and are audited with the change.
* ``GET /admin/audit``: newest first, filtered by ``principal``, ``endpoint``, ``action``,
  ``outcome``, ``since`` and ``until`` (seconds since the epoch, or ISO 8601 such as
  ``2026-12-01`` or ``2026-12-01T08:00:00Z``), a page of ``limit`` entries (at most
  :data:`MAX_PAGE`); the reply's ``next``, passed as ``before``, gives the following page.

The trail is append-only: no route changes or removes an entry.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response

from tabpy.errors import InvalidRequest
from tabpy.registry.audit import AUDIT_ACTIONS, AuditQuery
from tabpy.registry.store import Registry
from tabpy.security.roles import parse_reference, parse_role
from tabpy.server.actors import actor_of, principal_of
from tabpy.server.context import ServerContext
from tabpy.server.json_body import read_json_object
from tabpy.server.responses import JSON, RawResponse

__all__ = ["DEFAULT_PAGE", "MAX_PAGE", "Admin", "parse_time"]

DEFAULT_PAGE = 100
MAX_PAGE = 1000
#: Not user references: the audit's words for the command line and for no authentication.
_VERBATIM = ("local:", "anonymous", "bearer token")
_OUTCOMES = ("allowed", "refused", "failed")


class Admin:
    def __init__(self, context: ServerContext) -> None:
        self.context = context

    @property
    def registry(self) -> Registry:
        return self.context.catalog.registry

    async def principals(self, request: Request) -> Response:
        granted = await asyncio.to_thread(self.registry.grants)
        body = {
            "authz": self.context.settings.authz,
            "principals": {name: sorted(roles) for name, roles in sorted(granted.items())},
        }
        return RawResponse(json.dumps(body).encode(), 200, JSON)

    async def grant(self, request: Request) -> Response:
        return await self._change(request, grant=True)

    async def revoke(self, request: Request) -> Response:
        return await self._change(request, grant=False)

    async def audit(self, request: Request) -> Response:
        query = audit_query(request.query_params)
        entries = await asyncio.to_thread(self.registry.audit, query)
        more = len(entries) == query.limit
        body = {
            "entries": [entry.as_json() for entry in entries],
            "next": entries[-1].id if more and entries else None,
        }
        return RawResponse(json.dumps(body).encode(), 200, JSON)

    async def _change(self, request: Request, *, grant: bool) -> Response:
        settings = self.context.settings
        body = await read_json_object(
            request, settings.max_request_size_bytes, settings.gzip_enabled
        )
        if "principal" not in body or "role" not in body:
            raise InvalidRequest(
                'Send {"principal": "<user or group:<name>>", "role": "<role>"}.',
            )
        principal = parse_reference(body["principal"], roles_allowed=False)
        role = parse_role(body["role"])
        actor = actor_of(request.scope, principal_of(request))
        if grant:
            changed = await asyncio.to_thread(self.registry.grant, principal, role, actor)
        else:
            changed = await asyncio.to_thread(
                self.registry.revoke, principal, role, actor, keep_an_admin=True
            )
        await self.context.auth.authorization.refresh()
        roles = (await asyncio.to_thread(self.registry.grants)).get(principal, set())
        reply = {"principal": principal, "roles": sorted(roles), "changed": changed}
        return RawResponse(json.dumps(reply).encode(), 200, JSON)


def audit_query(params: Mapping[str, str]) -> AuditQuery:
    """The filters and page of ``GET /admin/audit``; raises ``InvalidRequest`` for bad ones."""
    principal = params.get("principal")
    if principal is not None and not principal.lower().startswith(_VERBATIM):
        principal = parse_reference(principal)
    action = params.get("action")
    if action is not None and action not in AUDIT_ACTIONS:
        raise InvalidRequest(f"action must be one of {', '.join(AUDIT_ACTIONS)}.")
    outcome = params.get("outcome")
    if outcome is not None and outcome not in _OUTCOMES:
        raise InvalidRequest(f"outcome must be one of {', '.join(_OUTCOMES)}.")
    since, until = params.get("since"), params.get("until")
    return AuditQuery(
        principal=principal,
        endpoint=params.get("endpoint"),
        action=action,
        outcome=outcome,
        since=parse_time("since", since) if since is not None else None,
        until=parse_time("until", until) if until is not None else None,
        before=_whole("before", params.get("before"), 1, None),
        limit=_whole("limit", params.get("limit"), 1, MAX_PAGE) or DEFAULT_PAGE,
    )


def parse_time(name: str, text: str) -> int:
    """Milliseconds since the epoch from seconds since the epoch or ISO 8601 (UTC if no zone)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if math.isfinite(seconds):
        return int(seconds * 1000)
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            f"{name} = {text[:40]!r} is not a time: give seconds since the epoch or ISO 8601, "
            "such as 2026-12-01 or 2026-12-01T08:00:00Z."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return int(moment.timestamp() * 1000)


def _whole(name: str, text: str | None, minimum: int, maximum: int | None) -> int | None:
    if text is None:
        return None
    try:
        number = int(text)
    except ValueError:
        number = minimum - 1
    if number < minimum or (maximum is not None and number > maximum):
        bound = f"from {minimum} to {maximum}" if maximum is not None else f"from {minimum}"
        raise InvalidRequest(f"{name} must be a whole number {bound}.")
    return number
