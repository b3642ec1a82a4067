"""Test doubles shared by the endpoint and durability tests."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from typing import Any, cast

from outpost.protocol import ResultEnvelope, TaskEnvelope, function_id_for, serialize
from outpost_endpoint.amqp import AmqpSettings
from outpost_endpoint.amqp.task_consumer import TaskConsumer
from outpost_endpoint.engine import ProcessPoolEngine
from outpost_endpoint.journal import Journal

from . import tasks


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


@contextlib.contextmanager
def offline_consumer(
    journal: Journal, endpoint_id: str, *, workers: int, prefetch: int, **settings: Any
) -> Iterator[tuple[TaskConsumer, ResultCollector]]:
    """A task consumer on a real process-pool engine and ``journal``, handing its results to
    a :class:`ResultCollector`, for tests that call its delivery handlers by hand; the engine
    is shut down and the journal closed on exit."""
    engine = ProcessPoolEngine(workers)
    engine.start()
    results = ResultCollector()
    consumer = TaskConsumer(
        offline_settings(**settings),
        endpoint_id,
        engine,
        cast(Any, results),
        prefetch=prefetch,
        journal=journal,
    )
    try:
        yield consumer, results
    finally:
        engine.shutdown(wait=False)
        journal.close()


def square_task(x: int, endpoint_id: str) -> TaskEnvelope:
    """A task computing ``x * x`` (:func:`tasks.square`) for ``endpoint_id``."""
    function = serialize(tasks.square)
    return TaskEnvelope(
        task_id=str(uuid.uuid4()),
        function_id=function_id_for(function),
        function=function,
        args=serialize(((x,), {})),
        endpoint_id=endpoint_id,
    )
