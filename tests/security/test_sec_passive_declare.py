"""Passive queue declarations by endpoint broker users: an endpoint may look at its own task
queue but must not learn anything of another endpoint's (its depth and consumer count).  Two
real endpoint users on the real broker.

RabbitMQ checks permissions on passive declarations only from 4.2.6 (rabbitmq-server #16085,
#16272); older brokers answer any passive declaration of a queue whose name the caller knows.
Endpoint ids are no secret (shared users submit to them), so task queue names carry a tag only
the service can compute (broker/topology.py): another endpoint cannot name the queue to ask.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from flask import Flask
from pika.exceptions import ChannelClosedByBroker

from outpost_service.broker.admin import PASSIVE_DECLARE_CHECKED, passive_declare_checked

from ..service.conftest import Caller
from .conftest import connect, state_of
from .test_sec_broker_users import register


def test_checked_from_rabbitmq_4_2_6() -> None:
    assert not passive_declare_checked((3, 10, 8))
    assert not passive_declare_checked((4, 2, 5))
    assert not passive_declare_checked(None)
    assert passive_declare_checked(PASSIVE_DECLARE_CHECKED) and passive_declare_checked((4, 3, 0))


def test_an_endpoint_cannot_passive_declare_another_endpoints_queue(
    app: Flask, alice: Caller, bob: Caller
) -> None:
    a = register(alice, "ep-a")
    b = register(bob, "ep-b")
    state = state_of(app)
    assert state.admin is not None
    version = state.admin.broker_version()
    guessed = f"{state.topology.prefix}.tasks.{b['endpoint_id']}"  # all alice knows of it
    assert b["amqp"]["task_queue"].startswith(f"{guessed}.")

    connection = connect(a["amqp"]["url"])
    try:
        if not passive_declare_checked(version):  # (4.2.6/4.3.0 refuse even its own queue)
            own: Any = connection.channel().queue_declare(a["amqp"]["task_queue"], passive=True)
            assert own.method.message_count == 0
        with pytest.raises(ChannelClosedByBroker) as refused:
            connection.channel().queue_declare(guessed, passive=True)
        assert refused.value.reply_code in (403, 404)
    finally:
        connection.close()


def test_queue_names_need_the_deployments_key(make_app: Any) -> None:
    """Replicas on one database name every queue alike (the key is kept there); a topology
    without that key (anyone else's guess) names another queue."""
    first, second = make_app(), make_app()
    endpoint_id = "0e6eed80-a412-404f-872a-52f276f130c3"
    topology = state_of(first).topology
    assert topology.queue_key and topology.queue_key == state_of(second).topology.queue_key
    assert topology.task_queue(endpoint_id) == state_of(second).topology.task_queue(endpoint_id)
    for other in ("", "another deployment's key"):
        guess = replace(topology, queue_key=other).task_queue(endpoint_id)
        assert guess != topology.task_queue(endpoint_id)
