"""The password file: ``<username> <hash>`` per line, as TabPy reads and writes it.

Parsing follows TabPy (a space-delimited CSV line, ``"`` quoting, ``#`` in column 0 starts a
comment, blank lines skipped, usernames case-insensitive) but every problem is reported with
its line number, and all of them at once, so one look at the message is enough to fix the file.

Rewriting keeps every other line byte for byte (comments, blank lines, line endings and the
order of entries), replaces the file atomically (temporary file in the same directory, then
rename) and leaves it readable by its owner only.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tabpy._files import write_atomically
from tabpy.errors import TabPyError
from tabpy.security.passwords import InvalidHash, LegacyHash, StoredHash, parse_hash

__all__ = [
    "Entry",
    "PasswordFile",
    "PasswordFileError",
    "read_password_file",
    "write_password_file",
]

FILE_MODE = 0o600


class PasswordFileError(TabPyError):
    """The file cannot be used as it is. ``problems`` are ``line N: ...`` strings."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: {'; '.join(problems)}")
        self.source = source
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Entry:
    username: str  # lowercased
    hash_text: str  # exactly as written in the file
    hash: StoredHash
    line: int  # 1-based


@dataclass(frozen=True)
class PasswordFile:
    """A parsed file. Immutable: :meth:`with_entry` and :meth:`without_entry` return new ones."""

    lines: tuple[str, ...]  # the raw lines, each with its own line ending
    entries: Mapping[str, Entry]
    warnings: tuple[str, ...] = ()
    source: str = "password file"

    @classmethod
    def parse(cls, text: str, source: str = "password file") -> PasswordFile:
        """Parse ``text``; raise :class:`PasswordFileError` listing every bad line."""
        lines = tuple(text.splitlines(keepends=True))
        entries: dict[str, Entry] = {}
        problems: list[str] = []
        warnings: list[str] = []
        for number, raw in enumerate(lines, start=1):
            content = raw.rstrip("\r\n")
            if not content:
                continue
            try:
                fields = next(csv.reader([content], delimiter=" "))
            except (csv.Error, StopIteration) as err:
                problems.append(f"line {number}: cannot be read ({err})")
                continue
            if fields and fields[0].startswith("#"):
                continue
            if len(fields) != 2:
                problems.append(
                    f'line {number}: Incorrect entry "{fields}" in password file '
                    "(write the username and the hash separated by one space)"
                )
                continue
            name, hash_text = fields[0].lower(), fields[1]
            if not name:
                problems.append(f"line {number}: starts with a space; remove it")
                continue
            if name in entries:
                problems.append(
                    f"line {number}: Multiple entries for username {name} in password file "
                    f"(first on line {entries[name].line})"
                )
                continue
            if not hash_text:
                problems.append(f"line {number}: Found username {name} but no password")
                continue
            try:
                stored = parse_hash(hash_text)
            except InvalidHash as err:
                problems.append(f"line {number}: the hash of username {name} is malformed: {err}")
                continue
            if isinstance(stored, LegacyHash) and not stored.well_formed:
                warnings.append(
                    f"line {number}: the hash of username {name} is neither a TabPy hash nor a "
                    "pbkdf2_sha512 hash, so this user cannot log in; set a password with "
                    "tabpy-user update"
                )
            entries[name] = Entry(name, hash_text, stored, number)
        if problems:
            raise PasswordFileError(source, problems)
        return cls(lines, entries, tuple(warnings), source)

    def with_entry(self, username: str, hash_text: str) -> PasswordFile:
        """Set ``username``'s hash in place, or append a line for a new user."""
        name = username.lower()
        lines = list(self.lines)
        new_line = _format_line(name, hash_text)
        entry = self.entries.get(name)
        if entry is not None:
            old = lines[entry.line - 1]
            lines[entry.line - 1] = new_line + old[len(old.rstrip("\r\n")) :]
        else:
            newline = _newline_style(lines)
            if lines and not lines[-1].endswith(("\n", "\r")):
                lines[-1] += newline
            lines.append(new_line + newline)
        return PasswordFile.parse("".join(lines), self.source)

    def without_entry(self, username: str) -> PasswordFile:
        entry = self.entries[username.lower()]
        lines = list(self.lines)
        del lines[entry.line - 1]
        return PasswordFile.parse("".join(lines), self.source)

    def render(self) -> str:
        return "".join(self.lines)


def read_password_file(path: Path) -> PasswordFile:
    """Read and parse ``path``. ``FileNotFoundError`` and other ``OSError`` pass through."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise PasswordFileError(
            str(path), [f"is not UTF-8 text (byte {err.start}); save it as UTF-8"]
        ) from None
    return PasswordFile.parse(text, str(path))


def write_password_file(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically; the result has mode 0600."""
    write_atomically(path, text, mode=FILE_MODE)


def _format_line(name: str, hash_text: str) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=" ", lineterminator="").writerow([name, hash_text])
    return buffer.getvalue()


def _newline_style(lines: list[str]) -> str:
    for line in lines:
        if line.endswith("\r\n"):
            return "\r\n"
        if line.endswith("\n"):
            return "\n"
    return "\n"
