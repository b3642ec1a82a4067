"""The database handle: engine set-up per backend, transactions, and the versioned schema.

SQLite is tuned for a multi-threaded server: WAL (readers never block the writer), a busy
timeout, foreign keys, and ``BEGIN IMMEDIATE`` for write transactions so two writers queue on
the busy timeout instead of failing with "database is locked" when a read upgrades to a write.
PostgreSQL is reached through ``postgresql+psycopg://`` URLs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url

from outpost.protocol.conventions import outpost_home
from outpost.protocol.private_files import describe, make_private_dir, tighten
from outpost_service.errors import StoreError
from outpost_service.store.schema import (
    SCHEMA_VERSION,
    endpoint_access,
    meta,
    metadata,
    task_dependencies,
    task_group_counts,
)

_SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Files SQLite keeps beside a database (they hold the same data, and get its mode).
_SQLITE_SIBLINGS = ("-wal", "-shm", "-journal")

log = logging.getLogger(__name__)


def redact(url: str) -> str:
    """``url`` with any password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database url>"


def database_away(error: BaseException) -> bool:
    """True for the database errors that a retry can cure and that say nothing about the data:
    the server is restarting or refusing connections, a connection broke mid-transaction, the
    pool is exhausted, PostgreSQL broke a deadlock or a serialization conflict, SQLite is
    locked (``OperationalError``/``InterfaceError`` on both backends, an invalidated
    connection, the pool's ``TimeoutError``).  Callers answer 503 (API) or put messages back
    (ingest) instead of failing for good; programming and integrity errors are not included."""
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.TimeoutError)


#: PostgreSQL's "too many clients already" and "the database system is starting up": the
#: server refused a *new* connection for a moment, before anything ran, so waiting is safe.
#: (At connect time psycopg leaves ``sqlstate`` unset: the server's message is matched too.)
_BUSY_SQLSTATES = frozenset({"53300", "57P03"})
_BUSY_MESSAGES = ("too many clients", "remaining connection slots", "starting up")
#: Seconds a request waits for such a server before the error (503) goes to the client.
CONNECT_PATIENCE = 10.0
#: Seconds a new PostgreSQL connection may take (libpq's ``connect_timeout``).
CONNECT_TIMEOUT = 5


def _connect(engine: Engine) -> Connection:
    """A connection from ``engine``'s pool; waits (backoff, at most :data:`CONNECT_PATIENCE`)
    while PostgreSQL refuses new connections because all its slots are taken -- a shared
    server under load did that, and each refusal was a 500 until 503 answered it."""
    deadline = time.monotonic() + CONNECT_PATIENCE
    delay = 0.05
    while True:
        try:
            return engine.connect()
        except sa.exc.OperationalError as exc:
            busy = getattr(exc.orig, "sqlstate", None) in _BUSY_SQLSTATES or any(
                text in str(exc.orig) for text in _BUSY_MESSAGES
            )
            if not busy or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)  # a backoff before reconnecting, not a synchronisation
            delay = min(delay * 2, 1.0)


def _normalize(url: str) -> str:
    # Plain postgresql:// would pick psycopg2, which is not installed; psycopg 3 is.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def create_engine(url: str) -> Engine:
    """An engine for ``url`` with the per-backend settings described in the module docstring."""
    url = _normalize(url)
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise StoreError(
            f"invalid database URL {url!r}: {exc}; use sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST/DB"
        ) from exc
    if parsed.get_backend_name() != "sqlite":
        # Enough connections for every request thread plus ingest (see ``serve --threads``).
        # A server that does not answer (a host down, a dropped route) fails a new connection
        # after CONNECT_TIMEOUT instead of holding the request thread for minutes.
        return sa.create_engine(
            url,
            pool_pre_ping=True,
            pool_size=10,
            max_overflow=40,
            connect_args={"connect_timeout": CONNECT_TIMEOUT},
        )
    pool: dict[str, Any] = {}
    if parsed.database and parsed.database != ":memory:":
        if not parsed.database.startswith("file:"):
            private_sqlite_file(Path(parsed.database).expanduser())
        pool = {"pool_size": 10, "max_overflow": 40}
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": _SQLITE_BUSY_TIMEOUT_MS / 1000},
        **pool,
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("outpost_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def private_sqlite_file(path: Path) -> None:
    """Make the SQLite database ``path`` private before SQLite opens it: it holds the task
    signing private key and every task's data.  Missing folders are made 0700, a new database
    file 0600 (SQLite gives its -wal/-shm/-journal files the database file's mode), and an
    existing database and its siblings lose group/other access -- as does its folder when it
    is inside ``OUTPOST_HOME`` (ours; a folder elsewhere may be the operator's) -- logged once.
    """
    path = path.absolute()
    make_private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    targets = [path] + [path.with_name(path.name + suffix) for suffix in _SQLITE_SIBLINGS]
    home = outpost_home().absolute()
    if path.parent == home or home in path.parent.parents:
        targets.append(path.parent)
    changed = tighten(targets)
    if changed:
        log.warning(describe(changed, path.parent))


class Database:
    """An engine plus the two kinds of transaction the repositories run in."""

    def __init__(self, url: str) -> None:
        self.url = _normalize(url)
        try:
            self.engine = create_engine(self.url)
        except StoreError:
            raise
        except Exception as exc:  # unknown dialect or driver, bad options
            raise StoreError(
                f"cannot use database {redact(self.url)}: {exc}; outpost-service supports "
                "sqlite:///PATH and postgresql+psycopg://USER@HOST/DB"
            ) from exc
        self._writer = self.engine.execution_options(outpost_write=True)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction (rolled back on error, committed otherwise)."""
        with _connect(self.engine) as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed when the block ends, rolled back on error."""
        with _connect(self._writer) as conn, conn.begin():
            yield conn

    def ensure_schema(self) -> None:
        """Create the schema in an empty database; refuse a database of another version."""
        try:
            with self.write() as conn:
                inspector = sa.inspect(conn)
                if not inspector.has_table(meta.name):
                    existing = [t for t in metadata.tables if inspector.has_table(t)]
                    if existing:
                        raise StoreError(
                            f"database {redact(self.url)} has outpost tables {existing} but no "
                            "schema version; it was not created by outpost-service init-db"
                        )
                    metadata.create_all(conn)
                    conn.execute(
                        meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION))
                    )
                    return
                found = conn.execute(
                    sa.select(meta.c.value).where(meta.c.key == "schema_version")
                ).scalar()
                while found in MIGRATIONS:  # one version at a time, in this transaction
                    MIGRATIONS[found](conn)
                    found = str(int(found) + 1)
                    conn.execute(
                        meta.update().where(meta.c.key == "schema_version").values(value=found)
                    )
        except sa.exc.IntegrityError:  # another process created it at the same moment
            return self.ensure_schema()
        except sa.exc.OperationalError as exc:
            raise StoreError(f"cannot open database {redact(self.url)}: {exc.orig}") from exc
        if found != str(SCHEMA_VERSION):
            raise StoreError(
                f"database {redact(self.url)} has schema version {found}, this outpost-service "
                f"reads schema version {SCHEMA_VERSION}; use a database made by the same "
                "version, or a new empty one"
            )

    def dispose(self) -> None:
        self.engine.dispose()


