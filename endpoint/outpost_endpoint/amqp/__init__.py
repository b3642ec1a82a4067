"""The endpoint's AMQP link: one thread + connection to consume tasks, one to publish results."""

from outpost_endpoint.amqp.connection import AmqpSettings
from outpost_endpoint.amqp.result_publisher import Outbox, ResultPublisher
from outpost_endpoint.amqp.task_consumer import TaskConsumer

__all__ = ["AmqpSettings", "Outbox", "ResultPublisher", "TaskConsumer"]
