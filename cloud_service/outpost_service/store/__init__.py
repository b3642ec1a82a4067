"""The SQL store (SQLAlchemy Core): schema, database handle and one repository module per
table family (:mod:`.users`, :mod:`.endpoints`, :mod:`.functions`, :mod:`.tasks`).

Repository functions take a :class:`sqlalchemy.engine.Connection` inside a transaction opened
with :meth:`Database.read` or :meth:`Database.write`, so a caller can group several of them into
one atomic change.
"""

from outpost_service.store.database import Database, redact
from outpost_service.store.schema import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "Database", "redact"]
