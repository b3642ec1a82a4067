"""What the dashboard reads from the store, always filtered by the signed-in owner.

The API's store modules answer one object at a time; a dashboard wants overviews (every group
with its counts) in one query each, so those queries live here, over the same tables.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from outpost.protocol import TaskState
from outpost_service.store.endpoints import ACTIVE_STATES
from outpost_service.store.schema import tasks

#: Groups listed on the groups page, most recently active first.
MAX_GROUPS = 50
#: Tasks listed on a group's page (the counts cover all of them).
MAX_TASK_ROWS = 200
#: Completions counted for a group's current rate (seconds).
RATE_WINDOW = 60.0
#: The groups page's sparklines: completions per BUCKET seconds over the last BUCKETS buckets.
BUCKET = 10.0
BUCKETS = 60


def groups_overview(conn: Connection, owner: int) -> list[dict[str, Any]]:
    """The owner's task groups: counts of their latest attempts per state, first submit, last
    completion, completions in the last :data:`RATE_WINDOW` seconds."""
    latest = sa.and_(
        tasks.c.owner == owner, tasks.c.task_group_id.is_not(None), tasks.c.retried_by.is_(None)
    )
    rows = conn.execute(
        sa.select(
            tasks.c.task_group_id,
            tasks.c.state,
            sa.func.count().label("n"),
            sa.func.min(tasks.c.created_at).label("first"),
            sa.func.max(tasks.c.completed_at).label("last"),
        )
        .where(latest)
        .group_by(tasks.c.task_group_id, tasks.c.state)
    ).all()
    since = time.time() - RATE_WINDOW
    recent: dict[str, int] = dict(
        conn.execute(
            sa.select(tasks.c.task_group_id, sa.func.count())
            .where(tasks.c.owner == owner, tasks.c.completed_at >= since)
            .group_by(tasks.c.task_group_id)
        ).all()
    )
    groups: dict[str, dict[str, Any]] = {}
    for row in rows:
        group = groups.setdefault(
            row.task_group_id,
            {"task_group_id": row.task_group_id, "states": {}, "first": row.first, "last": None},
        )
        group["states"][row.state] = int(row.n)
        group["first"] = min(group["first"], row.first)
        if row.last is not None:
            group["last"] = max(group["last"] or 0.0, row.last)
    since = time.time() - BUCKET * BUCKETS
    bucket = sa.cast((tasks.c.completed_at - since) / BUCKET, sa.Integer)
    for gid, index, n in conn.execute(
        sa.select(tasks.c.task_group_id, bucket, sa.func.count())
        .where(tasks.c.owner == owner, tasks.c.completed_at >= since)
        .group_by(tasks.c.task_group_id, bucket)
    ):
        if gid in groups:
            series = groups[gid].setdefault("buckets", [0] * BUCKETS)
            series[min(max(int(index), 0), BUCKETS - 1)] += int(n)
    for gid, group in groups.items():
        group["recent"] = int(recent.get(gid, 0))
        group.setdefault("buckets", [0] * BUCKETS)
    ranked = sorted(groups.values(), key=lambda g: -(g["last"] or g["first"]))
    return ranked[:MAX_GROUPS]


def group_rows(conn: Connection, task_group_id: str, owner: int) -> list[Row[Any]]:
    """Every task of the group (retried attempts too), in submission order, with the stored
    result of the failed ones."""
    failed = sa.case(
        (tasks.c.state.in_([TaskState.FAILED.value, TaskState.LOST.value]), tasks.c.result),
        else_=sa.null(),
    )
    return list(
        conn.execute(
            sa.select(
                tasks.c.task_id,
                tasks.c.state,
                tasks.c.endpoint_id,
                tasks.c.created_at,
                tasks.c.completed_at,
                tasks.c.retried_by,
                failed.label("result"),
            )
            .where(tasks.c.task_group_id == task_group_id, tasks.c.owner == owner)
            .order_by(tasks.c.seq)
        )
    )


def unfinished_in_group(conn: Connection, task_group_id: str, owner: int) -> list[tuple[str, str]]:
    """``(task_id, endpoint_id)`` of the group's unfinished tasks (what "cancel" cancels)."""
    rows = conn.execute(
        sa.select(tasks.c.task_id, tasks.c.endpoint_id).where(
            tasks.c.task_group_id == task_group_id,
            tasks.c.owner == owner,
            tasks.c.state.in_(ACTIVE_STATES),
        )
    )
    return [(row.task_id, row.endpoint_id) for row in rows]


def endpoint_states(conn: Connection, endpoint_ids: list[str]) -> dict[str, dict[str, int]]:
    """Unfinished tasks per endpoint and state (queued at the service, dispatched, running)."""
    rows = conn.execute(
        sa.select(tasks.c.endpoint_id, tasks.c.state, sa.func.count())
        .where(tasks.c.endpoint_id.in_(set(endpoint_ids)), tasks.c.state.in_(ACTIVE_STATES))
        .group_by(tasks.c.endpoint_id, tasks.c.state)
    )
    counts: dict[str, dict[str, int]] = {}
    for endpoint_id, state, n in rows:
        counts.setdefault(endpoint_id, {})[state] = int(n)
    return counts
