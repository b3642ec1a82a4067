"""The service's publisher retries a failed publish with only the messages RabbitMQ did not
confirm, and re-declares the queue of refused ones (a fake confirming connection stands in)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pika.exceptions
import pytest

from outpost.protocol import TaskEnvelope, serialize
from outpost.runtime.amqp_confirms import Message
from outpost_service.broker.publisher import Publisher
from outpost_service.broker.topology import Topology
from outpost_service.errors import BrokerError


class FakeConnection:
    """Answers each publish with the next scripted outcome: a list of bools, or an error
    raised after the listed messages were confirmed."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.published: list[list[str | None]] = []

    def publish(self, messages: Sequence[Message], timeout: float, taken: list[bool]) -> list[bool]:
        self.published.append([m.properties.message_id for m in messages])
        step = self.script.pop(0)
        confirmed, error = step if isinstance(step, tuple) else (step, None)
        taken[:] = confirmed
        if error is not None:
            raise error
        return taken


def tasks(count: int) -> list[TaskEnvelope]:
    endpoint_id = str(uuid.uuid4())
    args = serialize(((), {}))
    return [
        TaskEnvelope(str(uuid.uuid4()), "f", serialize(abs), args, endpoint_id)
        for _ in range(count)
    ]


@pytest.fixture
def publisher(monkeypatch: pytest.MonkeyPatch) -> tuple[Publisher, list[str]]:
    built = Publisher("amqp://guest:guest@127.0.0.1:1/", Topology("test"), attempts=3)
    declared: list[str] = []
    monkeypatch.setattr(
        built, "_on_topology", lambda _action, endpoint_id: declared.append(endpoint_id)
    )
    return built, declared


def test_a_retry_publishes_only_what_was_not_confirmed(
    publisher: tuple[Publisher, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    built, declared = publisher
    lost = pika.exceptions.StreamLostError("connection lost")
    fake = FakeConnection(([True, False, True, False], lost), [True, True])
    monkeypatch.setattr(built, "_connection", lambda: fake)
    sent = tasks(4)
    built.publish_tasks(sent)
    assert fake.published == [[t.task_id for t in sent], [sent[1].task_id, sent[3].task_id]]
    assert declared == []


def test_refused_messages_get_their_queue_declared_and_go_again(
    publisher: tuple[Publisher, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    built, declared = publisher
    fake = FakeConnection([True, False], [True])
    monkeypatch.setattr(built, "_connection", lambda: fake)
    sent = tasks(2)
    built.publish_tasks(sent)
    assert fake.published[1] == [sent[1].task_id]
    assert declared == [sent[1].endpoint_id]


def test_messages_refused_every_time_fail_the_publish(
    publisher: tuple[Publisher, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    built, _declared = publisher
    fake = FakeConnection(*[[False]] * 9)
    monkeypatch.setattr(built, "_connection", lambda: fake)
    with pytest.raises(BrokerError, match="failed 3 times"):
        built.publish_tasks(tasks(1))
    assert len(fake.published) == 9  # 3 attempts of 3 rounds
