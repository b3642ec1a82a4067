"""``Journal``: the endpoint's durable record of every task it has taken off its queue.

Why: the endpoint acknowledges a task message as soon as it has it, not when the task is done --
an HPC task may run for hours, longer than RabbitMQ lets a consumer hold an unacked message
(``consumer_timeout``, 30 min by default, closes the channel).  So before the ack, the task is
written here, and from then on the journal, not the queue, is what guarantees it is not lost:

``received``  taken from the queue and acked; not finished.  Replayed into the engine when the
              endpoint starts again (after a crash, a ``kill -9`` or a graceful stop that
              abandoned it).
``finished``  its result is spooled here, waiting for RabbitMQ's publisher confirm
              (see :mod:`outpost_endpoint.spool`); published again after a restart.
``confirmed`` RabbitMQ has the result: the task and result bytes are dropped and only the task
              id stays, as a tombstone, so a late duplicate delivery is recognised and acked
              without running the task again.  Tombstones older than ``tombstone_ttl`` are
              pruned when the journal is opened.

Storage is SQLite in WAL mode with ``synchronous=FULL``: a transaction returns only after its
WAL frames are fsynced, so whatever a method here returned from survives a crash of the process
or of the machine.  One connection is shared by the consumer and publisher threads behind a lock.

Group commit: the fsync, not the row, is what costs (it was ~60% of the endpoint's busy time
with one transaction per write).  So the ``*_many`` methods write a whole burst -- every task of
one delivery burst, every result the engine returned meanwhile, every result of one confirmed
publish batch -- in ONE transaction, and return only after it is committed; and
``confirm_and_finish`` writes the result publisher's whole turn (the tombstones of the batch
RabbitMQ confirmed last, the results it publishes next) in one.  Callers keep the order that
makes this safe: ack a task only after ``accept_many`` returned, publish a result only after
its finish returned, confirm only after RabbitMQ confirmed.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from outpost_endpoint.errors import JournalError

RECEIVED, FINISHED, CONFIRMED = "received", "finished", "confirmed"
#: How long a confirmed task's id is remembered to recognise duplicate deliveries.
TOMBSTONE_TTL = 7 * 24 * 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    task_id    TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    task       BLOB,
    result     BLOB,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_entries_state ON entries (state, updated_at);
"""

_FINISH = (
    "INSERT INTO entries (task_id, state, result, updated_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (task_id) DO UPDATE SET state = excluded.state, "
    "result = excluded.result, task = NULL, updated_at = excluded.updated_at "
    "WHERE entries.state != ?"
)
_CONFIRM = (
    "UPDATE entries SET state = ?, task = NULL, result = NULL, updated_at = ? WHERE task_id = ?"
)


