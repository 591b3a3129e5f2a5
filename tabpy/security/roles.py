"""The vocabulary of authorization: roles, how principals are named, and what each route needs.

Pure: no I/O. :mod:`tabpy.security.access` makes the decisions with it.

**Roles.** ``admin`` may do everything; ``deployer`` may deploy endpoints (and change the ones
it owns); ``caller`` may ``/query`` endpoints that let it; ``evaluator`` may run ad-hoc scripts
(``/evaluate``, and Arrow Flight's table exchange, which only serves them).

**References** name who an owner, a caller or a grant is about, as text stored in the registry:

* ``user:<name>`` (or just ``<name>``): a Basic user name, or a bearer token's ``sub``;
* ``group:<name>``: a value of the token's roles claim (``TABPY_OAUTH_ROLES_CLAIM``);
* ``role:<name>``: everyone holding a role (endpoint callers only).

Names are compared without regard to case, as Basic user names are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal, cast

from tabpy.config import ConfigError, Settings
from tabpy.errors import InvalidRequest
from tabpy.security.principal import Principal

__all__ = [
    "ADMIN",
    "ALL_ROLES",
    "ROLES",
    "Role",
    "audit_name",
    "flight_role",
    "parse_reference",
    "parse_role",
    "references_of",
    "roles_from_claim",
    "route_role",
    "validate_authz_settings",
]

Role = Literal["admin", "deployer", "caller", "evaluator"]
ROLES: tuple[Role, ...] = ("admin", "deployer", "caller", "evaluator")
ALL_ROLES: frozenset[str] = frozenset(ROLES)
ADMIN: Role = "admin"

USER_PREFIX = "user:"
GROUP_PREFIX = "group:"
ROLE_PREFIX = "role:"
_PREFIXES = (USER_PREFIX, GROUP_PREFIX, ROLE_PREFIX)
#: Longest reference stored (the registry's column width).
MAX_REFERENCE_LENGTH = 255


def parse_role(text: object) -> Role:
    """``text`` as a role name; raises ``InvalidRequest`` naming the four roles."""
    role = text.strip().lower() if isinstance(text, str) else None
    if role not in ROLES:
        raise InvalidRequest(
            f"{text!r} is not a role: use one of {', '.join(ROLES)}.",
        )
    return cast(Role, role)


def parse_reference(text: object, *, roles_allowed: bool = True) -> str:
    """``text`` in its stored form (``user:alice``, ``group:ds``, ``role:caller``).

    A bare name is a user. Raises ``InvalidRequest`` saying how to write one.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest(
            "A principal is a non-empty string: a user name, group:<name> or role:<name>."
        )
    value = text.strip()
    prefix = next((p for p in _PREFIXES if value.lower().startswith(p)), USER_PREFIX)
    name = value[len(prefix) :] if value.lower().startswith(prefix) else value
    name = name.strip().lower()
    if not name or any(c.isspace() or not c.isprintable() for c in name):
        raise InvalidRequest(
            f"{text!r} is not a principal: the name after {prefix!r} must be non-empty, "
            "without spaces or control characters."
        )
    if prefix == ROLE_PREFIX:
        if not roles_allowed:
            raise InvalidRequest(
                f"{text!r}: a role cannot be given here; name a user or group:<name>."
            )
        parse_role(name)
    reference = prefix + name
    if len(reference) > MAX_REFERENCE_LENGTH:
        raise InvalidRequest(
            f"{text[:40]!r}... is {len(reference)} characters long; "
            f"the limit is {MAX_REFERENCE_LENGTH}."
        )
    return reference


def references_of(principal: Principal) -> frozenset[str]:
    """Every reference that names ``principal``: itself, its groups and its roles."""
    found = {GROUP_PREFIX + group for group in principal.groups}
    found.update(ROLE_PREFIX + role for role in principal.roles)
    if principal.user is not None:
        found.add(USER_PREFIX + principal.user.lower())
    return frozenset(found)


def audit_name(principal: Principal) -> str:
    """How the audit trail names ``principal``: its user reference, or what it is."""
    if principal.user is not None:
        return USER_PREFIX + principal.user.lower()
    return "bearer token without sub" if principal.scheme == "bearer" else "anonymous"


def roles_from_claim(
    values: Iterable[str], role_map: Iterable[tuple[str, str]] | None
) -> frozenset[str]:
    """The roles a token's roles claim grants.

    With a map (``TABPY_OAUTH_ROLE_MAP``) only its pairs count; without one, claim values that
    are role names are those roles.
    """
    lowered = {value.lower() for value in values}
    if not role_map:
        return frozenset(lowered & ALL_ROLES)
    return frozenset(role for claim, role in role_map if claim.lower() in lowered)


def route_role(path: str, method: str) -> Role | None:
    """The role an HTTP route needs (None: authentication is enough).

    ``path`` is relative to the Subdirectory prefix. Derived from the path and method alone,
    like the OAuth endpoint scopes, so routes added later need the right role too.
    """
    method = method.upper()
    if method == "OPTIONS":
        return None
    if _under(path, "/admin"):
        return "admin"
    if _under(path, "/query"):
        return "caller"
    if path == "/evaluate":
        return "evaluator"
    if path == "/configurations/endpoint_upload_destination" or _under(path, "/artifacts"):
        return "deployer"
    if _under(path, "/endpoints") and method in ("POST", "PUT", "DELETE", "PATCH"):
        return "deployer"
    return None


#: What each Arrow Flight call needs; ``action:<name>`` for ``DoAction``.
FLIGHT_ROLES: Mapping[str, Role | None] = {
    "DoPut": "evaluator",
    "DoGet": "evaluator",
    "GetFlightInfo": "evaluator",
    "ListFlights": "evaluator",
    "ListActions": None,
    "action:getUniquePath": "evaluator",
    "action:clear": "evaluator",
    "action:healthcheck": None,
    "action:shutdown": "admin",
}


def flight_role(call: str) -> Role | None:
    """The role an Arrow Flight call needs (``DoPut``, ``action:shutdown``, ...)."""
    return FLIGHT_ROLES.get(call)


def validate_authz_settings(settings: Settings) -> None:
    """Raise ``ConfigError`` for authorization settings that cannot work together."""
    unknown = sorted({role for _, role in settings.oauth_role_map} - ALL_ROLES)
    if unknown:
        raise ConfigError(
            f"TABPY_OAUTH_ROLE_MAP maps to {', '.join(unknown)}, which "
            f"{'is not a role' if len(unknown) == 1 else 'are not roles'}: use "
            f"{', '.join(ROLES)}."
        )
    if settings.oauth_role_map and not settings.oauth_roles_claim:
        raise ConfigError(
            "TABPY_OAUTH_ROLE_MAP is set but TABPY_OAUTH_ROLES_CLAIM is not: name the token "
            "claim whose values it maps (for example roles or groups)."
        )
    if settings.authz and settings.pwd_file is None and not settings.oauth_enabled:
        raise ConfigError(
            "TABPY_AUTHZ = on needs authentication to know who is calling: set TABPY_PWD_FILE "
            "(or turn on OAuth), or set TABPY_AUTHZ = off."
        )


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")
