"""``tabpy-user``: add, update, delete and list the users of a password file; grant roles.

Compatible with TabPy's tool (``add``/``update`` and their options, the file format, existing
hashes keep working) without its defects: passwords are never written to any output except a
generated one, printed once on stdout; errors exit with code 1; the file is rewritten
atomically with mode 0600, keeping comments, blank lines and order; a file with problems is
reported line by line and left untouched.

``grant``, ``revoke`` and ``list --config`` manage roles in the registry the config file names
(:mod:`tabpy.cli.grants`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from tabpy.cli.grants import GrantError, grant, list_grants, revoke
from tabpy.security.password_file import (
    PasswordFile,
    PasswordFileError,
    read_password_file,
    write_password_file,
)
from tabpy.security.passwords import ModernHash, generate_password, hash_password, legacy_hash

USAGE = """Usage:
  tabpy-user add (-u NAME | --username NAME) [-p PWD | --password PWD] (-f FILE | --pwdfile FILE) [--legacy]
  tabpy-user update (-u NAME | --username NAME) [-p PWD | --password PWD] (-f FILE | --pwdfile FILE) [--legacy]
  tabpy-user delete (-u NAME | --username NAME) (-f FILE | --pwdfile FILE)
  tabpy-user list (-f FILE | --pwdfile FILE)
  tabpy-user grant (-u NAME | --group NAME) --role ROLE --config CONFIG
  tabpy-user revoke (-u NAME | --group NAME) --role ROLE --config CONFIG
  tabpy-user list --config CONFIG
  tabpy-user -h | --help
"""  # noqa: E501

HELP = f"""tabpy-user: manage the users of a TabPy password file (TABPY_PWD_FILE).
The server re-reads the file when it changes; no restart is needed.
Compatible with TabPy (https://github.com/tableau/TabPy) password files.

{USAGE}
Options:
  -u NAME, --username NAME, --user NAME
                          User name (case-insensitive; stored in lowercase).
  -p PWD, --password PWD  Password. Without it a random password is generated and printed
                          once on standard output. Note that a password given here is
                          visible to other local users in the process list.
  -f FILE, --pwdfile FILE Password file; add creates it if missing.
  --legacy                Store TabPy's own hash format (10 000 PBKDF2 iterations, salt from
                          the username) so that a real TabPy can read the entry too. By
                          default a stronger salted format (pbkdf2_sha512, 210 000
                          iterations) is written, which only this server reads.
  --config CONFIG         The server's config file: grant, revoke and list act on the roles
                          in the registry it names (TABPY_REGISTRY_URL, or the default one
                          under TABPY_STATE_PATH); the environment overrides it, as for the
                          server. Running servers pick a change up within a second.
  --role ROLE             admin, deployer, caller or evaluator. They are enforced when the
                          config sets TABPY_AUTHZ = on.
  --group NAME            A group (a value of the token claim TABPY_OAUTH_ROLES_CLAIM) instead
                          of a user.
  -h, --help              Show this screen.

The first admin is made here: tabpy-user grant --config tabpy.conf -u alice --role admin.

Exit status: 0 on success, 1 on any error (nothing is written then).
"""


class UserError(Exception):
    """A problem the user must fix; printed as one message, exit code 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"tabpy-user: {message}\n{USAGE}")
        raise SystemExit(1)


