"""Admission of result long-polls: a bounded pool of waiting slots, and a cap per user.

Why: a waiting long-poll holds one of the server's request threads for up to a minute (the
WSGI servers under the service give each request a thread until it is answered).  Without a
bound, 34 waiting polls from one user took every thread of the default 32 and another user's
``GET /v1/endpoints`` waited 18 s for one.  So:

* at most ``slots`` long-polls wait at once in this process, and ``serve`` gives the server one
  request thread per slot *on top of* ``--threads`` (:func:`pool_threads`): all of
  ``--threads`` stay for ordinary requests, however many polls arrive;
* at most ``per_user`` of them belong to one user (all of a user's tokens together, so more
  tokens buy no more threads), so one user cannot take the whole pool from the others.

Why threads, and a thousand of them by default (:data:`DEFAULT_SLOTS`): a blocked thread is
cheap -- about 16 KiB of memory idle and no CPU while it waits (its long-poll is woken only by
its own tasks' results: notifier.py) -- and a thread per waiting poll keeps the service one
WSGI app under waitress or cheroot.  ``benchmarks/wakeups.py`` measures 1,000 waiting polls on
one process beside another user's ordinary requests (benchmarks/README.md).

A poll needs a slot only when it is about to *wait*: one that can be answered at once (some
result ready, or ``wait`` 0) never asks.  A poll that finds no slot is answered 429 with
``Retry-After`` (nothing was done; the SDK retries after that delay), rather than answered at
once with nothing -- which would turn every refused poll into an immediate re-poll loop.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from outpost_service.errors import TooManyRequests

#: Seconds a refused poll is told to wait before asking again.
RETRY_AFTER = 1.0
#: Long-polls that may wait at once in one process unless ``longpoll_slots`` says otherwise.
DEFAULT_SLOTS = 1000


def pool_threads(threads: int, slots: int) -> int:
    """The request threads of a server that keeps ``threads`` for ordinary requests (and for
    polls not yet waiting) and lets ``slots`` long-polls wait at once."""
    return threads + slots


class LongPollGate:
    """Counts waiting long-polls, in total and per user; thread-safe, never blocks."""

    def __init__(self, slots: int, per_user: int) -> None:
        self.slots = slots
        self.per_user = per_user
        self._lock = threading.Lock()
        self._total = 0
        self._by_user: Counter[int] = Counter()

    @property
    def waiting(self) -> int:
        """How many long-polls hold a slot now."""
        with self._lock:
            return self._total

    @contextmanager
    def slot(self, user_id: int) -> Iterator[None]:
        """Hold one waiting slot for ``user_id`` while inside; raises :class:`TooManyRequests`
        (changing nothing) when the user already holds ``per_user`` or the pool is full."""
        with self._lock:
            if self._by_user[user_id] >= self.per_user:
                raise TooManyRequests(
                    f"you already have {self.per_user} result long-polls waiting (the most one "
                    "user may have at once); wait for one of them to return, or ask for many "
                    "task ids in one poll (POST /v1/results takes a list), then retry after "
                    "the Retry-After seconds",
                    retry_after=RETRY_AFTER,
                    code="too_many_long_polls",
                    details={"limit": self.per_user},
                )
            if self._total >= self.slots:
                raise TooManyRequests(
                    f"the service already holds its {self.slots} waiting result long-polls "
                    "(the rest of its threads are kept for other requests); retry after the "
                    "Retry-After seconds, or poll with wait 0",
                    retry_after=RETRY_AFTER,
                    code="long_polls_busy",
                    details={"limit": self.slots},
                )
            self._total += 1
            self._by_user[user_id] += 1
        try:
            yield
        finally:
            with self._lock:
                self._total -= 1
                self._by_user[user_id] -= 1
                if self._by_user[user_id] <= 0:
                    del self._by_user[user_id]
