"""Who may use an endpoint: its owner, plus the users it is shared with (``endpoint_access``),
and which functions may run on it (``endpoints.allowed_functions``, None: any).

Sharing lets other users see the endpoint and submit to it; it never shows them anyone else's
tasks -- those stay filtered by the task's owner (see :mod:`.tasks`).  docs/SECURITY.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from outpost_service.store.lookups import absent
from outpost_service.store.schema import endpoint_access, endpoints, users


def _usable_by(user_id: int) -> sa.ColumnElement[bool]:
    """The live endpoints ``user_id`` owns or was given access to."""
    shared = sa.select(endpoint_access.c.endpoint_id).where(endpoint_access.c.user_id == user_id)
    return sa.and_(
        endpoints.c.deleted.is_(False),
        sa.or_(endpoints.c.owner == user_id, endpoints.c.endpoint_id.in_(shared)),
    )


def _with_owner_name() -> sa.Select[Any]:
    return sa.select(endpoints, users.c.name.label("owner_name")).join(
        users, users.c.user_id == endpoints.c.owner
    )


def get_usable(conn: Connection, endpoint_id: str, user_id: int) -> Row[Any] | None:
    """The live endpoint (with ``owner_name``) if ``user_id`` owns it or it is shared with them."""
    return conn.execute(
        _with_owner_name().where(endpoints.c.endpoint_id == endpoint_id, _usable_by(user_id))
    ).first()


def list_usable(conn: Connection, user_id: int) -> list[Row[Any]]:
    """Every live endpoint ``user_id`` may use: their own first, then those shared with them."""
    return list(
        conn.execute(
            _with_owner_name()
            .where(_usable_by(user_id))
            .order_by(
                sa.case((endpoints.c.owner == user_id, 0), else_=1),
                endpoints.c.created_at,
                endpoints.c.name,
            )
        )
    )


def not_usable(conn: Connection, endpoint_ids: Iterable[str], user_id: int) -> list[str]:
    """The ids among ``endpoint_ids`` that are unknown, deleted, or neither owned by nor shared
    with ``user_id``."""
    return absent(conn, endpoints.c.endpoint_id, endpoint_ids, _usable_by(user_id))


def owners(conn: Connection, endpoint_ids: Iterable[str]) -> dict[str, int]:
    """``{endpoint_id: owner's user_id}`` of the known endpoints among ``endpoint_ids``."""
    rows = conn.execute(
        sa.select(endpoints.c.endpoint_id, endpoints.c.owner).where(
            endpoints.c.endpoint_id.in_(set(endpoint_ids))
        )
    )
    return {row.endpoint_id: int(row.owner) for row in rows}


def refused_functions(conn: Connection, pairs: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    """The ``(endpoint_id, function_id)`` pairs whose endpoint has an allow-list without that
    function, as ``{"endpoint_id", "function_id"}`` dicts (sorted, each pair once)."""
    wanted = set(pairs)
    rows = conn.execute(
        sa.select(endpoints.c.endpoint_id, endpoints.c.allowed_functions).where(
            endpoints.c.endpoint_id.in_({e for e, _ in wanted}),
            endpoints.c.allowed_functions.is_not(None),
        )
    )
    allowed = {
        row.endpoint_id: set(row.allowed_functions)
        for row in rows
        if row.allowed_functions is not None
    }
    return [
        {"endpoint_id": e, "function_id": f}
        for e, f in sorted(wanted)
        if e in allowed and f not in allowed[e]
    ]


def policy(conn: Connection, endpoint_id: str) -> tuple[list[str], list[str] | None]:
    """``(allowed user names, allowed function ids or None)`` of an endpoint."""
    names = conn.execute(
        sa.select(users.c.name)
        .join(endpoint_access, endpoint_access.c.user_id == users.c.user_id)
        .where(endpoint_access.c.endpoint_id == endpoint_id)
        .order_by(users.c.name)
    ).scalars()
    functions = conn.execute(
        sa.select(endpoints.c.allowed_functions).where(endpoints.c.endpoint_id == endpoint_id)
    ).scalar()
    return list(names), None if functions is None else list(functions)


def user_ids(conn: Connection, names: Iterable[str]) -> dict[str, int]:
    """``{name: user_id}`` of the known users among ``names``."""
    rows = conn.execute(
        sa.select(users.c.name, users.c.user_id).where(users.c.name.in_(set(names)))
    )
    return {row.name: int(row.user_id) for row in rows}


def set_policy(
    conn: Connection,
    endpoint_id: str,
    allowed_user_ids: Sequence[int],
    allowed_functions: Sequence[str] | None,
) -> None:
    """Replace the endpoint's access list and function allow-list (in the caller's write
    transaction, so a concurrent submit sees the old policy or the new one, never a mix)."""
    conn.execute(endpoint_access.delete().where(endpoint_access.c.endpoint_id == endpoint_id))
    if allowed_user_ids:
        now = time.time()
        conn.execute(
            endpoint_access.insert(),
            [
                {"endpoint_id": endpoint_id, "user_id": u, "granted_at": now}
                for u in allowed_user_ids
            ],
        )
    conn.execute(
        endpoints.update()
        .where(endpoints.c.endpoint_id == endpoint_id)
        # sa.null(): a Python None would be stored as the JSON text 'null', not SQL NULL
        .values(
            allowed_functions=sa.null() if allowed_functions is None else list(allowed_functions)
        )
    )
