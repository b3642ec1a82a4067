"""Registering endpoints and submitting tasks really reaches RabbitMQ."""

from __future__ import annotations

import socket
import uuid
from typing import Any

import pika
import pytest
from flask import Flask

from outpost.protocol import CancelRequest, TaskEnvelope, decode_message, deserialize
from outpost_service.broker.admin import with_credentials

from .conftest import Caller, app_state, row_counts


def take(channel: Any, queue: str, count: int, timeout: float = 10) -> list[tuple[Any, bytes]]:
    """Consume ``count`` messages from ``queue`` (acking them), waiting up to ``timeout`` each."""
    messages = []
    for method, properties, body in channel.consume(queue, inactivity_timeout=timeout):
        assert method is not None, f"only {len(messages)} of {count} messages arrived in {queue}"
        channel.basic_ack(method.delivery_tag)
        messages.append((properties, body))
        if len(messages) == count:
            break
    channel.cancel()
    return messages


def test_registration_answers_the_contract(app: Flask, alice: Caller, amqp_channel: Any) -> None:
    answer = alice.ok("post", "/v1/endpoints", {"name": "polaris", "metadata": {"site": "alcf"}})
    endpoint_id = answer["endpoint_id"]
    topology = app_state(app).topology
    assert answer == {
        "endpoint_id": endpoint_id,
        "name": "polaris",
        "amqp": {
            # the endpoint's own broker user (tests/security/test_sec_broker_users.py)
            "url": with_credentials(
                app_state(app).config.public_amqp_url,
                f"outpost-ep-{endpoint_id}",
                pika.URLParameters(answer["amqp"]["url"]).credentials.password,
            ),
            "urls": [answer["amqp"]["url"]],  # a cluster's nodes, in the order to try
            "task_exchange": f"{topology.prefix}.tasks",
            "task_queue": topology.task_queue(endpoint_id),
            "result_exchange": f"{topology.prefix}.results",
            "result_routing_key": f"{endpoint_id}.result",
            "status_routing_key": f"{endpoint_id}.status",
            "heartbeat_interval": 10.0,
            "task_signing_key": app_state(app).publisher.signer.public_key,  # type: ignore[union-attr]
            "task_max_age": 7 * 24 * 3600.0,
        },
    }
    # The queue exists and is durable with the dead-letter argument (passive declare checks).
    amqp_channel.queue_declare(
        topology.task_queue(endpoint_id), durable=True, arguments=topology.queue_arguments()
    )
    # Same name re-attaches; a known id re-attaches (and may rename).
    assert alice.register_endpoint("polaris") == endpoint_id
    assert alice.register_endpoint("polaris-2", endpoint_id=endpoint_id) == endpoint_id
    listing = alice.ok("get", "/v1/endpoints")["endpoints"]
    assert [(e["endpoint_id"], e["name"], e["state"]) for e in listing] == [
        (endpoint_id, "polaris-2", "offline")
    ]
    assert listing[0]["metadata"] == {"site": "alcf"}
    # A client-chosen id is accepted for a new endpoint.
    chosen = str(uuid.uuid4())
    assert alice.register_endpoint("other", endpoint_id=chosen) == chosen


def test_submit_lands_in_the_endpoint_queue(app: Flask, alice: Caller, amqp_channel: Any) -> None:
    endpoint_id = alice.register_endpoint()
    function_id = alice.register_function(abs)
    assert alice.register_function(abs) == function_id  # content-addressed, stored once
    group = str(uuid.uuid4())
    task_ids = alice.submit(
        endpoint_id,
        function_id,
        (-1,),
        (-2,),
        (-3,),
        task_group_id=group,
        resource_specification={"walltime": 5},
    )
    assert len(set(task_ids)) == 3

    messages = take(amqp_channel, app_state(app).topology.task_queue(endpoint_id), 3)
    envelopes = []
    for properties, body in messages:
        assert properties.content_type == "application/json"
        assert properties.type == "task"
        assert properties.delivery_mode == pika.DeliveryMode.Persistent.value
        envelope = decode_message(body)
        assert isinstance(envelope, TaskEnvelope)
        envelopes.append(envelope)
    assert [e.task_id for e in envelopes] == task_ids
    assert deserialize(envelopes[0].function) is abs
    assert [deserialize(e.args) for e in envelopes] == [((-1,), {}), ((-2,), {}), ((-3,), {})]
    assert {e.task_group_id for e in envelopes} == {group}
    assert envelopes[0].resource_specification == {"walltime": 5}

    task = alice.ok("get", f"/v1/tasks/{task_ids[0]}")
    assert task["state"] == "queued" and task["result"] is None
    assert [e["state"] for e in task["events"]] == ["received", "queued"]
    listing = alice.ok("get", f"/v1/task_groups/{group}/tasks")
    assert [t["task_id"] for t in listing["tasks"]] == task_ids
    assert alice.ok("get", f"/v1/endpoints/{endpoint_id}")["outstanding_tasks"] == 3
    waited = alice.ok("post", "/v1/results", {"task_ids": task_ids, "wait": 0})
    assert waited == {"results": [], "pending": task_ids}


