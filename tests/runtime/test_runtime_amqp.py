"""``outpost.runtime.amqp_connection`` and ``amqp_confirms`` against the real RabbitMQ: batches
confirmed in order, a returned (unroutable) or nacked message reported as not taken, a
connection lost before the confirm reported as an error, final errors told from retryable ones.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pika
import pika.exceptions
import pytest

from outpost.errors import ConfigurationError
from outpost.protocol.tls import TlsFiles
from outpost.runtime.amqp_confirms import ConfirmingConnection, Message, persistent_json
from outpost.runtime.amqp_connection import (
    RETRYABLE,
    AmqpTarget,
    UntrustedBrokerError,
    login_refused,
)

from ..recipes import missing

AMQP_URL = os.environ.get("OUTPOST_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


@pytest.fixture
def channel() -> Iterator[Any]:
    try:
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    except pika.exceptions.AMQPError as exc:
        missing(f"RabbitMQ at {AMQP_URL} ({exc!r})", "start it with `bash scripts/bootstrap.sh`")
    yield connection.channel()
    connection.close()


@pytest.fixture
def queue(channel: Any) -> Iterator[str]:
    name = f"test-runtime-{uuid.uuid4().hex[:8]}"
    channel.queue_declare(name, durable=True)
    yield name
    channel.queue_delete(name)


@pytest.fixture
def link(channel: Any) -> Iterator[ConfirmingConnection]:
    connection = ConfirmingConnection.open(AmqpTarget(AMQP_URL, "test-runtime"))
    yield connection
    connection.close()


def message(queue: str, n: int, *, mandatory: bool = True) -> Message:
    body = f"message {n}".encode()
    return Message("", queue, body, persistent_json("test", f"m{n}"), mandatory)


def bodies(channel: Any, queue: str) -> list[bytes]:
    got = []
    while True:
        method, _properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return got
        got.append(body)


def test_a_batch_is_published_in_order_and_confirmed(
    link: ConfirmingConnection, channel: Any, queue: str
) -> None:
    assert link.publish([message(queue, n) for n in range(1000)], timeout=30) == [True] * 1000
    assert bodies(channel, queue) == [f"message {n}".encode() for n in range(1000)]
    assert link.publish([], timeout=30) == []


def test_threads_share_one_connection(link: ConfirmingConnection, channel: Any, queue: str) -> None:
    outcomes: list[list[bool]] = []

    def publish(first: int) -> None:
        outcomes.append(link.publish([message(queue, first + n) for n in range(200)], 30))

    threads = [threading.Thread(target=publish, args=(i * 200,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert outcomes == [[True] * 200] * 4
    assert len(bodies(channel, queue)) == 800


def test_a_returned_message_is_not_taken(link: ConfirmingConnection, queue: str) -> None:
    batch = [message(queue, 0), message(f"{queue}-nowhere", 1), message(queue, 2)]
    assert link.publish(batch, timeout=30) == [True, False, True]
    # Not mandatory: dropped unrouted, and acked as taken (what heartbeats rely on).
    assert link.publish([message(f"{queue}-nowhere", 3, mandatory=False)], 30) == [True]
    link.send(message(queue, 4, mandatory=False))  # unconfirmed sends keep the tags in step
    assert link.publish([message(queue, 5)], timeout=30) == [True]


def test_a_nacked_message_is_not_taken(
    link: ConfirmingConnection, channel: Any, queue: str
) -> None:
    full = f"{queue}-full"
    channel.queue_declare(
        full, arguments={"x-max-length": 1, "x-overflow": "reject-publish"}, auto_delete=True
    )
    outcome = link.publish([message(full, 0), message(full, 1), message(queue, 2)], timeout=30)
    assert outcome == [True, False, True]


def test_a_connection_lost_before_the_confirm_fails_the_batch(
    link: ConfirmingConnection, queue: str
) -> None:
    link._connection._transport._sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
    with pytest.raises(RETRYABLE):
        link.publish([message(queue, n) for n in range(100)], timeout=30)
    assert not link.is_open
    with pytest.raises(RETRYABLE):
        link.send(message(queue, 0))


def test_a_missing_exchange_fails_the_batch(link: ConfirmingConnection) -> None:
    missing_exchange = Message("no-such-exchange", "k", b"x", persistent_json("test", "m"))
    with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="NOT_FOUND"):
        link.publish([missing_exchange], timeout=30)
    assert not link.is_open


def test_a_confirm_that_does_not_come_in_time_fails(link: ConfirmingConnection, queue: str) -> None:
    with pytest.raises(pika.exceptions.AMQPConnectionError, match="no publisher confirm"):
        link.publish([message(queue, n) for n in range(2000)], timeout=0.000_001)
    assert not link.is_open


def test_a_refused_login_is_told_apart(channel: Any) -> None:
    wrong = AMQP_URL.replace("guest:guest", "guest:wrong-password")
    with pytest.raises(RETRYABLE) as refused:
        ConfirmingConnection.open(AmqpTarget(wrong, "test-runtime"))
    assert login_refused(refused.value)
    with pytest.raises(RETRYABLE) as blocking:
        AmqpTarget(wrong, "test-runtime").connect()
    assert login_refused(blocking.value)


def test_a_dead_broker_is_retryable_and_not_a_refused_login() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    target = AmqpTarget(f"amqp://guest:guest@127.0.0.1:{port}/", "test-runtime")
    with pytest.raises(RETRYABLE) as dead:
        target.connect()
    assert not login_refused(dead.value)
    with pytest.raises(RETRYABLE):
        ConfirmingConnection.open(target)


def test_parameters_carry_the_name_and_fail_fast() -> None:
    params = AmqpTarget(
        AMQP_URL, "named", socket_timeout=3, blocked_connection_timeout=9
    ).parameters()
    assert params.client_properties == {"connection_name": "named"}
    assert (params.connection_attempts, params.socket_timeout) == (1, 3)
    assert params.blocked_connection_timeout == 9
    assert params.ssl_options is None


def test_amqps_builds_a_verifying_context_and_names_the_setting(tmp_path: Any) -> None:
    target = AmqpTarget(
        "amqps://guest:guest@broker.example:5671/", "t", ca_setting="THE_CA_SETTING"
    )
    params = target.parameters()
    assert params.ssl_options is not None
    assert params.ssl_options.server_hostname == "broker.example"
    failure = OSError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed")
    untrusted = target.untrusted(failure)
    assert isinstance(untrusted, UntrustedBrokerError)
    assert "THE_CA_SETTING" in str(untrusted) and ":guest@" not in str(untrusted)
    assert target.untrusted(ConnectionRefusedError("refused")) is None
    unreadable = AmqpTarget(target.url, "t", TlsFiles(str(tmp_path / "none.pem")))
    with pytest.raises(ConfigurationError):
        unreadable.parameters()


def test_a_closed_connection_refuses_at_once(link: ConfirmingConnection, queue: str) -> None:
    link.close()
    assert not link.is_open
    with pytest.raises(RETRYABLE):
        link.publish([message(queue, 0)], timeout=30)


def test_the_outcome_list_keeps_what_was_confirmed_before_a_failure(
    link: ConfirmingConnection, queue: str
) -> None:
    taken = [False] * 3
    assert link.publish([message(queue, n) for n in range(3)], 30, taken) is taken
    assert taken == [True, True, True]
    link._connection._transport._sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
    lost = [False] * 50
    with pytest.raises(RETRYABLE):
        link.publish([message(queue, n) for n in range(50)], 30, lost)
    assert lost == [False] * 50  # nothing was confirmed: a retry publishes them all


def test_a_list_of_nodes_connects_to_the_first_that_answers(channel: Any, queue: str) -> None:
    """A cluster's URL list: a dead first node is skipped by blocking and confirming
    connections alike; every node dead is retryable, said with every URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"amqp://guest:guest@127.0.0.1:{probe.getsockname()[1]}/"
    target = AmqpTarget.of([dead, AMQP_URL], "test-runtime")
    assert target.urls == (dead, AMQP_URL)
    with target.connect() as connection:
        assert connection.is_open
    link = ConfirmingConnection.open(target)
    try:
        assert link.publish([message(queue, 1)], timeout=10) == [True]
    finally:
        link.close()
    with pytest.raises(RETRYABLE):
        AmqpTarget.of([dead, dead], "test-runtime").connect()
    with pytest.raises(RETRYABLE):
        ConfirmingConnection.open(AmqpTarget.of([dead, dead], "test-runtime"))
    with pytest.raises(ConfigurationError, match="no RabbitMQ URL"):
        AmqpTarget.of([], "test-runtime")
