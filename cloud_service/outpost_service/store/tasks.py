"""Tasks, their events and their results.

The no-loss rule lives here: a result is stored only for a task that is not yet terminal, so a
re-delivered or duplicate result (at-least-once execution) and a result arriving after a cancel
are ignored; the first final state wins.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from outpost.protocol import ResultEnvelope, TaskState
from outpost_service.store.endpoints import ACTIVE_STATES, TERMINAL_STATES
from outpost_service.store.schema import endpoints, task_dependencies, task_events, tasks, users

log = logging.getLogger(__name__)


@dataclass
class NewTask:
    """A validated task about to be inserted."""

    task_id: str
    endpoint_id: str
    function_id: str
    args: bytes
    task_group_id: str | None = None
    resource_spec: dict[str, Any] = field(default_factory=dict)
    #: The tasks it waits for (``TaskRequest.depends_on``), stored in ``task_dependencies``.
    depends_on: list[str] = field(default_factory=list)
    #: ``queued``, or ``waiting`` while a parent has not succeeded (set at submit).
    state: str = TaskState.QUEUED.value


def insert_many(
    conn: Connection,
    owner: int,
    new: Sequence[NewTask],
    now: float,
    request_id: str | None = None,
) -> None:
    """Insert ``new`` as not yet published tasks in their ``state`` (queued or waiting), with
    their received and first-state events and their dependencies (executemany)."""
    if not new:
        return
    conn.execute(
        tasks.insert(),
        [
            {
                "task_id": t.task_id,
                "owner": owner,
                "endpoint_id": t.endpoint_id,
                "function_id": t.function_id,
                "task_group_id": t.task_group_id,
                "state": t.state,
                "args": t.args,
                "resource_spec": t.resource_spec,
                "created_at": now,
                "published": False,
                "request_id": request_id,
                "deadline": _deadline(t.resource_spec, now),
            }
            for t in new
        ],
    )
    conn.execute(
        task_events.insert(),
        [
            {"task_id": t.task_id, "state": state, "at": now}
            for t in new
            for state in (TaskState.RECEIVED.value, t.state)
        ],
    )
    links = [{"child_task_id": t.task_id, "parent_task_id": p} for t in new for p in t.depends_on]
    if links:
        conn.execute(task_dependencies.insert(), links)


def _deadline(spec: dict[str, Any], now: float) -> float | None:
    after = spec.get("expires_after")
    return None if after is None else now + float(after)


def due(conn: Connection, now: float, limit: int) -> list[Row[Any]]:
    """Unfinished tasks whose deadline has passed: ``(task_id, endpoint_id, deadline)``."""
    return list(
        conn.execute(
            sa.select(tasks.c.task_id, tasks.c.endpoint_id, tasks.c.deadline)
            # ix_tasks_state_deadline: only unfinished tasks' deadlines are read
            .where(tasks.c.state.in_(ACTIVE_STATES), tasks.c.deadline < now)
            .order_by(tasks.c.deadline)
            .limit(limit)
        )
    )


def lock_request(conn: Connection, owner: int, request_id: str) -> None:
    """Make concurrent writers of one ``(owner, request_id)`` take turns until their
    transactions end, so a submit and its retry cannot both see "not stored yet" and both
    insert.  SQLite already runs one writer at a time (``BEGIN IMMEDIATE``); PostgreSQL takes
    a transaction-scoped advisory lock on a 64-bit hash of the pair (a collision only makes
    two requests take turns).  Call it first in the write transaction, before
    :func:`by_request`: under READ COMMITTED that query then sees the winner's rows."""
    if conn.dialect.name != "postgresql":
        return
    digest = hashlib.blake2b(f"{owner}:{request_id}".encode(), digest_size=8).digest()
    key = int.from_bytes(digest, "big", signed=True)
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))


def by_request(conn: Connection, owner: int, request_id: str) -> list[str]:
    """The ids of the tasks ``owner`` created with ``request_id``, in submission order."""
    return list(
        conn.execute(
            sa.select(tasks.c.task_id)
            .where(tasks.c.owner == owner, tasks.c.request_id == request_id)
            .order_by(tasks.c.seq)
        ).scalars()
    )


