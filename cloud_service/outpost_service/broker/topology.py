"""The AMQP topology of docs/ARCHITECTURE.md, for one prefix ``P``.

* ``P.tasks`` (direct) → ``P.tasks.<endpoint_id>`` (one per endpoint, routing key = its id)
* ``P.results`` (topic) → ``P.ingest`` bound ``#`` (results ``<id>.result``, heartbeats
  ``<id>.status``)
* ``P.dead`` (fanout) → ``P.dead``: what ``P.ingest`` and the task queues reject.

Every exchange and queue is durable.  Queues carry ``x-dead-letter-exchange: P.dead``; anyone
else declaring them (the endpoint) must pass exactly :meth:`Topology.queue_arguments`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pika.adapters.blocking_connection import BlockingChannel


@dataclass(frozen=True)
class Topology:
    prefix: str = "outpost"

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

    def queue_arguments(self) -> dict[str, Any]:
        return {"x-dead-letter-exchange": self.dead_exchange}

    def declare_core(self, channel: BlockingChannel) -> None:
        """Declare the exchanges and the ingest and dead-letter queues (idempotent)."""
        channel.exchange_declare(self.dead_exchange, exchange_type="fanout", durable=True)
        channel.queue_declare(self.dead_queue, durable=True)
        channel.queue_bind(self.dead_queue, self.dead_exchange)
        channel.exchange_declare(self.task_exchange, exchange_type="direct", durable=True)
        channel.exchange_declare(self.result_exchange, exchange_type="topic", durable=True)
        channel.queue_declare(self.ingest_queue, durable=True, arguments=self.queue_arguments())
        channel.queue_bind(self.ingest_queue, self.result_exchange, routing_key="#")

    def declare_endpoint_queue(self, channel: BlockingChannel, endpoint_id: str) -> None:
        queue = self.task_queue(endpoint_id)
        channel.queue_declare(queue, durable=True, arguments=self.queue_arguments())
        channel.queue_bind(queue, self.task_exchange, routing_key=endpoint_id)

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
