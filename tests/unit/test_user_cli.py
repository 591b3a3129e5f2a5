from __future__ import annotations

import getpass
import os
import stat
from pathlib import Path

import pytest

from tabpy.cli.user import main
from tabpy.registry.audit import AuditQuery
from tabpy.registry.store import Registry
from tabpy.security.password_file import read_password_file
from tabpy.security.passwords import LegacyHash, ModernHash, legacy_hash


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_add_update_delete_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.txt"
    code, out, err = run(capsys, "add", "-u", "Alice", "-p", "P@ss:w0rd", "-f", str(path))
    assert (code, out) == (0, "")
    assert "P@ss:w0rd" not in err and 'Added username "alice"' in err
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    entry = read_password_file(path).entries["alice"]
    assert isinstance(entry.hash, ModernHash) and entry.hash.verify("alice", "P@ss:w0rd")

    code, out, err = run(
        capsys, "update", "--user", "ALICE", "-p", "n3w", "--legacy", "-f", str(path)
    )
    assert code == 0 and "n3w" not in out + err
    assert read_password_file(path).entries["alice"].hash_text == legacy_hash("alice", "n3w")

    code, out, _ = run(capsys, "add", "--username", "bob", "--pwdfile", str(path))
    generated = out.strip()
    assert code == 0 and len(generated) == 20 and ":" not in generated
    assert read_password_file(path).entries["bob"].hash.verify("bob", generated)

    code, out, _ = run(capsys, "list", "-f", str(path))
    assert (code, out) == (0, "alice\tTabPy legacy hash\nbob\tpbkdf2_sha512, 210000 iterations\n")

    assert run(capsys, "delete", "-u", "BOB", "-f", str(path))[0] == 0
    assert list(read_password_file(path).entries) == ["alice"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "-u", "alice", "-p", "x"], "already present in passwords file"),
        (["update", "-u", "nobody", "-p", "x"], 'Username "nobody" not found'),
        (["delete", "-u", "nobody"], 'Username "nobody" not found'),
        (["add", "-u", "a:b", "-p", "x"], 'contains ":"'),
        (["add", "-u", "bo b", "-p", "x"], "spaces, quotes or control characters"),
        (["add", "-u", "#admin", "-p", "x"], "starts with #"),
        (["add", "-u", "carol", "-p", ""], "The password is empty"),
    ],
)
def test_errors_exit_1_and_change_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    path = tmp_path / "p.txt"
    original = f"# keep me\nalice {legacy_hash('alice', 'a')}\n"
    path.write_text(original)
    code, _, err = run(capsys, *args, "-f", str(path))
    assert code == 1 and message in err
    assert path.read_text() == original


def test_a_malformed_file_is_reported_and_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.txt"
    original = f"alice {legacy_hash('alice', 'a')}\nALICE x\nbroken line here\n"
    path.write_text(original)
    code, _, err = run(capsys, "add", "-u", "new", "-p", "x", "-f", str(path))
    assert code == 1
    assert "line 2: Multiple entries for username alice" in err
    assert "line 3: Incorrect entry" in err
    assert path.read_text() == original


def test_comments_and_order_survive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.txt"
    path.write_text(f"# admins\nzed {legacy_hash('zed', 'z')}\n\n# end\n")
    assert run(capsys, "add", "-u", "amy", "-p", "x", "--legacy", "-f", str(path))[0] == 0
    lines = path.read_text().splitlines()
    assert lines[:4] == ["# admins", f"zed {legacy_hash('zed', 'z')}", "", "# end"]
    assert lines[4] == f"amy {legacy_hash('amy', 'x')}"
    assert isinstance(read_password_file(path).entries["amy"].hash, LegacyHash)


def test_usage_and_help(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys)
    assert code == 1 and err.startswith("Usage:\n  tabpy-user add")
    code, out, _ = run(capsys, "-h")
    assert code == 0 and "tabpy-user update (-u NAME" in out
    code, _, err = run(capsys, "add", "-u", "x")
    assert code == 1 and "-f/--pwdfile" in err
    code, _, err = run(capsys, "rename", "-f", str(tmp_path / "p"))
    assert code == 1
    code, _, err = run(capsys, "update", "-u", "x", "-p", "y", "-f", str(tmp_path / "missing"))
    assert code == 1 and "not found" in err


