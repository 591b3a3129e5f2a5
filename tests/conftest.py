"""Suite-wide set-up: under ``CI=true`` no test may skip (see ``tests/components.py``)."""

from tests.components import pytest_make_collect_report, pytest_runtest_makereport

__all__ = ["pytest_make_collect_report", "pytest_runtest_makereport"]
