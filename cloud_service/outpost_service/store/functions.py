"""Registered functions, content-addressed by the sha256 of their serialized payload."""

from __future__ import annotations

import time
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from outpost_service.store.lookups import absent
from outpost_service.store.schema import functions


def exists(conn: Connection, function_id: str) -> bool:
    return not missing(conn, [function_id])


def insert(
    conn: Connection, function_id: str, payload: bytes, name: str | None, user_id: int
) -> None:
    """Insert a function; the caller checked it is new (see :func:`exists`)."""
    conn.execute(
        functions.insert().values(
            function_id=function_id,
            payload=payload,
            name=name,
            created_by=user_id,
            created_at=time.time(),
        )
    )


def missing(conn: Connection, function_ids: Iterable[str]) -> list[str]:
    """The ids among ``function_ids`` that are not registered."""
    return absent(conn, functions.c.function_id, function_ids)


def payloads(conn: Connection, function_ids: Iterable[str]) -> dict[str, bytes]:
    rows = conn.execute(
        sa.select(functions.c.function_id, functions.c.payload).where(
            functions.c.function_id.in_(set(function_ids))
        )
    )
    return {row.function_id: bytes(row.payload) for row in rows}
