"""Wake-ups for result long-polls.

The ingest consumer (and cancel) call :meth:`ResultNotifier.notify` after committing results;
long-polls wait on a generation counter under one :class:`threading.Condition` and re-read the
database when it moves.  When ingest runs in another process nothing here is notified, so
waiters fall back to re-checking the database every ``poll_interval`` seconds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable


class ResultNotifier:
    """A generation counter that moves whenever some task finishes in this process."""

    def __init__(self, poll_interval: float = 0.25) -> None:
        self._condition = threading.Condition()
        self._generation = 0
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
        """Some tasks (``task_ids``, for the record) finished: wake every waiter."""
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

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
