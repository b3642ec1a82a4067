"""The AMQP topology of docs/ARCHITECTURE.md, for one prefix ``P``.

* ``P.tasks`` (direct) → ``P.tasks.<endpoint_id>`` (one per endpoint, routing key = its id)
* ``P.results`` (topic) → ``P.ingest`` bound ``#`` (results ``<id>.result``, heartbeats
  ``<id>.status``)
* ``P.dead`` (fanout) → ``P.dead``: what ``P.ingest`` and the task queues reject.

Every exchange and queue is durable.  Queues carry ``x-dead-letter-exchange: P.dead``; anyone
else declaring them must pass exactly :meth:`Topology.queue_arguments` (the endpoint only
consumes, it never declares).

``queue_type`` is ``classic`` (the default, so queues made by earlier versions keep working) or
``quorum`` (replicated Raft queues on a RabbitMQ cluster).  Quorum queues dead-letter
at-least-once (``x-dead-letter-strategy``, RabbitMQ >= 3.10, which needs ``x-overflow:
reject-publish``) instead of the default at-most-once.  A queue's type is fixed when it is made:
redeclaring it as the other type is refused (PRECONDITION_FAILED), reported as a
:class:`~outpost_service.errors.BrokerError` that says how to migrate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from outpost_service.config import QUEUE_TYPES
from outpost_service.errors import BrokerError

_PRECONDITION_FAILED = 406
#: Arguments only this topology's quorum queues carry.
_QUORUM_ONLY = ("x-queue-type", "x-dead-letter-strategy", "x-overflow")


@dataclass(frozen=True)
class Topology:
    prefix: str = "outpost"
    queue_type: str = "classic"

    def __post_init__(self) -> None:
        if self.queue_type not in QUEUE_TYPES:
            raise BrokerError(
                f"queue_type must be one of {', '.join(QUEUE_TYPES)}, got {self.queue_type!r}"
            )

    @property
    def task_exchange(self) -> str:
        return f"{self.prefix}.tasks"

    @property
    def result_exchange(self) -> str:
        return f"{self.prefix}.results"

    @property
    def ingest_queue(self) -> str:
        return f"{self.prefix}.ingest"

    @property
    def dead_exchange(self) -> str:
        return f"{self.prefix}.dead"

    @property
    def dead_queue(self) -> str:
        return f"{self.prefix}.dead"

    def task_queue(self, endpoint_id: str) -> str:
        return f"{self.prefix}.tasks.{endpoint_id}"

    @staticmethod
    def result_routing_key(endpoint_id: str) -> str:
        return f"{endpoint_id}.result"

    @staticmethod
    def status_routing_key(endpoint_id: str) -> str:
        return f"{endpoint_id}.status"

    def type_arguments(self) -> dict[str, Any]:
        """The arguments every queue of this topology gets for its ``queue_type``."""
        if self.queue_type == "quorum":
            return {"x-queue-type": "quorum"}
        return {}

    def queue_arguments(self) -> dict[str, Any]:
        """Arguments of the task and ingest queues (those that dead-letter into ``P.dead``)."""
        arguments = {**self.type_arguments(), "x-dead-letter-exchange": self.dead_exchange}
        if self.queue_type == "quorum":
            # At-most-once is the quorum default: a dead letter lost on a leader change would
            # be a malformed task or result nobody can inspect.
            arguments["x-dead-letter-strategy"] = "at-least-once"
            arguments["x-overflow"] = "reject-publish"
        return arguments

    def declare_core(self, channel: BlockingChannel) -> None:
        """Declare the exchanges and the ingest and dead-letter queues (idempotent)."""
        channel.exchange_declare(self.dead_exchange, exchange_type="fanout", durable=True)
        self._declare_queue(channel, self.dead_queue, self.type_arguments())
        channel.queue_bind(self.dead_queue, self.dead_exchange)
        channel.exchange_declare(self.task_exchange, exchange_type="direct", durable=True)
        channel.exchange_declare(self.result_exchange, exchange_type="topic", durable=True)
        self._declare_queue(channel, self.ingest_queue, self.queue_arguments())
        channel.queue_bind(self.ingest_queue, self.result_exchange, routing_key="#")

    def declare_endpoint_queue(self, channel: BlockingChannel, endpoint_id: str) -> None:
        queue = self.task_queue(endpoint_id)
        self._declare_queue(channel, queue, self.queue_arguments())
        channel.queue_bind(queue, self.task_exchange, routing_key=endpoint_id)

    def _declare_queue(
        self, channel: BlockingChannel, queue: str, arguments: dict[str, Any]
    ) -> None:
        try:
            channel.queue_declare(queue, durable=True, arguments=arguments or None)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != _PRECONDITION_FAILED:
                raise
            existing = _existing_type(exc.reply_text, self.queue_type)
            keep = existing or ("quorum" if self.queue_type == "classic" else "classic")
            raise BrokerError(
                f"RabbitMQ refused to declare queue {queue!r} as a {self.queue_type} queue: it "
                f"already exists as a {existing or 'differently configured'} queue (broker "
                f"said: {exc.reply_text}).  A queue's type cannot be changed in place: either "
                f"keep queue_type={keep!r} (OUTPOST_QUEUE_TYPE / serve --queue-type), or "
                f"migrate: stop the service and endpoints once the queue is drained, delete "
                f"it while empty (`rabbitmqctl delete_queue {queue} --if-empty`) and restart "
                f"with queue_type={self.queue_type!r}"
            ) from exc

    def delete_endpoint_queue(self, channel: BlockingChannel, endpoint_id: str) -> None:
        channel.queue_delete(self.task_queue(endpoint_id))

    def delete_all(self, channel: BlockingChannel, endpoint_ids: list[str]) -> None:
        """Remove everything this prefix declared (tests, and tearing a deployment down)."""
        for endpoint_id in endpoint_ids:
            channel.queue_delete(self.task_queue(endpoint_id))
        for queue in (self.ingest_queue, self.dead_queue):
            channel.queue_delete(queue)
        for exchange in (self.task_exchange, self.result_exchange, self.dead_exchange):
            channel.exchange_delete(exchange)


def _existing_type(reply_text: str, wanted: str) -> str | None:
    """The type of the existing queue a PRECONDITION_FAILED complains about, when the argument
    it names tells (RabbitMQ 3.10 checks arguments in no fixed order, so any of the
    quorum-only ones may be named: "inequivalent arg 'x-overflow' ...: received the value
    'reject-publish' of type 'longstr' but current is none")."""
    quoted = reply_text.split("inequivalent arg '", 1)
    if len(quoted) < 2:
        return None
    argument = quoted[1].split("'", 1)[0]
    received, _, current = reply_text.partition(" but current is ")
    if argument == "x-queue-type" and "the value '" in current:
        return current.split("the value '", 1)[1].split("'", 1)[0]
    if argument in _QUORUM_ONLY:
        if wanted == "quorum" and current.startswith("none"):
            return "classic"
        if wanted == "classic" and received.endswith("received none"):
            return "quorum"
    return None
