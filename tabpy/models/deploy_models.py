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

    from tabpy.cli.deploy_models import main

    sys.exit(main())
