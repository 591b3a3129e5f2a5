"""``POST /evaluate``: the bytes of results and of error replies, scripts that cannot leak state
into each other, and the setting that turns the route off."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_server import (
    CORS_HEADERS,
    DEFAULT_WORKERS,
    ServerProcess,
    envelope,
    module_server,
    state_ini,
)

ERROR = "Error processing script"
QUERY_FAILED = (
    "The endpoint you're trying to query did not respond. Please make sure the endpoint "
    "exists and the correct set of arguments are provided."
)
DISABLED = (
    "Ad-hoc scripts have been disabled on this analytics extension, "
    "please contact your administrator."
)


@pytest.mark.parametrize(
    ("script", "data", "expected"),
    [
        ("return 42", {}, b"42"),
        ("return [42, 3.1415926]", {}, b"[42, 3.1415926]"),
        ('return [float(1), float("NaN"), float(2)]', {}, b"[1.0, null, 2.0]"),
        ("return [1.0, float('nan'), float('inf'), -float('inf')]", {}, b"[1.0, null, null, null]"),
        ("x = 1", {}, b"null"),
        ("return None", {}, b"null"),
        ('return "héllo"', {}, b'"h\\u00e9llo"'),
        ("return (1, 2)", {}, b"[1, 2]"),
        ("if True:\n\treturn 5", {}, b"5"),
        (
            "return pandas.DataFrame({'a': [1, 2], 'b': [None, 3.0]})",
            {},
            b'{"a": [1, 2], "b": [null, 3.0]}',
        ),
        # TabPy answers 500 "not JSON serializable" for these three.
        ("import numpy\nreturn numpy.array([1.5, 2.0])", {}, b"[1.5, 2.0]"),
        ("import numpy\nreturn numpy.int64(7)", {}, b"7"),
        ("return pandas.Series([1.5, None])", {}, b"[1.5, null]"),
        (
            "return [x + y for x, y in zip(_arg1, _arg2)]",
            {"_arg1": [1, 2, 3], "_arg2": [3, -1, 5]},
            b"[4, 1, 8]",
        ),
        # Ten arguments: TabPy sorts the names as strings (_arg1, _arg10, _arg2, ...), which must
        # not change which value each name gets.
        (
            "return [" + ", ".join(f"_arg{n}" for n in range(1, 11)) + "]",
            {f"_arg{n}": n for n in range(10, 0, -1)},
            b"[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]",
        ),
    ],
)
def test_result_bytes(
    default_server: ServerProcess, script: str, data: dict, expected: bytes
) -> None:
    response = default_server.evaluate(script, data)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.content == expected


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        (
            {"script": "return 1", "data": [1, 2]},
            400,
            envelope("Script parameters need to be provided as a dictionary."),
        ),
        (
            {"script": "return 1", "data": {"_arg2": [1]}},
            400,
            envelope("Variables names should follow the format _arg1, _arg2, _argN"),
        ),
        (
            {"script": "return 1", "data": {"x": [1]}},
            400,
            envelope("Variables names should follow the format _arg1, _arg2, _argN"),
        ),
        ({"data": {}}, 400, envelope("Script is empty.")),
        # Unlike TabPy (an IndentationError about its wrapper function), a script with
        # nothing in it is called empty.
        ({"script": "", "data": {}}, 400, envelope("Script is empty.")),
        ({"script": " \n\t\r\n", "data": {}}, 400, envelope("Script is empty.")),
        (
            {"script": "raise ValueError('boom')", "data": {}},
            500,
            envelope(ERROR, "ValueError : boom"),
        ),
        (
            # TabPy's status, message and words, then what actually went wrong.
            {"script": "return tabpy.query('nope')['response']", "data": {}},
            404,
            envelope(ERROR, f"{QUERY_FAILED} The server said: there is no endpoint named 'nope'."),
        ),
    ],
)
def test_error_bytes(
    default_server: ServerProcess, body: dict, status: int, expected: bytes
) -> None:
    response = default_server.http.post("/evaluate", json=body)

    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.content == expected


@pytest.mark.parametrize(
    ("content", "info_prefix"),
    [
        (b'{"script": "return 1", ', "JSONDecodeError"),
        (b"", "JSONDecodeError"),
        (b'{"script": "return (1", "data": {}}', "SyntaxError"),
        (b'{"script": "if 1:", "data": {}}', "IndentationError"),
        # TabPy answers 500 when "data" is missing (its tests pin the status); the info is ours.
        (b'{"script": "return 1"}', "TypeError"),
    ],
)
def test_error_info_starts_with_exception_class(
    default_server: ServerProcess, content: bytes, info_prefix: str
) -> None:
    response = default_server.http.post("/evaluate", content=content)

    assert response.status_code == 500
    assert response.json()["message"] == ERROR
    assert response.json()["info"].startswith(f"{info_prefix} : ")


def test_line_numbers_are_the_scripts_own(default_server: ServerProcess) -> None:
    """TabPy counts its wrapper function's line; the user's first line is line 1 here."""
    syntax = default_server.evaluate("x = 1\nreturn (")
    assert syntax.json()["info"] == "SyntaxError : '(' was never closed (<string>, line 2)"
    script = "import traceback\ntry:\n    1 / 0\nexcept ZeroDivisionError:\n"
    script += "    return traceback.format_exc().splitlines()[-2]"
    frame = default_server.evaluate(script).json().strip()
    assert frame == 'File "<string>", line 3, in _user_script'
    where = default_server.evaluate(
        "import sys\ntry:\n    1 / 0\nexcept ZeroDivisionError:\n"
        "    return sys.exc_info()[2].tb_lineno"
    )
    assert where.json() == 3


def test_script_failures_are_logged_without_data(default_server: ServerProcess) -> None:
    secret = "tableau-row-value-7f3a"
    response = default_server.http.post(
        "/evaluate",
        json={"script": "x = _arg1\nraise ValueError('bad input')", "data": {"_arg1": [secret]}},
        headers={"X-Request-ID": "failing-script-1"},
    )
    assert response.status_code == 500
    line = default_server.stderr.wait_for(
        re.compile(r".*User code failed on line 2: ValueError: bad input.*"), 10
    )
    assert line is not None, default_server.stderr.text
    assert "ERROR" in line.group(0) and "failing-script-1" in line.group(0)
    assert secret not in default_server.stderr.text


# Each script reports its worker's PID next to a value that would change if anything from an
# earlier run of the same script (in the same worker) were still there.
LEAK_PROBES = {
    "global counter": (
        "global counter\n"
        "try:\n    counter += 1\nexcept NameError:\n    counter = 1\n"
        "return [os.getpid(), counter]",
        1,
    ),
    "clobbered import": (
        "global json\nanswer = json.dumps([1])\njson = None\nreturn [os.getpid(), answer]",
        "[1]",
    ),
}


@pytest.mark.parametrize(("script", "expected"), LEAK_PROBES.values(), ids=LEAK_PROBES.keys())
def test_scripts_cannot_leak_state(
    default_server: ServerProcess, script: str, expected: object
) -> None:
    # One run more than there are workers, so at least one worker runs the script twice.
    replies = [default_server.evaluate("import os\n" + script) for _ in range(DEFAULT_WORKERS + 1)]

    assert [r.status_code for r in replies] == [200] * len(replies), replies[-1].text
    pids, values = zip(*(r.json() for r in replies), strict=True)
    assert len(set(pids)) < len(pids)
    assert set(values) == {expected}


def test_pandas_and_json_need_no_import(default_server: ServerProcess) -> None:
    response = default_server.evaluate(
        "return [json.loads('[1, 2]'), int(pandas.Series([1, 2, 3]).sum())]"
    )

    assert response.status_code == 200
    assert response.content == b"[[1, 2], 6]"


@pytest.fixture(scope="module")
def disabled_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Evaluate disabled; CORS configured, to show the 404 goes without CORS headers."""
    yield from module_server(
        tmp_path_factory,
        {"TABPY_EVALUATE_ENABLE": "false"},
        state_ini=state_ini(CORS_HEADERS),
        warm=False,
    )


