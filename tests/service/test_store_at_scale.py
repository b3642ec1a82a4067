"""What keeps the store's sweeps and listings cheap with a million tasks (see
benchmarks/store_scale.py): the queries for unfinished tasks read only their index entries, not
those of every finished task kept for retention (listing endpoints took 5-20x longer and the
expiry sweep 100x before), and the retention sweep deletes a bounded batch per transaction.

Results are checked on both backends; the query plans on SQLite, whose planner is deterministic
(PostgreSQL's may rightly prefer a sequential scan on a small test table).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from outpost.protocol import ResultEnvelope, TaskState
from outpost_service.server import make_ingest
from outpost_service.store import Database
from outpost_service.store import endpoints as endpoint_store
from outpost_service.store import functions as function_store
from outpost_service.store import tasks as task_store
from outpost_service.store.schema import task_events, tasks
from outpost_service.store.tasks import NewTask
from outpost_service.store.users import get_or_create_user

from .conftest import app_state

ENDPOINT = "00000000-0000-4000-8000-000000000001"
OTHER = "00000000-0000-4000-8000-000000000002"


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    db.ensure_schema()
    yield db
    db.dispose()


def _seed(database: Database, now: float) -> dict[str, list[str]]:
    """On ENDPOINT: 3 queued tasks past their deadline, 2 queued ones not yet due, 1 without a
    deadline, 4 finished ones past their deadline; on OTHER: 2 queued tasks past theirs."""
    ids: dict[str, list[str]] = {}
    with database.write() as conn:
        owner = get_or_create_user(conn, "alice").user_id
        for endpoint in (ENDPOINT, OTHER):
            endpoint_store.insert(conn, endpoint, owner, endpoint[-1], {})
        function_store.insert(conn, "f" * 64, b"payload", "fn", owner)
        number = 0
        for kind, endpoint, count, expires_after in (
            ("due", ENDPOINT, 3, 1.0),
            ("later", ENDPOINT, 2, 3600.0),
            ("never", ENDPOINT, 1, None),
            ("finished", ENDPOINT, 4, 1.0),
            ("other", OTHER, 2, 1.0),
        ):
            spec = {} if expires_after is None else {"expires_after": expires_after}
            new = []
            for _ in range(count):
                number += 1
                task_id = f"00000000-0000-4000-9000-{number:012d}"
                new.append(NewTask(task_id, endpoint, "f" * 64, b"a", resource_spec=spec))
            task_store.insert_many(conn, owner, new, now - 10)
            ids[kind] = [t.task_id for t in new]
    with database.write() as conn:
        finished = [ResultEnvelope(t, ENDPOINT, TaskState.SUCCESS) for t in ids["finished"]]
        assert len(task_store.finish(conn, finished, 3600.0)) == 4
    return ids


def test_expiry_sweep_finds_only_unfinished_due_tasks(database: Database) -> None:
    now = time.time()
    ids = _seed(database, now)
    with database.read() as conn:
        due = task_store.due(conn, now, 100)
        first = task_store.due(conn, now, 2)
    assert sorted(r.task_id for r in due) == sorted(ids["due"] + ids["other"])
    assert all(r.deadline < now for r in due)
    assert len(first) == 2  # the limit holds


def test_outstanding_counts_and_ids_skip_finished_tasks(database: Database) -> None:
    ids = _seed(database, time.time())
    with database.read() as conn:
        counts = endpoint_store.outstanding_counts(conn, [ENDPOINT, OTHER])
        outstanding = task_store.outstanding_ids(conn, ENDPOINT)
    assert counts == {ENDPOINT: 6, OTHER: 2}
    assert sorted(outstanding) == sorted(ids["due"] + ids["later"] + ids["never"])


def test_retention_sweep_deletes_a_batch_at_a_time_oldest_first(database: Database) -> None:
    now = time.time()
    ids = _seed(database, now)
    with database.write() as conn:  # the finished tasks expire 1 s apart, in this order
        for offset, task_id in enumerate(ids["finished"]):
            conn.execute(
                tasks.update().where(tasks.c.task_id == task_id).values(expires_at=now + offset)
            )
    swept: list[int] = []
    while True:
        with database.write() as conn:
            swept.append(task_store.purge_expired(conn, now + 10, limit=3))
        if swept[-1] < 3:
            break
    with database.read() as conn:
        left = set(conn.execute(sa.select(tasks.c.task_id)).scalars())
        with_events = set(conn.execute(sa.select(task_events.c.task_id)).scalars())
    assert swept == [3, 1]
    assert not left & set(ids["finished"]) and left == with_events
    assert len(left) == 8  # the unfinished tasks stay


def test_a_partial_batch_deletes_the_earliest_expired(database: Database) -> None:
    now = time.time()
    ids = _seed(database, now)
    with database.write() as conn:
        for offset, task_id in enumerate(ids["finished"]):
            conn.execute(
                tasks.update().where(tasks.c.task_id == task_id).values(expires_at=now + offset)
            )
        assert task_store.purge_expired(conn, now + 10, limit=2) == 2
        left = set(conn.execute(sa.select(tasks.c.task_id)).scalars())
    assert set(ids["finished"]) & left == set(ids["finished"][2:])


def test_ingest_sweeps_a_retention_backlog_batch_after_batch(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More expired tasks than a batch: the ingest consumer sweeps again at its next quiet
    moments instead of ``purge_interval`` (an hour here) later."""
    monkeypatch.setattr(task_store, "PURGE_BATCH", 1)
    state = app_state(make_app(purge_interval=3600.0))
    now = time.time()
    ids = _seed(state.database, now)
    with state.database.write() as conn:
        conn.execute(tasks.update().where(tasks.c.state == "success").values(expires_at=now))
    consumer = make_ingest(state.config, state)
    consumer.start()
    try:
        left = set(ids["finished"])
        deadline = time.monotonic() + 30
        while left and time.monotonic() < deadline:  # no event to await: read the store
            with state.database.read() as conn:
                left = set(conn.execute(sa.select(tasks.c.task_id)).scalars()) & left
            time.sleep(0.05)
    finally:
        consumer.stop()
    assert not left, f"{len(left)} of 4 expired tasks were not swept within 30 s"


