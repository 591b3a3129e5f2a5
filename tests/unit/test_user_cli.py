from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tabpy.cli.user import main
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
