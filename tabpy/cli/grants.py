"""``tabpy-user grant | revoke | list --config``: roles in the registry a config file names.

Roles live in the registry (``TABPY_REGISTRY_URL``, or the default under ``TABPY_STATE_PATH``),
not in the password file, which keeps TabPy's ``<user> <hash>`` format; so every instance of a
fleet sees the same grants, and a running server picks a change up within a second. The config
file is read as the server reads it, environment included (a registry password usually comes
from there). This is how the first admin is made: ``tabpy-user grant --config tabpy.conf -u
alice --role admin`` works before any server has started, and also when no admin is left.

Each grant and revoke is audited as ``local:<operating-system user>``.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tabpy.config import ConfigError, Settings, load_settings
from tabpy.errors import InvalidRequest
from tabpy.registry.audit import Actor
from tabpy.registry.store import Registry, display_url
from tabpy.security.password_file import PasswordFileError, read_password_file
from tabpy.security.roles import GROUP_PREFIX, USER_PREFIX, parse_reference, parse_role

__all__ = ["GrantError", "grant", "list_grants", "revoke"]


class GrantError(Exception):
    """A problem the user must fix; printed as one message, exit code 1."""


def grant(config: Path, principal: str, role: str) -> None:
    reference, role = _parse(principal, role)
    with _registry(config) as (settings, registry):
        _warn_unknown_user(settings, reference)
        added = registry.grant(reference, role, _actor())
        where = display_url(settings.registry_url)
        _note(
            f"Granted {role} to {reference} in {where}"
            if added
            else f"{reference} already has {role} in {where}; nothing changed"
        )
        _warn_if_not_enforced(settings)


def revoke(config: Path, principal: str, role: str) -> None:
    reference, role = _parse(principal, role)
    with _registry(config) as (settings, registry):
        removed = registry.revoke(reference, role, _actor())
        _note(
            f"Revoked {role} from {reference}"
            if removed
            else f"{reference} does not have {role}; nothing changed"
        )


def list_grants(config: Path) -> None:
    """Every principal with a grant, and every password-file user (those without: no role)."""
    with _registry(config) as (settings, registry):
        granted = registry.grants()
        users = _password_file_users(settings)
    for user in users:
        granted.setdefault(USER_PREFIX + user, set())
    for reference in sorted(granted):
        roles = ", ".join(sorted(granted[reference])) or "(no role)"
        sys.stdout.write(f"{reference}\t{roles}\n")
    _warn_if_not_enforced(settings)


# --- helpers -------------------------------------------------------------------------------------


def _parse(principal: str, role: str) -> tuple[str, str]:
    try:
        return parse_reference(principal, roles_allowed=False), parse_role(role)
    except InvalidRequest as error:
        raise GrantError(error.message) from None


@contextmanager
def _registry(config: Path) -> Iterator[tuple[Settings, Registry]]:
    try:
        settings = load_settings(config, os.environ)
    except ConfigError as error:
        raise GrantError(str(error)) from None
    try:
        registry = Registry(settings.registry_url)
    except ConfigError as error:
        raise GrantError(str(error)) from None
    except Exception as error:  # noqa: BLE001 - any driver error means the same here
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise GrantError(
            f"Cannot open the registry {display_url(settings.registry_url)} named by {config} "
            f"({type(error).__name__}: {first_line}); check TABPY_REGISTRY_URL."
        ) from None
    try:
        yield settings, registry
    finally:
        registry.close()


def _actor() -> Actor:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = str(os.getuid())
    return Actor(f"local:{user}", client="tabpy-user")


def _password_file_users(settings: Settings) -> list[str]:
    if settings.pwd_file is None:
        return []
    try:
        return list(read_password_file(settings.pwd_file).entries)
    except (OSError, PasswordFileError):
        return []  # the server reports the file's problems; the grants are still listed


def _warn_unknown_user(settings: Settings, reference: str) -> None:
    if reference.startswith(GROUP_PREFIX) or settings.oauth_enabled:
        return  # groups and token subjects are not in the password file
    users = _password_file_users(settings)
    name = reference[len(USER_PREFIX) :]
    if settings.pwd_file is not None and name not in users:
        _note(
            f"Note: {name} is not in the password file {settings.pwd_file}; the grant takes "
            f"effect once they are (tabpy-user add -u {name} -f {settings.pwd_file})."
        )


def _warn_if_not_enforced(settings: Settings) -> None:
    if not settings.authz:
        _note(
            "Note: TABPY_AUTHZ is off, so roles are recorded but not enforced (every user may "
            "do everything, as in TabPy); set TABPY_AUTHZ = on to enforce them."
        )


def _note(message: str) -> None:
    sys.stderr.write(message + "\n")
