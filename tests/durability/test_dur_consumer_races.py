"""The task consumer's rare interleavings, driven directly on its message handler.

A broker crash can break the connection between the journal write and the ack.  RabbitMQ
cannot be made to fail at exactly that instruction, so these tests hand the handler a channel
whose ``basic_ack`` raises (the one stand-in here); the journal, engine (a real process pool)
and task are real.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pika.exceptions
import pytest

from outpost_endpoint.amqp.task_consumer import TaskConsumer
from outpost_endpoint.journal import Journal

from ..endpoint.doubles import ResultCollector, offline_consumer, square_task
from .campaign import value_of

ENDPOINT = str(uuid.uuid4())


class Channel:
    def __init__(self, ack_fails: bool = False) -> None:
        self.ack_fails = ack_fails
        self.acked: list[int] = []

    def basic_ack(self, tag: int, multiple: bool = False) -> None:
        if self.ack_fails:
            raise pika.exceptions.StreamLostError("Stream connection lost: broker killed")
        self.acked.append(tag)


@pytest.fixture
def consumer(tmp_path: Path) -> Iterator[tuple[TaskConsumer, ResultCollector]]:
    journal = Journal(tmp_path / "journal.db")
    with offline_consumer(journal, ENDPOINT, workers=1, prefetch=4, heartbeat_interval=1.0) as made:
        yield made


def test_a_failed_ack_still_runs_the_journaled_task_once(
    consumer: tuple[TaskConsumer, ResultCollector],
) -> None:
    handler, publisher = consumer
    task = square_task(6, ENDPOINT)
    handler._on_task(Channel(ack_fails=True), 1, task, task.to_bytes())
    with pytest.raises(pika.exceptions.StreamLostError):
        handler._flush_burst()
    redelivery = Channel()
    handler._on_task(redelivery, 2, task, task.to_bytes())  # RabbitMQ never saw the ack
    handler._flush_burst()
    assert redelivery.acked == [2]
    (result,) = publisher.wait(1)
    assert value_of(result) == 36


def test_reconcile_starts_a_journaled_task_missing_from_the_engine(
    consumer: tuple[TaskConsumer, ResultCollector],
) -> None:
    handler, publisher = consumer
    task = square_task(7, ENDPOINT)
    handler.journal.accept(task.task_id, task.to_bytes())  # journaled, never started
    handler._next_reconcile = 0.0
    handler._maybe_reconcile()
    (result,) = publisher.wait(1)
    assert value_of(result) == 49
