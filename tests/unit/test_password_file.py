from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tabpy.security.password_file import (
    PasswordFile,
    PasswordFileError,
    read_password_file,
    write_password_file,
)
from tabpy.security.passwords import LegacyHash, ModernHash, legacy_hash

HASH = legacy_hash("alice", "P@ssw0rd")
MODERN = "pbkdf2_sha512$1000$c2FsdHNhbHRzYWx0c2FsdA$" + "A" * 86


def problems_of(text: str) -> list[str]:
    with pytest.raises(PasswordFileError) as caught:
        PasswordFile.parse(text, "p.txt")
    return caught.value.problems


def test_parses_entries_comments_blank_lines_and_crlf() -> None:
    text = f'# users\r\n\r\nAlice {HASH}\r\n"bo b" {MODERN}\r\n#x y z\r\n'
    parsed = PasswordFile.parse(text)
    assert list(parsed.entries) == ["alice", "bo b"]
    assert isinstance(parsed.entries["alice"].hash, LegacyHash)
    assert isinstance(parsed.entries["bo b"].hash, ModernHash)
    assert parsed.entries["bo b"].line == 4
    assert parsed.render() == text


def test_every_problem_is_reported_with_its_line_number() -> None:
    text = (
        f"alice {HASH}\n"
        f"alice  {HASH}\n"  # two spaces
        f"ALICE {HASH}\n"  # duplicate, case-insensitively
        f" bob {HASH}\n"  # leading space
        "carol \n"  # no password
        "dave pbkdf2_sha512$1$x$y\n"
        "erin\tabc\n"
    )
    assert problems_of(text) == [
        f"line 2: Incorrect entry \"['alice', '', '{HASH}']\" in password file (write the "
        "username and the hash separated by one space)",
        "line 3: Multiple entries for username alice in password file (first on line 1)",
        f"line 4: Incorrect entry \"['', 'bob', '{HASH}']\" in password file (write the "
        "username and the hash separated by one space)",
        "line 5: Found username carol but no password",
        "line 6: the hash of username dave is malformed: the iteration count '1' is not a "
        "whole number between 1000 and 10000000",
        "line 7: Incorrect entry \"['erin\\tabc']\" in password file (write the username and "
        "the hash separated by one space)",
    ]


def test_leading_space_before_a_two_field_line() -> None:
    assert problems_of(f" {HASH}\n") == ["line 1: starts with a space; remove it"]


def test_a_hash_that_cannot_match_is_a_warning() -> None:
    parsed = PasswordFile.parse("alice plaintext\n")
    assert "alice" in parsed.entries
    assert parsed.warnings == (
        "line 1: the hash of username alice is neither a TabPy hash nor a pbkdf2_sha512 hash, "
        "so this user cannot log in; set a password with tabpy-user update",
    )


def test_updates_keep_every_other_byte() -> None:
    text = f"# admins\nalice {HASH}\r\n\n# analysts\nbob {HASH}"
    updated = PasswordFile.parse(text).with_entry("ALICE", MODERN).with_entry("carol", HASH)
    assert updated.render() == (
        f"# admins\nalice {MODERN}\r\n\n# analysts\nbob {HASH}\ncarol {HASH}\n"
    )
    removed = updated.without_entry("Bob")
    assert removed.render() == f"# admins\nalice {MODERN}\r\n\n# analysts\ncarol {HASH}\n"
    assert list(removed.entries) == ["alice", "carol"]


def test_names_with_spaces_are_quoted_so_the_file_stays_parseable() -> None:
    updated = PasswordFile.parse("").with_entry("bo b", HASH)
    assert updated.render() == f'"bo b" {HASH}\n'
    assert list(PasswordFile.parse(updated.render()).entries) == ["bo b"]


def test_write_is_atomic_private_and_follows_symlinks(tmp_path: Path) -> None:
    target = tmp_path / "real.txt"
    target.write_text("old\n")
    os.chmod(target, 0o644)
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    write_password_file(link, f"alice {HASH}\n")
    assert link.is_symlink()
    assert target.read_text() == f"alice {HASH}\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.txt", "real.txt"]


def test_a_failed_write_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "p.txt"
    target.write_text("old\n")

    def fail(source: str, destination: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        write_password_file(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["p.txt"]


def test_read_reports_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_bytes(b"al\xffce abc\n")
    with pytest.raises(PasswordFileError, match="is not UTF-8 text"):
        read_password_file(path)
