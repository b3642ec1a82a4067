"""The result watcher: long-polls ``POST /v1/results`` and completes futures.

A few poller threads (at most ``max_pollers``) share the set of outstanding task ids.  An idle
poller takes up to ``chunk`` ids no other poll covers and asks the service for them with
``wait`` seconds of long-poll; ids still pending go back to the shared set, where the next
free poller merges them with ids that arrived meanwhile (they go back to the front of the
line: being older, they are likely to finish first).  So a task submitted while a poll is
in flight is watched at once by another poller instead of waiting for that poll to return.
Pollers sleep on a Condition when nothing is outstanding (no spinning) and back off with
jitter on errors; transient errors never fail a future (results wait at the service).
Results of endpoints the caller neither owns nor trusts load as plain data only
(:mod:`outpost.result_trust`).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from concurrent.futures import Future
from typing import Any

from outpost.client import Client, result_envelope
from outpost.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    OutpostError,
    PermissionDeniedError,
    ServiceError,
)
from outpost.executor.future import OutpostFuture
from outpost.executor.sealer import refuse_sealed
from outpost.protocol import ResultEnvelope, TaskState
from outpost.remote_errors import exception_from_result, is_cancellation
from outpost.result_trust import describe, is_trusted, load_value, origin_of
from outpost.runtime.backoff import backoff_delay

log = logging.getLogger(__name__)

#: Errors that retrying cannot fix: the futures they concern fail with them.
_FATAL = (AuthenticationError, PermissionDeniedError, NotFoundError, InvalidRequestError)


class Watcher:
    """Completes the futures of accepted tasks from the service's results."""

    def __init__(
        self,
        client: Client,
        *,
        wait: float = 20.0,
        chunk: int = 1000,
        max_pollers: int = 4,
        opener: Callable[[ResultEnvelope, bool], ResultEnvelope] | None = None,
        trust: Callable[[], Collection[str]] = frozenset,
    ) -> None:
        self._client = client
        #: The endpoints not ours whose pickled results may be loaded (asked per poll).
        self._trust = trust
        #: Opens end-to-end encrypted results (:class:`~outpost.executor.sealer.Sealer`).
        self._opener = opener
        self._wait = wait
        self._chunk = chunk
        self._max_pollers = max_pollers
        self._cond = threading.Condition()
        self._futures: dict[str, list[OutpostFuture]] = {}
        # Ids no poll covers right now, oldest first (tasks finish roughly in order).
        self._unclaimed: OrderedDict[str, None] = OrderedDict()
        self._pollers = 0
        self._idle = 0
        self._stopping = False

    def watch(self, future: OutpostFuture) -> None:
        """Complete ``future`` (whose ``task_id`` is set) when its task's result arrives."""
        task_id = future.task_id
        if task_id is None:
            raise ValueError("only futures with a task_id can be watched")
        with self._cond:
            self._futures.setdefault(task_id, []).append(future)
            self._unclaimed[task_id] = None
            if self._idle == 0 and self._pollers < self._max_pollers:
                self._pollers += 1
                threading.Thread(
                    target=self._poll_loop, name="outpost-watcher", daemon=True
                ).start()
            self._cond.notify()
        future.add_done_callback(self._unwatch)

    def _unwatch(self, future: Future[Any]) -> None:
        """Stop polling for a future finished another way (e.g. cancelled)."""
        with self._cond:
            task_id = getattr(future, "task_id", None) or ""
            futures = self._futures.get(task_id)
            if futures and future in futures:
                futures.remove(future)
                if not futures:
                    del self._futures[task_id]
                    self._unclaimed.pop(task_id, None)
                    if not self._futures:
                        self._cond.notify_all()

    def stop(self) -> None:
        """Let the pollers end once nothing is outstanding (they keep completing futures)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    @property
    def outstanding(self) -> int:
        with self._cond:
            return len(self._futures)

    # ------------------------------------------------------------------ poller threads
    def _poll_loop(self) -> None:
        failures = 0
        while True:
            with self._cond:
                self._idle += 1
                while not self._unclaimed and not (self._stopping and not self._futures):
                    self._cond.wait()
                self._idle -= 1
                if not self._unclaimed:
                    self._pollers -= 1
                    return
                ids = list(itertools.islice(self._unclaimed, self._chunk))
                for task_id in ids:
                    del self._unclaimed[task_id]
            started = time.monotonic()
            try:
                trust = self._trust()
                results, _pending = self._client.poll_results(ids, wait=self._wait, trust=trust)
            except _FATAL as exc:
                self._fail(ids, exc)
                continue
            except Exception as exc:
                delay = backoff_delay(failures)
                failures += 1
                log.warning(
                    "polling results of %d tasks failed (%s); retrying in %.1fs",
                    len(ids),
                    exc,
                    delay,
                )
                self._give_back(ids, delay)
                continue
            failures = 0
            done: set[str] = set()
            try:
                for item in results:
                    done.add(self._deliver(item, trust))
            except Exception:  # a bug must not strand the ids this poller claimed
                log.exception("completing futures from results failed")
            # A service that answers "nothing yet" at once (ignoring the long-poll) is not spun on.
            early = not results and time.monotonic() - started < min(1.0, self._wait / 2)
            self._give_back([t for t in ids if t not in done], 1.0 if early else 0)

    def _give_back(self, ids: list[str], delay: float) -> None:
        with self._cond:
            if delay:
                self._cond.wait(delay)
            # Back at the front: they are older than anything queued meanwhile, so they are
            # polled next rather than after every newer id (which would starve them).
            for task_id in reversed(ids):
                if task_id in self._futures:
                    self._unclaimed[task_id] = None
                    self._unclaimed.move_to_end(task_id, last=False)

    def _take(self, task_id: str) -> list[OutpostFuture]:
        with self._cond:
            self._unclaimed.pop(task_id, None)
            futures = self._futures.pop(task_id, [])
            if not self._futures:
                self._cond.notify_all()  # idle pollers of a stopped watcher may now end
            return futures

    def _fail(self, ids: list[str], exc: ServiceError) -> None:
        """A non-retryable error: fail the ids it names, or all of them if it names none."""
        named = exc.details.get("task_ids") or [exc.details.get("task_id")]
        concerned = [t for t in ids if t in named] or ids
        for task_id in concerned:
            for future in self._take(task_id):
                future._complete(exception=exc)
        self._give_back([t for t in ids if t not in concerned], 0)

    def _deliver(self, item: Any, trust: Collection[str] = ()) -> str:
        """Complete the futures of one result; returns its task id."""
        task_id = str(item.get("task_id", "")) if isinstance(item, dict) else ""
        try:
            envelope = result_envelope(item)
        except OutpostError as exc:
            for future in self._take(task_id):
                future._complete(exception=exc)
            return task_id
        futures = self._take(envelope.task_id)
        if not futures:
            return envelope.task_id
        origin = origin_of(item)
        trusted = is_trusted(origin, trust) or is_trusted(origin, self._client.trust_endpoints)
        try:
            if self._opener is not None:
                envelope = self._opener(envelope, trusted)
            else:
                refuse_sealed(envelope)
        except OutpostError as exc:
            for future in futures:
                future._complete(exception=exc)
            return envelope.task_id
        if is_cancellation(envelope):
            for future in futures:
                if not future._cancel_locally():
                    future._complete(
                        exception=exception_from_result(envelope, trusted, describe(origin))
                    )
            return envelope.task_id
        value: Any = None
        error: BaseException | None = None
        if envelope.state is TaskState.SUCCESS:
            try:
                value = load_value(envelope, origin, trusted)
            except OutpostError as exc:
                error = exc
        else:
            error = exception_from_result(envelope, trusted, describe(origin))
        for future in futures:
            future._complete(value, error)
        return envelope.task_id
