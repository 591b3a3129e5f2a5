from __future__ import annotations

import pytest

from tabpy.errors import InvalidRequest
from tabpy.runtime.scripts import run_script, validate_arguments, wrap_script


def test_wrap_prefixes_each_line_with_one_space_and_sorts_arguments() -> None:
    source = wrap_script("x = 1\r\nreturn x", ["_arg2", "_arg10", "_arg1"])
    assert source == "def _user_script(tabpy, _arg1, _arg10, _arg2):\n x = 1\n return x\n"


def test_wrap_without_arguments_keeps_tabpy_header() -> None:
    assert wrap_script("return 1", []) == "def _user_script(tabpy, ):\n return 1\n"


@pytest.mark.parametrize(
    "data",
    [{}, {"_arg1": 1}, {"_arg2": 2, "_arg1": 1}, {f"_arg{i}": i for i in range(1, 12)}],
)
def test_valid_arguments(data: dict[str, int]) -> None:
    assert validate_arguments(data) is data


@pytest.mark.parametrize(
    "data", [{"_arg2": 1}, {"x": 1}, {"_arg1": 1, "_arg3": 3}, {"_arg0": 1}, {"_arg01": 1}]
)
def test_misnamed_arguments(data: dict[str, int]) -> None:
    with pytest.raises(InvalidRequest, match="Variables names should follow the format"):
        validate_arguments(data)


@pytest.mark.parametrize("data", [[1, 2], "x", 3, None])
def test_arguments_must_be_an_object(data: object) -> None:
    with pytest.raises(
        InvalidRequest, match="Script parameters need to be provided as a dictionary."
    ):
        validate_arguments(data)


def test_scripts_do_not_share_globals() -> None:
    script = (
        "global counter\ntry:\n    counter += 1\nexcept NameError:\n    counter = 1\nreturn counter"
    )
    namespace = {"__builtins__": __builtins__}
    assert run_script(script, {}, namespace, object()) == 1
    assert run_script(script, {}, namespace, object()) == 1
    assert "counter" not in namespace


def test_arguments_and_helper_reach_the_script() -> None:
    helper = object()
    result = run_script("return (tabpy, _arg1 + _arg2)", {"_arg1": 1, "_arg2": 2}, {}, helper)
    assert result == (helper, 3)