class Journal:
    """See the module docstring.  ``path`` may be ``":memory:"`` (tests only: not durable)."""

    def __init__(self, path: Path | str, *, tombstone_ttl: float = TOMBSTONE_TTL) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "DELETE FROM entries WHERE state = ? AND updated_at < ?",
                (CONFIRMED, time.time() - tombstone_ttl),
            )
        except sqlite3.Error as exc:
            raise JournalError(
                f"cannot open the task journal {self.path}: {exc}; check that the endpoint "
                "directory is writable and not on a full disk"
            ) from exc

    # ------------------------------------------------------------------ writes (each fsynced)
    def accept(self, task_id: str, task: bytes) -> bool:
        """Record a newly delivered task; False if ``task_id`` is already known (a duplicate)."""
        return self.accept_many([(task_id, task)])[0]

    def accept_many(self, tasks: Sequence[tuple[str, bytes]]) -> list[bool]:
        """Record delivered ``(task_id, task)`` pairs in one transaction; per pair, False if
        the id was already known (a duplicate, also within ``tasks``)."""
        now = time.time()
        counts = self._write_many(
            "INSERT OR IGNORE INTO entries (task_id, state, task, updated_at) VALUES (?, ?, ?, ?)",
            [(task_id, RECEIVED, task, now) for task_id, task in tasks],
        )
        return [count == 1 for count in counts]

    def finish(self, task_id: str, result: bytes) -> None:
        """Spool ``result`` until RabbitMQ confirms it (a result for an unknown task is spooled
        too: nothing the engine produced is thrown away)."""
        self.finish_many([(task_id, result)])

    def finish_many(self, results: Sequence[tuple[str, bytes]]) -> None:
        """:meth:`finish` for every ``(task_id, result)`` pair, in one transaction."""
        self.confirm_and_finish((), results)

    def confirm(self, task_id: str) -> None:
        """RabbitMQ confirmed the result: keep only a tombstone."""
        self.confirm_many([task_id])

    def confirm_many(self, task_ids: Sequence[str]) -> None:
        """:meth:`confirm` for every id, in one transaction."""
        self.confirm_and_finish(task_ids, ())

    def confirm_and_finish(
        self, confirmed: Sequence[str], results: Sequence[tuple[str, bytes]]
    ) -> None:
        """:meth:`confirm_many` of ``confirmed``, then :meth:`finish_many` of ``results``, in
        ONE transaction: the result publisher's whole turn (tombstones for the batch RabbitMQ
        confirmed last, spooled results for the next batch) costs one fsync."""
        now = time.time()
        self._transaction(
            [
                (_CONFIRM, [(CONFIRMED, now, task_id) for task_id in confirmed]),
                (
                    _FINISH,
                    [(task_id, FINISHED, result, now, CONFIRMED) for task_id, result in results],
                ),
            ]
        )

    # ------------------------------------------------------------------ reads
    def unfinished(self) -> list[bytes]:
        """The task messages received but not finished, oldest first (to replay)."""
        return [row[0] for row in self._read("task", RECEIVED)]

    def unfinished_ids(self) -> set[str]:
        with self._lock:
            rows = self._db.execute("SELECT task_id FROM entries WHERE state = ?", (RECEIVED,))
            return {row[0] for row in rows.fetchall()}

    def task(self, task_id: str) -> bytes | None:
        """The stored task message of an unfinished task."""
        with self._lock:
            row = self._db.execute(
                "SELECT task FROM entries WHERE task_id = ? AND state = ?", (task_id, RECEIVED)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def spooled(self) -> list[bytes]:
        """The result messages not yet confirmed, oldest first (to publish again)."""
        return [row[0] for row in self._read("result", FINISHED)]

    def state(self, task_id: str) -> str | None:
        """``received``, ``finished``, ``confirmed``, or None for an unknown task."""
        with self._lock:
            row = self._db.execute(
                "SELECT state FROM entries WHERE task_id = ?", (task_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM entries GROUP BY state")
            found = dict(rows.fetchall())
        return {state: int(found.get(state, 0)) for state in (RECEIVED, FINISHED, CONFIRMED)}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ internals
    def _read(self, column: str, state: str) -> list[tuple[bytes]]:
        with self._lock:
            return self._db.execute(
                f"SELECT {column} FROM entries WHERE state = ? ORDER BY updated_at, rowid",
                (state,),
            ).fetchall()

    def _write_many(self, sql: str, rows: Sequence[tuple[object, ...]]) -> list[int]:
        """Run ``sql`` once per row in one fsynced transaction; the rowcount of each."""
        return self._transaction([(sql, rows)])[0]

    def _transaction(
        self, statements: Sequence[tuple[str, Sequence[tuple[object, ...]]]]
    ) -> list[list[int]]:
        """Run each ``(sql, rows)`` once per row, in order, in one fsynced transaction; the
        rowcounts per statement (nothing is written when every ``rows`` is empty)."""
        if not any(rows for _, rows in statements):
            return [[] for _ in statements]
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    counts = [
                        [self._db.execute(sql, row).rowcount for row in rows]
                        for sql, rows in statements
                    ]
                    self._commit()
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
                return counts
        except sqlite3.Error as exc:
            raise JournalError(
                f"cannot write the task journal {self.path}: {exc}; is the disk full?"
            ) from exc

    def _commit(self) -> None:
        """Make the open transaction durable (fsync); the one point tests observe."""
        self._db.execute("COMMIT")
