"""Flow control: how much work the task consumer takes, and what waits.

Since a task is acked as soon as it is journaled (:mod:`.acks`), acks no longer bound the work
taken, so the consumer bounds it itself, without broker round trips in the common case: when
``prefetch`` tasks are in the engine, task deliveries wait in memory -- neither journaled nor
acked -- until the engine has room again (at least a quarter of the window, so one journal
transaction still takes many tasks).  Waiting deliveries are unacked, so the channel's QoS
(``prefetch`` unacked messages) stops RabbitMQ from sending more: at most ``prefetch`` tasks in
the engine plus ``prefetch`` waiting.  A delivery never waits longer than :data:`HOLD_LIMIT`
(far below RabbitMQ's ``consumer_timeout``): past that the consumer is cancelled, the waiting
deliveries go back to the queue untouched, and it consumes again once half of the engine's
tasks are done.  (Cancelling at every window edge, as before, cost two RPCs per half window and
requeued every delivery buffered at the cancel -- about 40% of deliveries in a no-op run were
redeliveries.)
"""

from __future__ import annotations

import collections
import time
from typing import Any, NamedTuple

from outpost.protocol import TaskEnvelope

#: Seconds a task delivery may wait (unacked, not journaled) for room in the engine before it
#: is handed back to RabbitMQ; far below RabbitMQ's ``consumer_timeout`` (30 min by default).
HOLD_LIMIT = 60.0


class Delivery(NamedTuple):
    """A task delivery not yet journaled nor acked."""

    channel: Any
    tag: int
    task: TaskEnvelope
    body: bytes
    arrived: float  # time.monotonic() when it was delivered


class Window:
    """The tasks in the engine and the deliveries waiting for room there (consumer thread
    only); see the module docstring."""

    def __init__(self, prefetch: int) -> None:
        self.prefetch = max(1, prefetch)
        #: Ids of the tasks in the engine.
        self.running: set[str] = set()
        #: Task deliveries not yet journaled nor acked, oldest first: this burst's, and those
        #: waiting for room in the engine.
        self.waiting: collections.deque[Delivery] = collections.deque()

    def hold(self, delivery: Delivery) -> None:
        self.waiting.append(delivery)

    def take(self) -> list[Delivery]:
        """The waiting deliveries to journal now, oldest first: all that fit in the engine,
        but only once a quarter of the window (or every waiting delivery) fits, so that a full
        engine finishing tasks one by one does not cost one journal transaction per task."""
        room = self.prefetch - len(self.running)
        if room < min(len(self.waiting), max(1, self.prefetch // 4)):
            return []
        take = min(len(self.waiting), room)
        return [self.waiting.popleft() for _ in range(take)]

    def overdue(self) -> bool:
        """Whether the oldest waiting delivery waited longer than :data:`HOLD_LIMIT`."""
        return bool(self.waiting) and time.monotonic() - self.waiting[0].arrived > HOLD_LIMIT

    def may_consume(self) -> bool:
        """Whether a paused consumer may consume again: half of the window is free."""
        return len(self.running) <= self.prefetch // 2

    def hand_back(self) -> None:
        """Requeue every waiting delivery, untouched (the consumer was cancelled)."""
        while self.waiting:
            delivery = self.waiting.popleft()
            delivery.channel.basic_reject(delivery.tag, requeue=True)
