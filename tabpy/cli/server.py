"""``tabpy``: start the server.

Usage and exit codes follow TabPy (``tabpy [--config <CONFIG>]
[--disable-auth-warning]``; a usage error exits 1).  Differences that make it
safe to run as a service: configuration mistakes end start-up with one line and
no traceback, the no-authentication prompt only appears on a terminal, and
SIGTERM shuts down as gracefully as Ctrl+C.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from tabpy import DISTRIBUTION_NAME, __version__
from tabpy.config import (
    DEFAULT_PORT,
    ConfigError,
    Settings,
    describe_settings,
    load_settings,
)
from tabpy.logs import configure_logging, set_log_format

logger = logging.getLogger("tabpy.server")

USAGE = """Usage:
  tabpy [-h] | [--help]
  tabpy [--config <CONFIG>] [--disable-auth-warning]
"""

HELP = f"""TabPy Server.

{USAGE}
Options:
  -h --help               Show this screen.
  --config <CONFIG>       Path to a config file.
  --disable-auth-warning  Do not ask for confirmation when authentication is off.

Configuration:
  Every setting is a TABPY_* key: in the [TabPy] section of the config file, or as an
  environment variable of the same name, which overrides the file. For example:
    TABPY_PORT=8080 TABPY_EVALUATE_TIMEOUT=60 tabpy
  Without either, the defaults apply (port {DEFAULT_PORT}, no authentication). Every key is
  described in docs/configuration.md ({DISTRIBUTION_NAME} {__version__}).
"""

AUTH_WARNING_HEAD = (
    "\nWARNING: This TabPy server is not currently configured for username/password "
    "authentication. "
)
AUTH_WARNING_EVALUATE = (
    "This means that, because the TABPY_EVALUATE_ENABLE feature is enabled, there is the "
    "potential that unauthenticated individuals may be able to remotely execute code on this "
    "machine. "
)
AUTH_WARNING_TAIL = (
    "We strongly advise against proceeding without authentication as it poses a significant "
    "security risk.\n\nDo you wish to proceed without authentication? (y/N): "
)


def abort_message(settings: Settings) -> str:
    """What to do instead of starting without authentication, with paths that fit this setup.

    The password file is suggested next to the config file (or in the state folder without
    one), a folder that exists and belongs to whoever runs the server.
    """
    folder = settings.config_file.parent if settings.config_file else settings.state_path
    pwd_file = folder.expanduser().absolute() / "passwords.txt"
    where = (
        f"in the [TabPy] section of {settings.config_file}:\n  TABPY_PWD_FILE = {pwd_file}"
        if settings.config_file
        else f"in the environment:\n  TABPY_PWD_FILE={pwd_file} tabpy"
    )
    return (
        "\nAborting start up. To require a password, create a password file:\n"
        f"  tabpy-user add -u <name> -f {pwd_file}\n"
        f"and name it {where}\n"
        'The README\'s "Requiring a password" section and docs/quickstart.md have the details. '
        "To start without authentication anyway, add --disable-auth-warning."
    )


class UsageError(Exception):
    pass


def parse_arguments(argv: list[str]) -> tuple[str | None, bool]:
    """``(config path, disable auth warning)``; raises ``UsageError``.

    Hand-written because the grammar is two options and TabPy's exit codes and
    output (usage to stderr, exit 1) differ from argparse's.
    """
    config: str | None = None
    disable_warning = False
    arguments = iter(argv)
    for argument in arguments:
        if argument in ("-h", "--help"):
            raise SystemExit(_print_help())
        if argument == "--disable-auth-warning":
            disable_warning = True
        elif argument == "--config":
            config = next(arguments, None)
            if config is None:
                raise UsageError
        elif argument.startswith("--config="):
            config = argument.partition("=")[2]
        else:
            raise UsageError
    return config, disable_warning


def _print_help() -> int:
    sys.stdout.write(HELP)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        config_path, disable_warning = parse_arguments(sys.argv[1:] if argv is None else argv)
    except UsageError:
        sys.stderr.write(USAGE)
        return 1
    try:
        config_file = Path(config_path) if config_path is not None else None
        configure_logging(config_file)
        settings = load_settings(config_file, os.environ)
    except ConfigError as error:
        sys.stderr.write(f"tabpy: {error}\n")
        return 1
    set_log_format(settings.log_format)
    for line in describe_settings(settings):
        logger.debug(line)
    warn_about_upstream_tabpy()
    if not _confirm_without_authentication(settings, disable_warning):
        print(abort_message(settings))
        return 0
    from tabpy.cli.wiring import build_context
    from tabpy.server.runner import serve

    try:
        return serve(settings, build_context)
    except ConfigError as error:
        sys.stderr.write(f"tabpy: {error}\n")
        return 1


def warn_about_upstream_tabpy(version_of: Callable[[str], str] = metadata.version) -> None:
    """Warn when Tableau's TabPy is also installed: its files and ours share ``tabpy/``.

    pip does not know that two distributions write the same package, so installing this one
    over TabPy mixes their files, and a later ``pip uninstall tabpy`` deletes files of this
    server (the ``tabpy`` command and the client among them). TabPy's versions are all below
    3; this project's own early builds were also called ``tabpy``, from 3.0.0.dev on.
    """
    try:
        version = version_of("tabpy")
    except metadata.PackageNotFoundError:
        return
    major = version.split(".", 1)[0]
    if not major.isdigit() or int(major) >= 3:
        return
    logger.warning(
        "TabPy %s is installed in this Python environment as well; it shares the tabpy package "
        "with %s, so their files are mixed and uninstalling TabPy would break this server. "
        "Reinstall cleanly: pip uninstall -y tabpy %s, then install %s again",
        version,
        DISTRIBUTION_NAME,
        DISTRIBUTION_NAME,
        DISTRIBUTION_NAME,
    )


def _confirm_without_authentication(settings: Settings, disable_warning: bool) -> bool:
    if settings.pwd_file is not None or settings.oauth_enabled:
        return True
    if not disable_warning:
        warning = AUTH_WARNING_HEAD
        if settings.evaluate_enabled:
            warning += AUTH_WARNING_EVALUATE
        warning += AUTH_WARNING_TAIL
        if sys.stdin is not None and sys.stdin.isatty():
            try:
                answer = input(warning)
            except EOFError:
                answer = ""
            if answer.strip().lower() not in ("y", "yes"):
                return False
        else:
            # A service or a pipeline has nobody to answer; warn and go on.
            logger.warning(
                "Authentication is not enabled and nobody can confirm it (stdin is not a "
                "terminal): starting anyway. Set TABPY_PWD_FILE to require credentials."
            )
    logger.info("Password file is not specified: Authentication is not enabled")
    return True


if __name__ == "__main__":
    sys.exit(main())
