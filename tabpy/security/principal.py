"""Who is calling, as authentication decided it, whatever the transport.

A :class:`Principal` is made only by :class:`tabpy.security.authenticator.Authenticator`; the
HTTP and Arrow Flight adapters pass it on to the code that serves the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ANONYMOUS", "Principal", "Scheme"]

#: How the caller proved who they are: ``"none"`` when the server has no authentication.
Scheme = Literal["none", "basic", "bearer"]


@dataclass(frozen=True, slots=True)
class Principal:
    scheme: Scheme
    #: Basic: the lowercased user name; bearer: the token's ``sub`` claim (None if absent).
    user: str | None = None
    #: Bearer only: the token's scopes.
    scopes: frozenset[str] = frozenset()
    #: What the caller may do (:mod:`tabpy.security.roles`) with ``TABPY_AUTHZ`` on: the
    #: registry's grants and the token's mapped roles claim. Empty while it is off, when every
    #: check of :class:`tabpy.security.access.Authorization` allows everything.
    roles: frozenset[str] = frozenset()
    #: Bearer only: the values of the roles claim (``TABPY_OAUTH_ROLES_CLAIM``), lowercased;
    #: an endpoint's owners and callers may name them as ``group:<name>``.
    groups: frozenset[str] = frozenset()


ANONYMOUS = Principal("none")
