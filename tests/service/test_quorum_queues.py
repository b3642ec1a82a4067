"""``queue_type: quorum`` on the real broker: quorum queues are declared, carry tasks, and
dead-letter what a consumer rejects; a queue of the other type gives a clear error.

Types are read back from the RabbitMQ management API, the source of truth for a queue's type.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import replace
from typing import Any

import pika
import pytest
import requests
from flask import Flask

from outpost_service import ServiceConfig
from outpost_service.errors import BrokerError

from .conftest import AMQP_URL, Caller, app_state, new_token, running_ingest
from .test_tasks import take

MANAGEMENT = "http://127.0.0.1:15672"


def queue_info(name: str) -> dict[str, Any]:
    response = requests.get(
        f"{MANAGEMENT}/api/queues/%2F/{urllib.parse.quote(name, safe='')}",
        auth=("guest", "guest"),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    info: dict[str, Any] = response.json()
    return info


@pytest.fixture
def quorum_app(make_app: Any) -> Flask:
    app: Flask = make_app(queue_type="quorum")
    return app


@pytest.fixture
def carol(quorum_app: Flask) -> Caller:
    return Caller(quorum_app.test_client(), new_token(quorum_app, "carol"))


def test_queue_type_is_validated_with_a_clear_error() -> None:
    with pytest.raises(Exception, match=r"queue_type must be one of classic, quorum, got 'qorum'"):
        ServiceConfig(queue_type="qorum")
    assert ServiceConfig().queue_type == "classic"


def test_registration_declares_quorum_queues(quorum_app: Flask, carol: Caller) -> None:
    endpoint_id = carol.register_endpoint()
    topology = app_state(quorum_app).topology
    task_queue = queue_info(topology.task_queue(endpoint_id))
    assert task_queue["type"] == "quorum"
    assert task_queue["durable"] is True
    assert task_queue["arguments"] == {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": topology.dead_exchange,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    assert queue_info(topology.ingest_queue)["type"] == "quorum"
    assert queue_info(topology.dead_queue)["type"] == "quorum"


def test_tasks_are_consumed_and_rejects_are_dead_lettered(
    quorum_app: Flask, carol: Caller, amqp_channel: Any
) -> None:
    endpoint_id = carol.register_endpoint()
    topology = app_state(quorum_app).topology
    queue = topology.task_queue(endpoint_id)
    (task_id,) = carol.submit(endpoint_id, carol.register_function(), (3,))
    # Consume as the endpoint does: a prefetch window (basic_qos), then reject a malformed one.
    amqp_channel.basic_qos(prefetch_count=4)
    ((properties, body),) = take(amqp_channel, queue, 1)
    assert json.loads(body)["task_id"] == task_id
    assert properties.delivery_mode == pika.DeliveryMode.Persistent.value
    amqp_channel.basic_publish(
        topology.task_exchange,
        endpoint_id,
        b"this is not a task",
        pika.BasicProperties(delivery_mode=2),
    )
    for method, _props, payload in amqp_channel.consume(queue, inactivity_timeout=10):
        assert method is not None, "the malformed message never arrived"
        assert payload == b"this is not a task"
        amqp_channel.basic_reject(method.delivery_tag, requeue=False)
        break
    amqp_channel.cancel()
    ((dead_props, dead_body),) = take(amqp_channel, topology.dead_queue, 1)
    assert dead_body == b"this is not a task"
    assert dead_props.headers["x-death"][0]["reason"] == "rejected"
    assert dead_props.headers["x-death"][0]["queue"] == queue


def test_ingest_dead_letters_malformed_results_from_a_quorum_queue(
    quorum_app: Flask, amqp_channel: Any
) -> None:
    state = app_state(quorum_app)
    with running_ingest(quorum_app):
        amqp_channel.basic_publish(
            state.topology.result_exchange,
            "x.result",
            b"not json",
            pika.BasicProperties(delivery_mode=2),
        )
        ((props, body),) = take(amqp_channel, state.topology.dead_queue, 1)
    assert body == b"not json"
    assert props.headers["x-death"][0]["queue"] == state.topology.ingest_queue


@pytest.mark.parametrize(("existing", "wanted"), [("classic", "quorum"), ("quorum", "classic")])
def test_a_queue_of_the_other_type_gives_a_clear_error(
    make_app: Any, existing: str, wanted: str
) -> None:
    old = make_app(queue_type=existing)
    endpoint_id = Caller(old.test_client(), new_token(old, "dave")).register_endpoint()
    topology = app_state(old).topology
    queue = topology.task_queue(endpoint_id)
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        with pytest.raises(BrokerError) as caught:
            replace(topology, queue_type=wanted).declare_endpoint_queue(
                connection.channel(), endpoint_id
            )
    finally:
        connection.close()
    message = str(caught.value)
    assert repr(queue) in message
    assert f"as a {wanted} queue" in message
    assert f"already exists as a {existing} queue" in message
    assert f"keep queue_type={existing!r}" in message
    assert f"delete_queue {queue} --if-empty" in message
    assert queue_info(queue)["type"] == existing  # nothing was changed
    # Through the API, the same explanation reaches the caller (503, nothing stored).
    new = make_app(queue_type=wanted)
    response = Caller(new.test_client(), new_token(new, "dave")).post(
        "/v1/endpoints", {"name": "ep1", "endpoint_id": endpoint_id}
    )
    assert response.status_code == 503
    assert "already exists as a" in json.dumps(response.get_json())