def mark_published(conn: Connection, task_ids: Sequence[str]) -> None:
    """RabbitMQ confirmed these tasks' messages: the sweeper leaves them alone."""
    if task_ids:
        conn.execute(
            tasks.update().where(tasks.c.task_id.in_(set(task_ids))).values(published=True)
        )


def unpublished(
    conn: Connection, created_before: float, limit: int, task_ids: Iterable[str] | None = None
) -> list[Row[Any]]:
    """Unfinished tasks whose message RabbitMQ never confirmed (oldest first), created before
    ``created_before`` (or among ``task_ids``); with what it takes to publish them again."""
    query = sa.select(
        tasks.c.task_id,
        tasks.c.owner,
        tasks.c.endpoint_id,
        tasks.c.function_id,
        tasks.c.task_group_id,
        tasks.c.args,
        tasks.c.resource_spec,
        tasks.c.created_at,
    ).where(
        tasks.c.published.is_(False),
        # a waiting task is published when its parents succeeded (outpost_service.dependencies)
        tasks.c.state.notin_([*TERMINAL_STATES, TaskState.WAITING.value]),
    )
    if task_ids is not None:
        query = query.where(tasks.c.task_id.in_(set(task_ids)))
    else:
        query = query.where(tasks.c.created_at < created_before)
    return list(conn.execute(query.order_by(tasks.c.seq).limit(limit)))


def get_owned(conn: Connection, task_id: str, owner: int) -> Row[Any] | None:
    return conn.execute(
        sa.select(tasks).where(tasks.c.task_id == task_id, tasks.c.owner == owner)
    ).first()


def events(conn: Connection, task_id: str) -> list[Row[Any]]:
    return list(
        conn.execute(
            sa.select(task_events.c.state, task_events.c.at)
            .where(task_events.c.task_id == task_id)
            .order_by(task_events.c.event_id)
        )
    )


def states_owned(conn: Connection, task_ids: Iterable[str], owner: int) -> dict[str, Any]:
    """``{task_id: (task_id, state, size)}`` for the tasks among ``task_ids`` that ``owner``
    owns; ``size`` is the stored result's length in bytes (None while unfinished).

    The rows are found by task id alone and the owner checked here: told ``owner = ?`` as
    well, SQLite's planner (without statistics: nothing runs ANALYZE) walks every task of the
    owner through ``ix_tasks_owner_request`` -- 180 ms instead of 1 ms for 100 ids of a user
    with 250,000 tasks (``benchmarks/store_scale.py``)."""
    rows = conn.execute(
        sa.select(
            tasks.c.task_id,
            tasks.c.state,
            sa.func.length(tasks.c.result).label("size"),
            tasks.c.owner,
        ).where(tasks.c.task_id.in_(set(task_ids)))
    ).all()  # one fetchall: iterating fetches row by row (3.4 -> 3.0 us per id read)
    return {row.task_id: row for row in rows if row.owner == owner}


def finished_among(conn: Connection, task_ids: Sequence[str], chunk: int = 1000) -> list[str]:
    """The ids among ``task_ids`` whose task is finished (any owner): the wake-up channel's
    safety re-check asks this once for every id its process's long-polls wait for."""
    found: list[str] = []
    for start in range(0, len(task_ids), chunk):
        found += conn.execute(
            sa.select(tasks.c.task_id).where(
                tasks.c.task_id.in_(task_ids[start : start + chunk]),
                tasks.c.state.in_(TERMINAL_STATES),
            )
        ).scalars()
    return found


def results(conn: Connection, task_ids: Iterable[str]) -> dict[str, bytes]:
    """The stored ``ResultEnvelope`` bytes of the finished tasks among ``task_ids``."""
    rows = conn.execute(
        sa.select(tasks.c.task_id, tasks.c.result).where(
            tasks.c.task_id.in_(set(task_ids)), tasks.c.result.is_not(None)
        )
    ).all()
    return {row.task_id: bytes(row.result) for row in rows}


