"""``SpooledOutbox``: the result publisher's outbox, kept on disk in the task journal.

A result enters the outbox (``add_many``) only after it is written to the journal, and leaves it
(``pop_many``) only after RabbitMQ confirmed it and the journal recorded that.  Each call is one
journal transaction for all its results (group commit: one fsync per batch, not per result).
So a result survives a broker outage (it waits here, in memory and on disk) and an endpoint
crash (the next start loads the journal's spooled results back into the outbox and publishes
them again).

A crash between RabbitMQ's confirm and the journal's ``confirm`` publishes that result twice;
the service stores the first result of a task and ignores the rest.
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
        for body in journal.spooled():
            try:
                self._items.append(Outgoing(ResultEnvelope.from_bytes(body)))
            except Exception as exc:  # a journal written by another version: keep going
                log.error("dropping an unreadable spooled result (%r): %r", exc, body[:200])
        if self._items:
            log.info("%d spooled result(s) from before the restart to publish", len(self._items))

    def add_many(self, items: list[Outgoing]) -> None:
        self.journal.finish_many([(item.result.task_id, item.body) for item in items])
        self._items.extend(items)  # publishable only now: the results are durable

    def peek_many(self, limit: int) -> list[Outgoing]:
        return list(itertools.islice(self._items, limit))

    def peek(self) -> Outgoing | None:
        return self._items[0] if self._items else None

    def pop_many(self, count: int) -> None:
        done = list(itertools.islice(self._items, count))
        self.journal.confirm_many([item.result.task_id for item in done])
        for _ in done:
            self._items.popleft()

    def __len__(self) -> int:
        return len(self._items)
