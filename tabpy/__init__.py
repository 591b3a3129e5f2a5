"""A drop-in replacement for TabPy: Tableau's Python analytics extension server."""

__version__ = "3.0.0.dev1"
