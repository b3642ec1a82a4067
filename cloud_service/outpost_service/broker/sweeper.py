"""``Sweeper``: publishes again the tasks that were stored but never confirmed by RabbitMQ.

A submit commits its tasks (``published`` false) before publishing them; the row is marked
published after RabbitMQ's confirms.  The rows left unpublished are the tasks of a submit whose
publish failed (the client got a 503 naming them) or whose process died between the commit and
the confirms.  The sweeper, a thread of ``outpost-service serve``, looks every ``interval``
seconds for unfinished, unpublished tasks older than ``republish_after`` (so it does not race a
submit that is still publishing) and publishes them, a batch at a time, oldest first.

A task published by both the submit and the sweeper is delivered twice; the endpoint's journal
recognises the second delivery and the service keeps one result per task.

The same thread fails the tasks whose expiry deadline passed (:mod:`outpost_service.expiry`).
"""

from __future__ import annotations

import logging
import threading
import time

from outpost_service.errors import BrokerUnavailable, ServiceError
from outpost_service.expiry import expire_due
from outpost_service.state import ServiceState
from outpost_service.store import tasks as task_store
from outpost_service.submission import envelopes_for, publish

log = logging.getLogger(__name__)

#: Most tasks republished per publish (one batch of confirms).
BATCH = 1000


class Sweeper:
    """See the module docstring."""

    def __init__(
        self, state: ServiceState, *, republish_after: float, interval: float | None = None
    ) -> None:
        self.state = state
        self.republish_after = republish_after
        self.interval = interval if interval is not None else min(10.0, republish_after)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="outpost-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def sweep(self) -> int:
        """Publish every unpublished task old enough; return how many were published."""
        done = 0
        while not self._stop.is_set():
            before = time.time() - self.republish_after
            with self.state.database.read() as conn:
                rows = task_store.unpublished(conn, before, BATCH)
            if not rows:
                break
            ids = [row.task_id for row in rows]
            publish(self.state, envelopes_for(self.state, rows), ids)
            log.info("republished %d task(s) RabbitMQ had not confirmed before", len(ids))
            done += len(ids)
            if len(rows) < BATCH:
                break
        return done

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                expire_due(self.state)
            except Exception:  # the database is away: next round
                log.exception("expiry sweep failed; will retry in %.0fs", self.interval)
            try:
                self.sweep()
            except BrokerUnavailable as exc:
                log.warning("sweeper: RabbitMQ still unavailable (%s); will retry", exc)
            except ServiceError as exc:
                log.error("sweeper: %s; will retry", exc)
            except Exception:  # a bug must not end the sweeps
                log.exception("sweeper failed; will retry in %.0fs", self.interval)
