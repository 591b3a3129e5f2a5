"""One module per schema revision, applied in order (see :mod:`tabpy.registry.migrations`)."""
