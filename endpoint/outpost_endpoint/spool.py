"""``SpooledOutbox``: the result publisher's outbox, kept on disk in the task journal.

A result enters the outbox (``add_many``) only after it is written to the journal, and leaves it
(``pop_many``) only after RabbitMQ confirmed it.  Its tombstone (the journal's ``confirm``) is
written with the next ``add_many`` -- one journal transaction per publisher turn for the
results it spools and the ones RabbitMQ confirmed the turn before (group commit: one fsync per
turn, not per result) -- or by ``settle`` when no new result comes.  So a result survives a
broker outage (it waits here, in memory and on disk) and an endpoint crash (the next start
loads the journal's spooled results back into the outbox and publishes them again).

A crash between RabbitMQ's confirm and the tombstone publishes that result twice; the service
stores the first result of a task and ignores the rest.
"""

from __future__ import annotations

import collections
import itertools
import logging

from outpost.protocol import ResultEnvelope
from outpost_endpoint.amqp.result_publisher import Outbox, Outgoing
from outpost_endpoint.journal import Journal

log = logging.getLogger(__name__)


class SpooledOutbox(Outbox):
    """An :class:`Outbox` whose items are also in ``journal`` (see the module docstring)."""

    def __init__(self, journal: Journal) -> None:
        super().__init__()
        self.journal = journal
        self._items: collections.deque[Outgoing] = collections.deque()
        #: Confirmed by RabbitMQ, tombstone not yet written (see the module docstring).
        self._confirmed: list[str] = []
        for body in journal.spooled():
            try:
                self._items.append(Outgoing(ResultEnvelope.from_bytes(body)))
            except Exception as exc:  # a journal written by another version: keep going
                log.error("dropping an unreadable spooled result (%r): %r", exc, body[:200])
        if self._items:
            log.info("%d spooled result(s) from before the restart to publish", len(self._items))

    def add_many(self, items: list[Outgoing]) -> None:
        self.journal.confirm_and_finish(
            self._confirmed, [(item.result.task_id, item.body) for item in items]
        )
        self._confirmed = []
        self._items.extend(items)  # publishable only now: the results are durable

    def peek_many(self, limit: int) -> list[Outgoing]:
        return list(itertools.islice(self._items, limit))

    def peek(self) -> Outgoing | None:
        return self._items[0] if self._items else None

    def pop_many(self, count: int) -> None:
        for _ in range(min(count, len(self._items))):
            self._confirmed.append(self._items.popleft().result.task_id)

    def settle(self) -> bool:
        if not self._confirmed:
            return False
        self.journal.confirm_many(self._confirmed)
        self._confirmed = []
        return True

    def __len__(self) -> int:
        return len(self._items) + len(self._confirmed)