def results_with_origin(conn: Connection, task_ids: Iterable[str]) -> dict[str, Any]:
    """Like :func:`results`, each with the task's ``endpoint_id`` and that endpoint's owner
    (``endpoint_owner``, a user id): who may load a result's pickles (see
    :mod:`outpost_service.result_trust`)."""
    rows = conn.execute(
        sa.select(
            tasks.c.task_id,
            tasks.c.result,
            tasks.c.endpoint_id,
            endpoints.c.owner.label("endpoint_owner"),
        )
        .join(endpoints, endpoints.c.endpoint_id == tasks.c.endpoint_id)
        .where(tasks.c.task_id.in_(set(task_ids)), tasks.c.result.is_not(None))
    ).all()
    return {row.task_id: row for row in rows}


def user_names(conn: Connection, user_ids: Iterable[int]) -> dict[int, str]:
    """``{user_id: name}`` of ``user_ids`` (to name an endpoint's owner in results)."""
    rows = conn.execute(
        sa.select(users.c.user_id, users.c.name).where(users.c.user_id.in_(set(user_ids)))
    ).all()
    return {row.user_id: row.name for row in rows}


def in_group(conn: Connection, task_group_id: str, owner: int) -> list[Row[Any]]:
    return list(
        conn.execute(
            sa.select(
                tasks.c.task_id,
                tasks.c.state,
                tasks.c.function_id,
                tasks.c.endpoint_id,
                tasks.c.retried_by,
            )
            .where(tasks.c.task_group_id == task_group_id, tasks.c.owner == owner)
            .order_by(tasks.c.seq)
        )
    )


def group_exists(conn: Connection, task_group_id: str, owner: int) -> bool:
    """True when ``owner`` has at least one task in ``task_group_id``."""
    found = conn.execute(
        sa.select(tasks.c.seq)
        .where(tasks.c.task_group_id == task_group_id, tasks.c.owner == owner)
        .limit(1)
    ).first()
    return found is not None


def outstanding_ids(conn: Connection, endpoint_id: str) -> list[str]:
    return list(
        conn.execute(
            sa.select(tasks.c.task_id).where(
                tasks.c.endpoint_id == endpoint_id, tasks.c.state.in_(ACTIVE_STATES)
            )
        ).scalars()
    )


def finish(
    conn: Connection,
    results: Sequence[ResultEnvelope],
    retention: float,
    *,
    endpoint_must_match: bool = True,
) -> list[str]:
    """Store the final ``results``; return the ids actually stored.

    A result is ignored (and logged) if its task is unknown, already terminal, reported twice in
    ``results``, or (with ``endpoint_must_match``) reported by another endpoint than the task's.
    The rows are locked (``FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite) so a
    concurrent cancel and result cannot both win.
    """
    if not results:
        return []
    ids = {r.task_id for r in results}
    current = {
        row.task_id: row
        for row in conn.execute(
            sa.select(tasks.c.task_id, tasks.c.state, tasks.c.endpoint_id)
            .where(tasks.c.task_id.in_(ids))
            .order_by(tasks.c.task_id)  # one lock order: concurrent ingests cannot deadlock
            .with_for_update()
        ).all()
    }
    now = time.time()
    chosen: dict[str, ResultEnvelope] = {}
    for result in results:
        row = current.get(result.task_id)
        if row is None:
            log.warning("ignoring result for unknown task %s", result.task_id)
        elif row.state in TERMINAL_STATES or result.task_id in chosen:
            log.info("ignoring duplicate result for finished task %s", result.task_id)
        elif endpoint_must_match and row.endpoint_id != result.endpoint_id:
            log.warning(
                "ignoring result for task %s from endpoint %s: the task belongs to endpoint %s",
                result.task_id,
                result.endpoint_id,
                row.endpoint_id,
            )
        else:
            chosen[result.task_id] = result
    if not chosen:
        return []
    conn.execute(
        tasks.update()
        # Compare-and-set on the state read above (a cheap guard on top of the row lock).
        .where(tasks.c.task_id == sa.bindparam("b_task_id"), tasks.c.state == sa.bindparam("b_old"))
        .values(
            state=sa.bindparam("b_state"),
            result=sa.bindparam("b_result"),
            completed_at=now,
            expires_at=now + retention,
        ),
        [
            {
                "b_task_id": tid,
                "b_old": current[tid].state,
                "b_state": r.state.value,
                "b_result": r.to_bytes(),
            }
            for tid, r in chosen.items()
        ],
    )
    conn.execute(
        task_events.insert(),
        [{"task_id": tid, "state": r.state.value, "at": now} for tid, r in chosen.items()],
    )
    return list(chosen)


