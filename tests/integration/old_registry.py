"""A registry as servers made it before schema revisions were recorded (commit b646a59).

The table definitions below are that code's, verbatim, and the rows are written the way it
wrote them, so upgrading one of these is upgrading a real old registry. The endpoints cover
every case the upgrade must carry over: several versions, a rollback (two versions sharing an
artifact), an alias with no object, a version whose pickle was missing at the legacy import,
an unreferenced upload, and (SQLite only, which never enforced ``String(255)``) a name far
longer than any URL accepts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import cloudpickle
import sqlalchemy as sa

from tabpy.tabpy_tools.custom_query_object import CustomQueryObject

# --- b646a59's tabpy/registry/store.py, tables unchanged ---------------------------------------

metadata = sa.MetaData()

meta_table = sa.Table(
    "tabpy_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

endpoints_table = sa.Table(
    "tabpy_endpoints",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("docstring", sa.Text, nullable=False),
    sa.Column("schema", sa.Text, nullable=False),  # JSON text
    sa.Column("is_public", sa.Text, nullable=False),  # JSON text: stored as given
    sa.Column("dependencies", sa.Text, nullable=False),  # JSON text
    sa.Column("target", sa.Text, nullable=True),
    sa.Column("creation_time", sa.BigInteger, nullable=False),
    sa.Column("last_modified_time", sa.BigInteger, nullable=False),
)

versions_table = sa.Table(
    "tabpy_versions",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("artifact", sa.String(64), nullable=True),  # null: legacy pickle was missing
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

artifacts_table = sa.Table(
    "tabpy_artifacts",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

TABLES = ("tabpy_meta", "tabpy_endpoints", "tabpy_versions", "tabpy_artifacts")

# --- content -------------------------------------------------------------------------------------

#: A name 100,000 characters long, which b646a59 accepted on SQLite.
LONG_NAME = "n" * 100_000


def pickled_function(source: str, description: str = "") -> bytes:
    """A ``CustomQueryObject`` around a function defined in ``__main__``, so that it travels
    by value, as from a deploy script."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(source, namespace)
    function = next(v for k, v in namespace.items() if k != "__name__" and callable(v))
    return bytes(cloudpickle.dumps(CustomQueryObject(query=function, description=description)))


@dataclass(frozen=True)
class OldEndpoint:
    name: str
    info: dict[str, Any]
    versions: dict[int, bytes | None]  # version -> pickle (None: missing)


def old_endpoints(long_name: bool) -> list[OldEndpoint]:
    add_v1 = pickled_function("def add(x, y):\n    return [a + b for a, b in zip(x, y)]\n")
    add_v2 = pickled_function("def add(x, y):\n    return [a + b + 1000 for a, b in zip(x, y)]\n")
    score = pickled_function("def score(texts):\n    return [len(t) for t in texts]\n")
    endpoints = [
        OldEndpoint(
            "add",
            _info(
                "model",
                3,
                "Adds lists, 100% très bien",
                "Adds two lists.",
                {"input": {"type": "object"}},
                True,
            ),
            # Version 3 was a rollback to version 1: the same artifact.
            {1: add_v1, 2: add_v2, 3: add_v1},
        ),
        OldEndpoint(
            "Sentiment Analysis",
            _info("model", 1, "Scores texts", "-- no docstring found in query function --"),
            {1: score},
        ),
        OldEndpoint("plus", _info("alias", 1, "Another name", "", target="add"), {1: None}),
        OldEndpoint("broken", _info("model", 2, "Its pickle went missing", "Broken."), {2: None}),
    ]
    if long_name:
        endpoints.append(OldEndpoint(LONG_NAME, _info("model", 1, "Too long", "Long."), {1: score}))
    return endpoints


#: An upload no version refers to (a deploy that never happened); kept by the upgrade.
ORPHAN = b"an upload that no deploy used"
REVISION = 17
IMPORTED_AT = "1795828900"


def build_old_registry(url: str, *, long_name: bool) -> None:
    """Create and fill a registry exactly as b646a59's code did (``create_all`` and inserts)."""
    engine = sa.create_engine(url)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(meta_table).values(key="revision", value=str(REVISION)))
        conn.execute(sa.insert(meta_table).values(key="legacy_state_imported", value=IMPORTED_AT))
        for data in [ORPHAN] + [
            d for e in old_endpoints(long_name) for d in e.versions.values() if d is not None
        ]:
            _insert_artifact(conn, data)
        for endpoint in old_endpoints(long_name):
            row = {
                **endpoint.info,
                "name": endpoint.name,
                "schema": json.dumps(endpoint.info["schema"]),
                "is_public": json.dumps(endpoint.info["is_public"]),
                "dependencies": json.dumps(endpoint.info["dependencies"]),
            }
            conn.execute(sa.insert(endpoints_table).values(**row))
            for version, data in endpoint.versions.items():
                sha256 = None if data is None else hashlib.sha256(data).hexdigest()
                conn.execute(
                    sa.insert(versions_table).values(
                        name=endpoint.name,
                        version=version,
                        artifact=sha256,
                        created_at=1795828900 + version,
                    )
                )
    engine.dispose()


def table_rows(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of the four tables, every column, in primary-key order."""
    engine = sa.create_engine(url)
    found: dict[str, list[dict[str, Any]]] = {}
    reflected = sa.MetaData()
    reflected.reflect(engine, only=list(TABLES))
    with engine.connect() as conn:
        for name in TABLES:
            table = reflected.tables[name]
            query = sa.select(table).order_by(*table.primary_key.columns)
            found[name] = [dict(row._mapping) for row in conn.execute(query)]
    engine.dispose()
    return found


def _insert_artifact(conn: sa.Connection, data: bytes) -> None:
    sha256 = hashlib.sha256(data).hexdigest()
    exists = conn.execute(
        sa.select(artifacts_table.c.sha256).where(artifacts_table.c.sha256 == sha256)
    ).first()
    if exists is None:
        conn.execute(
            sa.insert(artifacts_table).values(
                sha256=sha256, size=len(data), data=data, created_at=1795828800
            )
        )


def _info(
    endpoint_type: str,
    version: int,
    description: str,
    docstring: str,
    schema: Any = None,
    is_public: bool = False,
    target: str | None = None,
) -> dict[str, Any]:
    return {
        "type": endpoint_type,
        "version": version,
        "description": description,
        "docstring": docstring,
        "schema": schema,
        "is_public": is_public,
        "dependencies": [],
        "target": target,
        "creation_time": 1795828910,
        "last_modified_time": 1795828920 + version,
    }
