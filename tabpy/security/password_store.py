"""The server's live copy of the password file.

Loaded at start-up (a bad file stops start-up with one line naming every bad line), then
reloaded without a restart when the file changes on disk or the server receives SIGHUP.
Change detection is one ``stat`` at most once per ``check_interval`` seconds, done when a
request needs the users, so an idle server does no work. A reload that fails (bad line,
no users, file gone or unreadable) keeps the last good users and logs why, once per change.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from tabpy.config import ConfigError
from tabpy.security.password_file import Entry, PasswordFileError, read_password_file

__all__ = ["PasswordStore"]

logger = logging.getLogger(__name__)

DEFAULT_CHECK_INTERVAL = 1.0

# What identifies one version of the file: a rename (atomic rewrite) changes the inode, an
# in-place edit changes the modification time or the size.
_Signature = tuple[int, int, int, int]
_MISSING: _Signature = (-1, -1, -1, -1)


class PasswordStore:
    def __init__(
        self,
        path: Path,
        *,
        check_interval: float = DEFAULT_CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.check_interval = check_interval
        self._clock = clock
        self._entries: Mapping[str, Entry] = {}
        self._signature: _Signature | None = None
        self._rejected: _Signature | None = None
        self._next_check = 0.0

    def load(self) -> None:
        """First load, at start-up: raise ``ConfigError`` if the file is unusable."""
        logger.info("Parsing passwords file %s...", self.path)
        try:
            self._read()
        except (OSError, PasswordFileError, _NoUsers) as err:
            raise ConfigError(
                f"Failed to read passwords file {self.path}: {_describe(err)}. Fix the file "
                "(tabpy-user list shows its problems) or unset TABPY_PWD_FILE."
            ) from None
        for name in self._entries:
            logger.debug("Found username %s", name)
        logger.info("Authentication is enabled")

    def lookup(self, username: str) -> Entry | None:
        """The entry for ``username`` (lowercased) after a cheap check for a newer file."""
        now = self._clock()
        if now >= self._next_check:
            self._next_check = now + self.check_interval
            self._reload_if_changed()
        return self._entries.get(username)

    def reload(self) -> None:
        """Reload now, whether or not the file looks changed (SIGHUP)."""
        logger.info("Reloading passwords file %s", self.path)
        self._rejected = None
        self._try_reload()

    @property
    def entries(self) -> Mapping[str, Entry]:
        return self._entries

    # --- internals -------------------------------------------------------------------------------

    def _reload_if_changed(self) -> None:
        try:
            signature = _signature(self.path)
        except OSError as err:
            if self._rejected != _MISSING:  # log a vanished file once, not every second
                self._rejected = _MISSING
                self._log_kept(err)
            return
        if signature in (self._signature, self._rejected):
            return
        self._try_reload()

    def _try_reload(self) -> None:
        try:
            self._read()
        except (OSError, PasswordFileError, _NoUsers) as err:
            try:
                self._rejected = _signature(self.path)
            except OSError:
                self._rejected = _MISSING
            self._log_kept(err)
            return
        self._rejected = None
        logger.info("Reloaded passwords file %s: %d user(s)", self.path, len(self._entries))

    def _read(self) -> None:
        # Signature first: a write racing with the read is then seen as one more change.
        signature = _signature(self.path)
        parsed = read_password_file(self.path)
        for warning in parsed.warnings:
            logger.warning("Passwords file %s, %s", self.path, warning)
        if not parsed.entries:
            raise _NoUsers()
        self._entries = parsed.entries
        self._signature = signature

    def _log_kept(self, err: BaseException) -> None:
        logger.error(
            "Passwords file %s was not reloaded (%s); still using the previous %d user(s)",
            self.path,
            _describe(err),
            len(self._entries),
        )


class _NoUsers(Exception):
    def __str__(self) -> str:
        return "No credentials found"


def _signature(path: Path) -> _Signature:
    info = os.stat(path)
    return (info.st_ino, info.st_dev, info.st_mtime_ns, info.st_size)


def _describe(err: BaseException) -> str:
    if isinstance(err, FileNotFoundError):
        return "Passwords file not found"
    if isinstance(err, OSError):
        return err.strerror or str(err)
    if isinstance(err, PasswordFileError):
        return "; ".join(err.problems)
    return str(err)
