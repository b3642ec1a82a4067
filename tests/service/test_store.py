"""The SQL store on both backends: versioned schema, idempotent results, retention."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from outpost.protocol import ResultEnvelope, TaskState
from outpost_service.errors import StoreError
from outpost_service.store import SCHEMA_VERSION, Database
from outpost_service.store import endpoints as endpoint_store
from outpost_service.store import functions as function_store
from outpost_service.store import tasks as task_store
from outpost_service.store.schema import meta, task_events, tasks
from outpost_service.store.tasks import NewTask
from outpost_service.store.users import get_or_create_user

ENDPOINT = "00000000-0000-4000-8000-000000000001"


@pytest.fixture
def database(database_url: str) -> Database:
    db = Database(database_url)
    db.ensure_schema()
    yield db  # type: ignore[misc]
    db.dispose()


def seed(database: Database, count: int) -> list[str]:
    ids = [f"00000000-0000-4000-9000-{i:012d}" for i in range(count)]
    with database.write() as conn:
        user = get_or_create_user(conn, "alice")
        assert get_or_create_user(conn, "alice") == user
        endpoint_store.insert(conn, ENDPOINT, user.user_id, "ep", {})
        function_store.insert(conn, "f" * 64, b"payload", "fn", user.user_id)
        task_store.insert_many(
            conn,
            user.user_id,
            [
                NewTask(task_id=t, endpoint_id=ENDPOINT, function_id="f" * 64, args=b"a")
                for t in ids
            ],
            time.time(),
        )
    return ids


def test_schema_is_created_once_and_checked(database: Database, database_url: str) -> None:
    again = Database(database_url)
    again.ensure_schema()  # same version: fine
    with again.write() as conn:
        conn.execute(meta.update().values(value="999"))
    with pytest.raises(StoreError) as raised:
        again.ensure_schema()
    message = str(raised.value)
    assert "999" in message and str(SCHEMA_VERSION) in message
    again.dispose()


def test_finish_is_idempotent(database: Database) -> None:
    first, second = seed(database, 2)
    ok = ResultEnvelope(first, ENDPOINT, TaskState.SUCCESS, value=b"1")
    other = ResultEnvelope(first, ENDPOINT, TaskState.FAILED)
    unknown = ResultEnvelope("00000000-0000-4000-9999-000000000000", ENDPOINT, TaskState.SUCCESS)
    with database.write() as conn:
        assert task_store.finish(conn, [ok, other, unknown], 60.0) == [first]
    with database.write() as conn:
        assert task_store.finish(conn, [other], 60.0) == []
    with database.read() as conn:
        states = task_store.states_owned(conn, [first, second], owner=1)
        assert states[first].state == "success"
        assert states[second].state == "queued" and states[second].size is None
        stored = task_store.results(conn, [first, second])
        assert list(stored) == [first]
        assert states[first].size == len(stored[first])
        assert ResultEnvelope.from_bytes(stored[first]) == ok
        assert [e.state for e in task_store.events(conn, first)] == [
            "received",
            "queued",
            "success",
        ]
        assert endpoint_store.outstanding_counts(conn, [ENDPOINT]) == {ENDPOINT: 1}


def test_purge_deletes_only_expired_finished_tasks(database: Database) -> None:
    done, waiting = seed(database, 2)
    with database.write() as conn:
        task_store.finish(conn, [ResultEnvelope(done, ENDPOINT, TaskState.SUCCESS)], 10.0)
    with database.write() as conn:
        assert task_store.purge_expired(conn, time.time()) == 0
        assert task_store.purge_expired(conn, time.time() + 11) == 1
    with database.read() as conn:
        remaining = list(conn.execute(sa.select(tasks.c.task_id)).scalars())
        events = set(conn.execute(sa.select(task_events.c.task_id)).scalars())
    assert remaining == [waiting]
    assert events == {waiting}
