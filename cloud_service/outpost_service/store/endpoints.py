"""Endpoints: registration, ownership, heartbeats and the counts shown in listings."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from outpost.protocol import TaskState
from outpost_service.store.schema import endpoints, tasks

TERMINAL_STATES = [s.value for s in TaskState if s.is_terminal]
#: The states of unfinished tasks.  Queries for unfinished tasks name these (``IN``) rather than
#: exclude the terminal ones (``NOT IN``): an index on ``(..., state)`` then reads only the
#: unfinished tasks' entries, not those of every finished task kept for retention.
ACTIVE_STATES = [s.value for s in TaskState if not s.is_terminal]


def get(conn: Connection, endpoint_id: str) -> Row[Any] | None:
    """The endpoint row (deleted ones included), whoever owns it."""
    return conn.execute(sa.select(endpoints).where(endpoints.c.endpoint_id == endpoint_id)).first()


def get_owned(conn: Connection, endpoint_id: str, owner: int) -> Row[Any] | None:
    """The live endpoint ``endpoint_id`` if ``owner`` owns it, else None."""
    return conn.execute(
        sa.select(endpoints).where(
            endpoints.c.endpoint_id == endpoint_id,
            endpoints.c.owner == owner,
            endpoints.c.deleted.is_(False),
        )
    ).first()


def owned_ids(conn: Connection, owner: int) -> list[str]:
    """The ids of every endpoint ``owner`` ever registered (deleted ones included)."""
    return list(
        conn.execute(
            sa.select(endpoints.c.endpoint_id)
            .where(endpoints.c.owner == owner)
            .order_by(endpoints.c.endpoint_id)
        ).scalars()
    )


def find_by_name(conn: Connection, owner: int, name: str) -> Row[Any] | None:
    return conn.execute(
        sa.select(endpoints).where(
            endpoints.c.owner == owner, endpoints.c.name == name, endpoints.c.deleted.is_(False)
        )
    ).first()


def insert(
    conn: Connection, endpoint_id: str, owner: int, name: str, metadata: Mapping[str, Any]
) -> None:
    conn.execute(
        endpoints.insert().values(
            endpoint_id=endpoint_id,
            owner=owner,
            name=name,
            metadata=dict(metadata),
            created_at=time.time(),
            details={},
            deleted=False,
        )
    )


def reattach(
    conn: Connection, endpoint_id: str, name: str, metadata: Mapping[str, Any] | None
) -> None:
    """Revive (if deleted) and rename an existing endpoint; keep metadata unless given."""
    values: dict[str, Any] = {"name": name, "deleted": False}
    if metadata is not None:
        values["metadata"] = dict(metadata)
    conn.execute(endpoints.update().where(endpoints.c.endpoint_id == endpoint_id).values(values))


def mark_deleted(conn: Connection, endpoint_id: str) -> None:
    conn.execute(
        endpoints.update().where(endpoints.c.endpoint_id == endpoint_id).values(deleted=True)
    )


def record_heartbeats(conn: Connection, beats: Mapping[str, tuple[str, dict[str, Any]]]) -> None:
    """Store the latest heartbeat per endpoint: ``{endpoint_id: (reported_state, details)}``."""
    if not beats:
        return
    now = time.time()
    conn.execute(
        endpoints.update()
        .where(endpoints.c.endpoint_id == sa.bindparam("b_endpoint_id"))
        .values(
            last_heartbeat=now,
            reported_state=sa.bindparam("b_state"),
            details=sa.bindparam("b_details"),
        ),
        [
            {"b_endpoint_id": eid, "b_state": state, "b_details": details}
            for eid, (state, details) in beats.items()
        ],
    )


def outstanding_counts(conn: Connection, endpoint_ids: Iterable[str]) -> dict[str, int]:
    """Non-terminal tasks per endpoint."""
    rows = conn.execute(
        sa.select(tasks.c.endpoint_id, sa.func.count())
        .where(tasks.c.endpoint_id.in_(set(endpoint_ids)), tasks.c.state.in_(ACTIVE_STATES))
        .group_by(tasks.c.endpoint_id)
    )
    return {row[0]: int(row[1]) for row in rows}
