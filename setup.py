"""Build step: put the repository's ``docs/`` into the wheel as ``tabpy/docs``.

Everything else about the build is in ``pyproject.toml``. The status page links to these
documents, and an installed server must serve them as a source checkout does; copying at build
time keeps a single copy in git. ``MANIFEST.in`` carries ``docs/`` into the sdist, so a wheel
built from the sdist gets them too. An editable install does not need the copy: the server then
finds the checkout's own ``docs/`` (``tabpy.server.index``).
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DOCS = Path(__file__).resolve().parent / "docs"


class BuildWithDocs(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib, "tabpy", "docs")
        self.mkpath(str(target))
        for source in sorted(DOCS.iterdir()):
            if source.is_file():
                self.copy_file(str(source), str(target / source.name))


setup(cmdclass={"build_py": BuildWithDocs})
