"""Environment specs: what a deploy's ``requirements`` may be, and what is stored and shown."""

from __future__ import annotations

from typing import Any

import pytest

from tabpy.environments.builder import Toolchain, environment_key, spec_id
from tabpy.environments.spec import EnvironmentSpec, parse_spec, uv_lock_requirements
from tabpy.errors import InvalidRequest

UV_LOCK = """\
version = 1
requires-python = ">=3.10"

[[package]]
name = "my-model"
version = "0.1.0"
source = { virtual = "." }
dependencies = [{ name = "six" }]

[[package]]
name = "six"
version = "1.16.0"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "tool"
version = "2.0"
source = { git = "https://example.com/tool.git?rev=abc#abc" }

[[package]]
name = "wheel-by-url"
version = "1.0"
source = { url = "https://example.com/wheel_by_url-1.0-py3-none-any.whl" }
"""


def test_a_list_is_kept_as_given_and_round_trips_through_the_registry_text() -> None:
    spec = parse_spec(["scikit-learn==1.5.2", "numpy<2"])
    assert spec.requirements == ("scikit-learn==1.5.2", "numpy<2")
    assert spec.as_json() == ["scikit-learn==1.5.2", "numpy<2"]
    assert EnvironmentSpec.from_text(spec.to_text()) == spec
    assert spec.resolver_input() == "scikit-learn==1.5.2\nnumpy<2\n"
    assert spec.summary() == "scikit-learn==1.5.2, numpy<2"


@pytest.mark.parametrize("fmt", ["uv.lock", "pylock.toml", "requirements.txt"])
def test_a_lock_keeps_its_text_and_format(fmt: str) -> None:
    text = UV_LOCK if fmt != "requirements.txt" else "six==1.16.0 \\\n    --hash=sha256:abc\n"
    spec = parse_spec({"lock": text, "format": fmt})
    assert (spec.lock, spec.format) == (text, fmt)
    assert spec.as_json() == {"lock": text, "format": fmt}
    assert EnvironmentSpec.from_text(spec.to_text()) == spec


def test_a_uv_lock_becomes_pins_without_the_project_itself() -> None:
    assert uv_lock_requirements(UV_LOCK).splitlines() == [
        "six==1.16.0",
        "tool @ git+https://example.com/tool.git?rev=abc#abc",
        "wheel-by-url @ https://example.com/wheel_by_url-1.0-py3-none-any.whl",
    ]
    spec = parse_spec({"lock": UV_LOCK, "format": "uv.lock"})
    assert spec.resolver_input() == uv_lock_requirements(UV_LOCK)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("six", "must be a list or an object"),
        (None, "must be a list or an object"),
        ([], "empty list"),
        ([""], "non-empty strings"),
        ([None], "non-empty strings"),
        (["-r /etc/passwd"], "installer option"),
        (["--extra-index-url", "https://x"], "installer option"),
        (["six\n-e ."], "one line"),
        (["x" * 1001], "at most 1000"),
        ([" six"], "must start with a package name"),
        (["six\x00"], "NUL"),
        (["six"] * 501, "the limit is 500"),
        ({"lock": "six"}, "format must be one of"),
        ({"lock": "six", "format": "Pipfile.lock"}, "format must be one of"),
        ({"lock": "   ", "format": "requirements.txt"}, "not empty"),
        ({"lock": 3, "format": "requirements.txt"}, "not empty"),
        ({"lock": "six\n--index-url https://x\n", "format": "requirements.txt"}, "installer"),
        ({"lock": "[[package]", "format": "pylock.toml"}, "not valid TOML"),
        ({"lock": 'version = 1\n[[package]]\nname = "p"\nsource = { virtual = "." }\n',
          "format": "uv.lock"}, "lists no package"),
        ({"lock": "six", "format": "requirements.txt", "hashes": True}, "unknown keys: hashes"),
    ],
)  # fmt: skip
def test_bad_specs_say_what_to_fix(value: Any, words: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_spec(value)
    assert words in refused.value.message


def toolchain(version: str) -> Toolchain:
    return Toolchain("/usr/bin/python3", version, ("cloudpickle", "orjson"), lambda _: None)


def test_the_key_is_the_lock_and_the_python_version() -> None:
    lock = "six==1.16.0\n"
    key = environment_key(lock, "3.11.7")
    assert len(key) == 64 and int(key, 16) >= 0
    assert environment_key(lock, "3.11.7") == key
    assert environment_key(lock, "3.12.1") != key
    assert environment_key("six==1.15.0\n", "3.11.7") != key
    # The parts are separated: moving text from one to the other is another key.
    assert environment_key("a", "bc") != environment_key("ab", "c")


def test_a_spec_is_named_per_python_before_it_is_resolved() -> None:
    spec = parse_spec(["six"])
    assert spec_id(spec, toolchain("3.11.7")) == spec_id(parse_spec(["six"]), toolchain("3.11.7"))
    assert spec_id(spec, toolchain("3.11.7")) != spec_id(spec, toolchain("3.12.0"))
    assert spec_id(spec, toolchain("3.11.7")) != spec_id(
        parse_spec(["six", "numpy"]), toolchain("3.11.7")
    )
