"""The real TabPy 2.16.0 client against our server: deploy, override, query, update, remove.

Deploy scripts in the field use TabPy's own ``Client``: it writes the pickle into the server's
upload destination itself (the shared-path flow, client and server on one machine), then
POSTs/PUTs the endpoint and polls ``/status``. The script below runs under a separate virtualenv
holding ``tabpy==2.16.0`` (marker ``reference``; see ``reference_tabpy``) and prints what each
call returned; the test checks those results and the server's view.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from live_server import ServerProcess
from reference_tabpy import isolated_environment, reference_python

pytestmark = pytest.mark.reference

# TabPy's client sleeps at least 1 s per deploy, then polls every second.
SCRIPT_TIMEOUT = 180.0

NAME = "ref_add"
SPACED = "Ref Word Count"

SCRIPT = '''
import json
import os
import sys

from tabpy.tabpy_tools.client import Client
from tabpy.tabpy_tools.rest import ResponseError
from tabpy.tabpy_tools.schema import generate_schema

client = Client(sys.argv[1])
name, spaced = sys.argv[2], sys.argv[3]
out = {"client_module": Client.__module__, "client_file": sys.modules[Client.__module__].__file__}


def add(x, y):
    """Adds two numbers."""
    return x + y


schema = generate_schema(
    input={"x": 3, "y": 2},
    output=5,
    input_description={"x": "first", "y": "second"},
    output_description="the sum",
)
out["schema"] = schema
client.deploy(name, add, "Adds x and y", schema=schema)
upload = client._get_endpoint_upload_destination()
out["upload_destination"] = upload
out["staged_v1"] = os.path.isfile(os.path.join(upload, "endpoints", name, "1", "pickle_archive"))
out["status_v1"] = client.get_status()[name]
out["query_v1"] = client.query(name, 2, 3)

try:
    client.deploy(name, add, "no override")
except RuntimeError as exc:
    out["deploy_without_override"] = str(exc)


def add(x, y):
    """Adds two numbers, plus 100."""
    return x + y + 100


client.deploy(name, add, "Adds x and y, plus 100", schema=schema, override=True)
out["staged_v2"] = os.path.isfile(os.path.join(upload, "endpoints", name, "2", "pickle_archive"))
out["status_v2"] = client.get_status()[name]
out["query_v2"] = client.query(name, 2, 3)
out["query_kwargs"] = client.query(name, x=1, y=1)


def word_count(texts):
    return [len(t.split()) for t in texts]


client.deploy(spaced, word_count, "Counts words")
out["query_spaced"] = client.query(spaced, ["one two", "three"])

client.update_endpoint_info(name, description="updated description", is_public=True)
endpoint = client.get_endpoints()[name]
out["endpoint"] = {
    "class": type(endpoint).__name__,
    "version": endpoint.version,
    "description": endpoint.description,
    "is_public": endpoint.is_public,
    "type": endpoint.type,
    "docstring": endpoint.docstring,
    "schema": endpoint.schema,
}
out["status_after_update"] = client.get_status()[name]
out["query_after_update"] = client.query(name, 2, 3)

client.remove(name)
out["endpoints_after_remove"] = sorted(client.get_endpoints())
out["status_after_remove"] = sorted(client.get_status())
try:
    client.query(name, 2, 3)
except ResponseError as exc:
    out["query_after_remove"] = [exc.status_code, str(exc)]
try:
    client.remove(name)
except RuntimeError as exc:
    out["remove_again"] = str(exc)
print(json.dumps(out))
'''


def run_reference_client(python: Path, tmp_path: Path, server: ServerProcess) -> dict[str, Any]:
    """Run ``SCRIPT`` with TabPy 2.16's client against ``server``; returns what it printed."""
    script = tmp_path / "deploy_with_tabpy_2_16.py"
    script.write_text(SCRIPT, encoding="utf-8")
    result = subprocess.run(
        [str(python), str(script), f"http://localhost:{server.port}/", NAME, SPACED],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
        env=isolated_environment(),
        cwd=tmp_path,  # not this checkout: the script must import the venv's tabpy
    )
    assert result.returncode == 0, (
        f"reference client failed:\n{result.stderr}\n--- server log ---\n{server.stderr.text}"
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_tabpy_2_16_client_round_trip(tmp_path: Path, launch: Callable[..., ServerProcess]) -> None:
    python = reference_python()  # skips first, before a server is started for nothing
    server = launch()

    out = run_reference_client(python, tmp_path, server)

    # It really was TabPy's client, not ours.
    assert out["client_module"] == "tabpy.tabpy_tools.client"
    assert Path(out["client_file"]).is_relative_to(python.parent.parent), out["client_file"]

    # deploy: the shared-path flow, into the upload destination the server named.
    assert Path(out["upload_destination"]) == server.state_path / "staging"
    assert out["staged_v1"] and out["staged_v2"]
    assert out["status_v1"] == {
        "version": 1,
        "type": "model",
        "status": "LoadSuccessful",
        "last_error": None,
    }
    assert out["query_v1"]["response"] == 5
    assert (out["query_v1"]["version"], out["query_v1"]["model"]) == (1, NAME)
    assert out["deploy_without_override"].startswith(f"An endpoint with that name ({NAME})")

    # deploy with override=True: version 2 served at once.
    assert out["status_v2"]["status"] == "LoadSuccessful"
    assert out["status_v2"]["version"] == 2
    assert (out["query_v2"]["response"], out["query_v2"]["version"]) == (105, 2)
    assert out["query_kwargs"]["response"] == 102
    assert out["query_spaced"]["response"] == [2, 1]
    assert out["query_spaced"]["model"] == SPACED

    # update_endpoint_info: description and is_public changed, version and function kept.
    endpoint = out["endpoint"]
    assert endpoint["class"] == "ModelEndpoint"
    assert (endpoint["version"], endpoint["type"]) == (2, "model")
    assert (endpoint["description"], endpoint["is_public"]) == ("updated description", True)
    assert endpoint["docstring"] == "Adds two numbers, plus 100."
    # TabPy's client sends the schema as the Python repr of the dict; it survives the update.
    assert endpoint["schema"] == str(out["schema"])
    assert out["status_after_update"]["version"] == 2
    assert out["status_after_update"]["status"] == "LoadSuccessful"
    assert (out["query_after_update"]["response"], out["query_after_update"]["version"]) == (105, 2)

    # remove: gone from every view, and no longer answering.
    assert out["endpoints_after_remove"] == [SPACED]
    assert out["status_after_remove"] == [SPACED]
    status_code, message = out["query_after_remove"]
    assert status_code == 404, message
    assert f"Endpoint '{NAME}' does not exist" in message
    assert f"endpoint {NAME} does not exist" in out["remove_again"]

    # The server agrees.
    assert server.http.post(f"/query/{NAME}", json={"data": [1, 2]}).status_code == 404
    assert server.http.get(f"/endpoints/{NAME}").status_code == 404
    assert NAME not in server.http.get("/status").json()
    assert not (server.state_path / "staging" / "endpoints" / NAME).exists()
    listed = server.http.get(f"/endpoints/{quote(SPACED)}").json()
    assert (listed["version"], listed["description"]) == (1, "Counts words")
    reply = server.http.post(f"/query/{quote(SPACED)}", json={"data": [["a b c"]]})
    assert (reply.status_code, reply.json()["response"]) == (200, [3])
