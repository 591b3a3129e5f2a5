"""``tabpy-deploy-models``: deploy the pre-built models to the server on this machine.

Usage: ``tabpy-deploy-models [options] [CONFIG]``. As with TabPy, the argument is the config
file the server was started with: it gives the port, the protocol, the certificate and whether
authentication is on, read exactly as the server reads it (``TABPY_*`` environment variables
override the file). Unlike TabPy, every model is deployed from this process (no child Python per
model, no password on a command line), the outcome of each is checked, and the exit code is 1 if
any model failed.

Credentials (only when the config sets ``TABPY_PWD_FILE``): ``--username`` or
``TABPY_USERNAME``, ``--password-file`` or ``TABPY_PASSWORD``, otherwise asked for: prompted on a
terminal (the password hidden), or read as two lines from standard input, so that
``printf 'user\\npass\\n' | tabpy-deploy-models tabpy.conf`` works. There is deliberately no
``--password`` option: a command line is visible to every user of the machine.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from tabpy.config import ConfigError, load_settings
from tabpy.models.catalog import MODELS, UnknownModelError, select
from tabpy.models.deploy import (
    SetupError,
    check_server,
    deploy,
    failure_reason,
    server_url,
    tls_verify,
)
from tabpy.tabpy_tools.client import Client

__all__ = ["main"]

USERNAME_VARIABLE = "TABPY_USERNAME"
PASSWORD_VARIABLE = "TABPY_PASSWORD"
#: Seconds to wait for any one reply; the check call may import scikit-learn in a fresh worker.
QUERY_TIMEOUT = 120.0
DEPLOY_TIMEOUT = 60.0


class CredentialsError(Exception):
    """No usable username or password was given."""


def _parser() -> argparse.ArgumentParser:
    names = ", ".join(repr(model.name) for model in MODELS)
    parser = argparse.ArgumentParser(
        prog="tabpy-deploy-models",
        description=(
            "Deploy the pre-built models (PCA, Sentiment Analysis, ttest, anova) to the TabPy "
            "server running on this machine."
        ),
        epilog=(
            f"Credentials: {USERNAME_VARIABLE} and {PASSWORD_VARIABLE} in the environment, or "
            "two lines (username, password) on standard input. Exit status: 0 when every "
            "model was deployed and runs, 1 otherwise, 2 for a usage error."
        ),
    )
    parser.add_argument(
        "config",
        nargs="?",
        metavar="CONFIG",
        help="the server's config file (default: the built-in defaults)",
    )
    parser.add_argument(
        "-m",
        "--model",
        action="append",
        default=[],
        metavar="NAME",
        help=f"deploy only this model (repeatable; one of {names})",
    )
    parser.add_argument("-u", "--username", help="the username, when authentication is on")
    parser.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help="read the password from the first line of FILE",
    )
    parser.add_argument(
        "--url",
        help="the server's URL (default: localhost at the config's port and protocol)",
    )
    trust = parser.add_mutually_exclusive_group()
    trust.add_argument(
        "--ca-file",
        type=Path,
        metavar="FILE",
        help="https: trust the CA certificates in FILE (default: trust exactly the certificate "
        "named by TABPY_CERTIFICATE_FILE)",
    )
    trust.add_argument(
        "--insecure",
        action="store_true",
        help="https: do not check the server's certificate",
    )
    return parser


def main(
    argv: list[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    environ = os.environ if environ is None else environ
    stdin = stdin or sys.stdin
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    args = _parser().parse_args(argv)
    try:
        models = select(args.model)
    except UnknownModelError as error:
        print(f"tabpy-deploy-models: {error}", file=err)
        return 2

    if args.config is None:
        print("No config file given: using the default settings", file=out, flush=True)
    else:
        print(f"Using config file at {Path(args.config).resolve()}", file=out, flush=True)
    # Our own variables are not server settings: keep them from the unknown-setting check.
    server_environ = {
        name: value
        for name, value in environ.items()
        if name.upper() not in (USERNAME_VARIABLE, PASSWORD_VARIABLE)
    }
    try:
        settings = load_settings(args.config, server_environ)
        url = args.url or server_url(settings)
        verify = tls_verify(settings, url, ca_file=args.ca_file, insecure=args.insecure)
    except (ConfigError, SetupError) as error:
        print(f"tabpy-deploy-models: {error}", file=err)
        return 1

    credentials = None
    if settings.pwd_file is not None or args.username:
        try:
            credentials = _credentials(args, environ, stdin, out)
        except CredentialsError as error:
            print(f"tabpy-deploy-models: {error}", file=err)
            return 1

    failures = 0
    with Client(
        url, query_timeout=QUERY_TIMEOUT, verify=verify, deploy_timeout=DEPLOY_TIMEOUT
    ) as client:
        if credentials is not None:
            client.set_credentials(*credentials)
        try:
            check_server(client, url, authenticated=credentials is not None)
        except SetupError as error:
            print(f"tabpy-deploy-models: {error}", file=err)
            return 1
        for model in models:
            try:
                deploy(client, model)
            except Exception as error:  # noqa: BLE001 - report it and go on with the others
                failures += 1
                print(f"Failed to deploy {model.name}: {failure_reason(error)}", file=err)
            else:
                print(f"Successfully deployed {model.name}", file=out, flush=True)
    return 1 if failures else 0


def _credentials(
    args: argparse.Namespace, environ: Mapping[str, str], stdin: TextIO, out: TextIO
) -> tuple[str, str]:
    """Username and password from the options, the environment, or standard input."""
    username = args.username or environ.get(USERNAME_VARIABLE) or None
    if args.password_file is not None:
        password: str | None = _first_line(args.password_file)
    else:
        password = environ.get(PASSWORD_VARIABLE)
    interactive = stdin.isatty()
    if username is None:
        username = input("Username: ") if interactive else _line(stdin, "username")
    if password is None:
        password = getpass.getpass("Password: ") if interactive else _line(stdin, "password")
    if not username:
        raise CredentialsError("the username is empty.")
    return username, password


def _line(stdin: TextIO, what: str) -> str:
    line = stdin.readline()
    if not line:
        raise CredentialsError(
            f"authentication is on (TABPY_PWD_FILE is set) but no {what} was given: write "
            f"the username and the password as two lines on standard input, or set "
            f"{USERNAME_VARIABLE} and {PASSWORD_VARIABLE}."
        )
    return line.rstrip("\r\n")


def _first_line(path: Path) -> str:
    try:
        with path.open(encoding="utf-8") as stream:
            return stream.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as error:
        raise CredentialsError(f"cannot read the password file {path}: {error}") from None


if __name__ == "__main__":
    sys.exit(main())
