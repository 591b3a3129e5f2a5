"""The pickle contract: archives made the way TabPy 2.16's client makes them load and answer."""

from __future__ import annotations

import logging
import pickletools
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from tabpy.tabpy_tools.custom_query_object import CustomQueryObject
from tabpy.tabpy_tools.query_object import ARCHIVE_NAME, DEFAULT_DOCSTRING, QueryObject

SCRIPT = '''
import math

def add(x, y, scale=1):
    """Adds two numbers x and y"""
    return (x + y) * scale

def circle(r):
    return math.pi * r * r
'''


def main_functions() -> dict[str, Any]:
    """Functions defined as in a user's script or notebook, so cloudpickle stores them by value."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(SCRIPT, namespace)
    return namespace


def tabpy_archive(folder: Path, func: Any, description: str) -> bytes:
    """Write ``pickle_archive`` like TabPy 2.16's client: cloudpickle of the wrapper instance."""
    data: bytes = cloudpickle.dumps(CustomQueryObject(query=func, description=description))
    folder.mkdir(parents=True)
    (folder / ARCHIVE_NAME).write_bytes(data)
    return data


def _globals(data: bytes) -> set[str]:
    """The ``module name`` pairs a pickle imports (STACK_GLOBAL after two string pushes)."""
    found, strings = set(), []
    for opcode, arg, _ in pickletools.genops(data):
        if isinstance(arg, str):
            strings.append(arg)
        if opcode.name == "STACK_GLOBAL":
            found.add(" ".join(strings[-2:]))
        elif opcode.name == "GLOBAL":
            found.add(str(arg))
    return found


def test_tabpy_style_archive_round_trip(tmp_path: Path) -> None:
    data = tabpy_archive(tmp_path / "add" / "1", main_functions()["add"], "Adds")
    assert "tabpy.tabpy_tools.custom_query_object CustomQueryObject" in _globals(data)

    loaded = QueryObject.load(tmp_path / "add" / "1")
    assert type(loaded) is CustomQueryObject
    assert list(vars(loaded)) == ["description", "custom_query"]
    assert loaded.description == "Adds"
    assert loaded.query(2, 3) == 5
    assert loaded.query(x=2, y=3, scale=10) == 50
    assert loaded.get_docstring() == "Adds two numbers x and y"


def test_archive_loads_in_a_fresh_interpreter(tmp_path: Path) -> None:
    tabpy_archive(tmp_path / "circle", main_functions()["circle"], "area")
    check = textwrap.dedent(
        f"""
        from tabpy.tabpy_tools.query_object import QueryObject
        obj = QueryObject.load({str(tmp_path / "circle")!r})
        print(round(obj.query(2), 3), obj.get_docstring())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split(" ", 1) == ["12.566", DEFAULT_DOCSTRING + "\n"]


def test_state_restored_without_init_like_unpickling() -> None:
    obj = CustomQueryObject.__new__(CustomQueryObject)
    obj.__dict__.update({"description": "d", "custom_query": lambda *a, **k: (a, k)})
    assert obj.query(1, b=2) == ((1,), {"b": 2})


def test_query_returns_the_result_unchecked() -> None:
    marker = object()
    assert CustomQueryObject(lambda: marker).query() is marker
    assert CustomQueryObject(lambda: {1, 2}).query() == {1, 2}


def test_exceptions_from_the_function_propagate() -> None:
    with pytest.raises(ZeroDivisionError):
        CustomQueryObject(lambda: 1 / 0).query()


def test_save_then_load_and_overwrite(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    target = tmp_path / "staging" / "endpoints" / "f" / "1"
    CustomQueryObject(main_functions()["add"], "first").save(target)
    assert QueryObject.load(target).description == "first"  # type: ignore[attr-defined]
    (target / "stale").write_text("x")
    with caplog.at_level(logging.WARNING):
        CustomQueryObject(main_functions()["add"], "second").save(target)
    assert f'Overwriting existing file "{target}" when saving query object' in caplog.text
    assert sorted(p.name for p in target.iterdir()) == [ARCHIVE_NAME]
    assert QueryObject.load(target).description == "second"  # type: ignore[attr-defined]


def test_load_expands_the_home_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    tabpy_archive(tmp_path / "obj", main_functions()["add"], "")
    assert QueryObject.load("~/obj").query(1, 1) == 2


def test_load_refuses_a_pickle_that_is_not_a_query_object(tmp_path: Path) -> None:
    (tmp_path / ARCHIVE_NAME).write_bytes(cloudpickle.dumps(main_functions()["add"]))
    with pytest.raises(TypeError, match="holds a function, not a QueryObject"):
        QueryObject.load(tmp_path)


def test_load_of_a_missing_archive(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        QueryObject.load(tmp_path / "nothing")


def test_metadata_methods() -> None:
    obj = CustomQueryObject(lambda: None)
    assert obj.get_docstring() == DEFAULT_DOCSTRING
    assert obj.get_methods() == [{"method": "query"}]
    assert obj.get_query_method() == {"method": "query"}
    assert obj.get_dependencies() == []
    assert obj.description == ""


def test_query_object_is_abstract() -> None:
    with pytest.raises(TypeError):
        QueryObject()  # type: ignore[abstract]

    class Doubler(QueryObject):
        def query(self, x: int) -> int:
            """Doubles x"""
            return 2 * x

    assert Doubler().query(4) == 8
    assert Doubler().get_docstring() == "Doubles x"


def test_non_callable_query_is_refused() -> None:
    with pytest.raises(TypeError, match="must be a function"):
        CustomQueryObject("not a function")  # type: ignore[arg-type]
