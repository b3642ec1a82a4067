"""``SpooledOutbox``: the result publisher's outbox, kept on disk in the task journal.

A result enters the outbox (``add``) only after it is written to the journal, and leaves it
(``pop``) only after RabbitMQ confirmed it and the journal recorded that.  So a result survives
a broker outage (it waits here, in memory and on disk) and an endpoint crash (the next start
loads the journal's spooled results back into the outbox and publishes them again).

A crash between RabbitMQ's confirm and the journal's ``confirm`` publishes that result twice;
the service stores the first result of a task and ignores the rest.
"""

from __future__ import annotations

import collections
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

    def add(self, item: Outgoing) -> None:
        self.journal.finish(item.result.task_id, item.result.to_bytes())
        self._items.append(item)

    def peek(self) -> Outgoing | None:
        return self._items[0] if self._items else None

    def pop(self) -> None:
        item = self._items[0]
        self.journal.confirm(item.result.task_id)
        self._items.popleft()

    def __len__(self) -> int:
        return len(self._items)
