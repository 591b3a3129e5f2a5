from __future__ import annotations

import hashlib

import pytest

from tabpy.security.passwords import (
    DEFAULT_ITERATIONS,
    InvalidHash,
    LegacyHash,
    ModernHash,
    generate_password,
    hash_password,
    legacy_hash,
    parse_hash,
)

USER1 = (
    "b8a63cf588cd2399da615042de4732f5b121c4d1042acfb91598a56d2dd3e1d7"
    "b9f785213262eddbbd00c7a8c9c3e89d7cb98f31d405cc644b1aeba92c3de40b"
)
ALICE = (
    "35aebe3b72f2aa9ebc4e3d654474e7dd3e245f7ab3678bb6d3ac5c36c5ca043d"
    "d9d5ff6a0ecff7ee496c2c3af397de4f784033de292d30bcebf1437eb8fc9f72"
)


@pytest.mark.parametrize(
    ("username", "expected"), [("user1", USER1), ("USER1", USER1), ("alice", ALICE)]
)
def test_legacy_hash_matches_tabpy(username: str, expected: str) -> None:
    assert legacy_hash(username, "P@ssw0rd") == expected


def test_legacy_verification_is_case_insensitive_for_name_and_hex() -> None:
    stored = parse_hash(ALICE.upper())
    assert isinstance(stored, LegacyHash) and stored.well_formed
    assert stored.verify("ALICE", "P@ssw0rd")
    assert not stored.verify("alice", "p@ssw0rd")


def test_non_hex_legacy_text_loads_but_never_matches() -> None:
    stored = parse_hash("P@ssw0rd")
    assert isinstance(stored, LegacyHash) and not stored.well_formed
    assert not stored.verify("alice", "P@ssw0rd")


def test_modern_hash_round_trip_and_format() -> None:
    text = hash_password("a:b:c", iterations=1000)
    algorithm, iterations, salt, key = text.split("$")
    assert (algorithm, iterations) == ("pbkdf2_sha512", "1000")
    stored = parse_hash(text)
    assert isinstance(stored, ModernHash)
    assert len(stored.salt) == 16 and len(stored.key) == 64
    assert stored.encode() == text
    assert stored.verify("anyone", "a:b:c")
    assert not stored.verify("anyone", "a:b:")
    # The salt is random: the same password hashes differently each time.
    assert hash_password("a:b:c", iterations=1000) != text


def test_default_cost_meets_owasp_guidance() -> None:
    assert DEFAULT_ITERATIONS >= 210_000
    stored = parse_hash(hash_password("x"))
    assert isinstance(stored, ModernHash) and stored.iterations == DEFAULT_ITERATIONS


def test_modern_hash_is_plain_pbkdf2() -> None:
    stored = parse_hash(hash_password("secret", iterations=1000))
    assert isinstance(stored, ModernHash)
    assert hashlib.pbkdf2_hmac("sha512", b"secret", stored.salt, 1000) == stored.key


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("pbkdf2_sha512$1000$abc", "four $-separated fields"),
        ("pbkdf2_sha512$lots$c2FsdHNhbHQ$" + "A" * 86, "iteration count"),
        ("pbkdf2_sha512$999999999$c2FsdHNhbHQ$" + "A" * 86, "iteration count"),
        ("pbkdf2_sha512$1000$!!!$" + "A" * 86, "salt is not valid base64"),
        ("pbkdf2_sha512$1000$c2FsdHNhbHQ$QUJD", "too short"),
    ],
)
def test_malformed_modern_hashes_are_rejected(text: str, problem: str) -> None:
    with pytest.raises(InvalidHash, match=problem.replace("$", r"\$")):
        parse_hash(text)


def test_generated_passwords_are_long_random_and_colon_free() -> None:
    passwords = {generate_password() for _ in range(500)}
    assert len(passwords) == 500
    assert all(len(p) == 20 and ":" not in p and p.isprintable() for p in passwords)
    assert not any(c in p for p in passwords for c in " \"'`\\")
