"""Deployment secrets kept in the database's ``meta`` table.

Every replica of the service must agree on them (the task-signing key, the key that names task
queues), and a restart must keep them: the database is the one place all replicas share.  Each
is made on first start; when two replicas start at once, the first insert wins and both read it.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from outpost_service.store.database import Database
from outpost_service.store.schema import meta


def load_or_create_secret(database: Database, name: str, make: Callable[[], str]) -> str:
    """The secret ``name``; ``make()`` creates it (once) when the database has none."""
    stored = _read(database, name)
    if stored is None:
        try:
            with database.write() as conn:
                conn.execute(meta.insert().values(key=name, value=make()))
        except sa.exc.IntegrityError:  # another replica made it first: use theirs
            pass
        stored = _read(database, name)
    return str(stored)


def _read(database: Database, name: str) -> str | None:
    with database.read() as conn:
        value = conn.execute(sa.select(meta.c.value).where(meta.c.key == name)).scalar()
    return None if value is None else str(value)
