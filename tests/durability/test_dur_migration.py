"""Databases made by every past schema version are upgraded in place, data intact.

Each past version (1-4) is rebuilt faithfully from its released ``store/schema.py``
(tests/fixtures/schemas: verbatim copies from git history, created as that release created
them) with sample rows in every table and column it had, on SQLite and on PostgreSQL (the
ALTER TABLE statements of the migrations must work on both).  After ``ensure_schema``:
the version is current; the upgraded database has every column (with its nullability) and
every index a new database has; every sample row reads back the same through the current
schema, and the columns added later hold their documented defaults (pre-version-2 tasks count
as published and never expire, nothing was retried, endpoints accept any function, tokens keep
every scope).  A foreign version is still refused with the clear mismatch error.
"""

# The service fixtures are imported below, so test arguments of the same names "redefine" them.
# ruff: noqa: F811

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from outpost_service.errors import StoreError
from outpost_service.store import Database, groups
from outpost_service.store.schema import SCHEMA_VERSION, meta, metadata

from ..fixtures.schemas import PAST_VERSIONS, build
from ..service.conftest import database_url, postgres_database  # noqa: F401

#: What a column added by a later version holds for rows written before it.
DEFAULTS: dict[tuple[str, str], Any] = {
    ("tasks", "published"): True,
    ("tasks", "request_id"): None,
    ("tasks", "deadline"): None,
    ("tasks", "retried_by"): None,
    ("tokens", "scopes"): None,
    ("endpoints", "allowed_functions"): None,
}


@pytest.mark.parametrize("version", sorted(PAST_VERSIONS))
def test_past_version_is_upgraded_with_its_data(database_url: str, version: int) -> None:
    inserted = build(database_url, version)
    database = Database(database_url)
    try:
        database.ensure_schema()
        with database.read() as conn:
            assert conn.execute(
                sa.select(meta.c.value).where(meta.c.key == "schema_version")
            ).scalar_one() == str(SCHEMA_VERSION)
            assert_same_schema_as_a_new_database(conn)
            for name, rows in inserted.items():
                assert_rows_survived(conn, name, rows)
        database.ensure_schema()  # idempotent once upgraded
    finally:
        database.dispose()


def assert_same_schema_as_a_new_database(conn: sa.Connection) -> None:
    inspector = sa.inspect(conn)
    for table in metadata.sorted_tables:
        assert inspector.has_table(table.name), f"table {table.name} is missing"
        found = {c["name"]: c["nullable"] for c in inspector.get_columns(table.name)}
        wanted = {c.name: c.nullable for c in table.columns}
        assert found == wanted, f"{table.name}: columns {found} instead of {wanted}"
        indexes = {  # not PostgreSQL's indexes behind UNIQUE constraints
            i["name"]: i["column_names"]
            for i in inspector.get_indexes(table.name)
            if not i.get("duplicates_constraint")
        }
        for index in table.indexes:
            assert indexes.get(index.name) == [c.name for c in index.columns], (
                f"{table.name}: index {index.name} missing or different: {indexes}"
            )
        extra = set(indexes) - {index.name for index in table.indexes}
        assert not extra, f"{table.name}: leftover indexes {extra}"


def assert_rows_survived(conn: sa.Connection, name: str, rows: list[dict[str, Any]]) -> None:
    """The table holds exactly ``rows`` (in the columns they have; any order), and the
    columns added since hold their defaults."""
    table = metadata.tables[name]
    stored = [dict(row._mapping) for row in conn.execute(sa.select(table))]
    if name == "meta":
        stored = [row for row in stored if row["key"] != "schema_version"]
    columns = list(rows[0])

    def canonical(row: dict[str, Any]) -> str:
        return repr([bytes(row[c]) if isinstance(row[c], memoryview) else row[c] for c in columns])

    assert sorted(map(canonical, stored)) == sorted(map(canonical, rows)), name
    for row in stored:
        for column in set(row) - set(columns):
            if (name, column) in DEFAULTS:
                assert row[column] == DEFAULTS[(name, column)], f"{name}.{column}: {row[column]!r}"


def test_version_5_gets_the_task_group_counts(database_url: str) -> None:
    """Version 6 adds ``task_group_counts`` (what executors declared they submitted); the
    tasks are kept, and a group of an older SDK has no count (None)."""
    build(database_url, 5)
    database = Database(database_url)
    try:
        database.ensure_schema()
        group = "3f0c0000-0000-4000-8000-000000000001"
        with database.write() as conn:
            assert groups.submitted(conn, 1, group) is None
            groups.declare(conn, 1, group, "client-a", 300)
            groups.declare(conn, 1, group, "client-a", 77)  # a late, older count never lowers it
            groups.declare(conn, 1, group, "client-b", 5)
        with database.read() as conn:
            assert groups.submitted(conn, 1, group) == 305
            version = sa.select(meta.c.value).where(meta.c.key == "schema_version")
            assert conn.execute(version).scalar_one() == str(SCHEMA_VERSION)
    finally:
        database.dispose()


def test_version_6_gets_the_task_dependencies(database_url: str) -> None:
    """Version 7 adds ``task_dependencies`` (empty: older SDKs resolved dependencies
    themselves); the tasks are kept, and a dependency can be recorded and read."""
    from outpost_service.store import dependencies
    from outpost_service.store.schema import task_dependencies

    build(database_url, 6)
    database = Database(database_url)
    try:
        database.ensure_schema()
        with database.write() as conn:
            assert dependencies.parents_of(conn, ["task-queued"]) == {}
            conn.execute(
                task_dependencies.insert().values(
                    child_task_id="task-queued", parent_task_id="task-done"
                )
            )
        with database.read() as conn:
            (row,) = dependencies.parents_of(conn, ["task-queued"])["task-queued"]
            assert (row.parent_task_id, row.state) == ("task-done", "success")
            version = sa.select(meta.c.value).where(meta.c.key == "schema_version")
            assert conn.execute(version).scalar_one() == str(SCHEMA_VERSION) == "7"
    finally:
        database.dispose()


def test_other_version_is_refused(database_url: str) -> None:
    url = database_url
    Database(url).ensure_schema()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(meta.update().values(value="99"))
    engine.dispose()
    with pytest.raises(StoreError, match="has schema version 99"):
        Database(url).ensure_schema()
