"""The worker runtime runs with the standard library, cloudpickle and orjson only.

Worker pools in other interpreters (a later per-endpoint environment, for instance) must speak
the same protocol, so the worker side may not depend on what only the server needs.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import tabpy.runtime

RUNTIME = Path(tabpy.runtime.__file__).parent
REPOSITORY = RUNTIME.parent.parent

#: Run in a fresh interpreter where these cannot be imported at all.
FORBIDDEN = (
    *("sqlalchemy", "starlette", "uvicorn", "prometheus_client", "platformdirs", "httpx"),
    *("pandas", "numpy", "pyarrow"),
    *("tabpy.server", "tabpy.registry", "tabpy.arrow"),
)

PROGRAM = f"""
import importlib.abc, json, socket, sys, threading

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == f or name.startswith(f + ".") for f in {FORBIDDEN!r}):
            raise ImportError(f"{{name}} is not available to workers")

sys.meta_path.insert(0, Refuse())

from tabpy.runtime.protocol import EvaluateMeta, Job, encode_job_meta, pack_header, FrameType
from tabpy.runtime.protocol import FRAME_HEADER, decode_reply
from tabpy.runtime.worker import WorkerOptions, worker_main
import os

server, worker = socket.socketpair()
options = WorkerOptions(memory_limit_mb=0, server_pid=os.getpid())
pid = os.fork()
if pid == 0:
    server.close()
    worker_main(worker, options)
    os._exit(0)
worker.close()

def receive():
    def exactly(n):
        data = b""
        while len(data) < n:
            data += server.recv(n - len(data))
        return data
    frame, code, *lengths = FRAME_HEADER.unpack(exactly(FRAME_HEADER.size))
    meta, attachment, body = (exactly(n) for n in lengths)
    return frame, code, meta, bytearray(body)

assert receive()[0] == FrameType.READY
script = "return [sum(_arg1), tabpy.query('x')]"
body = json.dumps({{"script": script, "data": {{"_arg1": [1, 2]}}}}).encode()
server.sendall(pack_header(FrameType.JOB, EvaluateMeta.KIND, 0, 0, len(body)) + body)
frame, code, meta, _ = receive()
assert frame == FrameType.REQUEST, frame
answer = b'{{"endpoint": null}}'
server.sendall(pack_header(FrameType.ANSWER, 0, len(answer), 0, 0) + answer)
frame, code, meta, body = receive()
reply = decode_reply(code, meta, body)
print(json.dumps([reply.outcome.name, json.loads(reply.body)]))
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {{"pandas", "sqlalchemy"}})))
server.close()
os.waitpid(pid, 0)
"""


def test_the_worker_runs_without_server_only_packages() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    reply, heavy = (json.loads(line) for line in done.stdout.splitlines())
    unknown = {"message": "UnknownURI", "info": "Endpoint 'x' does not exist"}
    assert reply == ["OK", [3, unknown]]
    assert heavy == []


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_the_core_imports_no_transport_or_feature_package() -> None:
    for path in sorted(RUNTIME.glob("*.py")):
        outside = {m for m in _imports(path) if m.startswith(("tabpy.server", "tabpy.arrow"))}
        assert not outside, f"{path.name} imports {sorted(outside)}"
