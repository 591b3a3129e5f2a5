"""The pre-built models on a real server: tabpy-deploy-models, /query, tabpy.query, bad input.

The models' numbers are checked against scipy / scikit-learn in tests/unit/test_models.py; here
the server's answers are compared with the same functions called in this process, and with the
values TabPy 2.16 answers for the same input.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from deploy_support import deploy_raw, pickled
from live_server import ServerProcess, clean_environment, module_server
from security_support import Authority, password_line, write_pair

import tabpy
from tabpy.models import INSTALL_COMMAND, MODELS
from tabpy.models.deploy import pinned_context
from tests.components import MODELS as MODELS_EXTRA
from tests.components import require_module

pytestmark = pytest.mark.models
for _module in ("sklearn", "scipy", "vaderSentiment"):
    require_module(_module, MODELS_EXTRA)

NAMES = [model.name for model in MODELS]
SCRIPT = Path(tabpy.__file__).parent / "models" / "deploy_models.py"
DEPLOY_TIMEOUT = 120
USER, PASSWORD = "alice", "Tr0ub4dor&3 horse"

COLUMN_A = [2.5, 0.5, 2.2, 1.9, 3.1, 2.3, 2.0, 1.0, 1.5, 1.1]
COLUMN_B = [2.4, 0.7, 2.9, 2.2, 3.0, 2.7, 1.6, 1.1, 1.6, 0.9]
REGIONS = ["east", "west", "east", "north", "west", "east", "north", "west", "east", "north"]
TEXTS = ["happy", "sad", "neutral"]


def config_of(server: ServerProcess) -> Path:
    return Path(server.args[server.args.index("--config") + 1])


def deploy_models(
    server: ServerProcess,
    *args: str,
    stdin: str = "",
    script: bool = False,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the command (or the script path TabPy's tests use) against ``server``'s config.

    The config says ``TABPY_PORT = 0``; the environment gives the real port, which also shows
    that the command reads its settings the way the server does (environment first).
    """
    console = Path(sys.executable).with_name("tabpy-deploy-models")
    if script:
        command = [sys.executable, str(SCRIPT)]
    elif console.exists():
        command = [str(console)]
    else:
        command = [sys.executable, "-m", "tabpy.cli.deploy_models"]
    environment = {**clean_environment(), "TABPY_PORT": str(server.port), **(env or {})}
    return subprocess.run(
        [*command, str(config_of(server)), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environment,
        timeout=DEPLOY_TIMEOUT,
        check=False,
    )


def successes(names: list[str]) -> list[str]:
    return [f"Successfully deployed {name}" for name in names]


# --- without authentication ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from module_server(tmp_path_factory, {"TABPY_WORKERS": "1"})


@pytest.fixture(scope="module")
def deployed(server: ServerProcess) -> subprocess.CompletedProcess[str]:
    return deploy_models(server)


def test_deploys_the_four_models(
    server: ServerProcess, deployed: subprocess.CompletedProcess[str]
) -> None:
    assert deployed.returncode == 0, deployed.stderr
    assert deployed.stdout.splitlines() == [
        f"Using config file at {config_of(server)}",
        *successes(NAMES),
    ]
    assert deployed.stderr == ""
    for model in MODELS:
        response = server.http.get(f"/endpoints/{quote(model.name)}")
        assert response.status_code == 200
        assert response.json()["description"] == model.description
        assert response.json()["docstring"] == model.function.__doc__


def test_rerun_through_the_script_path_overrides(
    server: ServerProcess, deployed: subprocess.CompletedProcess[str]
) -> None:
    before = {name: server.http.get(f"/endpoints/{quote(name)}").json() for name in NAMES}
    rerun = deploy_models(server, "--model", "ttest", "-m", "anova", script=True)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.splitlines()[1:] == successes(["ttest", "anova"])
    for name in NAMES:
        version = server.http.get(f"/endpoints/{quote(name)}").json()["version"]
        assert version == before[name]["version"] + (name in ("ttest", "anova"))


def local(name: str, *args: Any, **kwargs: Any) -> Any:
    model = next(model for model in MODELS if model.name == name)
    return model.function(*args, **kwargs)


CALLS: list[tuple[str, list[Any], Any]] = [
    # (model, arguments, TabPy's answer or None)
    ("PCA", [1, COLUMN_A, COLUMN_B, REGIONS], None),
    ("PCA", [2, COLUMN_A, COLUMN_B], None),
    ("Sentiment Analysis", [TEXTS], [0.5719, -0.4767, 0.0]),
    ("Sentiment Analysis", [TEXTS, "textblob"], [0.8, -0.5, 0.0]),
    ("ttest", [[1, 2, 3, 4], [2, 4, 5, 9]], 0.1928929642906987),
    ("ttest", [[1, 2, 3, 4], [2]], 0.4950253460597111),
    ("ttest", [[1, 2, 3, 4], ["m", "f", "m", "f"]], 0.5527864045000421),
    ("anova", [[1, 2, 3, 4], [2, 4, 5, 9], [7, 8, 9, 10]], 0.006933103752640097),
]


def assert_close(actual: Any, expected: Any) -> None:
    assert actual == pytest.approx(expected, rel=0, abs=1e-9)


def as_script(name: str, args: list[Any]) -> tuple[str, dict[str, Any]]:
    """The same call inside /evaluate: lists become _arg1, _arg2, ...; constants stay inline."""
    data: dict[str, Any] = {}
    call = []
    for arg in args:
        if isinstance(arg, list):
            data[f"_arg{len(data) + 1}"] = arg
            call.append(f"_arg{len(data)}")
        else:
            call.append(repr(arg))
    return f"return tabpy.query({name!r}, {', '.join(call)})['response']", data


@pytest.mark.parametrize(("name", "args", "tabpy_answer"), CALLS)
def test_query_and_tabpy_query_in_scripts(
    server: ServerProcess,
    deployed: subprocess.CompletedProcess[str],
    name: str,
    args: list[Any],
    tabpy_answer: Any,
) -> None:
    expected = local(name, *args)
    if tabpy_answer is not None:
        assert_close(expected, tabpy_answer)
    response = server.http.post(f"/query/{quote(name)}", json={"data": args})
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["model"] == name
    assert_close(reply["response"], expected)
    evaluated = server.evaluate(*as_script(name, args))
    assert evaluated.status_code == 200, evaluated.text
    assert_close(evaluated.json(), expected)


def test_keyword_arguments(
    server: ServerProcess, deployed: subprocess.CompletedProcess[str]
) -> None:
    # Unlike TabPy, tabpy.query keeps keyword arguments next to positional ones.
    script = "return tabpy.query('Sentiment Analysis', _arg1, library='textblob')['response']"
    assert server.evaluate(script, {"_arg1": TEXTS}).json() == [0.8, -0.5, 0.0]
    body = {"data": {"component": 1, "_arg1": COLUMN_A, "_arg2": COLUMN_B}}
    response = server.http.post("/query/PCA", json=body)
    assert_close(response.json()["response"], local("PCA", 1, COLUMN_A, COLUMN_B))


BAD: list[tuple[str, list[Any], str]] = [
    ("PCA", [1, COLUMN_A], "PCA needs the component number and then at least two columns"),
    ("PCA", [4, COLUMN_A, COLUMN_B], "PCA: the component must be between 1 and 2"),
    ("PCA", [1, [1, 2], [3, None]], "PCA: _arg2 has a null at position 2"),
    (
        "PCA",
        [1, list(range(30)), [f"c{i}" for i in range(30)]],
        "PCA: _arg2 is text with 30 distinct values, but a text column may have at most 25",
    ),
    ("ttest", [[1, 2, 3], ["a", "b", "c"]], "must be a factor with exactly two distinct values"),
    ("ttest", [[], [1, 2]], "ttest: _arg1 is empty"),
    ("anova", [[1, 2, 3], [4, None, 6]], "anova: _arg2 has a null at position 2"),
    ("anova", [[1, 2, 3]], "anova needs at least two groups"),
    ("Sentiment Analysis", [TEXTS, "spacy"], "Sentiment Analysis: library must be one of"),
]


@pytest.mark.parametrize(("name", "args", "message"), BAD)
def test_bad_input_is_a_clear_query_failure(
    server: ServerProcess,
    deployed: subprocess.CompletedProcess[str],
    name: str,
    args: list[Any],
    message: str,
) -> None:
    response = server.http.post(f"/query/{quote(name)}", json={"data": args})
    assert response.status_code == 500
    body = response.json()
    assert body["message"] == f"Error querying function '{name}'"
    assert body["info"]["type"] == "QueryFailed"
    error = body["info"]["error"]
    assert error.startswith("ModelInputError : ")
    assert message in error
    assert "Traceback" not in response.text


def test_bad_input_message_reaches_scripts(
    server: ServerProcess, deployed: subprocess.CompletedProcess[str]
) -> None:
    script = "return tabpy.query('ttest', _arg1, _arg2)['info']['error']"
    response = server.evaluate(script, {"_arg1": [1, 2, 3], "_arg2": ["a", "b", "c"]})
    assert response.status_code == 200
    assert response.json().startswith("ModelInputError : ttest: _arg2 holds text")


def test_a_model_pickled_by_reference_works_too(
    server: ServerProcess, deployed: subprocess.CompletedProcess[str]
) -> None:
    """From an installed tabpy, the client sends a reference to tabpy.models.<module>."""
    ttest = next(model for model in MODELS if model.name == "ttest")
    assert deploy_raw(server.http, "ttest by reference", pickled(ttest.function)).status_code in (
        200,
        201,
    )
    response = server.http.post("/query/ttest%20by%20reference", json={"data": CALLS[4][1]})
    assert response.status_code == 200, response.text
    assert_close(response.json()["response"], 0.1928929642906987)


# --- with authentication -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("model-users")
    passwords = directory / "passwords.txt"
    passwords.write_text(password_line(USER, PASSWORD), encoding="utf-8")
    settings = {
        "TABPY_PWD_FILE": str(passwords),
        "TABPY_WORKERS": "1",
        "TABPY_AUTH_MAX_FAILURES": "0",
    }
    client = {"auth": (USER, PASSWORD)}
    yield from module_server(tmp_path_factory, settings, client=client)


def test_auth_credentials_on_standard_input(auth_server: ServerProcess) -> None:
    # Exactly how TabPy's integration tests drive it.
    done = deploy_models(auth_server, stdin=f"{USER}\n{PASSWORD}\n", script=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1:] == successes(NAMES)
    for name in NAMES:
        assert auth_server.http.get(f"/endpoints/{quote(name)}").status_code == 200
    script = "return tabpy.query('Sentiment Analysis', _arg1)['response']"
    response = auth_server.evaluate(script, {"_arg1": TEXTS})
    assert response.status_code == 200
    assert response.json() == [0.5719, -0.4767, 0.0]
    assert PASSWORD not in done.stdout + done.stderr
    assert PASSWORD not in auth_server.stderr.text + auth_server.stdout.text


def test_auth_credentials_from_the_environment(auth_server: ServerProcess) -> None:
    env = {"TABPY_USERNAME": USER, "TABPY_PASSWORD": PASSWORD}
    done = deploy_models(auth_server, "-m", "Sentiment Analysis", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1:] == successes(["Sentiment Analysis"])


def test_auth_wrong_password_fails_clearly(auth_server: ServerProcess) -> None:
    done = deploy_models(auth_server, stdin=f"{USER}\nnot the password\n")
    assert done.returncode == 1
    assert "refused the username or password" in done.stderr
    assert "Successfully" not in done.stdout
    assert "not the password" not in done.stdout + done.stderr


# --- HTTPS and a missing extra -------------------------------------------------------------------


def test_https_trusts_the_configured_certificate(launch: Any, tmp_path: Path) -> None:
    authority = Authority()
    cert, key = write_pair(tmp_path, "server", *authority.issue())
    (tmp_path / "ca.pem").write_bytes(authority.pem())
    settings = {
        "TABPY_TRANSFER_PROTOCOL": "https",
        "TABPY_CERTIFICATE_FILE": str(cert),
        "TABPY_KEY_FILE": str(key),
        "TABPY_WORKERS": "1",
    }
    server = launch(settings, client={"verify": pinned_context(cert)})
    server.wait_until_warm()
    only = ("-m", "Sentiment Analysis")
    # Default: the server must present the certificate its config names.
    done = deploy_models(server, *only)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1:] == successes(["Sentiment Analysis"])
    # --ca-file: an ordinary CA check (with the host name).
    done = deploy_models(server, *only, "--ca-file", str(tmp_path / "ca.pem"))
    assert done.returncode == 0, done.stderr
    # A CA that did not issue the certificate: refused, with a hint.
    (tmp_path / "other.pem").write_bytes(Authority().pem())
    done = deploy_models(server, *only, "--ca-file", str(tmp_path / "other.pem"))
    assert done.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in done.stderr
    assert "pass --ca-file with the CA that issued it, or --insecure" in done.stderr


def test_missing_extra_on_the_server_names_the_install_command(launch: Any, tmp_path: Path) -> None:
    fake = tmp_path / "without-sklearn" / "sklearn"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'sklearn'\")\n")
    server = launch({"TABPY_WORKERS": "1"}, env={"PYTHONPATH": str(fake.parent)})
    server.wait_until_warm()
    done = deploy_models(server, "-m", "PCA", "-m", "Sentiment Analysis")
    assert done.returncode == 1
    assert done.stdout.splitlines()[1:] == successes(["Sentiment Analysis"])
    assert done.stderr.splitlines() == [
        "Failed to deploy PCA: it was deployed, but the server cannot run it: "
        "MissingDependencyError : PCA needs scikit-learn, which is not installed in the Python "
        "environment that runs TabPy (No module named 'sklearn'). Install the models extra "
        f"there: {INSTALL_COMMAND}"
    ]
    assert server.http.get("/endpoints/PCA").status_code == 200  # deployed, but cannot run
