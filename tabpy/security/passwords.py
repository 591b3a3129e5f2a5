"""Password hashes: TabPy's legacy scheme and our self-describing salted format.

Both are PBKDF2-HMAC-SHA512; they differ in salt and cost.

* **Legacy** (what TabPy 2.16 writes and reads): 10 000 iterations, a salt derived from the
  lowercased username, 64-byte key written as 128 hex digits. Kept so existing password files
  keep working and so files can be shared with a real TabPy.
* **Modern** (what ``tabpy-user`` writes by default): ``pbkdf2_sha512$<iterations>$<salt>$<key>``
  with a random 16-byte salt, base64 fields and :data:`DEFAULT_ITERATIONS` iterations, the
  OWASP Password Storage Cheat Sheet figure for PBKDF2-HMAC-SHA512. The prefix names the
  algorithm, so the cost can rise later without breaking stored entries.

Pure functions only: no files, no logging. Comparisons are constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass

__all__ = [
    "DEFAULT_ITERATIONS",
    "MODERN_PREFIX",
    "InvalidHash",
    "LegacyHash",
    "ModernHash",
    "StoredHash",
    "generate_password",
    "hash_password",
    "legacy_hash",
    "parse_hash",
]

MODERN_PREFIX = "pbkdf2_sha512"
DEFAULT_ITERATIONS = 210_000
LEGACY_ITERATIONS = 10_000
KEY_BYTES = 64
SALT_BYTES = 16
# Bounds for iteration counts read from a file: a typo such as 2100000000 would otherwise turn
# every login into a minutes-long computation.
MIN_ITERATIONS = 1_000
MAX_ITERATIONS = 10_000_000

# Unambiguous characters (no 0/O, 1/l/I) and punctuation that survives shells, the TSM command
# line and HTTP Basic. Never ':' — it separates user from password in Basic credentials.
_PASSWORD_ALPHABET = (
    "".join(c for c in string.ascii_letters + string.digits if c not in "0O1lI") + "!#%+-.=?@^_~"
)
GENERATED_LENGTH = 20


class InvalidHash(ValueError):
    """A stored hash in the modern format is malformed; the message says which part."""


@dataclass(frozen=True, slots=True)
class LegacyHash:
    """TabPy's hex hash. Any text is accepted, as TabPy does: non-hex text simply never matches."""

    text: str

    @property
    def well_formed(self) -> bool:
        return len(self.text) == 2 * KEY_BYTES and all(c in string.hexdigits for c in self.text)

    def verify(self, username: str, password: str) -> bool:
        expected = legacy_hash(username, password).encode()
        # TabPy compares case-insensitively, so uppercase hex in a file works.
        return hmac.compare_digest(expected, self.text.lower().encode("utf-8", "replace"))


@dataclass(frozen=True, slots=True)
class ModernHash:
    iterations: int
    salt: bytes
    key: bytes

    def verify(self, username: str, password: str) -> bool:
        derived = hashlib.pbkdf2_hmac(
            "sha512", password.encode("utf-8"), self.salt, self.iterations, len(self.key)
        )
        return hmac.compare_digest(derived, self.key)

    def encode(self) -> str:
        return "$".join((MODERN_PREFIX, str(self.iterations), _b64(self.salt), _b64(self.key)))


StoredHash = LegacyHash | ModernHash


def legacy_hash(username: str, password: str) -> str:
    """TabPy 2.16's hash of ``password`` for ``username`` (case-insensitive), as hex."""
    salt = f"_$salt@tabpy:{username.lower()}$_".encode()
    key = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, LEGACY_ITERATIONS)
    return key.hex()


def hash_password(password: str, *, iterations: int = DEFAULT_ITERATIONS) -> str:
    """A new modern-format hash of ``password`` with a fresh random salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, KEY_BYTES)
    return ModernHash(iterations, salt, key).encode()


def parse_hash(text: str) -> StoredHash:
    """Interpret the second field of a password-file line.

    Raises :class:`InvalidHash` only for text that claims the modern format but is malformed;
    everything else is a legacy hash (check :attr:`LegacyHash.well_formed` to warn about it).
    """
    if not text.startswith(MODERN_PREFIX + "$"):
        return LegacyHash(text)
    parts = text.split("$")
    if len(parts) != 4:
        raise InvalidHash(
            f"a {MODERN_PREFIX} hash has four $-separated fields "
            f"({MODERN_PREFIX}$<iterations>$<salt>$<key>), this one has {len(parts)}"
        )
    _, iterations_text, salt_text, key_text = parts
    if not iterations_text.isdigit() or not (
        MIN_ITERATIONS <= int(iterations_text) <= MAX_ITERATIONS
    ):
        raise InvalidHash(
            f"the iteration count {iterations_text!r} is not a whole number between "
            f"{MIN_ITERATIONS} and {MAX_ITERATIONS}"
        )
    salt = _unb64(salt_text, "salt")
    key = _unb64(key_text, "key")
    if len(salt) < 8 or len(key) < 16:
        raise InvalidHash("the salt or the key is too short to be one tabpy-user wrote")
    return ModernHash(int(iterations_text), salt, key)


def generate_password(length: int = GENERATED_LENGTH) -> str:
    """A random password (about 6 bits per character) that never contains ``:``."""
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(length))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidHash(f"the {what} is not valid base64") from None
