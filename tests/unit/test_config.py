"""Settings loading: precedence, interpolation, parsing and the one-line error messages."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from tabpy.config import (
    DEFAULT_ARROWFLIGHT_PORT,
    DEFAULT_BIND_ADDRESS,
    DEFAULT_MAX_REQUEST_SIZE_MB,
    DEFAULT_PORT,
    ConfigError,
    Settings,
    describe_settings,
    load_settings,
)
from tabpy.errors import TabPyError

Load = Callable[..., Settings]


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def load(tmp_path: Path, state: Path) -> Load:
    """Load settings from an optional ``[TabPy]`` body and env, never touching the real home."""

    def run(body: str | None = None, env: Mapping[str, str] | None = None) -> Settings:
        environ = {"TABPY_STATE_PATH": str(state), **(env or {})}
        path = None
        if body is not None:
            path = tmp_path / "tabpy.conf"
            path.write_text(body, encoding="utf-8")
        return load_settings(path, environ)

    return run


def error_of(load: Load, body: str | None = None, env: Mapping[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(body, env)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- defaults and precedence -----------------------------------------------------------------


def test_defaults(load: Load, state: Path) -> None:
    settings = load()
    assert settings.config_file is None
    assert settings.port == DEFAULT_PORT
    assert settings.bind_address == DEFAULT_BIND_ADDRESS
    assert settings.state_path == state.resolve()
    assert settings.query_object_path == state.resolve() / "query_objects"
    assert settings.static_path is None
    assert settings.pwd_file is None
    assert settings.transfer_protocol == "http"
    assert settings.minimum_tls_version == "TLSv1_2"
    assert settings.log_details is False
    assert settings.max_request_size_mb == DEFAULT_MAX_REQUEST_SIZE_MB
    assert settings.max_request_size_bytes == DEFAULT_MAX_REQUEST_SIZE_MB * 1024 * 1024
    assert settings.evaluate_enabled is True
    assert settings.evaluate_timeout == 30.0
    assert settings.gzip_enabled is True
    assert settings.arrow_enabled is False
    assert settings.arrowflight_port == DEFAULT_ARROWFLIGHT_PORT
    assert settings.oauth_enabled is False
    assert settings.oauth_required_scopes == ()
    assert settings.oauth_query_scope == "tabpy:query"
    assert settings.oauth_evaluate_scope == "tabpy:evaluate"
    assert settings.oauth_deploy_scope == "tabpy:deploy"
    assert settings.workers == (os.cpu_count() or 1)
    assert settings.worker_memory_limit_mb >= 0
    assert settings.shutdown_timeout == 10.0
    assert settings.sources["TABPY_PORT"] == "default"
    assert settings.sources["TABPY_STATE_PATH"] == "environment"


def test_config_error_is_a_tabpy_error() -> None:
    assert issubclass(ConfigError, TabPyError)


def test_settings_are_immutable(load: Load) -> None:
    settings = load()
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.sources["TABPY_PORT"] = "file"  # type: ignore[index]


def test_file_overrides_default(load: Load) -> None:
    settings = load("[TabPy]\nTABPY_PORT = 9100\n")
    assert settings.port == 9100
    assert settings.sources["TABPY_PORT"] == "file"


def test_environment_overrides_file(load: Load) -> None:
    settings = load("[TabPy]\nTABPY_PORT = 9100\n", {"TABPY_PORT": "9200"})
    assert settings.port == 9200
    assert settings.sources["TABPY_PORT"] == "environment"


def test_empty_environment_value_means_unset(load: Load) -> None:
    assert load("[TabPy]\nTABPY_PORT = 9100\n", {"TABPY_PORT": ""}).port == 9100
    assert load(None, {"TABPY_PORT": "  "}).port == DEFAULT_PORT


def test_keys_case_insensitive_and_colon_syntax(load: Load) -> None:
    settings = load("[TabPy]\ntabpy_port: 9101\nTabPy_Evaluate_Enable = off\n")
    assert settings.port == 9101
    assert settings.evaluate_enabled is False


def test_lowercase_environment_name_is_honoured(load: Load) -> None:
    assert load(None, {"tabpy_port": "9102"}).port == 9102


def test_section_name_is_case_sensitive(load: Load) -> None:
    settings = load("[tabpy]\nTABPY_PORT = 9100\n")
    assert settings.port == DEFAULT_PORT


def test_file_without_tabpy_section_gives_defaults(load: Load, tmp_path: Path) -> None:
    settings = load("[other]\nx = 1\n")
    assert settings.port == DEFAULT_PORT
    assert settings.config_file == tmp_path / "tabpy.conf"


# --- interpolation ---------------------------------------------------------------------------


def test_interpolates_environment_case_insensitively(load: Load) -> None:
    settings = load("[TabPy]\nTABPY_PORT = %(myport)s\n", {"MYPORT": "9103"})
    assert settings.port == 9103


def test_interpolation_concatenates_like_tabpy(load: Load) -> None:
    settings = load("[TabPy]\nTABPY_OAUTH_AUDIENCE = %(foo)sbar\n", {"foo": "baz"})
    assert settings.oauth_audience == "bazbar"


def test_interpolates_other_section_key(load: Load) -> None:
    settings = load("[TabPy]\nbase = 91\nTABPY_PORT = %(base)s04\n")
    assert settings.port == 9104


def test_helper_key_used_by_reference_is_not_warned_about(
    load: Load, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="tabpy.config"):
        load("[TabPy]\nbase = 91\nTABPY_PORT = %(base)s04\n")
    assert caplog.records == []


def test_reference_prefers_environment_like_settings(load: Load) -> None:
    body = "[TabPy]\nbase = 91\nTABPY_PORT = %(base)s05\n"
    assert load(body, {"BASE": "92"}).port == 9205


def test_interpolation_applies_to_environment_values(load: Load) -> None:
    settings = load(None, {"TABPY_PORT": "%(PORT_FROM_ELSEWHERE)s", "PORT_FROM_ELSEWHERE": "9106"})
    assert settings.port == 9106


def test_double_percent_is_literal(load: Load) -> None:
    settings = load("[TabPy]\nTABPY_OAUTH_AUDIENCE = 100%%\n")
    assert settings.oauth_audience == "100%"


def test_unknown_reference(load: Load) -> None:
    message = error_of(load, "[TabPy]\nTABPY_PORT = %(NOPE)s\n")
    assert message == (
        'TABPY_PORT = "%(NOPE)s" refers to %(NOPE)s, which is neither an environment variable '
        "nor a [TabPy] key; write %% for a literal %."
    )


def test_lone_percent_in_file(load: Load) -> None:
    message = error_of(load, "[TabPy]\nTABPY_OAUTH_AUDIENCE = 100%\n")
    assert message.startswith('TABPY_OAUTH_AUDIENCE = "100%"')
    assert "write %% for a literal %" in message


def test_lone_percent_in_environment(load: Load) -> None:
    message = error_of(load, None, {"TABPY_OAUTH_AUDIENCE": "50%off"})
    assert message.startswith('TABPY_OAUTH_AUDIENCE = "50%off"')


def test_unrelated_environment_percent_is_harmless(load: Load) -> None:
    settings = load("[TabPy]\nTABPY_PORT = 9107\n", {"PS1": "%n@%m %~ %# ", "WEIRD": "%("})
    assert settings.port == 9107


def test_reference_loop_is_an_error(load: Load) -> None:
    message = error_of(load, "[TabPy]\na = %(b)s\nb = %(a)s\nTABPY_PORT = %(a)s\n")
    assert message.startswith("TABPY_PORT = ")
    assert "loop" in message


# --- parsing and validation -------------------------------------------------------------------


@pytest.mark.parametrize("value", ["70000", "-1", "abc", "90.5"])
def test_bad_port(load: Load, value: str) -> None:
    message = error_of(load, None, {"TABPY_PORT": value})
    assert message == (
        f'TABPY_PORT = "{value}" is not a valid port: use a whole number between 1 and 65535 '
        "(or 0 for any free port)."
    )


def test_port_zero_means_any_free_port(load: Load) -> None:
    assert load(None, {"TABPY_PORT": "0"}).port == 0


def test_bad_arrowflight_port(load: Load) -> None:
    message = error_of(load, "[TabPy]\nTABPY_ARROWFLIGHT_PORT = 65536\n")
    assert message.startswith('TABPY_ARROWFLIGHT_PORT = "65536" is not a valid port')


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", True), ("YES", True), ("true", True), ("On", True)]
    + [("0", False), ("no", False), ("FALSE", False), ("off", False)],
)
def test_booleans(load: Load, text: str, expected: bool) -> None:
    assert load(None, {"TABPY_GZIP_ENABLE": text}).gzip_enabled is expected


def test_log_details_is_strict_unlike_tabpy(load: Load) -> None:
    # TabPy enabled request logging for anything but "false", including "0" and "off".
    assert load(None, {"TABPY_LOG_DETAILS": "0"}).log_details is False
    assert load(None, {"TABPY_LOG_DETAILS": "off"}).log_details is False
    assert load(None, {"TABPY_LOG_DETAILS": "True"}).log_details is True


def test_bad_boolean(load: Load) -> None:
    message = error_of(load, "[TabPy]\nTABPY_LOG_DETAILS = maybe\n")
    assert message.startswith('TABPY_LOG_DETAILS = "maybe" is not a boolean')
    assert "true or false" in message


@pytest.mark.parametrize(
    ("text", "seconds", "shown"),
    [(None, 30.0, "30"), ("3", 3.0, "3.0"), ("2.5", 2.5, "2.5"), ("30", 30.0, "30.0")],
)
def test_evaluate_timeout_text(load: Load, text: str | None, seconds: float, shown: str) -> None:
    env = {} if text is None else {"TABPY_EVALUATE_TIMEOUT": text}
    settings = load(None, env)
    assert settings.evaluate_timeout == seconds
    assert isinstance(settings.evaluate_timeout, float)
    assert settings.evaluate_timeout_text == shown


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "inf"])
def test_bad_evaluate_timeout(load: Load, value: str) -> None:
    message = error_of(load, None, {"TABPY_EVALUATE_TIMEOUT": value})
    assert message.startswith(f'TABPY_EVALUATE_TIMEOUT = "{value}" is not a valid duration')
    assert "greater than zero" in message


def test_shutdown_timeout_allows_zero_but_not_negative(load: Load) -> None:
    assert load(None, {"TABPY_SHUTDOWN_TIMEOUT": "0"}).shutdown_timeout == 0.0
    message = error_of(load, None, {"TABPY_SHUTDOWN_TIMEOUT": "-2"})
    assert message.startswith('TABPY_SHUTDOWN_TIMEOUT = "-2" is not a valid duration')


def test_max_request_size(load: Load) -> None:
    settings = load(None, {"TABPY_MAX_REQUEST_SIZE_MB": "2"})
    assert settings.max_request_size_bytes == 2 * 1048576
    for bad in ("1.5", "0"):
        message = error_of(load, None, {"TABPY_MAX_REQUEST_SIZE_MB": bad})
        assert message.startswith(f'TABPY_MAX_REQUEST_SIZE_MB = "{bad}" is not valid')


def test_workers_and_memory_limit(load: Load) -> None:
    settings = load(None, {"TABPY_WORKERS": "3", "TABPY_WORKER_MEMORY_LIMIT_MB": "0"})
    assert settings.workers == 3
    assert settings.worker_memory_limit_mb == 0
    assert "TABPY_WORKERS" in error_of(load, None, {"TABPY_WORKERS": "0"})
    assert "TABPY_WORKER_MEMORY_LIMIT_MB" in error_of(
        load, None, {"TABPY_WORKER_MEMORY_LIMIT_MB": "-1"}
    )


def test_worker_containment_and_caller_isolation(load: Load, tmp_path: Path) -> None:
    assert load(None, {}).worker_containment == "auto"
    assert load(None, {"TABPY_WORKER_CONTAINMENT": "Subreaper"}).worker_containment == "subreaper"
    message = error_of(load, None, {"TABPY_WORKER_CONTAINMENT": "jail"})
    assert message.startswith('TABPY_WORKER_CONTAINMENT = "jail" is not a containment mode')
    # Isolation follows authentication unless set.
    assert load(None, {}).isolate_callers is False
    passwords = tmp_path / "passwords.txt"
    passwords.write_text("alice hash\n", encoding="utf-8")
    assert load(None, {"TABPY_PWD_FILE": str(passwords)}).isolate_callers is True
    settings = load(None, {"TABPY_PWD_FILE": str(passwords), "TABPY_ISOLATE_CALLERS": "false"})
    assert settings.isolate_callers is False
    assert load(None, {"TABPY_ISOLATE_CALLERS": "true"}).isolate_callers is True
    message = error_of(load, None, {"TABPY_WORKER_USER": "no-such-user-here"})
    assert message.startswith('TABPY_WORKER_USER = "no-such-user-here" is not a user')
    if os.geteuid() == 0:
        assert load(None, {"TABPY_WORKER_USER": "nobody"}).worker_user == "nobody"
    else:
        assert "needs the server to start as root" in error_of(
            load, None, {"TABPY_WORKER_USER": "nobody"}
        )


def test_default_memory_limit_is_shared_between_workers(
    load: Load, monkeypatch: pytest.MonkeyPatch
) -> None:
    pages = {"SC_PHYS_PAGES": 4 * 1024 * 1024, "SC_PAGE_SIZE": 4096}  # 16 GiB
    monkeypatch.setattr("os.sysconf", lambda name: pages[name])
    settings = load(None, {"TABPY_WORKERS": "4"})
    assert settings.worker_memory_limit_mb == 16 * 1024 * 3 // 4 // 4


def test_bind_address(load: Load) -> None:
    assert load(None, {"TABPY_BIND_ADDRESS": "127.0.0.1"}).bind_address == "127.0.0.1"


def test_required_scopes_are_split_and_trimmed(load: Load) -> None:
    settings = load("[TabPy]\nTABPY_OAUTH_REQUIRED_SCOPES = a, b ,,c,\n")
    assert settings.oauth_required_scopes == ("a", "b", "c")


def test_oauth_values_are_only_parsed(load: Load) -> None:
    settings = load(
        None,
        {"TABPY_OAUTH_ENABLED": "yes", "TABPY_OAUTH_ISSUER": "http://not-checked-here"},
    )
    assert settings.oauth_enabled is True
    assert settings.oauth_issuer == "http://not-checked-here"


def test_transfer_protocol_is_case_insensitive(load: Load, tmp_path: Path) -> None:
    cert, key = tmp_path / "c.crt", tmp_path / "c.key"
    cert.write_text("cert")
    key.write_text("key")
    settings = load(
        None,
        {"TABPY_TRANSFER_PROTOCOL": "HtTpS", "TABPY_CERTIFICATE_FILE": str(cert)}
        | {"TABPY_KEY_FILE": str(key)},
    )
    assert settings.transfer_protocol == "https"
    assert settings.certificate_file == cert.resolve()
    assert settings.key_file == key.resolve()


def test_unsupported_protocol(load: Load) -> None:
    message = error_of(load, None, {"TABPY_TRANSFER_PROTOCOL": "FTP"})
    assert message.startswith("Unsupported transfer protocol: ftp.")
    assert "TABPY_TRANSFER_PROTOCOL" in message


@pytest.mark.parametrize(
    ("cert", "key", "names"),
    [
        (False, False, "TABPY_CERTIFICATE_FILE and TABPY_KEY_FILE"),
        (False, True, "TABPY_CERTIFICATE_FILE"),
        (True, False, "TABPY_KEY_FILE"),
    ],
)
def test_https_requires_cert_and_key(load: Load, cert: bool, key: bool, names: str) -> None:
    env = {"TABPY_TRANSFER_PROTOCOL": "https"}
    if cert:
        env["TABPY_CERTIFICATE_FILE"] = "/nowhere/c.crt"
    if key:
        env["TABPY_KEY_FILE"] = "/nowhere/c.key"
    # The one that is set points nowhere, but an unset one is reported first.
    message = error_of(load, None, env)
    assert message == f"Error using HTTPS: The parameter(s) {names} must be set."


@pytest.mark.parametrize(
    ("cert_exists", "key_exists", "names"),
    [
        (False, False, "TABPY_CERTIFICATE_FILE and TABPY_KEY_FILE"),
        (False, True, "TABPY_CERTIFICATE_FILE"),
        (True, False, "TABPY_KEY_FILE"),
    ],
)
def test_https_files_must_exist(
    load: Load, tmp_path: Path, cert_exists: bool, key_exists: bool, names: str
) -> None:
    cert, key = tmp_path / "c.crt", tmp_path / "c.key"
    if cert_exists:
        cert.write_text("cert")
    if key_exists:
        key.write_text("key")
    env = {
        "TABPY_TRANSFER_PROTOCOL": "https",
        "TABPY_CERTIFICATE_FILE": str(cert),
        "TABPY_KEY_FILE": str(key),
    }
    message = error_of(load, None, env)
    assert message.startswith(
        f"Error using HTTPS: The parameter(s) {names} must point to an existing file: "
    )
    # Every path that was tried is named, so a typo or a stray comment is visible at once.
    for path, exists in ((cert, cert_exists), (key, key_exists)):
        assert (f"{path} does not exist" in message) != exists


def test_https_file_that_is_a_folder_is_named(load: Load, tmp_path: Path) -> None:
    (tmp_path / "c.key").write_text("key")
    env = {
        "TABPY_TRANSFER_PROTOCOL": "https",
        "TABPY_CERTIFICATE_FILE": str(tmp_path),
        "TABPY_KEY_FILE": str(tmp_path / "c.key"),
    }
    message = error_of(load, None, env)
    assert message.endswith(f"must point to an existing file: {tmp_path} is a folder.")


def test_cert_files_not_checked_for_http(load: Load) -> None:
    settings = load(None, {"TABPY_CERTIFICATE_FILE": "/nowhere/c.crt"})
    assert settings.certificate_file == Path("/nowhere/c.crt").resolve()


def test_unknown_tls_version_warns_and_falls_back(
    load: Load, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="tabpy.config"):
        settings = load(None, {"TABPY_MINIMUM_TLS_VERSION": "TLSv-1.3"})
    assert settings.minimum_tls_version == "TLSv1_2"
    assert "Unrecognized value for TABPY_MINIMUM_TLS_VERSION: TLSv-1.3" in caplog.messages


def test_known_tls_version_is_kept(load: Load) -> None:
    assert load(None, {"TABPY_MINIMUM_TLS_VERSION": "TLSv1_3"}).minimum_tls_version == "TLSv1_3"


def test_pwd_file(load: Load, tmp_path: Path) -> None:
    pwd = tmp_path / "passwords.txt"
    pwd.write_text("alice hash\n")
    assert load(None, {"TABPY_PWD_FILE": str(pwd)}).pwd_file == pwd.resolve()


def test_missing_pwd_file(load: Load, tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    message = error_of(load, f"[TabPy]\nTABPY_PWD_FILE = {missing}\n")
    assert message.startswith(f'TABPY_PWD_FILE = "{missing}" is not a readable file')
    assert f"({missing} does not exist)" in message
    assert f"tabpy-user add -u NAME -f {missing}" in message


def test_relative_pwd_file_names_the_path_tried(
    load: Load, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    message = error_of(load, None, {"TABPY_PWD_FILE": "passwords.txt"})
    assert f"({tmp_path / 'passwords.txt'} does not exist)" in message


def test_pwd_file_that_is_a_folder(load: Load, tmp_path: Path) -> None:
    message = error_of(load, None, {"TABPY_PWD_FILE": str(tmp_path)})
    assert f"({tmp_path} is a folder)" in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_pwd_file(load: Load, tmp_path: Path) -> None:
    locked = tmp_path / "passwords.txt"
    locked.write_text("alice hash\n")
    locked.chmod(0)
    message = error_of(load, None, {"TABPY_PWD_FILE": str(locked)})
    assert f"({locked} cannot be read by this user)" in message


def test_explicit_state_path_must_exist(load: Load, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    message = error_of(load, None, {"TABPY_STATE_PATH": str(missing)})
    assert message.startswith(f'TABPY_STATE_PATH = "{missing}" is not an existing directory')
    assert f"({missing} does not exist)" in message
    assert f"mkdir -p {missing}" in message
    assert not missing.exists()


def test_state_path_expands_user(
    load: Load, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path))  # expanduser reads the real environment
    settings = load(None, {"TABPY_STATE_PATH": "~/data"})
    assert settings.state_path == (tmp_path / "data").resolve()
    assert settings.query_object_path == settings.state_path / "query_objects"


def test_default_state_path_is_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "user-data" / "tabpy"
    monkeypatch.setattr("platformdirs.user_data_dir", lambda name: str(target))
    settings = load_settings(None, {})
    assert target.is_dir()
    assert settings.state_path == target.resolve()
    assert settings.sources["TABPY_STATE_PATH"] == "default"


def test_static_path_must_be_a_directory(load: Load, tmp_path: Path) -> None:
    assert load(None, {"TABPY_STATIC_PATH": str(tmp_path)}).static_path == tmp_path.resolve()
    message = error_of(load, None, {"TABPY_STATIC_PATH": str(tmp_path / "nope")})
    assert message.startswith("TABPY_STATIC_PATH = ")


def test_query_object_path_can_be_set(load: Load, tmp_path: Path) -> None:
    settings = load(None, {"TABPY_QUERY_OBJECT_PATH": str(tmp_path / "qo")})
    assert settings.query_object_path == (tmp_path / "qo").resolve()


# --- unknown keys ------------------------------------------------------------------------------


def test_typo_in_file(load: Load, tmp_path: Path) -> None:
    message = error_of(load, "[TabPy]\nTABPY_PROT = 9100\n")
    assert message == (
        f"Unknown setting TABPY_PROT in [TabPy] of {tmp_path / 'tabpy.conf'}: "
        "did you mean TABPY_PORT?"
    )


def test_typo_in_environment(load: Load) -> None:
    message = error_of(load, None, {"TABPY_EVALUATE_TIMOUT": "5"})
    assert message == (
        "Unknown setting TABPY_EVALUATE_TIMOUT in the environment: "
        "did you mean TABPY_EVALUATE_TIMEOUT?"
    )


def test_unrelated_unknown_keys_warn(load: Load, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tabpy.config"):
        settings = load("[TabPy]\nsomething_else = 1\n", {"TABPY_HOME": "/opt", "HOME": "/x"})
    assert settings.port == DEFAULT_PORT
    warned = " ".join(caplog.messages)
    assert "SOMETHING_ELSE" in warned
    assert "TABPY_HOME" in warned
    assert "HOME in" not in warned.replace("TABPY_HOME", "")


# --- the config file itself ---------------------------------------------------------------------


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.conf"
    with pytest.raises(ConfigError, match="not found") as info:
        load_settings(missing, {})
    assert str(missing) in str(info.value)


def test_missing_relative_config_file_names_the_path_tried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_settings("conf/tabpy.conf", {})
    assert str(info.value).startswith(
        f"Config file conf/tabpy.conf not found (looked for {tmp_path / 'conf/tabpy.conf'})"
    )


# --- inline comments ----------------------------------------------------------------------------


def test_inline_comments_are_not_part_of_values(load: Load, tmp_path: Path) -> None:
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    cert.write_text("cert")
    key.write_text("key")
    settings = load(
        "[TabPy]  # the section TabPy reads\n"
        "TABPY_TRANSFER_PROTOCOL = https   # or http\n"
        f"TABPY_CERTIFICATE_FILE = {cert}   # PEM; the chain may follow\n"
        f"TABPY_KEY_FILE = {key}\t# not encrypted\n"
        "TABPY_PORT = 9110 ; semicolons too, as for whole-line comments\n"
        "TABPY_MINIMUM_TLS_VERSION = TLSv1_3 #no space after the mark is still a comment\n"
    )
    assert settings.transfer_protocol == "https"
    assert (settings.certificate_file, settings.key_file) == (cert, key)
    assert settings.port == 9110
    assert settings.minimum_tls_version == "TLSv1_3"


def test_hash_without_whitespace_before_it_stays_in_the_value(load: Load, tmp_path: Path) -> None:
    folder = tmp_path / "tabpy#2"
    folder.mkdir()
    settings = load(
        "[TabPy]\n"
        f"TABPY_STATIC_PATH = {folder}\n"
        "TABPY_REGISTRY_URL = postgresql+psycopg://tabpy:pa#ss;word@db/tabpy  # a comment\n"
    )
    assert settings.static_path == folder
    assert settings.registry_url == "postgresql+psycopg://tabpy:pa#ss;word@db/tabpy"


def test_a_value_that_is_only_a_comment_is_unset(load: Load) -> None:
    settings = load("[TabPy]\nTABPY_PORT =   # set by the service\n")
    assert settings.port == DEFAULT_PORT
    assert settings.sources["TABPY_PORT"] == "default"


def test_environment_values_are_never_comments(load: Load, tmp_path: Path) -> None:
    """The way to a value containing " #": the environment, directly or by reference."""
    folder = tmp_path / "reports #2"
    folder.mkdir()
    direct = load(None, {"TABPY_STATIC_PATH": str(folder)})
    referenced = load(
        "[TabPy]\nTABPY_STATIC_PATH = %(REPORTS)s  # set by the service\n", {"REPORTS": str(folder)}
    )
    assert direct.static_path == referenced.static_path == folder


def test_comment_cut_value_is_shown_without_the_comment(load: Load) -> None:
    message = error_of(load, "[TabPy]\nTABPY_PORT = 90o4   # the usual port\n")
    assert message.startswith('TABPY_PORT = "90o4" is not a valid port')


@pytest.mark.parametrize("body", ["", "  \n\n"])
def test_empty_config_file(load: Load, body: str) -> None:
    assert "is empty" in error_of(load, body)


@pytest.mark.parametrize("body", ["TABPY_PORT = 9100\n", "# just a comment\n"])
def test_config_file_without_section_headers(load: Load, body: str) -> None:
    message = error_of(load, body)
    assert "has no section headers" in message
    assert "[TabPy]" in message


def test_malformed_config_file(load: Load) -> None:
    message = error_of(load, "[TabPy]\nTABPY_PORT = 1\nTABPY_PORT = 2\n")
    assert "is not valid INI" in message
    assert "tabpy_port" in message


def test_config_file_path_accepts_str(tmp_path: Path, state: Path) -> None:
    path = tmp_path / "x.conf"
    path.write_text("[TabPy]\nTABPY_PORT = 9108\n")
    settings = load_settings(str(path), {"TABPY_STATE_PATH": str(state)})
    assert settings.port == 9108
    assert settings.config_file == path


# --- describe_settings ---------------------------------------------------------------------------


def test_describe_settings(load: Load) -> None:
    settings = load("[TabPy]\nTABPY_PORT = 9109\n", {"TABPY_GZIP_ENABLE": "false"})
    lines = describe_settings(settings)
    assert lines[0] == 'Parameter port set to "9109" from config file'
    assert lines[1].startswith('Parameter server_version set to "')
    assert 'Parameter gzip_enabled set to "False" from environment variable' in lines
    assert 'Parameter evaluate_timeout set to "30" from default value' in lines
    assert "Parameter TABPY_PWD_FILE is not set" in lines
    assert "Parameter oauth_required_scopes is not set" in lines
    assert len(lines) == len(settings.sources) + 1


def test_the_settings_dump_never_shows_the_registry_password() -> None:
    from tabpy.config import describe_settings

    url = "postgresql+psycopg://tabpy:s3cr#t:pw@db.example:5432/tabpy"
    settings = load_settings(None, {"TABPY_REGISTRY_URL": url})
    lines = [line for line in describe_settings(settings) if "registry_url" in line]
    assert lines == [
        'Parameter registry_url set to "postgresql+psycopg://tabpy:***@db.example:5432/tabpy" '
        "from environment variable"
    ]
