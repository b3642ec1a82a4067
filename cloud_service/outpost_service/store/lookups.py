"""Queries the store modules share."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection


def absent(
    conn: Connection, column: sa.Column[Any], ids: Iterable[str], *conditions: Any
) -> list[str]:
    """The ids among ``ids`` that no row of ``column``'s table holds (of the rows that meet
    ``conditions``), sorted: what a request names that is unknown, or not the caller's."""
    wanted = set(ids)
    found = set(conn.execute(sa.select(column).where(column.in_(wanted), *conditions)).scalars())
    return sorted(wanted - found)
