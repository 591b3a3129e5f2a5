"""Deployed endpoints and the server's identity, as kept under ``TABPY_STATE_PATH``."""
