"""Ingest stores at once a result that a small long-poll is waiting for, however long its
batches may otherwise gather (the single-task round trip must not pay the batching delay)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from .conftest import Caller, app_state, running_ingest
from .test_ingest import long_poll, publish_result, success


@pytest.fixture
def slow_batching_ingest(app: Flask) -> Iterator[Any]:
    # only urgency (or a full batch) can make it commit
    with running_ingest(app, max_batch_age=3600.0, prefetch=1000) as consumer:
        yield consumer


def test_an_awaited_result_is_stored_without_waiting_for_the_batch(
    app: Flask, alice: Caller, slow_batching_ingest: Any, amqp_channel: Any
) -> None:
    endpoint_id = alice.register_endpoint()
    (task_id,) = alice.submit(endpoint_id, alice.register_function(), (1,))
    answers: list[dict[str, Any]] = []
    waiter = Caller(app.test_client(), alice.token)
    poll = threading.Thread(target=lambda: answers.append(long_poll(waiter, [task_id], 60)))
    poll.start()
    publish_result(amqp_channel, app, success(task_id, endpoint_id, 7))
    poll.join(30)  # the batch would wait an hour: only the urgency path answers in time
    assert not poll.is_alive(), "the awaited result was held back in an ingest batch"
    (answer,) = answers
    assert [r["task_id"] for r in answer["results"]] == [task_id]


def test_a_poll_for_many_ids_does_not_mark_them_urgent(app: Flask) -> None:
    notifier = app_state(app).notifier
    many = frozenset(f"t{i}" for i in range(100))
    with notifier.awaiting(many):
        assert not notifier.awaited(["t1"])
    with notifier.awaiting(frozenset({"a", "b"})), notifier.awaiting(frozenset({"a"})):
        assert notifier.awaited(["x", "a"])
    assert not notifier.awaited(["a", "b"])
