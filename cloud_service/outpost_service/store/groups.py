"""Task-group counts: how many tasks each SDK client meant to submit to a group.

A group is a label on tasks, so the tasks alone cannot show a campaign that shrank because some
submits never reached the service.  Each submit request of an executor declares how many tasks
it has accepted for its group so far (``group_submitted``); the largest count per client is
kept (a late retry of an older request never lowers it) and the group's ``submitted`` is the
sum over its clients.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from outpost_service.store.schema import task_group_counts


def declare(conn: Connection, owner: int, task_group_id: str, client_id: str, count: int) -> None:
    """Record that ``client_id`` accepted ``count`` tasks for the group (keeps the maximum)."""
    table = task_group_counts
    values = {
        "owner": owner,
        "task_group_id": task_group_id,
        "client_id": client_id,
        "submitted": count,
        "updated_at": time.time(),
    }
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    insert = dialect.insert(table).values(**values)
    larger = sa.case(
        (insert.excluded.submitted > table.c.submitted, insert.excluded.submitted),
        else_=table.c.submitted,
    )
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=[table.c.owner, table.c.task_group_id, table.c.client_id],
            set_={"submitted": larger, "updated_at": insert.excluded.updated_at},
        )
    )


def submitted(conn: Connection, owner: int, task_group_id: str) -> int | None:
    """The group's declared count over every client, or None when no client declared one."""
    total = conn.execute(
        sa.select(sa.func.sum(task_group_counts.c.submitted)).where(
            task_group_counts.c.owner == owner,
            task_group_counts.c.task_group_id == task_group_id,
        )
    ).scalar()
    return None if total is None else int(total)