def migrate_from_1(conn: Connection) -> None:
    """Upgrade a version-1 database to version 2: three columns on ``tasks`` (existing tasks
    count as published -- version 1 answered a submit only after the confirm -- and never
    expire) and their indexes.  Runs in the caller's write transaction."""
    conn.exec_driver_sql("ALTER TABLE tasks ADD COLUMN published BOOLEAN NOT NULL DEFAULT TRUE")
    conn.exec_driver_sql("ALTER TABLE tasks ADD COLUMN request_id VARCHAR(64)")
    conn.exec_driver_sql("ALTER TABLE tasks ADD COLUMN deadline FLOAT")
    conn.exec_driver_sql("CREATE INDEX ix_tasks_deadline ON tasks (deadline)")
    conn.exec_driver_sql("CREATE INDEX ix_tasks_published ON tasks (published)")
    conn.exec_driver_sql("CREATE INDEX ix_tasks_owner_request ON tasks (owner, request_id)")


def migrate_from_2(conn: Connection) -> None:
    """Upgrade a version-2 database to version 3: ``tasks.retried_by`` (no task of an older
    version was retried, so NULL everywhere is right).  Runs in the caller's write
    transaction."""
    conn.exec_driver_sql("ALTER TABLE tasks ADD COLUMN retried_by VARCHAR(36)")


def migrate_from_3(conn: Connection) -> None:
    """Upgrade a version-3 database to version 4: ``endpoints.allowed_functions`` (NULL: every
    endpoint keeps accepting any function), the empty ``endpoint_access`` table (nobody
    shares yet) and ``tokens.scopes`` (NULL: existing tokens keep every right).  Each step is
    skipped if already there.  Runs in the caller's write transaction."""
    inspector = sa.inspect(conn)
    if "scopes" not in {c["name"] for c in inspector.get_columns("tokens")}:
        conn.exec_driver_sql("ALTER TABLE tokens ADD COLUMN scopes VARCHAR(64)")
    if "allowed_functions" not in {c["name"] for c in inspector.get_columns("endpoints")}:
        # JSON on both backends, like the column sa.JSON creates in a new database
        conn.exec_driver_sql("ALTER TABLE endpoints ADD COLUMN allowed_functions JSON")
    endpoint_access.create(conn, checkfirst=True)


def migrate_from_4(conn: Connection) -> None:
    """Upgrade a version-4 database to version 5: the expiry sweep's index
    ``ix_tasks_state_deadline`` replaces ``ix_tasks_deadline`` (no row changes; building it
    takes a few seconds per million tasks).  Each step is skipped if already done.  Runs in the
    caller's write transaction."""
    indexes = {index["name"] for index in sa.inspect(conn).get_indexes("tasks")}
    if "ix_tasks_state_deadline" not in indexes:
        conn.exec_driver_sql("CREATE INDEX ix_tasks_state_deadline ON tasks (state, deadline)")
    if "ix_tasks_deadline" in indexes:
        conn.exec_driver_sql("DROP INDEX ix_tasks_deadline")


def migrate_from_5(conn: Connection) -> None:
    """Upgrade a version-5 database to version 6: the empty ``task_group_counts`` table (groups
    made by older SDKs declare no count; their summary shows none).  Skipped if already there.
    Runs in the caller's write transaction."""
    task_group_counts.create(conn, checkfirst=True)


def migrate_from_6(conn: Connection) -> None:
    """Upgrade a version-6 database to version 7: the empty ``task_dependencies`` table (no
    older task waits for another: older SDKs resolved dependencies themselves).  Skipped if
    already there.  Runs in the caller's write transaction."""
    task_dependencies.create(conn, checkfirst=True)


#: The upgrade of each older schema version to the next one; each runs in the write
#: transaction of :meth:`Database.ensure_schema`, which then records the new version.
MIGRATIONS = {
    "1": migrate_from_1,
    "2": migrate_from_2,
    "3": migrate_from_3,
    "4": migrate_from_4,
    "5": migrate_from_5,
    "6": migrate_from_6,
}