def _parser() -> _Parser:
    parser = _Parser(prog="tabpy-user", add_help=False, allow_abbrev=False)
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    for name in ("add", "update", "delete"):
        command = commands.add_parser(name, add_help=False, allow_abbrev=False)
        command.add_argument("-f", "--pwdfile", required=True, type=Path)
        command.add_argument("-u", "--username", "--user", dest="username", required=True)
        if name in ("add", "update"):
            command.add_argument("-p", "--password")
            command.add_argument("--legacy", action="store_true")
    listing = commands.add_parser("list", add_help=False, allow_abbrev=False)
    source = listing.add_mutually_exclusive_group(required=True)
    source.add_argument("-f", "--pwdfile", type=Path)
    source.add_argument("--config", type=Path)
    for name in ("grant", "revoke"):
        command = commands.add_parser(name, add_help=False, allow_abbrev=False)
        who = command.add_mutually_exclusive_group(required=True)
        who.add_argument("-u", "--username", "--user", dest="username")
        who.add_argument("--group")
        command.add_argument("--role", required=True)
        command.add_argument("--config", required=True, type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if "-h" in arguments or "--help" in arguments:
        sys.stdout.write(HELP)
        return 0
    try:
        options = _parser().parse_args(arguments)
    except SystemExit as usage_error:  # raised by _Parser.error after printing the usage
        return int(usage_error.code or 0)
    if options.command is None:
        sys.stderr.write(USAGE)
        return 1
    commands = {
        "add": _add,
        "update": _update,
        "delete": _delete,
        "list": _list,
        "grant": _grant,
        "revoke": _revoke,
    }
    try:
        commands[options.command](options)
    except (UserError, GrantError) as error:
        sys.stderr.write(f"{error}\n")
        return 1
    return 0


# --- commands ------------------------------------------------------------------------------------


def _add(options: argparse.Namespace) -> None:
    name = _username(options.username)
    path: Path = options.pwdfile
    existing = _read(path, missing_ok=True)
    if name in existing.entries:
        raise UserError(
            f"Can't add username {name} as it is already present in passwords file. "
            'Do you want to run the "update" command instead?'
        )
    _note(f'Adding username "{name}"')
    hash_text = _hash(name, options)
    _save(path, existing.with_entry(name, hash_text))
    _note(f'Added username "{name}"')


def _update(options: argparse.Namespace) -> None:
    name = _username(options.username)
    path: Path = options.pwdfile
    existing = _read(path)
    if name not in existing.entries:
        raise UserError(
            f'Username "{name}" not found in passwords file. '
            'Do you want to run "add" command instead?'
        )
    _note(f'Updating username "{name}"')
    hash_text = _hash(name, options)
    _save(path, existing.with_entry(name, hash_text))
    _note(f'Updated the password of username "{name}"')


def _delete(options: argparse.Namespace) -> None:
    name = options.username.lower()
    path: Path = options.pwdfile
    existing = _read(path)
    if name not in existing.entries:
        raise UserError(f'Username "{name}" not found in passwords file {path}.')
    _save(path, existing.without_entry(name))
    _note(f'Deleted username "{name}"')


def _list(options: argparse.Namespace) -> None:
    if options.config is not None:
        list_grants(options.config)
        return
    existing = _read(options.pwdfile)
    if not existing.entries:
        # The server refuses such a file ("No credentials found"); say so rather than print
        # nothing, since this is the command the troubleshooting guide sends admins to.
        raise UserError(
            f"Passwords file {options.pwdfile} has no users, so the server refuses it (No "
            f"credentials found): add one with tabpy-user add -u <name> -f {options.pwdfile}"
        )
    for entry in existing.entries.values():
        if isinstance(entry.hash, ModernHash):
            kind = f"pbkdf2_sha512, {entry.hash.iterations} iterations"
        else:
            kind = "TabPy legacy hash"
        sys.stdout.write(f"{entry.username}\t{kind}\n")


def _grant(options: argparse.Namespace) -> None:
    grant(options.config, _principal(options), options.role)


def _revoke(options: argparse.Namespace) -> None:
    revoke(options.config, _principal(options), options.role)


def _principal(options: argparse.Namespace) -> str:
    if options.group is not None:
        return f"group:{options.group}"
    return f"user:{options.username}"


# --- helpers -------------------------------------------------------------------------------------


def _note(message: str) -> None:
    sys.stderr.write(message + "\n")


def _username(raw: str) -> str:
    name = raw.lower()
    if not name:
        raise UserError("The username is empty: give one with -u NAME.")
    if ":" in name:
        raise UserError(
            f'The username "{raw}" contains ":", which HTTP Basic authentication uses to '
            "separate the username from the password: choose a name without it."
        )
    if any(c.isspace() or not c.isprintable() or c == '"' for c in name) or name.startswith("#"):
        raise UserError(
            f"The username {raw!r} contains spaces, quotes or control characters, or starts "
            "with #: choose a name made of letters, digits and punctuation."
        )
    return name


def _read(path: Path, missing_ok: bool = False) -> PasswordFile:
    _note(f"Parsing passwords file {path}...")
    try:
        parsed = read_password_file(path)
    except FileNotFoundError:
        if not missing_ok:
            raise UserError(f"Passwords file {path} not found") from None
        _note(f"Passwords file {path} not found; it will be created")
        return PasswordFile.parse("", str(path))
    except IsADirectoryError:
        raise UserError(f"{path} is a directory, not a passwords file") from None
    except OSError as error:
        raise UserError(f"Cannot read passwords file {path}: {error.strerror or error}") from None
    except PasswordFileError as error:
        problems = "\n".join(f"  {problem}" for problem in error.problems)
        raise UserError(
            f"Passwords file {path} has problems; nothing was changed. Fix these lines first:\n"
            f"{problems}"
        ) from None
    for warning in parsed.warnings:
        _note(f"Warning: {warning}")
    return parsed


def _hash(name: str, options: argparse.Namespace) -> str:
    password: str | None = options.password
    if password is None:
        password = generate_password()
        # The only place a password is ever written: once, to stdout, for the admin to copy.
        sys.stdout.write(password + "\n")
        sys.stdout.flush()
        _note(
            f'Generated a password for "{name}" (printed on standard output above; it is not '
            "stored anywhere, only its hash is)"
        )
    elif not password:
        raise UserError("The password is empty: give one with -p, or leave -p out.")
    if options.legacy:
        if ":" in password:
            _note(
                'Warning: TabPy itself cannot log in with a password containing ":"; '
                "this server can."
            )
        return legacy_hash(name, password)
    return hash_password(password)


def _save(path: Path, updated: PasswordFile) -> None:
    try:
        write_password_file(path, updated.render())
    except OSError as error:
        raise UserError(
            f"Cannot write passwords file {path}: {error.strerror or error}; nothing was changed."
        ) from None


if __name__ == "__main__":
    sys.exit(main())
