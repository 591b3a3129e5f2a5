from __future__ import annotations

import base64

import pytest

from tabpy.server.auth import parse_basic


def basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


def test_parses_credentials() -> None:
    assert parse_basic(basic("alice:P@ss")) == ("alice", "P@ss")


def test_password_may_contain_colons() -> None:
    assert parse_basic(basic("alice:a:b")) == ("alice", "a:b")


@pytest.mark.parametrize(
    "header",
    ["Bearer abc", basic("nocolon"), "Basic  " + basic("a:b")[6:], "Basic !!!", "Basic"],
)
def test_malformed_headers(header: str) -> None:
    assert parse_basic(header) is None


def test_scheme_is_case_insensitive() -> None:
    assert parse_basic("bAsIc " + basic("a:b")[6:]) == ("a", "b")
