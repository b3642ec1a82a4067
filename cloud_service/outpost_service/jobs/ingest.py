"""The ingest job: what endpoints report, stored.

Results and heartbeats arrive in batches (:mod:`outpost_service.broker.ingest` gathers them
from RabbitMQ).  A batch is stored in one transaction: each result finishes its task -- the
first final state of a task wins, later results for it are ignored, so exactly one result is
stored per task -- and each endpoint's latest heartbeat is recorded.  Then the long-polls
waiting for the stored results are woken.  Between batches the job deletes the tasks past their
retention.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from outpost.protocol import EndpointStatus, ResultEnvelope
from outpost_service import dependencies
from outpost_service.metrics import instruments
from outpost_service.notifier import ResultNotifier
from outpost_service.store import Database
from outpost_service.store import endpoints as endpoint_store
from outpost_service.store import tasks as task_store
from outpost_service.store.database import database_away

log = logging.getLogger(__name__)

#: What an endpoint reports.
Report: TypeAlias = ResultEnvelope | EndpointStatus


@dataclass(eq=False)
class IngestJob:
    """Stores reports, wakes their waiters, and purges what is past retention."""

    database: Database
    notifier: ResultNotifier | None = None
    #: Seconds a finished task is kept.
    retention: float = 14 * 24 * 3600.0
    #: Seconds between retention sweeps.
    purge_interval: float = 300.0
    #: heartbeat ``details`` over this many bytes are stored as a note instead (None: any)
    max_details_bytes: int | None = None
    #: Publishes the tasks released by stored results (see :mod:`..dependencies`); None:
    #: the sweeper of ``outpost-service serve`` publishes them.
    publish_released: Callable[[list[str]], None] | None = None
    _next_purge: float = field(default=0.0, init=False)

    def store(self, reports: Sequence[Report]) -> None:
        """Store ``reports`` in one transaction, then wake the long-polls waiting for the
        results it stored.  Raises what the database raised; nothing is stored then."""
        results = [r for r in reports if isinstance(r, ResultEnvelope)]
        beats: dict[str, tuple[str, dict[str, Any]]] = {
            r.endpoint_id: (r.state, r.details) for r in reports if isinstance(r, EndpointStatus)
        }
        try:
            with self.database.write() as conn:
                stored = task_store.finish(conn, results, self.retention)
                released = dependencies.release(conn, results, stored, self.retention)
                endpoint_store.record_heartbeats(conn, beats)
        except Exception:
            instruments.INGEST_FAILURES.inc()
            raise
        _observe(results, len(stored))
        stored = stored + released.failed
        if released.queued and self.publish_released is not None:
            self.publish_released(released.queued)
        if stored and self.notifier is not None:
            self.notifier.notify(stored)

    def awaited(self, reports: Sequence[Report]) -> bool:
        """Whether a long-poll waits for one of these results (``ResultNotifier.awaiting``):
        then they are worth storing at once, without waiting for a fuller batch."""
        if self.notifier is None:
            return False
        return self.notifier.awaited(r.task_id for r in reports if isinstance(r, ResultEnvelope))

    def bounded(self, status: EndpointStatus, size: int) -> EndpointStatus:
        """``status`` with its details replaced by a note when the message is over
        ``max_details_bytes``: the heartbeat still counts (the endpoint stays online), but a
        huge blob is not stored and served by every ``GET /v1/endpoints``."""
        limit = self.max_details_bytes
        if limit is None or size <= limit:
            return status
        log.warning(
            "endpoint %s sent a heartbeat of %d bytes, over max_metadata_bytes (%d); its "
            "details are not stored",
            status.endpoint_id,
            size,
            limit,
        )
        note = f"heartbeat details of {size:,} bytes dropped: over the limit of {limit:,} bytes"
        return status.model_copy(update={"details": {"error": note}})

    def purge_if_due(self) -> None:
        """Delete tasks past their retention, at most every ``purge_interval`` seconds -- or
        at once again while more are due than one batch deletes."""
        now = time.time()
        if now < self._next_purge:
            return
        self._next_purge = now + self.purge_interval
        try:
            with self.database.write() as conn:
                purged = task_store.purge_expired(conn, now, task_store.PURGE_BATCH)
        except Exception as exc:
            if database_away(exc):
                log.warning(
                    "retention sweep: the database is away; will retry in %.0fs",
                    self.purge_interval,
                )
            else:
                log.exception("retention sweep failed; will retry in %.0fs", self.purge_interval)
            return
        if purged:
            log.info("retention sweep deleted %d expired task(s)", purged)
        if purged >= task_store.PURGE_BATCH:  # more are due: the next quiet moment goes on
            self._next_purge = now


def _observe(results: Sequence[ResultEnvelope], stored: int) -> None:
    """Record a committed batch: results stored and duplicates, and each result's age (the
    ingest lag: now less the worker's ``timing['finished']``, on the endpoint's clock, so a
    skewed clock shifts it; never below 0)."""
    if stored:
        instruments.INGESTED.labels("stored").inc(stored)
    if len(results) > stored:
        instruments.INGESTED.labels("duplicate").inc(len(results) - stored)
    now = time.time()
    for result in results:
        finished = result.timing.get("finished")
        if finished is not None:
            instruments.RESULT_AGE.observe(max(0.0, now - finished))
