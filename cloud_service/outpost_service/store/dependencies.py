"""Which tasks wait for which: the ``task_dependencies`` rows and the queries over them.

Every query takes a set of ids and answers for all of them at once: releasing the children of
a batch of 1,000 results costs a handful of statements, not one per task.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from outpost.protocol import TaskState
from outpost_service.store.schema import task_dependencies, task_events, tasks

_WAITING = TaskState.WAITING.value
#: Ids per ``IN (...)`` list: well under SQLite's 32,766 bound parameters.
_CHUNK = 5000


def _chunks(ids: Iterable[str]) -> Iterable[list[str]]:
    ordered = sorted(set(ids))
    for start in range(0, len(ordered), _CHUNK):
        yield ordered[start : start + _CHUNK]


def parents_locked(conn: Connection, parent_ids: Iterable[str]) -> dict[str, Row[Any]]:
    """``{task_id: (task_id, owner, state)}`` of the parents that exist, locked (``FOR
    UPDATE``) so that a result stored concurrently for one of them waits for this transaction
    and then sees the children it inserts (otherwise such a child could wait forever)."""
    found: dict[str, Any] = {}
    for chunk in _chunks(parent_ids):
        rows = conn.execute(
            sa.select(tasks.c.task_id, tasks.c.owner, tasks.c.state)
            .where(tasks.c.task_id.in_(chunk))
            .order_by(tasks.c.task_id)  # the lock order of store.tasks.finish
            .with_for_update()
        ).all()
        found.update((row.task_id, row) for row in rows)
    return found


def waiting_children(conn: Connection, parent_ids: Iterable[str]) -> list[Row[Any]]:
    """``(child_task_id, parent_task_id, endpoint_id)`` of the waiting children of
    ``parent_ids``."""
    found: list[Any] = []
    for chunk in _chunks(parent_ids):
        found.extend(
            conn.execute(
                sa.select(
                    task_dependencies.c.child_task_id,
                    task_dependencies.c.parent_task_id,
                    tasks.c.endpoint_id,
                )
                .join(tasks, tasks.c.task_id == task_dependencies.c.child_task_id)
                .where(task_dependencies.c.parent_task_id.in_(chunk), tasks.c.state == _WAITING)
                .order_by(task_dependencies.c.child_task_id)
            ).all()
        )
    return found


def parents_of(conn: Connection, child_ids: Iterable[str]) -> dict[str, list[Row[Any]]]:
    """``{child: [(parent_task_id, state), ...]}`` for the children among ``child_ids``."""
    found: dict[str, list[Any]] = defaultdict(list)
    for chunk in _chunks(child_ids):
        rows = conn.execute(
            sa.select(
                task_dependencies.c.child_task_id,
                task_dependencies.c.parent_task_id,
                tasks.c.state,
            )
            .join(tasks, tasks.c.task_id == task_dependencies.c.parent_task_id, isouter=True)
            .where(task_dependencies.c.child_task_id.in_(chunk))
        ).all()
        for row in rows:
            found[row.child_task_id].append(row)
    return found


def mark_queued(conn: Connection, child_ids: list[str], now: float) -> list[str]:
    """Move the waiting tasks among ``child_ids`` to ``queued`` (still unpublished: the
    caller publishes them after the commit, or the sweeper does); return the ids moved."""
    moved: list[str] = []
    for chunk in _chunks(child_ids):
        still = list(
            conn.execute(
                sa.select(tasks.c.task_id)
                .where(tasks.c.task_id.in_(chunk), tasks.c.state == _WAITING)
                .with_for_update()
            ).scalars()
        )
        if still:
            conn.execute(
                tasks.update()
                .where(tasks.c.task_id.in_(still), tasks.c.state == _WAITING)
                .values(state=TaskState.QUEUED.value, published=False)
            )
            moved.extend(still)
    if moved:
        conn.execute(
            task_events.insert(),
            [{"task_id": tid, "state": TaskState.QUEUED.value, "at": now} for tid in moved],
        )
    return moved


def values(conn: Connection, parent_ids: Iterable[str]) -> dict[str, str | None]:
    """The result value of each succeeded task among ``parent_ids``: the base64 text of the
    ``value`` of its stored ``ResultEnvelope`` (JSON), copied as it is -- never unpickled."""
    found: dict[str, str | None] = {}
    for chunk in _chunks(parent_ids):
        rows = conn.execute(
            sa.select(tasks.c.task_id, tasks.c.result).where(
                tasks.c.task_id.in_(chunk), tasks.c.state == TaskState.SUCCESS.value
            )
        ).all()
        for row in rows:
            found[row.task_id] = json.loads(bytes(row.result)).get("value")
    return found
