"""Why an environment could not be built; the message is what ``/status`` shows.

Hierarchy::

    BuildFailed             the build did not produce an environment
    ├── UvMissing           the uv binary is not installed (the envs extra)
    ├── BuildTimedOut       TABPY_ENV_BUILD_TIMEOUT expired; the installer was stopped
    └── DiskLimitExceeded   TABPY_ENV_MAX_DISK_MB exceeded; the installer was stopped
"""

from __future__ import annotations

__all__ = ["BuildFailed", "BuildTimedOut", "DiskLimitExceeded", "UvMissing"]


class BuildFailed(Exception):
    """``message`` says which phase failed and quotes the installer's own words."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UvMissing(BuildFailed):
    def __init__(self) -> None:
        super().__init__(
            "This server cannot build environments: uv is not installed. Install the envs "
            "extra (pip install 'tabpyx[envs]') and restart the server."
        )


class BuildTimedOut(BuildFailed):
    pass


class DiskLimitExceeded(BuildFailed):
    pass
