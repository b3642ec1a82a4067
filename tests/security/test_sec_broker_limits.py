"""Broker resource limits: the dead-letter queue is capped (operator policy, so queues made by
earlier versions are capped too) and per-endpoint broker users have connection and channel
limits.  Real RabbitMQ, real management API (broker/admin.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pika
import pytest
import requests
from flask import Flask
from pika.exceptions import AMQPConnectionError, ChannelClosedByBroker, ConnectionClosedByBroker

from outpost_service.state import prepare_broker

from ..service.conftest import Caller
from .conftest import AMQP_URL, GUEST, MANAGEMENT_API, connect, state_of
from .test_sec_broker_users import register

CAP = 50
CAP_BYTES = 1024 * 1024


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def queue_info(queue: str) -> dict[str, Any]:
    url = f"{MANAGEMENT_API}/queues/%2F/{quote(queue, safe='')}"
    answer: dict[str, Any] = requests.get(url, auth=GUEST, timeout=10).json()
    return answer


def depth(channel: Any, queue: str) -> int:
    return int(channel.queue_declare(queue, passive=True).method.message_count)


@pytest.fixture
def capped_app(make_app: Any) -> Flask:
    app: Flask = make_app(dead_letter_max_length=CAP, dead_letter_max_bytes=CAP_BYTES)
    return app


def test_a_flooded_dead_letter_queue_stays_at_its_cap(capped_app: Flask) -> None:
    state = state_of(capped_app)
    topology = state.topology
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        # An existing deployment: P.dead already made (without limit arguments) ...
        topology.declare_core(channel)
        # ... gets its cap from the policy, with no redeclaration (no PRECONDITION_FAILED).
        assert prepare_broker(state.config, state.admin)
        policy = state.admin.dead_letter_policy if state.admin else ""
        wait_until(
            lambda: queue_info(topology.dead_queue).get("operator_policy") == policy,
            "the operator policy to apply to the dead-letter queue",
        )
        effective = queue_info(topology.dead_queue)["effective_policy_definition"]
        assert effective["max-length"] == CAP and effective["max-length-bytes"] == CAP_BYTES
        assert effective["message-ttl"] == int(state.config.dead_letter_ttl * 1000)

        for i in range(20 * CAP):  # a flood of small junk: the count cap holds
            channel.basic_publish(topology.dead_exchange, "", b"junk %d" % i)
        assert depth(channel, topology.dead_queue) == CAP
        junk = b"x" * (100 * 1024)
        for _ in range(40):  # 4 MiB of large junk: the byte cap holds
            channel.basic_publish(topology.dead_exchange, "", junk)
        assert depth(channel, topology.dead_queue) * len(junk) <= CAP_BYTES
        # the newest dead letters are kept (the oldest are dropped first)
        method, _, body = channel.basic_get(topology.dead_queue, auto_ack=True)
        assert method is not None and body == junk

        topology.declare_core(channel)  # redeclaring as every version does still works
    finally:
        connection.close()


def test_endpoint_broker_users_have_connection_and_channel_limits(
    make_app: Any, alice: Caller
) -> None:
    app = make_app(endpoint_max_connections=2, endpoint_max_channels=3)
    owner = Caller(app.test_client(), alice.token)
    answer = register(owner, "limited")
    url = answer["amqp"]["url"]
    user = f"outpost-ep-{answer['endpoint_id']}"
    limits = requests.get(f"{MANAGEMENT_API}/user-limits/{user}", auth=GUEST, timeout=10).json()
    assert limits[0]["value"] == {"max-connections": 2, "max-channels": 3}

    first, second = connect(url), connect(url)
    try:
        with pytest.raises(AMQPConnectionError):
            connect(url).close()  # a third connection is refused
        first.channel()
        first.channel()
        second.channel()  # 3 channels across the user's connections: the limit
        with pytest.raises((ChannelClosedByBroker, ConnectionClosedByBroker)):
            second.channel()
    finally:
        for connection in (first, second):
            if connection.is_open:
                connection.close()
