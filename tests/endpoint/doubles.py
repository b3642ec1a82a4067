"""Test doubles shared by the endpoint and durability tests."""

from __future__ import annotations

import threading
from typing import Any

from outpost.protocol import ResultEnvelope
from outpost_endpoint.amqp import AmqpSettings


class ResultCollector:
    """Stands in for the result publisher: collects what the consumer hands it."""

    def __init__(self) -> None:
        self.results: list[ResultEnvelope] = []
        self.cond = threading.Condition()

    def publish_result(self, result: ResultEnvelope, on_confirmed: Any = None) -> None:
        with self.cond:
            self.results.append(result)
            self.cond.notify_all()

    def wait(self, count: int) -> list[ResultEnvelope]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.results) >= count, 60)
            return list(self.results)


def offline_settings(**overrides: Any) -> AmqpSettings:
    """AMQP settings for a task consumer driven by hand (its deliveries called directly): the
    URL points at a closed port, so nothing ever reaches a broker by accident."""
    values: dict[str, Any] = {
        "url": "amqp://guest:guest@127.0.0.1:1/",
        "task_exchange": "x",
        "task_queue": "q",
        "result_exchange": "r",
        "result_routing_key": "k",
        "status_routing_key": "s",
    }
    return AmqpSettings(**{**values, **overrides})
