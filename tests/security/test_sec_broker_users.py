"""Per-endpoint RabbitMQ users: what an endpoint's credentials let it do on the real broker.

Each test registers endpoints through the API, then uses the AMQP URL the registration answer
handed out (the endpoint's own user) straight against RabbitMQ, as a hostile endpoint would.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import pika
import pytest
import requests
from flask import Flask
from pika.exceptions import (
    ChannelClosedByBroker,
    ProbableAccessDeniedError,
    ProbableAuthenticationError,
)

from ..service.conftest import Caller
from .conftest import GUEST, MANAGEMENT_API, connect, state_of, user_exists


def register(caller: Caller, name: str, **extra: Any) -> dict[str, Any]:
    answer: dict[str, Any] = caller.ok("post", "/v1/endpoints", {"name": name, **extra})
    return answer


def refused(action: Any) -> ChannelClosedByBroker:
    with pytest.raises(ChannelClosedByBroker) as closed:
        action()
    assert closed.value.reply_code == 403, closed.value
    return closed.value


def test_registration_hands_out_the_endpoints_own_user(app: Flask, alice: Caller) -> None:
    answer = register(alice, "ep-a")
    url = pika.URLParameters(answer["amqp"]["url"])
    assert url.credentials.username == f"outpost-ep-{answer['endpoint_id']}"
    assert url.credentials.password not in ("", "guest")
    assert user_exists(f"outpost-ep-{answer['endpoint_id']}")


def test_endpoint_a_cannot_consume_b_queue_or_forge_b_results(
    app: Flask, alice: Caller, bob: Caller
) -> None:
    a = register(alice, "ep-a")
    b = register(bob, "ep-b")
    topology = state_of(app).topology
    connection = connect(a["amqp"]["url"])
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        # its own queue: readable (empty), and its own result and status keys: publishable
        assert channel.basic_get(a["amqp"]["task_queue"], auto_ack=False)[0] is None
        for key in (a["amqp"]["result_routing_key"], a["amqp"]["status_routing_key"]):
            channel.basic_publish(topology.result_exchange, key, b"{}")
        # B's queue: refused, whether by basic_get or by consuming
        refused(lambda: channel.basic_get(b["amqp"]["task_queue"]))
        channel = connection.channel()
        refused(lambda: channel.basic_consume(b["amqp"]["task_queue"], lambda *_: None))
        # a result or heartbeat under B's routing key: refused by the topic permission
        channel = connection.channel()
        channel.confirm_delivery()
        refused(
            lambda: channel.basic_publish(
                topology.result_exchange, b["amqp"]["result_routing_key"], b"{}"
            )
        )
        channel = connection.channel()
        channel.confirm_delivery()
        refused(
            lambda: channel.basic_publish(
                topology.result_exchange, b["amqp"]["status_routing_key"], b"{}"
            )
        )
        # tasks into B's queue (task exchange, or the default exchange): refused
        channel = connection.channel()
        channel.confirm_delivery()
        refused(lambda: channel.basic_publish(topology.task_exchange, b["endpoint_id"], b"{}"))
        channel = connection.channel()
        channel.confirm_delivery()
        refused(lambda: channel.basic_publish("", b["amqp"]["task_queue"], b"{}"))
        # declaring, deleting or purging anything: refused (configure is ^$)
        channel = connection.channel()
        refused(lambda: channel.queue_declare(f"{topology.prefix}.sneaky", durable=False))
        channel = connection.channel()
        refused(lambda: channel.queue_purge(b["amqp"]["task_queue"]))
    finally:
        connection.close()


def test_endpoint_user_cannot_open_another_vhost(app: Flask, alice: Caller) -> None:
    vhost = f"outpost-sec-{secrets.token_hex(4)}"
    created = requests.put(f"{MANAGEMENT_API}/vhosts/{vhost}", auth=GUEST, timeout=10)
    assert created.status_code in (201, 204), created.text
    try:
        url = register(alice, "ep-a")["amqp"]["url"]
        with pytest.raises(ProbableAccessDeniedError):
            connect(url, vhost=vhost)
    finally:
        requests.delete(f"{MANAGEMENT_API}/vhosts/{vhost}", auth=GUEST, timeout=10)


def test_reregistration_rotates_the_password(app: Flask, alice: Caller) -> None:
    first = register(alice, "ep-a")
    again = register(alice, "ep-a", endpoint_id=first["endpoint_id"])
    assert again["endpoint_id"] == first["endpoint_id"]
    assert again["amqp"]["url"] != first["amqp"]["url"]
    with pytest.raises(ProbableAuthenticationError):
        connect(first["amqp"]["url"])
    connect(again["amqp"]["url"]).close()


def test_deleting_the_endpoint_deletes_its_user(app: Flask, alice: Caller) -> None:
    answer = register(alice, "ep-a")
    user = f"outpost-ep-{answer['endpoint_id']}"
    assert user_exists(user)
    alice.ok("delete", f"/v1/endpoints/{answer['endpoint_id']}")
    assert not user_exists(user)
    with pytest.raises(ProbableAuthenticationError):
        connect(answer["amqp"]["url"])


def test_shared_mode_hands_out_the_service_url(make_app: Any) -> None:
    from .conftest import AMQP_URL, caller

    app = make_app(broker_auth="shared")
    answer = register(caller(app, "alice"), "ep-a")
    assert answer["amqp"]["url"] == AMQP_URL
    assert not user_exists(f"outpost-ep-{answer['endpoint_id']}")


def test_unreachable_management_api_is_a_503_that_says_how_to_fix_it(make_app: Any) -> None:
    from .conftest import caller

    app = make_app(management_url="http://127.0.0.1:1/")
    response = caller(app, "alice").post("/v1/endpoints", {"name": "ep-a"})
    assert response.status_code == 503, response.get_json()
    message = response.get_json()["error"]["message"]
    assert "management API" in message and "broker_auth" in message


def test_a_result_for_b_under_a_own_routing_key_is_not_stored(
    app: Flask, alice: Caller, bob: Caller
) -> None:
    """A's topic permission lets it publish only ``A.result``; a body claiming to come from B
    (with B's task id) under that key must not be stored as B's result."""
    from outpost.protocol import ResultEnvelope, TaskState, serialize
    from outpost_service.server import make_ingest

    state = state_of(app)
    ingest = make_ingest(state.config, state)
    ingest.start()
    try:
        assert ingest.consuming.wait(10), "ingest did not start consuming"
        a, b = register(alice, "ep-a"), register(bob, "ep-b")
        (b_task,) = bob.submit(b["endpoint_id"], bob.register_function(), (1,))
        fid = alice.register_function()
        (marker,) = alice.submit(a["endpoint_id"], fid, (2,))
        forged = ResultEnvelope(b_task, b["endpoint_id"], TaskState.SUCCESS, value=serialize(666))
        honest = ResultEnvelope(marker, a["endpoint_id"], TaskState.SUCCESS, value=serialize(4))
        connection = connect(a["amqp"]["url"])
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            key = a["amqp"]["result_routing_key"]
            for body in (forged.to_bytes(), honest.to_bytes()):
                channel.basic_publish(state.topology.result_exchange, key, body)
        finally:
            connection.close()
        # ingest handles the queue in order: once the marker is stored, the forgery was handled
        answer = alice.ok("post", "/v1/results", {"task_ids": [marker], "wait": 30})
        assert answer["results"], "the honest result never arrived"
        assert bob.ok("get", f"/v1/tasks/{b_task}")["state"] != "success"
    finally:
        ingest.stop()


def test_rotation_closes_the_old_credentials_live_connection(app: Flask, alice: Caller) -> None:
    first = register(alice, "ep-a")
    user = f"outpost-ep-{first['endpoint_id']}"
    connection = connect(first["amqp"]["url"])
    try:
        deadline = time.monotonic() + 30  # the management API lists connections with a lag
        while user not in connected_users():
            assert time.monotonic() < deadline, "the management API never listed the connection"
            connection.process_data_events(time_limit=0.2)
        register(alice, "ep-a", endpoint_id=first["endpoint_id"])
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                connection.process_data_events(time_limit=0.2)
    finally:
        if connection.is_open:
            connection.close()


def connected_users() -> list[str]:
    listing = requests.get(f"{MANAGEMENT_API}/connections?columns=user", auth=GUEST, timeout=10)
    return [str(c.get("user")) for c in listing.json()]
