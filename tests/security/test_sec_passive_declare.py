"""Passive queue declarations by endpoint broker users: an endpoint may look at its own task
queue but not at another endpoint's (its depth and consumer count).  Two real endpoint users
on the real broker.

RabbitMQ checks permissions on passive declarations only from 4.2.6 (rabbitmq-server #16085,
#16272); there the read permission ``^P\\.tasks\\.<own id>$`` (broker/admin.py) refuses every
other queue.  Older brokers check nothing, which no permission can change: on them this test
shows the leak and is an expected failure, and ``serve`` logs a warning saying to upgrade.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask
from pika.exceptions import ChannelClosedByBroker

from outpost_service.broker.admin import PASSIVE_DECLARE_CHECKED, passive_declare_checked
from outpost_service.state import prepare_broker

from ..service.conftest import Caller
from .conftest import connect, state_of
from .test_sec_broker_users import register


def test_checked_from_rabbitmq_4_2_6() -> None:
    assert not passive_declare_checked((3, 10, 8))
    assert not passive_declare_checked((4, 2, 5))
    assert not passive_declare_checked(None)
    assert passive_declare_checked(PASSIVE_DECLARE_CHECKED) and passive_declare_checked((4, 3, 0))


def test_an_endpoint_cannot_passive_declare_another_endpoints_queue(
    app: Flask, alice: Caller, bob: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    a = register(alice, "ep-a")
    b = register(bob, "ep-b")
    state = state_of(app)
    assert state.admin is not None
    version = state.admin.broker_version()
    with caplog.at_level(logging.WARNING, logger="outpost_service.state"):
        prepare_broker(state.config, state.admin)
    warned = "does not check permissions on passive queue declarations" in caplog.text
    assert warned == (not passive_declare_checked(version))

    connection = connect(a["amqp"]["url"])
    try:
        channel = connection.channel()
        if passive_declare_checked(version):  # (4.2.6/4.3.0 refuse even its own queue)
            with pytest.raises(ChannelClosedByBroker) as refused:
                channel.queue_declare(b["amqp"]["task_queue"], passive=True)
            assert refused.value.reply_code == 403
        else:
            own: Any = channel.queue_declare(a["amqp"]["task_queue"], passive=True)
            assert own.method.message_count == 0
            leaked = channel.queue_declare(b["amqp"]["task_queue"], passive=True)
            assert leaked.method.message_count == 0
            pytest.xfail(
                f"RabbitMQ {version} answers passive declarations without a permission check "
                f"(fixed in {'.'.join(map(str, PASSIVE_DECLARE_CHECKED))}); the service warned"
            )
    finally:
        connection.close()
