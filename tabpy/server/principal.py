"""Who sent a request, as decided by authentication (``request.state.principal``)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

__all__ = ["ANONYMOUS", "Principal", "principal_of"]

STATE_KEY = "principal"


@dataclass(frozen=True, slots=True)
class Principal:
    scheme: str  # "none" (no authentication configured or needed), "basic" or "bearer"
    user: str | None = None  # Basic: the lowercased username; bearer: the token's sub claim
    scopes: frozenset[str] = frozenset()  # bearer only


ANONYMOUS = Principal("none")


def principal_of(request: Request) -> Principal | None:
    """The principal ``AuthMiddleware`` recorded, or None if it did not see this request."""
    state = request.scope.get("state")
    principal = state.get(STATE_KEY) if isinstance(state, dict) else None
    return principal if isinstance(principal, Principal) else None
