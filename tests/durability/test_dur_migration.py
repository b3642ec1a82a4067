"""A schema-version-1 database (before the sweeper, request ids and expiry) is upgraded in
place to the current version: its tasks count as published and never expire; a foreign version
is still refused with the clear mismatch error.  On SQLite and PostgreSQL (the ALTER TABLE
statements of the migrations must work on both)."""

# The service fixtures are imported below, so test arguments of the same names "redefine" them.
# ruff: noqa: F811

from __future__ import annotations

import pytest
import sqlalchemy as sa

from outpost_service.errors import StoreError
from outpost_service.store import Database, groups
from outpost_service.store.schema import SCHEMA_VERSION, meta, tasks

from ..service.conftest import database_url, postgres_database  # noqa: F401


def make_version_1(url: str) -> None:
    """The current schema minus what versions 2 and 3 added (SQLite >= 3.35 drops columns)."""
    Database(url).ensure_schema()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for index in ("ix_tasks_published", "ix_tasks_owner_request", "ix_tasks_state_deadline"):
            conn.exec_driver_sql(f"DROP INDEX {index}")
        for column in ("published", "request_id", "deadline", "retried_by"):
            conn.exec_driver_sql(f"ALTER TABLE tasks DROP COLUMN {column}")
        conn.exec_driver_sql("DROP TABLE task_group_counts")  # version 6
        conn.execute(meta.update().values(value="1"))
        # Bound values, not literals: booleans and blobs are spelled differently per backend.
        conn.execute(sa.text("INSERT INTO users (user_id, name, created_at) VALUES (1, 'a', 0)"))
        conn.execute(
            sa.text(
                "INSERT INTO endpoints (endpoint_id, owner, name, metadata, created_at, details, "
                "deleted) VALUES ('e', 1, 'ep', '{}', 0, '{}', :no)"
            ),
            {"no": False},
        )
        conn.execute(
            sa.text(
                "INSERT INTO functions (function_id, payload, created_by, created_at) "
                "VALUES ('f', :payload, 1, 0)"
            ),
            {"payload": b"\x00"},
        )
        conn.execute(
            sa.text(
                "INSERT INTO tasks (task_id, owner, endpoint_id, function_id, state, args, "
                "resource_spec, created_at) VALUES ('t', 1, 'e', 'f', 'queued', :args, '{}', 0)"
            ),
            {"args": b"\x00"},
        )
    engine.dispose()


def test_version_1_is_upgraded(database_url: str) -> None:
    url = database_url
    make_version_1(url)
    database = Database(url)
    database.ensure_schema()
    with database.read() as conn:
        row = conn.execute(sa.select(tasks)).one()
        version = conn.execute(sa.select(meta.c.value)).scalar_one()
    assert version == str(SCHEMA_VERSION)
    assert row.published is True and row.request_id is None and row.deadline is None
    assert row.retried_by is None  # version 3 (retry bookkeeping) is applied after version 2
    database.ensure_schema()  # idempotent once upgraded
    database.dispose()


def test_version_4_gets_the_expiry_index(database_url: str) -> None:
    """Version 5 swaps ``ix_tasks_deadline`` for ``ix_tasks_state_deadline``; rows are kept."""
    url = database_url
    make_version_1(url)
    database = Database(url)
    database.ensure_schema()  # 1 -> 5, then make it look like version 4 wrote it
    with database.write() as conn:
        conn.exec_driver_sql("DROP INDEX ix_tasks_state_deadline")
        conn.exec_driver_sql("CREATE INDEX ix_tasks_deadline ON tasks (deadline)")
        conn.execute(meta.update().values(value="4"))
    database.dispose()
    database = Database(url)
    database.ensure_schema()
    with database.read() as conn:
        indexes = {i["name"]: i["column_names"] for i in sa.inspect(conn).get_indexes("tasks")}
        version = conn.execute(sa.select(meta.c.value)).scalar_one()
        task_ids = list(conn.execute(sa.select(tasks.c.task_id)).scalars())
    database.dispose()
    assert version == str(SCHEMA_VERSION)
    assert indexes["ix_tasks_state_deadline"] == ["state", "deadline"]
    assert "ix_tasks_deadline" not in indexes
    assert task_ids == ["t"]


def test_version_5_gets_the_task_group_counts(database_url: str) -> None:
    """Version 6 adds ``task_group_counts`` (what executors declared they submitted); the
    tasks are kept, and a group of an older SDK has no count (None)."""
    url = database_url
    make_version_1(url)
    database = Database(url)
    database.ensure_schema()  # 1 -> 6, then make it look like version 5 wrote it
    with database.write() as conn:
        conn.exec_driver_sql("DROP TABLE task_group_counts")
        conn.execute(meta.update().values(value="5"))
    database.dispose()
    database = Database(url)
    database.ensure_schema()
    group = "3f0c0000-0000-4000-8000-000000000001"
    with database.write() as conn:
        assert groups.submitted(conn, 1, group) is None
        groups.declare(conn, 1, group, "client-a", 300)
        groups.declare(conn, 1, group, "client-a", 77)  # a late, older count never lowers it
        groups.declare(conn, 1, group, "client-b", 5)
    with database.read() as conn:
        version = conn.execute(sa.select(meta.c.value)).scalar_one()
        task_ids = list(conn.execute(sa.select(tasks.c.task_id)).scalars())
        assert groups.submitted(conn, 1, group) == 305
    database.dispose()
    assert version == "6" == str(SCHEMA_VERSION)
    assert task_ids == ["t"]


def test_other_version_is_refused(database_url: str) -> None:
    url = database_url
    Database(url).ensure_schema()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(meta.update().values(value="99"))
    engine.dispose()
    with pytest.raises(StoreError, match="has schema version 99"):
        Database(url).ensure_schema()
