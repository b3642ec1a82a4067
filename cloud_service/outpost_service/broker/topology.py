"""The AMQP topology of docs/ARCHITECTURE.md, for one prefix ``P``.

* ``P.tasks`` (direct) → ``P.tasks.<endpoint_id>.<tag>`` (one per endpoint, routing key = its
  id; ``tag`` is an HMAC of the id under the deployment's ``queue_key``, see below)
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

Quorum queues carry no ``x-delivery-limit``: a delivery goes back to its queue whenever its
consumer's connection drops (a node killed, an endpoint restarted), so a limit would
dead-letter healthy tasks, and a task in ``P.dead`` is never finished at the service; the
endpoint's journal already fails a task that killed its worker instead of running it again.
(docs/RELIABILITY.md, "Queue types", lists every feature checked against quorum queues.)

Why task queue names carry a secret tag: an endpoint's broker user may read only its own queue,
but RabbitMQ before 4.2.6 answers a *passive* declaration of any queue without a permission
check, telling its depth and consumer count.  Endpoint ids are no secret (shared users submit
to them), so a name made of the id alone would let one endpoint watch another's activity; a
name with a tag only the service can compute cannot be asked about.  The endpoint learns its
queue's name at registration.  Queues of earlier versions (``P.tasks.<endpoint_id>``, still
what a topology without ``queue_key`` names) are moved to the tagged name at the endpoint's next
registration (:meth:`Topology.declare_endpoint_queue`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from outpost_service.config import QUEUE_TYPES
from outpost_service.errors import BrokerError

_PRECONDITION_FAILED = 406
_NOT_FOUND = 404
#: Hex digits of the queue name's tag: 128 bits, beyond guessing.
TAG_LENGTH = 32
#: Passes at moving a legacy queue's messages (a consumer being cut off may hand some back).
_RETIRE_PASSES = 3

log = logging.getLogger(__name__)
#: Arguments only this topology's quorum queues carry.
_QUORUM_ONLY = ("x-queue-type", "x-dead-letter-strategy", "x-overflow")


class _Prefixed:
    """A name under the topology's prefix: ``Topology.task_exchange`` is ``P.tasks``."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix

    def __get__(self, topology: Topology, _owner: type | None = None) -> str:
        return f"{topology.prefix}.{self.suffix}"


@dataclass(frozen=True)
class Topology:
    prefix: str = "outpost"
    queue_type: str = "classic"
    #: The deployment's secret behind task queue names (the ``meta`` table's
    #: ``task_queue_key``); empty means the untagged names of earlier versions.
    queue_key: str = ""

    def __post_init__(self) -> None:
        if self.queue_type not in QUEUE_TYPES:
            raise BrokerError(
                f"queue_type must be one of {', '.join(QUEUE_TYPES)}, got {self.queue_type!r}"
            )

    task_exchange = _Prefixed("tasks")
    result_exchange = _Prefixed("results")
    ingest_queue = _Prefixed("ingest")
    dead_exchange = _Prefixed("dead")
    #: The dead-letter queue has its exchange's name.
    dead_queue = _Prefixed("dead")
    #: Fanout of "these tasks finished" between service processes (outpost_service.wakeups).
    wakeup_exchange = _Prefixed("wakeups")

    def task_queue(self, endpoint_id: str) -> str:
        """The name of the endpoint's task queue (tagged when this topology has a key)."""
        if not self.queue_key:
            return self.legacy_task_queue(endpoint_id)
        tag = hmac.new(self.queue_key.encode(), endpoint_id.encode(), hashlib.sha256)
        return f"{self.prefix}.tasks.{endpoint_id}.{tag.hexdigest()[:TAG_LENGTH]}"

    def legacy_task_queue(self, endpoint_id: str) -> str:
        """The name earlier versions gave the endpoint's queue: guessable from the id."""
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
        """Declare and bind the endpoint's queue; move a legacy queue's tasks into it."""
        queue = self.task_queue(endpoint_id)
        self._declare_queue(channel, queue, self.queue_arguments())
        channel.queue_bind(queue, self.task_exchange, routing_key=endpoint_id)
        if queue != self.legacy_task_queue(endpoint_id):
            self._retire_legacy_queue(channel, endpoint_id)

    def _retire_legacy_queue(self, channel: BlockingChannel, endpoint_id: str) -> None:
        """Move the tasks of the endpoint's untagged queue (made by an earlier version) into its
        tagged one, then delete the old queue.

        It is unbound first, so no new task lands there.  Each message is acked only after the
        broker confirmed its copy, so a crash here duplicates at most one task (the endpoint's
        journal runs it once), never loses one.  A queue still consumed (an instance being cut
        off) or refilled by its consumer's unacked tasks stays, and the next registration tries
        again.  Runs on channels of its own: a failed passive declaration closes its channel.
        """
        legacy = self.legacy_task_queue(endpoint_id)
        with _own_channel(channel) as probe:
            try:
                probe.queue_declare(legacy, passive=True)
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code == _NOT_FOUND:
                    return
                raise
        with _own_channel(channel) as mover:
            mover.confirm_delivery()
            mover.queue_unbind(legacy, self.task_exchange, routing_key=endpoint_id)
            moved = 0
            for attempt in range(_RETIRE_PASSES):
                if attempt:
                    time.sleep(0.5)  # let a closing consumer's unacked tasks come back
                moved += _move_messages(mover, legacy, self.task_queue(endpoint_id))
                try:
                    with _own_channel(channel) as deleter:
                        deleter.queue_delete(legacy, if_unused=True, if_empty=True)
                    log.info(
                        "endpoint %s: moved %d task(s) from %s to its tagged queue, deleted it",
                        endpoint_id, moved, legacy,
                    )  # fmt: skip
                    return
                except pika.exceptions.ChannelClosedByBroker as exc:
                    if exc.reply_code != _PRECONDITION_FAILED:
                        raise
        log.warning(
            "endpoint %s: queue %s of an earlier version is still in use or not empty after "
            "moving %d task(s); the endpoint's next registration moves the rest",
            endpoint_id, legacy, moved,
        )  # fmt: skip

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
        """Delete the endpoint's queue, and the legacy one if an earlier version left it."""
        for queue in {self.task_queue(endpoint_id), self.legacy_task_queue(endpoint_id)}:
            channel.queue_delete(queue)

    def delete_all(self, channel: BlockingChannel, endpoint_ids: list[str]) -> None:
        """Remove everything this prefix declared (tests, and tearing a deployment down)."""
        for endpoint_id in endpoint_ids:
            self.delete_endpoint_queue(channel, endpoint_id)
        for queue in (self.ingest_queue, self.dead_queue):
            channel.queue_delete(queue)
        for exchange in (
            self.task_exchange,
            self.result_exchange,
            self.dead_exchange,
            self.wakeup_exchange,
        ):
            channel.exchange_delete(exchange)


@contextmanager
def _own_channel(channel: BlockingChannel) -> Iterator[BlockingChannel]:
    """A new channel on ``channel``'s connection, closed after use unless the broker closed it
    (as it does after a refused declaration)."""
    own = channel.connection.channel()
    try:
        yield own
    finally:
        if own.is_open:
            own.close()


def _move_messages(channel: BlockingChannel, source: str, target: str) -> int:
    """Move every message now in ``source`` to ``target`` (copy confirmed, then ack)."""
    moved = 0
    while True:
        method, properties, body = channel.basic_get(source)
        if method is None:
            return moved
        channel.basic_publish("", target, body, properties, mandatory=True)
        channel.basic_ack(method.delivery_tag)
        moved += 1


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
