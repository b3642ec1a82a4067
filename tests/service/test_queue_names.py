"""Task queue names carry a tag only the service can compute (broker/topology.py says why);
a queue made by an earlier version, named by the endpoint id alone, is moved to the tagged
name with its tasks at the endpoint's next registration.  Real broker, real app."""

from __future__ import annotations

from typing import Any

import pika
import pytest
from flask import Flask

from outpost.protocol import TaskEnvelope
from outpost_service.broker.topology import Topology

from .conftest import AMQP_URL, Caller, app_state
from .test_tasks import take


def depth(queue: str) -> int | None:
    """Messages ready in ``queue``, or None when it does not exist."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        declared: Any = connection.channel().queue_declare(queue, passive=True)
        return int(declared.method.message_count)
    except pika.exceptions.ChannelClosedByBroker as exc:
        assert exc.reply_code == 404, exc
        return None
    finally:
        connection.close()


def leave_legacy_queue(channel: Any, topology: Topology, endpoint_id: str) -> None:
    """What an earlier version left: the untagged queue, the only one bound."""
    channel.queue_unbind(
        topology.task_queue(endpoint_id), topology.task_exchange, routing_key=endpoint_id
    )
    legacy = topology.legacy_task_queue(endpoint_id)
    channel.queue_declare(legacy, durable=True, arguments=topology.queue_arguments() or None)
    channel.queue_bind(legacy, topology.task_exchange, routing_key=endpoint_id)


def test_registration_names_a_tagged_queue(app: Flask, alice: Caller) -> None:
    answer = alice.ok("post", "/v1/endpoints", {"name": "tagged"})
    topology = app_state(app).topology
    queue = answer["amqp"]["task_queue"]
    assert (
        queue
        == topology.task_queue(answer["endpoint_id"])
        != topology.legacy_task_queue(answer["endpoint_id"])
    )
    assert depth(queue) == 0 and depth(topology.legacy_task_queue(answer["endpoint_id"])) is None


def test_a_legacy_queue_and_its_tasks_move_to_the_tagged_queue(
    app: Flask, alice: Caller, amqp_channel: Any
) -> None:
    endpoint_id = alice.register_endpoint("old")
    topology = app_state(app).topology
    legacy, tagged = topology.legacy_task_queue(endpoint_id), topology.task_queue(endpoint_id)
    leave_legacy_queue(amqp_channel, topology, endpoint_id)
    function_id = alice.register_function()
    waiting = alice.submit(endpoint_id, function_id, (1,), (2,), (3,))
    assert depth(legacy) == 3 and depth(tagged) == 0

    assert alice.register_endpoint("old") == endpoint_id  # the endpoint starts again

    assert depth(legacy) is None, "the legacy queue was not deleted"
    later = alice.submit(endpoint_id, function_id, (4,))  # routed to the tagged queue alone
    moved = [TaskEnvelope.from_bytes(body).task_id for _, body in take(amqp_channel, tagged, 4)]
    assert sorted(moved) == sorted(waiting + later)


def test_a_legacy_queue_still_consumed_stays_until_the_next_registration(
    app: Flask, alice: Caller, amqp_channel: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A consumer still on the old queue (an instance not yet cut off, e.g. with the shared
    broker login) keeps it: its tasks are moved, the queue stays, and a warning says so."""
    endpoint_id = alice.register_endpoint("busy")
    topology = app_state(app).topology
    legacy, tagged = topology.legacy_task_queue(endpoint_id), topology.task_queue(endpoint_id)
    leave_legacy_queue(amqp_channel, topology, endpoint_id)
    old_instance = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = old_instance.channel()
        channel.basic_qos(prefetch_count=1)
        channel.basic_consume(legacy, lambda *_: None)  # holds one task unacked, forever
        waiting = alice.submit(endpoint_id, alice.register_function(), (1,), (2,))
        old_instance.process_data_events(time_limit=0)
        with caplog.at_level("WARNING", logger="outpost_service.broker.topology"):
            alice.register_endpoint("busy")
        assert "still in use or not empty" in caplog.text
        assert depth(legacy) == 0  # the one not held was moved
    finally:
        old_instance.close()  # the held task goes back to the legacy queue
    alice.register_endpoint("busy")
    assert depth(legacy) is None
    moved = [TaskEnvelope.from_bytes(body).task_id for _, body in take(amqp_channel, tagged, 2)]
    assert sorted(moved) == sorted(waiting)
