"""A schema-version-1 database (before the sweeper, request ids and expiry) is upgraded in
place to version 2: its tasks count as published and never expire; a foreign version is still
refused with the clear mismatch error."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from outpost_service.errors import StoreError
from outpost_service.store import Database
from outpost_service.store.schema import SCHEMA_VERSION, meta, tasks


def make_version_1(url: str) -> None:
    """The current schema minus what versions 2 and 3 added (SQLite >= 3.35 drops columns)."""
    Database(url).ensure_schema()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for index in ("ix_tasks_published", "ix_tasks_owner_request", "ix_tasks_deadline"):
            conn.exec_driver_sql(f"DROP INDEX {index}")
        for column in ("published", "request_id", "deadline", "retried_by"):
            conn.exec_driver_sql(f"ALTER TABLE tasks DROP COLUMN {column}")
        conn.execute(meta.update().values(value="1"))
        conn.exec_driver_sql("INSERT INTO users (user_id, name, created_at) VALUES (1, 'a', 0)")
        conn.exec_driver_sql(
            "INSERT INTO endpoints (endpoint_id, owner, name, metadata, created_at, details, "
            "deleted) VALUES ('e', 1, 'ep', '{}', 0, '{}', 0)"
        )
        conn.exec_driver_sql(
            "INSERT INTO functions (function_id, payload, created_by, created_at) "
            "VALUES ('f', x'00', 1, 0)"
        )
        conn.exec_driver_sql(
            "INSERT INTO tasks (task_id, owner, endpoint_id, function_id, state, args, "
            "resource_spec, created_at) VALUES ('t', 1, 'e', 'f', 'queued', x'00', '{}', 0)"
        )
    engine.dispose()


def test_version_1_is_upgraded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
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


def test_other_version_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/future.db"
    Database(url).ensure_schema()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(meta.update().values(value="99"))
    engine.dispose()
    with pytest.raises(StoreError, match="has schema version 99"):
        Database(url).ensure_schema()
