"""The registry's schema history, as Alembic migrations shipped inside the package.

A server applies them at start (:func:`tabpy.registry.migrate.upgrade_schema`); no
``alembic.ini`` is involved. To change the schema:

1. change :mod:`tabpy.registry.tables`;
2. add ``versions/NNNN_what.py`` with the next number as ``revision`` and the previous one as
   ``down_revision`` (copy the newest file; ``script.py.mako`` is the template the ``alembic``
   command would use). A migration must let a server one revision older keep working on
   the same registry while instances are upgraded one by one: add, widen, fill, never
   drop or rename in the same revision that stops using something;
3. ``tests/unit/test_registry_migrations.py`` checks that the migrated schema matches
   ``tables.py`` on SQLite (and PostgreSQL when its binaries are installed).

Revisions are numbered, not hashed, so that their order is plain to a reader and in
the one-line error a server gives for a registry newer than itself.
"""
