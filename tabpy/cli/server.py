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
from pathlib import Path

from tabpy.config import ConfigError, Settings, describe_settings, load_settings
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
ABORT_MESSAGE = (
    "\nAborting start up. To enable authentication for your TabPy server, see "
    "https://github.com/tableau/TabPy/blob/master/docs/server-config.md#authentication."
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
    if not _confirm_without_authentication(settings, disable_warning):
        print(ABORT_MESSAGE)
        return 0
    from tabpy.server.runner import serve

    try:
        return serve(settings)
    except ConfigError as error:
        sys.stderr.write(f"tabpy: {error}\n")
        return 1


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