def test_tasks_without_a_group_have_none(alice: Caller) -> None:
    endpoint_id = alice.register_endpoint()
    (task_id,) = alice.submit(endpoint_id, alice.register_function(), (1,))
    assert alice.ok("get", f"/v1/tasks/{task_id}")["task_group_id"] is None


def test_cancel_a_queued_task_tells_the_endpoint(
    app: Flask, alice: Caller, amqp_channel: Any
) -> None:
    endpoint_id = alice.register_endpoint()
    (task_id,) = alice.submit(endpoint_id, alice.register_function(), (1,))
    assert alice.ok("post", f"/v1/tasks/{task_id}/cancel") == {
        "task_id": task_id,
        "state": "cancelled",
    }
    queue = app_state(app).topology.task_queue(endpoint_id)
    _task, (properties, cancel_body) = take(amqp_channel, queue, 2)
    assert properties.type == "cancel"
    cancel = decode_message(cancel_body)
    assert isinstance(cancel, CancelRequest) and cancel.task_ids == [task_id]

    result = alice.ok("post", "/v1/results", {"task_ids": [task_id], "wait": 0})["results"][0]
    assert result["state"] == "cancelled"
    assert result["error"]["reason"] == "cancelled"
    # Cancelling again reports the final state unchanged.
    before = row_counts(app)
    assert alice.ok("post", f"/v1/tasks/{task_id}/cancel")["state"] == "cancelled"
    assert row_counts(app) == before


def test_delete_endpoint_removes_its_queue_and_ends_its_tasks(
    app: Flask, alice: Caller, amqp_channel: Any
) -> None:
    endpoint_id = alice.register_endpoint()
    (task_id,) = alice.submit(endpoint_id, alice.register_function(), (1,))
    assert alice.ok("delete", f"/v1/endpoints/{endpoint_id}") == {"deleted": endpoint_id}
    assert alice.get(f"/v1/endpoints/{endpoint_id}").status_code == 404
    assert alice.ok("get", f"/v1/tasks/{task_id}")["state"] == "cancelled"
    queue = app_state(app).topology.task_queue(endpoint_id)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
        amqp_channel.queue_declare(queue, passive=True)
    assert raised.value.reply_code == 404


def test_a_vanished_endpoint_queue_is_declared_again(
    app: Flask, alice: Caller, amqp_channel: Any
) -> None:
    endpoint_id = alice.register_endpoint()
    function_id = alice.register_function()
    alice.submit(endpoint_id, function_id, (0,))  # the publisher's connection is now open
    queue = app_state(app).topology.task_queue(endpoint_id)
    amqp_channel.queue_delete(queue)
    task_ids = alice.submit(endpoint_id, function_id, (1,), (2,))
    bodies = [body for _, body in take(amqp_channel, queue, 2)]
    assert [TaskEnvelope.from_bytes(b).task_id for b in bodies] == task_ids


def test_a_big_batch_is_published_in_order(app: Flask, alice: Caller, amqp_channel: Any) -> None:
    endpoint_id = alice.register_endpoint()
    task_ids = alice.submit(endpoint_id, alice.register_function(), *[(i,) for i in range(500)])
    queue = app_state(app).topology.task_queue(endpoint_id)
    received = [TaskEnvelope.from_bytes(body).task_id for _, body in take(amqp_channel, queue, 500)]
    assert received == task_ids


def test_publisher_reconnects_after_losing_its_connection(
    app: Flask, alice: Caller, amqp_channel: Any
) -> None:
    endpoint_id = alice.register_endpoint()
    function_id = alice.register_function()
    alice.submit(endpoint_id, function_id, (0,))
    # Cut the publisher's connection under pika's feet, as a broker restart would.
    link = app_state(app).publisher._confirming
    link._connection._transport._sock.shutdown(socket.SHUT_RDWR)
    (task_id,) = alice.submit(endpoint_id, function_id, (1,))
    queue = app_state(app).topology.task_queue(endpoint_id)
    bodies = [body for _, body in take(amqp_channel, queue, 2)]
    assert TaskEnvelope.from_bytes(bodies[-1]).task_id == task_id
    assert app_state(app).publisher._confirming is not link
