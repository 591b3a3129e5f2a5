"""Request bodies: gzip decoding (and turning it off), and refusing bodies over the size limit."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator

import httpx
import pytest
from live_server import ServerProcess, envelope, module_server

LIMIT_MB = 1
LIMIT_BYTES = LIMIT_MB * 1024 * 1024
GZIP = {"Content-Encoding": "gzip"}
TOO_LARGE = "Request Entity Too Large"


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from module_server(tmp_path_factory, {"TABPY_MAX_REQUEST_SIZE_MB": str(LIMIT_MB)})


@pytest.fixture(scope="module")
def no_gzip_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from module_server(tmp_path_factory, {"TABPY_GZIP_ENABLE": "false"})


def request_body(script: str, **data: object) -> bytes:
    return json.dumps({"script": script, "data": data}).encode()


def post_gzipped(server: ServerProcess, content: bytes) -> httpx.Response:
    return server.http.post("/evaluate", content=gzip.compress(content), headers=GZIP)


def assert_healthy(server: ServerProcess) -> None:
    response = server.evaluate("return 42")
    assert (response.status_code, response.content) == (200, b"42")


def test_gzipped_body_is_decoded(small_server: ServerProcess) -> None:
    response = post_gzipped(small_server, request_body("return 42"))

    assert response.status_code == 200
    assert response.content == b"42"


def test_gzipped_syntax_error_is_reported(small_server: ServerProcess) -> None:
    response = post_gzipped(small_server, request_body("return (1"))

    assert response.status_code == 500
    assert response.json()["message"] == "Error processing script"
    assert response.json()["info"].startswith("SyntaxError")


@pytest.mark.parametrize(
    "content",
    [
        b"\x1f\x8b this is not gzip data",
        gzip.compress(request_body("return 42"))[:-12],  # truncated stream
    ],
    ids=["garbage", "truncated"],
)
def test_corrupt_gzip_is_400(small_server: ServerProcess, content: bytes) -> None:
    response = small_server.http.post("/evaluate", content=content, headers=GZIP)

    assert response.status_code == 400
    assert response.json()["message"] == "Request body is not valid gzip data."
    assert "Content-Encoding" in response.json()["info"]
    assert_healthy(small_server)


def test_gzip_bomb_is_413_and_server_survives(small_server: ServerProcess) -> None:
    bomb = gzip.compress(b"0" * 50_000_000)
    assert len(bomb) < LIMIT_BYTES  # small on the wire; only decompression exceeds the limit

    response = small_server.http.post("/evaluate", content=bomb, headers=GZIP)

    assert response.status_code == 413
    message = f"Request body exceeded limit of {LIMIT_BYTES} (bytes) after gzip decompression."
    assert response.content == envelope(message, TOO_LARGE)
    assert_healthy(small_server)
    assert small_server.http.get("/info").status_code == 200


def test_plain_body_over_limit_is_413(small_server: ServerProcess) -> None:
    body = request_body("return len(_arg1)", _arg1="x" * LIMIT_BYTES)

    response = small_server.http.post("/evaluate", content=body)

    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json"
    message = f"Request with size {len(body)} exceeded limit of {LIMIT_BYTES} (bytes)."
    assert response.content == envelope(message, TOO_LARGE)
    assert_healthy(small_server)


def test_body_just_under_limit_is_accepted(small_server: ServerProcess) -> None:
    padding = LIMIT_BYTES - len(request_body("return len(_arg1)", _arg1=""))

    response = small_server.http.post(
        "/evaluate", content=request_body("return len(_arg1)", _arg1="x" * padding)
    )

    assert response.status_code == 200
    assert response.content == str(padding).encode()


def test_gzip_disabled_passes_compressed_bytes_through(no_gzip_server: ServerProcess) -> None:
    response = post_gzipped(no_gzip_server, request_body("return 42"))

    assert response.status_code == 500
    assert response.content == envelope(
        "Error processing script",
        "UnicodeDecodeError : 'utf-8' codec can't decode byte 0x8b in position 1: "
        "invalid start byte",
    )


def test_gzip_disabled_shows_in_info(no_gzip_server: ServerProcess) -> None:
    features = no_gzip_server.http.get("/info").json()["versions"]["v1"]["features"]

    assert features["gzip_enabled"] is False


@pytest.mark.parametrize("rows", [150_000, 500_000, 120_000])
def test_large_bodies_get_the_exact_reply(no_gzip_server: ServerProcess, rows: int) -> None:
    """Bodies of a megabyte and more reach the worker through shared memory (growing it when a
    body outgrows it); the reply is byte for byte what TabPy sends."""
    column = [i * 0.25 - 7.5 for i in range(rows)]
    body = request_body("return [x * 2 for x in _arg1]", _arg1=column)
    assert len(body) >= 1024 * 1024

    response = no_gzip_server.http.post("/evaluate", content=body)

    assert response.status_code == 200, response.text
    assert response.content == json.dumps([x * 2 for x in column]).encode()
