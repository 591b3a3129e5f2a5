"""The deployment artifacts under deploy/ against the server they deploy.

Nothing here needs a container runtime. The tests read the Dockerfile, the compose file, the
Kubernetes manifests (rendered by kustomize) and the fleet nginx config, and check them against
the server's own settings parser, defaults and route table; the external tools (hadolint,
kustomize, checkov, nginx) run where they are installed. A missing tool skips its tests, except
under ``CI=true``, where it fails them: CI must install every tool.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tabpy.config import (
    _KEYS,
    DEFAULT_ARROWFLIGHT_PORT,
    DEFAULT_EVALUATE_TIMEOUT,
    DEFAULT_PORT,
)
from tabpy.server.auth_middleware import PROBES
from tabpy.server.health import REGISTRY_TIMEOUT
from tests.unit.deploy_checks import (
    COMPOSE,
    DEPLOY,
    DOCKERFILE,
    K8S,
    ROOT,
    config_values,
    dockerfile_stages,
    find_tool,
    image_environment,
    image_uid,
    run,
    server_routes,
    settings_for,
    untracked_secrets,
)

OVERLAYS = ("small", "production")
KNOWN_SETTINGS = frozenset(key.name for key in _KEYS)

# Settings the fleet work (issue 14) adds and the artifacts already use. Remove each name here
# when tabpy/config.py defines it; test_pending_settings_are_still_pending says when.
PENDING_FLEET_SETTINGS: frozenset[str] = frozenset()
# The default for TABPY_REGISTRY_CONNECT_TIMEOUT, until the setting exists.
PENDING_REGISTRY_CONNECT_TIMEOUT = 60.0
# Memory the server process itself needs beside its workers, in MiB.
SERVER_HEADROOM_MB = 512


# --- settings ------------------------------------------------------------------------------------


def deploy_texts() -> dict[Path, str]:
    paths = [
        path
        for path in DEPLOY.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and not untracked_secrets(str(path.parent), [path.name])
    ]
    paths.append(ROOT / "docs" / "deploy.md")
    return {path: path.read_text(encoding="utf-8") for path in paths}


def test_every_tabpy_variable_mentioned_is_a_setting() -> None:
    for path, text in deploy_texts().items():
        for name in set(re.findall(r"\bTABPY_[A-Z0-9_]*[A-Z0-9]\b", text)):
            assert name in KNOWN_SETTINGS | PENDING_FLEET_SETTINGS, f"{path}: {name}"


def test_pending_settings_are_still_pending() -> None:
    landed = PENDING_FLEET_SETTINGS & KNOWN_SETTINGS
    assert not landed, f"remove {sorted(landed)} from PENDING_FLEET_SETTINGS: they exist now"


# --- the compose file ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def instances(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if name.startswith("tabpy")}


def test_compose_runs_three_instances_postgres_and_nginx(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"postgres", "tabpy1", "tabpy2", "tabpy3", "nginx"}
    ids = [s["environment"]["TABPY_INSTANCE_ID"] for s in instances(compose).values()]
    assert sorted(ids) == ["tabpy1", "tabpy2", "tabpy3"]
    for name in ("postgres", "nginx"):
        image = compose["services"][name]["image"]
        assert re.search(r":\d+\.\d+(\.\d+)?-", image), f"{name}: pin an exact version"
    for service in instances(compose).values():
        build = service["build"]
        assert (COMPOSE.parent / build["context"]).resolve() == ROOT
        assert build["dockerfile"] == "deploy/Dockerfile"
        # The registry is PostgreSQL and Arrow Flight is on: the image needs both extras.
        assert {"postgres", "arrow"} <= set(build["args"]["EXTRAS"].split(","))


def test_compose_starts_each_service_after_what_it_needs(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["postgres"]["healthcheck"]["test"][1] == "pg_isready"
    for service in instances(compose).values():
        assert service["depends_on"] == {"postgres": {"condition": "service_healthy"}}
        test = service["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "/opt/tabpy/healthcheck.py"]
        assert test[3] in ("/health", "/ready")
    nginx = services["nginx"]
    assert nginx["depends_on"] == {
        name: {"condition": "service_healthy"} for name in instances(compose)
    }
    assert any("/health" in part for part in nginx["healthcheck"]["test"])
    assert "./nginx/fleet.conf:/etc/nginx/conf.d/default.conf:ro" in nginx["volumes"]


def test_compose_passwords_come_from_secret_files(compose: dict[str, Any]) -> None:
    secrets = compose["secrets"]
    assert all(set(secret) == {"file"} for secret in secrets.values()), "files, not environment"
    for name, service in compose["services"].items():
        environment = service.get("environment", {})
        assert isinstance(environment, dict), f"{name}: use a mapping for environment"
        for variable, value in environment.items():
            if "PASSWORD" in variable:
                assert variable.endswith("_FILE"), f"{name}: {variable} holds a literal password"
                secret = str(value).removeprefix("/run/secrets/")
                assert secret in secrets and secret in service["secrets"], f"{name}: {variable}"
    for service in instances(compose).values():
        url = urlsplit(service["environment"]["TABPY_REGISTRY_URL"])
        assert url.password is None and url.hostname == "postgres"
        password_file = service["environment"]["TABPY_REGISTRY_PASSWORD_FILE"]
        assert (
            password_file
            == compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"]
        )


def test_compose_settings_parse_and_fit_the_container(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    for name, service in instances(compose).items():
        environment = {key: str(value) for key, value in service["environment"].items()}
        settings = settings_for(tmp_path, {**image_environment(), **environment})
        assert settings.pwd_file is not None and settings.health_checks_public
        assert settings.arrow_enabled and settings.registry_url.startswith("postgresql+psycopg")
        limit = memory_mib(service["deploy"]["resources"]["limits"]["memory"])
        assert workers_fit(environment, limit), name
        drain = float(environment["TABPY_DRAIN_SECONDS"])
        grace = float(service["stop_grace_period"].removesuffix("s"))
        assert grace > drain + settings.shutdown_timeout
        assert settings.shutdown_timeout >= settings.evaluate_timeout
        assert service["read_only"] is True and "/tmp" in service["tmpfs"]
        assert f"{name}-state:{settings_state_path()}" in service["volumes"]
    published = {int(port.split(":")[0]) for port in compose["services"]["nginx"]["ports"]}
    assert published == {DEFAULT_PORT, DEFAULT_ARROWFLIGHT_PORT}


def settings_state_path() -> str:
    return image_environment()["TABPY_STATE_PATH"]


def memory_mib(text: str) -> float:
    units = {"Gi": 1024, "Mi": 1, "g": 1024, "m": 1, "G": 1000**3 / 2**20, "M": 1000**2 / 2**20}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text.removesuffix(suffix)) * factor
    raise AssertionError(f"unexpected memory quantity {text}")


def workers_fit(environment: Mapping[str, str], limit_mib: float) -> bool:
    """Both values are set (their defaults see the host), and the workers fit the limit."""
    workers = int(environment["TABPY_WORKERS"])
    per_worker = int(environment["TABPY_WORKER_MEMORY_LIMIT_MB"])
    return per_worker > 0 and workers * per_worker + SERVER_HEADROOM_MB <= limit_mib


# --- Kubernetes ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Each overlay rendered by kustomize, with the example secret files standing in."""
    hint = "install kubectl or kustomize, or run scripts/check-deploy --install-only"
    kustomize = shutil.which("kustomize")
    command = [kustomize, "build"] if kustomize else [find_tool("kubectl", hint), "kustomize"]
    copy = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, copy)
    for example in copy.rglob("secrets/*.example"):
        shutil.copy(example, example.with_suffix(""))
    documents = {}
    for overlay in OVERLAYS:
        result = run([*command, str(copy / "overlays" / overlay)])
        assert result.returncode == 0, result.stderr
        documents[overlay] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return documents


