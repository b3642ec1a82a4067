"""Wake-ups for result long-polls.

The ingest consumer (and cancel, and expiry) call :meth:`ResultNotifier.notify` after
committing results.  Each waiting long-poll holds a :class:`Waiter` (:meth:`awaiting`), indexed
by the ids it waits for, so a commit wakes only the polls whose tasks it finished: with a
thousand polls waiting, waking every one of them on every commit (one shared condition) cost
each commit a thousand thread switches.  A generation counter moves on every notification, so a
poll can tell what happened since it last looked.

Where the results come from (``sources``): an ingest consumer in this process, and/or the
cross-process channel (:mod:`outpost_service.wakeups`, which relays what other processes commit
and runs the per-process safety re-check).  With a source that covers every commit, a waiter
waits until its deadline; without one (``serve --no-ingest`` on SQLite, or an app without
``serve``), waiters fall back to re-checking the database every ``poll_interval`` seconds.

Each generation also records *which* tasks finished, for the last ``history`` generations, so a
long-poll woken by results of other tasks can tell (:meth:`ResultNotifier.concerns`) that none
of its own are among them and go back to waiting without a database query: with many
clients or thousands of outstanding ids, re-reading every waiter's ids on every commit would
make each ingest commit cost O(waiters x ids).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Set

#: A long-poll for at most this many ids marks them urgent for ingest (see ``awaiting``).
URGENT_MAX = 16
#: Seconds an id awaited by a poll in another process stays urgent here (a poll waits at most 60).
REMOTE_URGENT_TTL = 60.0
#: Longest wait between database re-checks when only an in-process ingest notifies us (a cancel
#: made by another API process on the same database is seen only there).
LOCAL_SOURCE_RECHECK = 2.0


class Waiter:
    """One waiting long-poll: woken only by notifications that may concern its ids."""

    __slots__ = ("_event", "_notifier", "task_ids")

    def __init__(self, notifier: ResultNotifier, task_ids: Set[str]) -> None:
        self._notifier = notifier
        self._event = threading.Event()
        self.task_ids = task_ids

    def wake(self) -> None:
        self._event.set()

    def wait(self, generation: int, timeout: float) -> int:
        """Wait until a notification that may concern this poll's ids arrives after
        ``generation``, or ``timeout`` passes (capped as :meth:`ResultNotifier.wait_limit`
        says); returns the current generation."""
        notifier = self._notifier
        if notifier.generation == generation and not notifier.closed:
            self._event.wait(max(0.0, min(timeout, notifier.wait_limit())))
        self._event.clear()  # before reading the generation: a later notify sets it again
        return notifier.generation


class ResultNotifier:
    """A generation counter that moves whenever some task finishes in this process."""

    def __init__(self, poll_interval: float = 0.25, *, history: int = 4096) -> None:
        self._condition = threading.Condition()
        self._generation = 0
        # (generation, the ids it finished, or None when not told): the newest ``history``.
        self._history: deque[tuple[int, frozenset[str] | None]] = deque(maxlen=history)
        self._urgent: Counter[str] = Counter()  # ids small long-polls are waiting for
        self._remote_urgent: dict[str, float] = {}  # ... in other processes: id -> until
        self._waiters: dict[str, set[Waiter]] = {}  # task id -> the polls waiting for it
        self._everyone: set[Waiter] = set()
        #: Set by ingest: called (from the request thread) when a small poll starts waiting,
        #: so a result already received but not yet committed is committed now.
        self.on_urgent: Callable[[], None] | None = None
        #: Set by the cross-process channel: called with the ids of each local notification
        #: (commits of this process), to tell the other processes.  Must not block.
        self.relay: Callable[[frozenset[str]], None] | None = None
        #: Set by the cross-process channel: called with the ids of each small poll that starts
        #: waiting here, so that an ingest process stores their results at once.  Must not block.
        self.awaited_relay: Callable[[frozenset[str]], None] | None = None
        self._closed = False
        self.poll_interval = poll_interval
        #: True when an ingest consumer in this process notifies us.
        self.local_source = False
        #: True while a channel relays every other process's commits to us, and re-checks the
        #: waiting ids now and then in case one was missed (:mod:`outpost_service.wakeups`).
        self.shared_source = False

    @property
    def generation(self) -> int:
        with self._condition:
            return self._generation

    @property
    def closed(self) -> bool:
        return self._closed

    def notify(self, task_ids: Iterable[str] = (), *, local: bool = True) -> None:
        """Some tasks (``task_ids``; empty means "not said") finished: wake their waiters
        (every waiter when not said).  ``local``: committed by this process, so also relayed
        to the others (the channel passes ``local=False`` for what it receives)."""
        ids = frozenset(task_ids)
        with self._condition:
            self._generation += 1
            self._history.append((self._generation, ids or None))
            self._condition.notify_all()
            if ids:
                index = self._waiters
                woken = {w for t in ids if t in index for w in index[t]} if index else set()
            else:
                woken = set(self._everyone)
        for waiter in woken:
            waiter.wake()
        relay = self.relay
        if local and ids and relay is not None:
            relay(ids)

    def wait_limit(self) -> float:
        """The longest a waiter waits before re-reading the database itself."""
        if self.shared_source:
            return float("inf")  # the channel re-checks for everyone, once per process
        return LOCAL_SOURCE_RECHECK if self.local_source else self.poll_interval

    def waiting_ids(self) -> list[str]:
        """Every id some long-poll waits for now (for the channel's safety re-check)."""
        with self._condition:
            return list(self._waiters)

    @property
    def waiters(self) -> int:
        """How many long-polls are registered (:meth:`awaiting`) now."""
        with self._condition:
            return len(self._everyone)

    @contextlib.contextmanager
    def awaiting(self, task_ids: Set[str]) -> Iterator[Waiter]:
        """A :class:`Waiter` for ``task_ids``, woken by the notifications that concern them.

        While inside, ingest also treats ``task_ids`` as urgent (stores their results without
        batching delay) -- only for a poll for at most ``URGENT_MAX`` ids, where the delay
        would be the caller's whole latency."""
        waiter = Waiter(self, task_ids)
        urgent = len(task_ids) <= URGENT_MAX
        with self._condition:
            self._everyone.add(waiter)
            for task_id in task_ids:
                self._waiters.setdefault(task_id, set()).add(waiter)
            if urgent:
                self._urgent.update(task_ids)
        hook = self.on_urgent
        if urgent and hook is not None:
            with contextlib.suppress(Exception):  # a closing connection: the tick covers it
                hook()
        relay = self.awaited_relay
        if urgent and relay is not None:
            relay(frozenset(task_ids))
        try:
            yield waiter
        finally:
            with self._condition:
                self._everyone.discard(waiter)
                for task_id in task_ids:
                    waiting = self._waiters.get(task_id)
                    if waiting is not None:
                        waiting.discard(waiter)
                        if not waiting:
                            del self._waiters[task_id]
                if urgent:
                    self._urgent.subtract(task_ids)
                    for task_id in task_ids:
                        if self._urgent[task_id] <= 0:
                            del self._urgent[task_id]

    def mark_awaited(self, task_ids: Iterable[str], ttl: float = REMOTE_URGENT_TTL) -> None:
        """A small long-poll in another process waits for ``task_ids``: treat them as urgent
        here for ``ttl`` seconds (an ingest process then stores their results at once)."""
        until = time.monotonic() + ttl
        with self._condition:
            remote = self._remote_urgent
            if len(remote) > 100_000:  # forget the expired ones
                now = time.monotonic()
                self._remote_urgent = remote = {t: u for t, u in remote.items() if u > now}
            remote.update(dict.fromkeys(task_ids, until))
        hook = self.on_urgent
        if hook is not None:
            with contextlib.suppress(Exception):  # a closing connection: the tick covers it
                hook()

    def awaited(self, task_ids: Iterable[str]) -> bool:
        """Whether some long-poll (here, or in another process: :meth:`mark_awaited`) is
        waiting for one of ``task_ids``."""
        with self._condition:
            local, remote = self._urgent, self._remote_urgent
            if not local and not remote:
                return False
            now = time.monotonic()
            return any(t in local or remote.get(t, 0.0) > now for t in task_ids)

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
        """Wait until the generation moves past ``generation`` (any notification) or
        ``timeout`` passes, capped by :meth:`wait_limit`.  Returns the current generation.
        Long-polls use their :class:`Waiter` instead, which only their own tasks wake."""
        timeout = min(timeout, self.wait_limit())
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
            everyone = list(self._everyone)
        for waiter in everyone:
            waiter.wake()
