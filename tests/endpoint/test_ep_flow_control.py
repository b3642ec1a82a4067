"""The task consumer's window: deliveries beyond ``prefetch`` tasks in the engine wait, unacked
and not journaled, until the engine has room; one that waits too long goes back to RabbitMQ.

Driven on the consumer's message handler with a recording channel (the one stand-in: RabbitMQ
cannot report when an ack or reject was sent relative to the engine's load); the journal on
disk and the engine (a real process pool) are real.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from outpost.protocol import TaskEnvelope, function_id_for, serialize
from outpost_endpoint.amqp import flow
from outpost_endpoint.amqp.task_consumer import TaskConsumer
from outpost_endpoint.journal import Journal

from . import tasks
from .doubles import ResultCollector, offline_consumer

ENDPOINT = str(uuid.uuid4())
WINDOW = 4


class Channel:
    """Records acks and rejects."""

    def __init__(self) -> None:
        self.acks: list[tuple[int, bool]] = []
        self.rejects: list[tuple[int, bool]] = []

    def basic_ack(self, tag: int, multiple: bool = False) -> None:
        self.acks.append((tag, multiple))

    def basic_reject(self, tag: int, requeue: bool = True) -> None:
        self.rejects.append((tag, requeue))


@pytest.fixture
def consumer(tmp_path: Path) -> Iterator[tuple[TaskConsumer, ResultCollector]]:
    journal = Journal(tmp_path / "journal.db")
    with offline_consumer(journal, ENDPOINT, workers=WINDOW, prefetch=WINDOW) as made:
        yield made


def deliver(handler: TaskConsumer, gate: Path, tags: list[int]) -> tuple[Channel, list[str]]:
    """Hand ``handler`` one task per tag, each waiting for ``gate`` to exist."""
    channel = Channel()
    ids = []
    for tag in tags:
        function = serialize(tasks.wait_for_file)
        task = TaskEnvelope(
            task_id=str(uuid.uuid4()),
            function_id=function_id_for(function),
            function=function,
            args=serialize(((str(gate), tag), {})),
            endpoint_id=ENDPOINT,
        )
        handler._on_task(channel, tag, task, task.to_bytes())
        ids.append(task.task_id)
    return channel, ids


def test_deliveries_beyond_the_window_wait_unacked_until_the_engine_has_room(
    consumer: tuple[TaskConsumer, ResultCollector], tmp_path: Path
) -> None:
    handler, results = consumer
    gate = tmp_path / "gate"
    channel, ids = deliver(handler, gate, list(range(1, 2 * WINDOW + 1)))
    handler._flush_burst()
    assert channel.acks == [(WINDOW, True)]  # the first window only
    assert handler.in_flight() == WINDOW
    assert [handler.journal.state(t) for t in ids[WINDOW:]] == [None] * WINDOW  # not journaled
    handler._flush_burst()  # no room yet: nothing more is taken
    assert channel.acks == [(WINDOW, True)]
    gate.touch()
    results.wait(WINDOW)
    handler._drain_requests()  # the engine's "done" notices, as the consumer thread runs them
    handler._flush_burst()
    assert channel.acks == [(WINDOW, True), (2 * WINDOW, True)]
    assert {r.task_id for r in results.wait(2 * WINDOW)} == set(ids)
    assert channel.rejects == []


def test_a_delivery_that_waits_too_long_goes_back_to_rabbitmq(
    consumer: tuple[TaskConsumer, ResultCollector],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handler, results = consumer
    gate = tmp_path / "gate"
    channel, ids = deliver(handler, gate, list(range(1, WINDOW + 3)))
    handler._flush_burst()
    assert channel.acks == [(WINDOW, True)]
    handler._throttle()  # within the hold limit: the waiting deliveries stay
    assert channel.rejects == []
    monkeypatch.setattr(flow, "HOLD_LIMIT", 0.0)
    handler._throttle()
    assert channel.rejects == [(WINDOW + 1, True), (WINDOW + 2, True)]  # requeued, untouched
    assert [handler.journal.state(t) for t in ids[WINDOW:]] == [None, None]
    gate.touch()
    assert {r.task_id for r in results.wait(WINDOW)} == set(ids[:WINDOW])
