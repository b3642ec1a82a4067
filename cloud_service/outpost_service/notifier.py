"""Wake-ups for result long-polls.

The ingest consumer (and cancel) call :meth:`ResultNotifier.notify` after committing results;
long-polls wait on a generation counter under one :class:`threading.Condition` and re-read the
database when it moves.  When ingest runs in another process nothing here is notified, so
waiters fall back to re-checking the database every ``poll_interval`` seconds.

Each generation also records *which* tasks finished, for the last ``history`` generations, so a
long-poll woken by results of other tasks can tell (:meth:`ResultNotifier.concerns`) that none
of its own are among them and go back to waiting without a database query: with many
clients or thousands of outstanding ids, re-reading every waiter's ids on every commit would
make each ingest commit cost O(waiters x ids).
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Set

#: A long-poll for at most this many ids marks them urgent for ingest (see ``awaiting``).
URGENT_MAX = 16


class ResultNotifier:
    """A generation counter that moves whenever some task finishes in this process."""

    def __init__(self, poll_interval: float = 0.25, *, history: int = 4096) -> None:
        self._condition = threading.Condition()
        self._generation = 0
        # (generation, the ids it finished, or None when not told): the newest ``history``.
        self._history: deque[tuple[int, frozenset[str] | None]] = deque(maxlen=history)
        self._urgent: Counter[str] = Counter()  # ids small long-polls are waiting for
        #: Set by ingest: called (from the request thread) when a small poll starts waiting,
        #: so a result already received but not yet committed is committed now.
        self.on_urgent: Callable[[], None] | None = None
        self._closed = False
        self.poll_interval = poll_interval
        #: True when an ingest consumer in this process notifies us.
        self.local_source = False

    @property
    def generation(self) -> int:
        with self._condition:
            return self._generation

    @property
    def closed(self) -> bool:
        return self._closed

    def notify(self, task_ids: Iterable[str] = ()) -> None:
        """Some tasks (``task_ids``; empty means "not said") finished: wake every waiter."""
        ids = frozenset(task_ids)
        with self._condition:
            self._generation += 1
            self._history.append((self._generation, ids or None))
            self._condition.notify_all()

    @contextlib.contextmanager
    def awaiting(self, task_ids: Set[str]) -> Iterator[None]:
        """While inside, ingest treats ``task_ids`` as urgent (stores their results without
        batching delay) -- only for a poll for at most ``URGENT_MAX`` ids, where the delay
        would be the caller's whole latency; a poll for many ids is not registered."""
        if len(task_ids) > URGENT_MAX:
            yield
            return
        with self._condition:
            self._urgent.update(task_ids)
        hook = self.on_urgent
        if hook is not None:
            with contextlib.suppress(Exception):  # a closing connection: the tick covers it
                hook()
        try:
            yield
        finally:
            with self._condition:
                self._urgent.subtract(task_ids)
                for task_id in task_ids:
                    if self._urgent[task_id] <= 0:
                        del self._urgent[task_id]

    def awaited(self, task_ids: Iterable[str]) -> bool:
        """Whether some long-poll is :meth:`awaiting` one of ``task_ids``."""
        with self._condition:
            return bool(self._urgent) and any(t in self._urgent for t in task_ids)

    def concerns(self, since: int, task_ids: Set[str]) -> bool:
        """Whether some of ``task_ids`` may have finished in the generations after ``since``.

        False only when the record of every such generation is kept and names none of them;
        when in doubt (a notify without ids, or history that no longer reaches back) True.
        """
        found = self.finished_among(since, task_ids)
        return found is None or bool(found)

    def finished_among(self, since: int, task_ids: Set[str]) -> set[str] | None:
        """Which of ``task_ids`` finished in the generations after ``since``, from the record;
        None when the record cannot tell (a notify without ids, or history that no longer
        reaches back), and the caller must read the database instead."""
        with self._condition:
            found: set[str] = set()
            if self._generation <= since:
                return found
            if not self._history or self._history[0][0] > since + 1:
                return None
            for generation, ids in reversed(self._history):
                if generation <= since:
                    break
                if ids is None:
                    return None
                found.update(ids.intersection(task_ids))
            return found

    def wait(self, generation: int, timeout: float) -> int:
        """Wait until the generation moves past ``generation`` or ``timeout`` passes.

        Without a local source, wait at most ``poll_interval`` so the caller re-checks the
        database; with one, at most a few seconds anyway (a cancel made by another API process
        is seen only in the database).  Returns the current generation.
        """
        timeout = min(timeout, 2.0 if self.local_source else self.poll_interval)
        with self._condition:
            self._condition.wait_for(
                lambda: self._generation != generation or self._closed, timeout=max(0.0, timeout)
            )
            return self._generation

    def close(self) -> None:
        """Release every waiter now (server shutdown)."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