def _plan(database: Database, query: Callable[[sa.Connection], Any]) -> str:
    """The SQLite query plan of the statement ``query`` runs."""
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        statements.append((statement, params))

    sa.event.listen(database.engine, "before_cursor_execute", record)
    try:
        with database.read() as conn:
            query(conn)
    finally:
        sa.event.remove(database.engine, "before_cursor_execute", record)
    selects = [s for s in statements if s[0].lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1, statements
    with database.read() as conn:
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + selects[0][0], selects[0][1])
        return " | ".join(str(row[-1]) for row in rows)


def test_states_owned_reads_only_the_owners_tasks(database: Database) -> None:
    ids = _seed(database, time.time())
    with database.write() as conn:
        mallory = get_or_create_user(conn, "mallory").user_id
        theirs = "00000000-0000-4000-9000-999999999999"
        new = [NewTask(theirs, ENDPOINT, "f" * 64, b"a")]
        task_store.insert_many(conn, mallory, new, time.time())
    wanted = [*ids["due"], ids["finished"][0], theirs]
    with database.read() as conn:
        alice = get_or_create_user(conn, "alice").user_id
        states = task_store.states_owned(conn, wanted, alice)
        as_mallory = task_store.states_owned(conn, wanted, mallory)
    assert set(states) == {*ids["due"], ids["finished"][0]}
    assert states[ids["finished"][0]].state == "success" and states[ids["finished"][0]].size
    assert states[ids["due"][0]].state == "queued" and states[ids["due"][0]].size is None
    assert set(as_mallory) == {theirs}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sweep_and_listing_queries_search_unfinished_states(database: Database) -> None:
    now = time.time()
    _seed(database, now)
    due = _plan(database, lambda c: task_store.due(c, now, 100))
    assert "ix_tasks_state_deadline (state=? AND deadline<?)" in due, due
    counts = _plan(database, lambda c: endpoint_store.outstanding_counts(c, [ENDPOINT, OTHER]))
    assert "ix_tasks_endpoint_state (endpoint_id=? AND state=?)" in counts, counts
    outstanding = _plan(database, lambda c: task_store.outstanding_ids(c, ENDPOINT))
    assert "ix_tasks_endpoint_state (endpoint_id=? AND state=?)" in outstanding, outstanding


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_status_of_many_tasks_is_looked_up_by_task_id(database: Database) -> None:
    """Not through the owner's index, which holds every task the user ever ran."""
    ids = _seed(database, time.time())
    wanted = ids["due"] + ids["finished"]
    states = _plan(database, lambda c: task_store.states_owned(c, wanted, 1))
    assert "sqlite_autoindex_tasks_1 (task_id=?)" in states, states
