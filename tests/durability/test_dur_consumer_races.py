"""The task consumer's rare interleavings, driven directly on its message handler.

A broker crash can break the connection between the journal write and the ack.  RabbitMQ
cannot be made to fail at exactly that instruction, so these tests hand the handler a channel
whose ``basic_ack`` raises (the one stand-in here); the journal, engine (a real process pool)
and task are real.

"Runs once" is proved by everything the task left, not by the first result: the task appends a
line to a file each time it runs, and after a *sentinel* task has finished (the engine has one
worker and a FIFO queue, so any second run queued before the sentinel has run by then) the test
counts the lines and every result the consumer handed over for the task.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pika.exceptions
import pytest

from outpost.protocol import TaskEnvelope, function_id_for, serialize
from outpost_endpoint.amqp.task_consumer import TaskConsumer
from outpost_endpoint.journal import Journal

from ..endpoint import tasks
from ..endpoint.doubles import ResultCollector, offline_consumer, square_task
from .campaign import value_of, wait_until

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


def counted_task(runs: Path, x: int) -> TaskEnvelope:
    """A task computing ``x * x`` that appends a line to ``runs`` every time it runs."""
    function = serialize(tasks.counted_square)
    return TaskEnvelope(
        task_id=str(uuid.uuid4()),
        function_id=function_id_for(function),
        function=function,
        args=serialize(((str(runs), x), {})),
        endpoint_id=ENDPOINT,
    )


def assert_ran_once(
    handler: TaskConsumer, publisher: ResultCollector, task: TaskEnvelope, runs: Path
) -> None:
    """After a sentinel task behind ``task`` finished: one run, one result, the right value."""
    sentinel = square_task(2, ENDPOINT)
    channel = Channel()
    handler._on_task(channel, 99, sentinel, sentinel.to_bytes())
    handler._flush_burst()
    publisher.wait(2)
    with publisher.cond:
        assert publisher.cond.wait_for(
            lambda: any(r.task_id == sentinel.task_id for r in publisher.results), 60
        ), "the sentinel task never finished"
        results = [r for r in publisher.results if r.task_id == task.task_id]
    assert len(results) == 1, f"{len(results)} results for one task"
    assert value_of(results[0]) == 36
    assert runs.read_text().count("ran") == 1, "the task ran more than once"
    assert handler.journal.state(task.task_id) is not None


def test_a_failed_ack_still_runs_the_journaled_task_once(
    consumer: tuple[TaskConsumer, ResultCollector], tmp_path: Path
) -> None:
    handler, publisher = consumer
    runs = tmp_path / "runs.txt"
    task = counted_task(runs, 6)
    handler._on_task(Channel(ack_fails=True), 1, task, task.to_bytes())
    with pytest.raises(pika.exceptions.StreamLostError):
        handler._flush_burst()
    redelivery = Channel()
    handler._on_task(redelivery, 2, task, task.to_bytes())  # RabbitMQ never saw the ack
    handler._flush_burst()
    assert redelivery.acked == [2]
    publisher.wait(1)
    handler._on_task(redelivery, 3, task, task.to_bytes())  # and once more, after it finished
    handler._flush_burst()
    assert redelivery.acked == [2, 3]
    assert_ran_once(handler, publisher, task, runs)


def test_reconcile_starts_a_journaled_task_missing_from_the_engine(
    consumer: tuple[TaskConsumer, ResultCollector], tmp_path: Path
) -> None:
    handler, publisher = consumer
    runs = tmp_path / "runs.txt"
    task = counted_task(runs, 6)
    handler.journal.accept(task.task_id, task.to_bytes())  # journaled, never started
    handler._next_reconcile = 0.0
    handler._maybe_reconcile()
    handler._next_reconcile = 0.0
    handler._maybe_reconcile()  # a second pass while it runs (or after) must not start it again
    publisher.wait(1)
    handler._next_reconcile = 0.0
    handler._maybe_reconcile()
    assert_ran_once(handler, publisher, task, runs)


def test_a_redelivery_while_the_result_waits_for_the_publisher_does_not_run_it_again(
    consumer: tuple[TaskConsumer, ResultCollector], tmp_path: Path
) -> None:
    """The engine finished the task and handed its result to the publisher, which has not
    spooled it yet (here: never -- like a publisher blocked by a RabbitMQ disk alarm), so the
    journal still says ``received``.  A redelivery of the task then, or the reconcile, must
    not start it again (both did: 6 of 1,000 tasks ran twice in the disk-alarm test)."""
    handler, publisher = consumer
    runs = tmp_path / "runs.txt"
    task = counted_task(runs, 6)
    handler._on_task(Channel(), 1, task, task.to_bytes())
    handler._flush_burst()
    publisher.wait(1)
    wait_until(lambda: _turn(handler) and task.task_id not in handler.window.running, 30,
               "the consumer to see the task leave the engine")  # fmt: skip
    assert handler.journal.state(task.task_id) == "received"  # the result is not spooled
    redelivery = Channel()
    handler._on_task(redelivery, 2, task, task.to_bytes())  # e.g. a sweeper's second copy
    handler._flush_burst()
    assert redelivery.acked == [2]
    handler._next_reconcile = 0.0
    handler._maybe_reconcile()
    assert_ran_once(handler, publisher, task, runs)


def _turn(handler: TaskConsumer) -> bool:
    """One turn of the consumer loop's bookkeeping (what its thread runs between events)."""
    handler._drain_requests()
    return True
