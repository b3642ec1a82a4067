"""Leases: one process of a deployment at a time does a deployment-wide chore.

Every ``serve`` and every ``ingest`` process runs a sweeper (republish, expiry); with several
web nodes and ingest consumers on one database they would all republish the same unconfirmed
tasks.  A lease is a row of the ``meta`` table (key ``lease:<name>``, value ``"<holder>
<until>"``; no schema change): the holder renews it every round, any other process takes it
over once ``until`` has passed (its holder died or hangs), and a holder that stops releases it.
Rows are read ``FOR UPDATE`` on PostgreSQL and under ``BEGIN IMMEDIATE`` on SQLite, so two
processes cannot both take a free lease.  Times are each host's clock: keep hosts on NTP (a
large skew can let two processes hold it at once, which is wasteful but harmless -- see
:mod:`outpost_service.jobs.sweep`).
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from outpost_service.store.schema import meta

log = logging.getLogger(__name__)


def _key(name: str) -> str:
    return f"lease:{name}"


def holder_of(conn: Connection, name: str) -> tuple[str, float] | None:
    """``(holder, until)`` of lease ``name``, or None if it was never taken."""
    value = conn.execute(sa.select(meta.c.value).where(meta.c.key == _key(name))).scalar()
    if value is None:
        return None
    holder, _, until = str(value).rpartition(" ")
    try:
        return holder, float(until)
    except ValueError:  # unreadable: treat as expired
        return holder, 0.0


def acquire(conn: Connection, name: str, holder: str, ttl: float, now: float) -> bool:
    """Take or renew lease ``name`` for ``holder`` until ``now + ttl``; False if another
    holder's lease is still running.  Run in a write transaction.  On PostgreSQL a concurrent
    first insert makes the later one raise ``IntegrityError`` (the caller counts it as
    not taken)."""
    key = _key(name)
    current = conn.execute(
        sa.select(meta.c.value).where(meta.c.key == key).with_for_update()
    ).scalar()
    value = f"{holder} {now + ttl!r}"
    if current is None:
        conn.execute(meta.insert().values(key=key, value=value))
        log.info("lease %s taken by %s", name, holder)
        return True
    owner, _, until_text = str(current).rpartition(" ")
    try:
        until = float(until_text)
    except ValueError:
        until = 0.0
    if owner != holder and until >= now:
        return False
    conn.execute(meta.update().where(meta.c.key == key).values(value=value))
    if owner != holder:
        log.info("lease %s taken by %s (from %s, expired %.1f s ago)", name, holder, owner,
                 now - until)  # fmt: skip
    return True


def release(conn: Connection, name: str, holder: str) -> None:
    """End ``holder``'s lease ``name`` now (if it still holds it), so another process may take
    it at once.  Run in a write transaction."""
    key = _key(name)
    current = conn.execute(
        sa.select(meta.c.value).where(meta.c.key == key).with_for_update()
    ).scalar()
    if current is not None and str(current).rpartition(" ")[0] == holder:
        conn.execute(meta.update().where(meta.c.key == key).values(value=f"{holder} 0.0"))