def test_disabled_evaluate_is_404(disabled_server: ServerProcess) -> None:
    response = disabled_server.evaluate("return 1")

    assert response.status_code == 404
    assert response.content == envelope(DISABLED)
    assert not set(CORS_HEADERS) & set(response.headers)


def test_disabled_evaluate_shows_in_info(disabled_server: ServerProcess) -> None:
    response = disabled_server.http.get("/info")

    assert response.status_code == 200
    assert response.json()["versions"]["v1"]["features"] == {
        "evaluate_enabled": False,
        "gzip_enabled": True,
        "arrow_enabled": False,
    }


def test_workers_fork_with_the_preloaded_objects_frozen(default_server: ServerProcess) -> None:
    # Frozen objects are skipped by the cycle collector, so its runs in a worker do not copy
    # the memory pages the worker shares with its template.
    response = default_server.evaluate("import gc\nreturn gc.get_freeze_count()")
    assert response.status_code == 200, response.text
    assert response.json() > 10_000


def mapped_files(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_the_server_process_loads_no_pandas_or_pyarrow(default_server: ServerProcess) -> None:
    # The front end has no use for them (scripts run in workers, and Arrow is off here); they
    # would stay in its memory for good.
    response = default_server.evaluate("return int(pandas.Series([1, 2]).sum())")
    assert response.status_code == 200, response.text
    maps = mapped_files(default_server.pid)
    for library in ("/pandas/", "/pyarrow/", "/numpy/"):
        assert library not in maps, f"the server process maps {library}"
