"""The console commands: ``tabpy``, ``tabpy-user`` and ``tabpy-deploy-models``."""
