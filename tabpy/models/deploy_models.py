"""``python <tabpy package dir>/models/deploy_models.py [CONFIG]``: same as ``tabpy-deploy-models``.

TabPy's integration tests run the models' deployment this way, so the file path is kept.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    # Run as a script, this directory is first on sys.path, where the model modules would
    # shadow installed ones; the package is imported from where it is installed instead.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != here]

    # By name, as the command's own ``__main__``: the models package stays below the commands
    # layer (it runs in workers and deploys as a client), so it does not import them.
    import runpy

    runpy.run_module("tabpy.cli.deploy_models", run_name="__main__", alter_sys=True)
