"""``Sweeper``: publishes again the tasks that were stored but never confirmed by RabbitMQ.

A submit commits its tasks (``published`` false) before publishing them; the row is marked
published after RabbitMQ's confirms.  The rows left unpublished are the tasks of a submit whose
publish failed (the client got a 503 naming them) or whose process died between the commit and
the confirms.  The sweeper, a thread of ``outpost-service serve``, looks every ``interval``
seconds for unfinished, unpublished tasks older than ``republish_after`` (so it does not race a
submit that is still publishing) and publishes them, a batch at a time, oldest first.

A task published by both the submit and the sweeper is delivered twice; the endpoint's journal
recognises the second delivery and the service keeps one result per task.

The same thread fails the tasks whose expiry deadline passed (:mod:`.expiry`).

Every ``serve`` and every ``ingest`` process runs a sweeper (so a deployment of ``serve
--no-ingest`` web nodes and standalone ``ingest`` consumers sweeps as long as any of them
runs), but one at a time: a round starts only in the process holding the ``sweeper`` lease
(:mod:`outpost_service.store.leases`, a row in the database).  The holder renews it each round
and before each batch; it lapses ``lease_ttl`` seconds after a holder died, and is released at
once by a holder that stops or cannot reach RabbitMQ, so another process takes over.  Should
two sweep at once anyway (a round longer than the lease, clock skew), nothing breaks: a task
republished twice is delivered twice and run once (the endpoint journal), and an expiry is
stored once (:func:`..store.tasks.finish` locks the rows and compares the state) and only the
process that stored it tells the endpoint to cancel.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

import sqlalchemy as sa

from outpost_service.config import ServiceConfig
from outpost_service.errors import BrokerUnavailable, ServiceError
from outpost_service.jobs.expiry import expire_due
from outpost_service.state import ServiceState
from outpost_service.store import leases
from outpost_service.store import tasks as task_store
from outpost_service.store.database import database_away
from outpost_service.submission import envelopes_for, publish

log = logging.getLogger(__name__)

#: Most tasks republished per publish (one batch of confirms).
BATCH = 1000
#: The lease every sweeper of a deployment competes for.
LEASE = "sweeper"
#: The shortest lease (seconds): a holder killed with SIGKILL is replaced after at most this.
LEASE_MIN_TTL = 10.0


class Sweeper:
    """See the module docstring."""

    def __init__(
        self,
        state: ServiceState,
        *,
        republish_after: float,
        interval: float | None = None,
        owns_state: bool = False,
    ) -> None:
        self.state = state
        self._owns_state = owns_state  # close its connections on stop (standalone_sweeper)
        self.republish_after = republish_after
        self.interval = interval if interval is not None else min(10.0, republish_after)
        #: Seconds after its last renewal at which another process may take the lease: a
        #: few rounds, and far longer than publishing one batch takes.
        self.lease_ttl = max(3 * self.interval, LEASE_MIN_TTL)
        #: This sweeper's name in the lease row (host, pid, and a nonce for tests that run
        #: several sweepers in one process).
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="outpost-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.release()
        if self._owns_state:
            self.state.close()

    def hold_lease(self) -> bool:
        """Take or renew the deployment's sweeper lease; False while another process has it
        (or the database is away)."""
        try:
            with self.state.database.write() as conn:
                return leases.acquire(conn, LEASE, self.holder, self.lease_ttl, time.time())
        except sa.exc.IntegrityError:  # another process took the free lease at the same moment
            return False
        except sa.exc.SQLAlchemyError as exc:
            log.warning(
                "sweeper: cannot reach the database for its lease (%s); will retry",
                _first_line(exc),
            )
            return False

    def release(self) -> None:
        """Give the lease up so another process sweeps at once."""
        try:
            with self.state.database.write() as conn:
                leases.release(conn, LEASE, self.holder)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("sweeper: could not release its lease (%s); it lapses by itself", exc)

    def run_once(self) -> bool:
        """One round -- expiry, then republishing -- if this process holds the lease;
        returns whether it did."""
        if not self.hold_lease():
            return False
        try:
            expire_due(self.state)
        except Exception as exc:
            if not database_away(exc):
                log.exception("expiry sweep failed; will retry in %.0fs", self.interval)
            else:  # the database is away: next round, without a traceback
                log.warning("expiry sweep: the database is away (%s); will retry", _first_line(exc))
        try:
            self.sweep(renew=True)
        except BrokerUnavailable as exc:
            log.warning("sweeper: RabbitMQ still unavailable (%s); will retry", exc)
            self.release()  # another process may reach it
        except ServiceError as exc:
            log.error("sweeper: %s; will retry", exc)
        except sa.exc.SQLAlchemyError as exc:
            if not database_away(exc):
                raise
            log.warning("sweeper: the database is away (%s); will retry", _first_line(exc))
        return True

    def sweep(self, *, renew: bool = False) -> int:
        """Publish every unpublished task old enough; return how many were published.  With
        ``renew``, the lease is renewed before each batch and the sweep ends if it was lost."""
        done = 0
        while not self._stop.is_set():
            if renew and done and not self.hold_lease():
                break
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
                self.run_once()
            except Exception:  # a bug must not end the sweeps
                log.exception("sweeper failed; will retry in %.0fs", self.interval)


def _first_line(error: BaseException) -> str:
    """The database's own message, first line (the full one repeats the SQL)."""
    text = str(getattr(error, "orig", None) or error).strip().splitlines()
    return text[0] if text else type(error).__name__


def standalone_sweeper(config: ServiceConfig) -> Sweeper:
    """A sweeper with connections of its own, for a process without the HTTP app
    (``outpost-service ingest``); :meth:`Sweeper.stop` closes them."""
    state = ServiceState.build(config)  # (its publisher signs republished tasks)
    return Sweeper(state, republish_after=config.republish_after, owns_state=True)
