"""A drop-in replacement for TabPy: Tableau's Python analytics extension server.

The import package is ``tabpy``, as TabPy's, so that scripts, the client
(``tabpy.tabpy_tools.client``) and ``tabpy.query`` keep working. The distribution, what
``pip`` installs, is :data:`DISTRIBUTION_NAME`, because ``tabpy`` on the package index is
Tableau's TabPy.
"""

#: The one place the version is written; pyproject.toml reads it. SemVer, and equally a valid
#: PEP 440 version, so pip, ``/info`` and the status page all show the same string.
__version__ = "3.0.0"

#: What ``pip install`` calls this project (pyproject.toml's ``[project] name``).
DISTRIBUTION_NAME = "tabpyx"