#: Most tasks one retention sweep deletes (see :func:`purge_expired`).
PURGE_BATCH = 1000


def purge_expired(conn: Connection, now: float, limit: int = PURGE_BATCH) -> int:
    """Delete at most ``limit`` finished tasks whose retention has passed (those that expired
    first) and their events; return how many.  A sweep after a pause can find a day of tasks
    due (80,000 with a million stored), whose deletion in one transaction takes seconds while
    SQLite's other writers wait (``benchmarks/store_scale.py``); the caller deletes them a
    batch per transaction instead, sweeping again as long as a sweep returns ``limit``.  Keep
    ``limit`` in the thousands: the ids are bound parameters (SQLite takes at most 32,766)."""
    expired = list(
        conn.execute(
            sa.select(tasks.c.task_id)
            .where(tasks.c.expires_at < now)
            .order_by(tasks.c.expires_at)
            .limit(limit)
        ).scalars()
    )
    if not expired:
        return 0
    conn.execute(task_events.delete().where(task_events.c.task_id.in_(expired)))
    conn.execute(task_dependencies.delete().where(task_dependencies.c.child_task_id.in_(expired)))
    result = conn.execute(tasks.delete().where(tasks.c.task_id.in_(expired)))
    return int(result.rowcount or 0)


def retry_candidates(
    conn: Connection, task_group_id: str, owner: int, states: Iterable[str]
) -> list[Row[Any]]:
    """The latest attempts in ``task_group_id`` (not yet retried) whose state is in
    ``states``, in submission order: what ``POST /v1/task_groups/<gid>/retry`` copies."""
    return list(
        conn.execute(
            sa.select(
                tasks.c.task_id,
                tasks.c.endpoint_id,
                tasks.c.function_id,
                tasks.c.args,
                tasks.c.resource_spec,
            )
            .where(
                tasks.c.task_group_id == task_group_id,
                tasks.c.owner == owner,
                tasks.c.state.in_(list(states)),
                tasks.c.retried_by.is_(None),
            )
            .order_by(tasks.c.seq)
        )
    )


def claim_retry(conn: Connection, old_task_id: str, new_task_id: str) -> bool:
    """Record that ``new_task_id`` retries ``old_task_id``; False if another request claimed
    it first (so two concurrent retries cannot both copy one task)."""
    claimed = conn.execute(
        tasks.update()
        .where(tasks.c.task_id == old_task_id, tasks.c.retried_by.is_(None))
        .values(retried_by=new_task_id)
    )
    return bool(claimed.rowcount)


def group_outcomes(conn: Connection, task_group_id: str, owner: int) -> list[Row[Any]]:
    """Every task of the group with its state, whether it was retried, and the stored result
    of failed ones (for the group summary)."""
    failed = sa.case(
        (tasks.c.state.in_([TaskState.FAILED.value, TaskState.LOST.value]), tasks.c.result),
        else_=sa.null(),
    )
    return list(
        conn.execute(
            sa.select(tasks.c.task_id, tasks.c.state, tasks.c.retried_by, failed.label("result"))
            .where(tasks.c.task_group_id == task_group_id, tasks.c.owner == owner)
            .order_by(tasks.c.seq)
        )
    )