def one(documents: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        doc
        for doc in documents
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(documents: list[dict[str, Any]]) -> dict[str, Any]:
    (tabpy,) = one(documents, "Deployment")["spec"]["template"]["spec"]["containers"]
    return tabpy


def config_file(documents: list[dict[str, Any]], directory: Path) -> Path:
    """tabpy.conf from the ConfigMap, written where the test can read it."""
    path = directory / "tabpy.conf"
    path.write_text(one(documents, "ConfigMap")["data"]["tabpy.conf"], encoding="utf-8")
    return path


def k8s_environment(documents: list[dict[str, Any]]) -> dict[str, str]:
    """The container's environment: the image's, then the manifest's literal values."""
    literal = {e["name"]: e["value"] for e in container(documents)["env"] if "value" in e}
    return {**image_environment(), **literal}


def raw_values(documents: list[dict[str, Any]], directory: Path) -> dict[str, str]:
    """Every TABPY_* value as text, the environment winning over the file, pending keys too."""
    return {**config_values(config_file(documents, directory)), **k8s_environment(documents)}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_manifests_hold_every_part_of_an_installation(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    documents = rendered[overlay]
    kinds = sorted(doc["kind"] for doc in documents)
    assert kinds == sorted(
        [
            "ConfigMap",
            "Deployment",
            "HorizontalPodAutoscaler",
            "Namespace",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Secret",
            "Service",
            "Service",
            "ServiceAccount",
        ]
    )
    namespaced = [doc for doc in documents if doc["kind"] != "Namespace"]
    assert all(doc["metadata"].get("namespace") == "tabpy" for doc in namespaced)
    image = container(documents)["image"]
    assert re.search(r"[:@]", image.rpartition("/")[2]) and not image.endswith(":latest")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_and_services_match_the_server(
    rendered: dict[str, list[dict[str, Any]]], overlay: str, tmp_path: Path
) -> None:
    documents = rendered[overlay]
    tabpy = container(documents)
    settings = settings_for(tmp_path, k8s_environment(documents), config_file(documents, tmp_path))
    ports = {port["name"]: port["containerPort"] for port in tabpy["ports"]}
    assert ports == {"http": settings.port, "flight": settings.arrowflight_port}
    # The image built with the default EXTRAS has what this configuration uses.
    assert settings.arrow_enabled and settings.registry_url.startswith("postgresql")
    assert {"arrow", "postgres"} <= default_extras()
    labels = one(documents, "Deployment")["spec"]["template"]["metadata"]["labels"]
    for name, port_name in (("tabpy", "http"), ("tabpy-flight", "flight")):
        service = one(documents, "Service", name)
        assert service["spec"]["selector"].items() <= labels.items()
        (port,) = service["spec"]["ports"]
        assert port["targetPort"] == port_name and port["port"] == ports[port_name]
    assert one(documents, "Service", "tabpy-flight")["spec"]["ports"][0]["appProtocol"] == (
        "kubernetes.io/h2c"
    )
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        selector = one(documents, kind)["spec"]
        selector = selector.get("selector") or selector["podSelector"]
        assert selector["matchLabels"].items() <= labels.items()


def default_extras() -> set[str]:
    """The builder's default EXTRAS build argument."""
    (argument,) = [rest for rest in dockerfile_stages()[0].all("ARG") if rest.startswith("EXTRAS=")]
    return set(argument.removeprefix("EXTRAS=").strip('"').split(","))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_use_the_public_health_routes(
    rendered: dict[str, list[dict[str, Any]]], overlay: str, tmp_path: Path
) -> None:
    documents = rendered[overlay]
    tabpy = container(documents)
    routes = {route.path: route for route in server_routes(tmp_path)}
    expected = {"startupProbe": "/health", "livenessProbe": "/health", "readinessProbe": "/ready"}
    for probe, path in expected.items():
        get = tabpy[probe]["httpGet"]
        assert (get["path"], get["port"], get.get("scheme", "HTTP")) == (path, "http", "HTTP")
        route = routes[path]
        assert route.name in PROBES and "GET" in (route.methods or ())
    settings = settings_for(tmp_path, k8s_environment(documents), config_file(documents, tmp_path))
    # A password file is set, so the probes (which send no credentials) need public routes.
    assert settings.pwd_file is not None and settings.health_checks_public
    assert settings.transfer_protocol == "http"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probe_and_shutdown_timing_agree_with_the_drain(
    rendered: dict[str, list[dict[str, Any]]], overlay: str, tmp_path: Path
) -> None:
    documents = rendered[overlay]
    tabpy = container(documents)
    pod = one(documents, "Deployment")["spec"]["template"]["spec"]
    settings = settings_for(tmp_path, k8s_environment(documents), config_file(documents, tmp_path))
    raw = raw_values(documents, tmp_path)
    # Pending settings, read as text until tabpy.config parses them.
    drain = float(raw["TABPY_DRAIN_SECONDS"])
    connect = float(raw.get("TABPY_REGISTRY_CONNECT_TIMEOUT", PENDING_REGISTRY_CONNECT_TIMEOUT))

    ready = tabpy["readinessProbe"]
    noticed = ready["periodSeconds"] * ready["failureThreshold"] + ready["timeoutSeconds"]
    assert noticed <= drain, "the readiness probe must see the drain before it ends"
    assert ready["timeoutSeconds"] > REGISTRY_TIMEOUT, "/ready may take its full check time"
    start = tabpy["startupProbe"]
    assert start["periodSeconds"] * start["failureThreshold"] > connect
    assert tabpy["livenessProbe"]["timeoutSeconds"] >= 1

    command = tabpy["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = float(command[1])
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > pre_stop + drain + settings.shutdown_timeout
    assert settings.shutdown_timeout >= settings.evaluate_timeout == DEFAULT_EVALUATE_TIMEOUT


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_files_and_the_pod_is_locked_down(
    rendered: dict[str, list[dict[str, Any]]], overlay: str, tmp_path: Path
) -> None:
    documents = rendered[overlay]
    tabpy = container(documents)
    pod = one(documents, "Deployment")["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: volumes[mount["name"]] for mount in tabpy["volumeMounts"]}
    assert not any("valueFrom" in e and "secretKeyRef" in e["valueFrom"] for e in tabpy["env"])

    def volume_key(path: str) -> tuple[dict[str, Any], str]:
        directory, _, key = path.rpartition("/")
        return mounts[directory], key

    secret = one(documents, "Secret")
    assert set(secret["data"]) == {"passwords.txt", "registry-password", "internal-credentials"}
    raw = raw_values(documents, tmp_path)
    for setting in (
        "TABPY_PWD_FILE",
        "TABPY_REGISTRY_PASSWORD_FILE",
        "TABPY_INTERNAL_CREDENTIALS_FILE",
    ):
        volume, key = volume_key(raw[setting])
        assert volume["secret"]["secretName"] == secret["metadata"]["name"]
        assert key in secret["data"]
    assert urlsplit(raw["TABPY_REGISTRY_URL"]).password is None
    config_volume, key = volume_key(tabpy["args"][tabpy["args"].index("--config") + 1])
    config_map = one(documents, "ConfigMap")
    assert config_volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert key in config_map["data"]

    assert "emptyDir" in mounts[settings_state_path()] and "emptyDir" in mounts["/tmp"]
    assert pod["securityContext"]["runAsUser"] == image_uid()
    assert pod["securityContext"]["runAsNonRoot"] and not pod["automountServiceAccountToken"]
    context = tabpy["securityContext"]
    assert context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"]
    assert context["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_capacity_fits_the_limits_and_survives_disruption(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    documents = rendered[overlay]
    resources = container(documents)["resources"]
    assert set(resources) == {"requests", "limits"}
    limit = memory_mib(resources["limits"]["memory"])
    assert workers_fit(k8s_environment(documents), limit)
    autoscaler = one(documents, "HorizontalPodAutoscaler")["spec"]
    assert autoscaler["scaleTargetRef"]["name"] == one(documents, "Deployment")["metadata"]["name"]
    assert 2 <= autoscaler["minReplicas"] <= autoscaler["maxReplicas"]
    assert "replicas" not in one(documents, "Deployment")["spec"], "the autoscaler owns it"
    budget = one(documents, "PodDisruptionBudget")["spec"]
    assert budget["maxUnavailable"] < autoscaler["minReplicas"]


def test_checkov_passes_on_the_image_and_the_rendered_manifests(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    checkov = find_tool("checkov", "scripts/check-deploy --install-only installs it")
    files = []
    for overlay, documents in rendered.items():
        path = tmp_path / f"{overlay}.yaml"
        path.write_text(yaml.safe_dump_all(documents), encoding="utf-8")
        files += ["--file", str(path)]
    # The secrets scan sees what git holds: real secret files written locally stay out of it.
    tracked = tmp_path / "deploy"
    shutil.copytree(DEPLOY, tracked, ignore=untracked_secrets)
    common = ["--compact", "--quiet", "--skip-download"]  # no download: CI has no internet
    scans = [
        [*files, "--framework", "kubernetes"],
        ["--file", str(DOCKERFILE), "--framework", "dockerfile"],
        ["--directory", str(tracked), "--framework", "secrets"],
    ]
    for scan in scans:
        result = run([checkov, *scan, *common])
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