@pytest.mark.parametrize("body", ["", "# users are added by the deploy script\n\n"])
def test_list_of_a_file_without_users_says_why_the_server_refuses_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str
) -> None:
    path = tmp_path / "passwords.txt"
    path.write_text(body)
    code, out, err = run(capsys, "list", "-f", str(path))
    assert (code, out) == (1, "")
    last = err.splitlines()[-1]
    assert last.startswith(f"Passwords file {path} has no users, so the server refuses it")
    assert last.endswith(f"tabpy-user add -u <name> -f {path}")
    assert path.read_text() == body


# --- roles in the registry (grant, revoke, list --config) ----------------------------------------


def role_setup(tmp_path: Path, **settings: str) -> Path:
    """A config naming a state folder (hence a registry) and a password file with alice."""
    state = tmp_path / "state"
    state.mkdir()
    pwd_file = tmp_path / "passwords.txt"
    pwd_file.write_text(f"alice {legacy_hash('alice', 'a')}\nbob {legacy_hash('bob', 'b')}\n")
    values = {"TABPY_STATE_PATH": str(state), "TABPY_PWD_FILE": str(pwd_file), **settings}
    config = tmp_path / "tabpy.conf"
    config.write_text("[TabPy]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
    return config


def test_grant_revoke_and_list_roles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("TABPY_")]:
        monkeypatch.delenv(name)
    config = role_setup(tmp_path)
    code, _, err = run(capsys, "grant", "--config", str(config), "-u", "Alice", "--role", "Admin")
    assert code == 0 and "Granted admin to user:alice in sqlite:///" in err
    assert "TABPY_AUTHZ is off, so roles are recorded but not enforced" in err
    run(capsys, "grant", "--config", str(config), "--group", "DS", "--role", "deployer")
    code, _, err = run(capsys, "grant", "--config", str(config), "-u", "alice", "--role", "admin")
    assert code == 0 and "already has admin" in err
    code, out, _ = run(capsys, "list", "--config", str(config))
    assert (code, out) == (0, "group:ds\tdeployer\nuser:alice\tadmin\nuser:bob\t(no role)\n")
    code, _, err = run(capsys, "revoke", "--config", str(config), "-u", "alice", "--role", "admin")
    assert code == 0 and "Revoked admin from user:alice" in err
    code, _, err = run(capsys, "revoke", "--config", str(config), "-u", "alice", "--role", "admin")
    assert code == 0 and "does not have admin; nothing changed" in err

    # Audited as the operating-system user who ran the command.
    registry = Registry(f"sqlite:///{tmp_path / 'state' / 'registry.db'}")
    found = registry.audit(AuditQuery())
    registry.close()
    assert [(e.action, e.detail) for e in found] == [
        ("revoke", "admin from user:alice"),
        ("grant", "deployer to group:ds"),
        ("grant", "admin to user:alice"),
    ]
    assert {e.principal for e in found} == {f"local:{getpass.getuser()}"}
    assert {e.client for e in found} == {"tabpy-user"}


def test_a_grant_to_a_user_not_in_the_password_file_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = role_setup(tmp_path, TABPY_AUTHZ="on")
    code, _, err = run(capsys, "grant", "--config", str(config), "-u", "carol", "--role", "caller")
    assert code == 0
    assert "Note: carol is not in the password file" in err
    assert "TABPY_AUTHZ is off" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["grant", "-u", "alice", "--role", "owner"], "'owner' is not a role"),
        (["grant", "-u", "al ice", "--role", "caller"], "without spaces"),
        (["grant", "-u", "alice"], "the following arguments are required: --role"),
        (["grant", "--role", "caller"], "one of the arguments -u/--username/--user --group"),
        (["revoke", "-u", "alice", "--group", "x", "--role", "caller"], "not allowed with"),
    ],
)
def test_role_command_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    config = role_setup(tmp_path)
    code, _, err = run(capsys, *args, "--config", str(config))
    assert code == 1 and message in err, err
    assert not (tmp_path / "state" / "registry.db").exists()


def test_role_commands_report_a_bad_config_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "list", "--config", str(tmp_path / "missing.conf"))
    assert code == 1 and err.startswith("Config file") and "not found" in err
    bad = tmp_path / "bad.conf"
    bad.write_text(f"[TabPy]\nTABPY_REGISTRY_URL = sqlite:///{tmp_path}/no/such/dir/r.db\n")
    code, _, err = run(capsys, "grant", "--config", str(bad), "-u", "a", "--role", "caller")
    assert code == 1 and err.startswith("Cannot open the registry sqlite:///")
    assert "Traceback" not in err
