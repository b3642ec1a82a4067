"""Journal, then ack: how a task delivery becomes the endpoint's responsibility.

No-loss rule (ARCHITECTURE.md): a task message is written to the endpoint's durable
:class:`~outpost_endpoint.journal.Journal` *before* it is acknowledged, and acknowledged at once
after that -- RabbitMQ's ``consumer_timeout`` would close a channel that held a message for the
length of an HPC task.  From the ack on, the journal keeps the task: its result is spooled there
until RabbitMQ confirms it, and tasks found unfinished when the endpoint starts are replayed into
the engine.  A delivery of a task id the journal already knows (a redelivery after a lost ack,
a duplicate publish) is acked without running the task again.

Group commit: the tasks of one delivery burst (everything one ``process_data_events`` call
dispatches) are journaled in ONE transaction, then acked -- with ``multiple=True`` when their
delivery tags are contiguous -- and then started.  An ack still never precedes its task's
durable journal entry; deliveries of a burst that is not yet written are simply unacked, and
RabbitMQ hands them out again if the connection drops.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from outpost.protocol import TaskEnvelope
from outpost_endpoint.amqp.flow import Delivery
from outpost_endpoint.journal import Journal


def journal_and_ack(
    journal: Journal, burst: Sequence[Delivery], admit: Callable[[TaskEnvelope, bool], None]
) -> None:
    """Journal ``burst`` in one transaction, ack it, then ``admit`` each task with whether the
    journal was new to it.  A failed commit acks and admits nothing; a failed ack (the
    connection dropped) still admits every task, since the journal has them."""
    if not burst:
        return
    fresh = journal.accept_many([(d.task.task_id, d.body) for d in burst])
    try:
        ack(burst[0].channel, [d.tag for d in burst])
    finally:
        for delivery, new in zip(burst, fresh, strict=True):
            admit(delivery.task, new)


def ack(channel: Any, tags: list[int]) -> None:
    """Ack ``tags``: one ``multiple=True`` ack when they are contiguous, else one by one.
    (Deliveries are taken oldest first and every other message is settled as it arrives, so
    every delivery before a burst is settled when it is flushed, and a multiple ack of a
    contiguous burst covers exactly the burst.)"""
    tags = sorted(tags)
    if len(tags) > 1 and tags[-1] - tags[0] == len(tags) - 1:
        channel.basic_ack(tags[-1], multiple=True)
        return
    for tag in tags:
        channel.basic_ack(tag)
