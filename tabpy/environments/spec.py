"""What a deploy asks its environment to hold: requirement strings, or a lock file's text.

Pure data and validation, no I/O: the deploy route parses the request's ``requirements``
here, the registry stores :meth:`EnvironmentSpec.to_text` with the version, and the builder
turns a spec into the input ``uv`` resolves. A spec is compared and stored as given (the
strings in their order), so the same request always names the same spec.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from tabpy.errors import InvalidRequest

__all__ = [
    "LOCK_FORMATS",
    "MAX_REQUIREMENTS",
    "MAX_REQUIREMENT_CHARS",
    "MAX_TEXT_CHARS",
    "EnvironmentSpec",
    "LockFormat",
    "parse_spec",
    "stored_locks",
    "with_lock",
]

LockFormat = Literal["uv.lock", "pylock.toml", "requirements.txt"]
LOCK_FORMATS: tuple[str, ...] = get_args(LockFormat)

#: Most requirement strings one spec may list, and most characters of its text: a spec is
#: stored with every version and shown by ``GET /endpoints``, so it stays small.
MAX_REQUIREMENTS = 500
MAX_TEXT_CHARS = 1_000_000
MAX_REQUIREMENT_CHARS = 1000
#: A requirement starts with a project name (PEP 508), so never with an option's dash.
_REQUIREMENT_START = re.compile(r"^[A-Za-z0-9]")

_HOW = (
    'Send "requirements" as a list of requirement strings (["scikit-learn==1.5.2"]) or as '
    '{"lock": "<file text>", "format": "uv.lock" | "pylock.toml" | "requirements.txt"}.'
)


@dataclass(frozen=True)
class EnvironmentSpec:
    """Either ``requirements`` (strings as a user writes them) or a ``lock`` in ``format``."""

    requirements: tuple[str, ...] = ()
    lock: str | None = None
    format: LockFormat | None = None

    def as_json(self) -> dict[str, Any] | list[str]:
        """The spec as the API shows it: the form it was sent in."""
        if self.lock is None:
            return list(self.requirements)
        return {"lock": self.lock, "format": self.format}

    def to_text(self) -> str:
        """The registry's column value (JSON text)."""
        return json.dumps(self.as_json(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_text(cls, text: str) -> EnvironmentSpec:
        """A spec read back from the registry (it was validated when deployed).

        The column holds the spec as deployed, or, once resolved, the spec with its locks
        (:func:`stored_locks`); either reads back as the spec alone.
        """
        value = json.loads(text)
        if isinstance(value, dict) and _KEY_DEPLOYED in value:
            value = value[_KEY_DEPLOYED]
        return parse_spec(value)

    def summary(self) -> str:
        """One line for logs and the status page."""
        if self.lock is None:
            return ", ".join(self.requirements)
        return f"{self.format} ({len(self.lock.splitlines())} lines)"

    def resolver_input(self) -> str:
        """The requirements-file text ``uv pip compile`` resolves (not for pylock.toml)."""
        if self.lock is None:
            return "\n".join(self.requirements) + "\n"
        if self.format == "uv.lock":
            return uv_lock_requirements(self.lock)
        return self.lock


#: The keys of the registry's column once a spec is resolved: the spec as deployed, and its
#: locks, one per Python version (``{"3.12.3": {"lock": "<text>", "key": "<sha256>"}}``).
_KEY_DEPLOYED = "spec"
_KEY_LOCKS = "locks"


def stored_locks(text: str) -> dict[str, dict[str, str]]:
    """The locks recorded in a version's column value: Python version -> lock and key."""
    value = json.loads(text)
    if not isinstance(value, dict) or _KEY_DEPLOYED not in value:
        return {}
    locks = value.get(_KEY_LOCKS)
    return dict(locks) if isinstance(locks, dict) else {}


def with_lock(text: str, python_version: str, lock: str, key: str) -> str:
    """A version's column value with the lock ``python_version`` resolved to added."""
    spec = EnvironmentSpec.from_text(text)
    locks = {**stored_locks(text), python_version: {"lock": lock, "key": key}}
    value = {_KEY_DEPLOYED: spec.as_json(), _KEY_LOCKS: locks}
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def parse_spec(value: Any) -> EnvironmentSpec:
    """A deploy body's ``requirements``, checked strictly; ``InvalidRequest`` says what to fix."""
    if isinstance(value, list):
        return EnvironmentSpec(requirements=_requirements(value))
    if not isinstance(value, dict):
        raise InvalidRequest(f"requirements must be a list or an object. {_HOW}")
    unknown = sorted(set(value) - {"lock", "format"})
    if unknown:
        raise InvalidRequest(f"requirements has unknown keys: {', '.join(unknown)}. {_HOW}")
    lock, fmt = value.get("lock"), value.get("format")
    if fmt not in LOCK_FORMATS:
        raise InvalidRequest(
            f"requirements format must be one of {', '.join(LOCK_FORMATS)}, not {fmt!r}."
        )
    if not isinstance(lock, str) or not lock.strip():
        raise InvalidRequest(f"requirements lock must be the {fmt} file's text, not empty.")
    _check_text("requirements lock", lock)
    if fmt in ("uv.lock", "pylock.toml"):
        _check_toml(lock, fmt)
    if fmt == "uv.lock":
        uv_lock_requirements(lock)  # refuses a lock with nothing to install
    if fmt == "requirements.txt":
        _check_requirements_file(lock)
    return EnvironmentSpec(lock=lock, format=fmt)


def uv_lock_requirements(text: str) -> str:
    """A uv.lock's packages as pinned requirements, for ``uv pip install``.

    ``uv pip`` does not read uv.lock (a project's lock, which needs its pyproject.toml), so each
    package from an index becomes ``name==version``, one from a URL or git ``name @ url``; the
    project itself (virtual, editable or directory source) is left out: its code is the
    deployed function.
    """
    lines = []
    for package in _toml_loader()(text).get("package", []):
        name, version = package.get("name"), package.get("version")
        source = package.get("source", {})
        if not isinstance(name, str) or not isinstance(source, dict):
            continue
        if "registry" in source and isinstance(version, str):
            lines.append(f"{name}=={version}")
        elif "url" in source:
            lines.append(f"{name} @ {source['url']}")
        elif "git" in source:
            lines.append(f"{name} @ git+{source['git']}")
    if not lines:
        raise InvalidRequest(
            "requirements lock (uv.lock) lists no package from an index, a URL or git; "
            "send the uv.lock of a project with dependencies."
        )
    return "\n".join(lines) + "\n"


def _requirements(items: list[Any]) -> tuple[str, ...]:
    if not items:
        raise InvalidRequest(
            "requirements is an empty list; leave it out to use the default environment."
        )
    if len(items) > MAX_REQUIREMENTS:
        raise InvalidRequest(
            f"requirements lists {len(items)} strings; the limit is {MAX_REQUIREMENTS}. "
            "Send a lock file instead."
        )
    for item in items:
        if not isinstance(item, str) or not item:
            raise InvalidRequest(f"requirements must hold non-empty strings, not {item!r}. {_HOW}")
        if len(item) > MAX_REQUIREMENT_CHARS or "\n" in item or "\r" in item:
            raise InvalidRequest(
                f"requirement {item[:80]!r} must be one line of at most "
                f"{MAX_REQUIREMENT_CHARS} characters."
            )
        _check_text("requirement", item)
        if item.startswith("-"):
            # Options (-e, -r, --index-url, ...) would reach the installer's command line or
            # read files on the server; the index comes from the server's uv configuration.
            raise InvalidRequest(
                f"requirement {item!r} is an installer option; list only requirement strings "
                "such as 'numpy<2' (the package index is the server's uv configuration)."
            )
        if not _REQUIREMENT_START.match(item):
            raise InvalidRequest(
                f"requirement {item[:80]!r} must start with a package name, as in "
                "'scikit-learn==1.5.2' or 'numpy<2'."
            )
    return tuple(items)


def _check_requirements_file(text: str) -> None:
    for line in text.splitlines():
        option = line.strip()
        if option.startswith("-") and not option.startswith("--hash"):
            raise InvalidRequest(
                f"requirements lock line {option[:80]!r} is an installer option; a "
                "requirements.txt lock may hold requirements and --hash lines only (the "
                "package index is the server's uv configuration)."
            )


def _check_text(what: str, text: str) -> None:
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidRequest(f"{what} is {len(text)} characters; the limit is {MAX_TEXT_CHARS}.")
    if "\x00" in text:
        raise InvalidRequest(f"{what} must not contain the NUL character (\\u0000).")


def _check_toml(text: str, fmt: str) -> None:
    try:
        _toml_loader()(text)
    except ValueError as err:  # tomllib's TOMLDecodeError is a ValueError
        raise InvalidRequest(f"requirements lock is not valid TOML for {fmt}: {err}.") from None


def _toml_loader() -> Callable[[str], dict[str, Any]]:
    """tomllib (3.11+), or tomli on 3.10 (the envs extra installs it there)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise InvalidRequest(
                "This server cannot read TOML locks (Python 3.10 without tomli); send "
                "requirement strings or a requirements.txt lock, or install tabpyx[envs]."
            ) from None
    return tomllib.loads
