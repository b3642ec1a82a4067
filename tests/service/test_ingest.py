"""Result ingest: results and heartbeats from RabbitMQ reach the store and wake long-polls."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pika
import pytest
from flask import Flask

from outpost.protocol import EndpointStatus, ErrorInfo, ResultEnvelope, TaskState, serialize
from outpost_service.server import make_ingest

from .conftest import Caller, app_state, new_token, running_ingest
from .test_tasks import take


@pytest.fixture
def ingest(app: Flask) -> Iterator[Any]:
    with running_ingest(app) as consumer:
        yield consumer


def publish(channel: Any, app: Flask, routing_key: str, body: bytes) -> None:
    channel.basic_publish(
        app_state(app).topology.result_exchange,
        routing_key,
        body,
        pika.BasicProperties(delivery_mode=2, content_type="application/json"),
    )


def publish_result(channel: Any, app: Flask, result: ResultEnvelope) -> None:
    publish(channel, app, f"{result.endpoint_id}.result", result.to_bytes())


def success(task_id: str, endpoint_id: str, value: Any) -> ResultEnvelope:
    return ResultEnvelope(task_id, endpoint_id, TaskState.SUCCESS, value=serialize(value))


def long_poll(caller: Caller, task_ids: list[str], wait: float = 30) -> dict[str, Any]:
    return dict(caller.ok("post", "/v1/results", {"task_ids": task_ids, "wait": wait}))


def test_long_poll_is_woken_by_an_ingested_result(
    app: Flask, alice: Caller, ingest: Any, amqp_channel: Any
) -> None:
    endpoint_id = alice.register_endpoint()
    task_ids = alice.submit(endpoint_id, alice.register_function(), (1,), (2,))
    answers: list[dict[str, Any]] = []
    waiter = Caller(app.test_client(), alice.token)
    poll = threading.Thread(target=lambda: answers.append(long_poll(waiter, task_ids, 60)))
    poll.start()
    publish_result(amqp_channel, app, success(task_ids[1], endpoint_id, 42))
    poll.join(30)  # far less than the 60 s wait: only a wake-up can end it in time
    assert not poll.is_alive(), "the long-poll was not woken by the ingested result"
    (answer,) = answers
    assert answer["pending"] == [task_ids[0]]
    (result,) = answer["results"]
    assert ResultEnvelope.from_dict(result) == success(task_ids[1], endpoint_id, 42)
    task = alice.ok("get", f"/v1/tasks/{task_ids[1]}")
    assert task["state"] == "success" and task["completed_at"] is not None
    assert [e["state"] for e in task["events"]] == ["received", "queued", "success"]
    # Results stay readable after being read.
    assert long_poll(alice, [task_ids[1]], 0)["results"] == [result]


def test_duplicate_and_late_results_are_ignored(
    app: Flask, alice: Caller, ingest: Any, amqp_channel: Any
) -> None:
    endpoint_id = alice.register_endpoint()
    first, cancelled, marker = alice.submit(
        endpoint_id, alice.register_function(), (1,), (2,), (3,)
    )
    assert alice.ok("post", f"/v1/tasks/{cancelled}/cancel")["state"] == "cancelled"
    publish_result(amqp_channel, app, success(first, endpoint_id, "first"))
    publish_result(amqp_channel, app, success(first, endpoint_id, "second"))
    publish_result(amqp_channel, app, success(cancelled, endpoint_id, "too late"))
    # Ingest handles the queue in order: once the marker is stored, the others were handled.
    publish_result(amqp_channel, app, success(marker, endpoint_id, "marker"))
    assert long_poll(alice, [marker])["results"]
    answer = long_poll(alice, [first, cancelled], 0)
    by_id = {r["task_id"]: ResultEnvelope.from_dict(r) for r in answer["results"]}
    assert by_id[first] == success(first, endpoint_id, "first")
    assert by_id[cancelled].state is TaskState.CANCELLED
    assert [e["state"] for e in alice.ok("get", f"/v1/tasks/{first}")["events"]].count(
        "success"
    ) == 1


def test_a_result_from_another_endpoint_is_ignored(
    app: Flask, alice: Caller, ingest: Any, amqp_channel: Any
) -> None:
    endpoint_id = alice.register_endpoint("a")
    intruder = alice.register_endpoint("b")
    task_id, marker = alice.submit(endpoint_id, alice.register_function(), (1,), (2,))
    publish_result(amqp_channel, app, success(task_id, intruder, "forged"))
    failed = ResultEnvelope(
        marker,
        endpoint_id,
        TaskState.FAILED,
        error=ErrorInfo(type="ValueError", message="boom", traceback="Traceback ..."),
    )
    publish_result(amqp_channel, app, failed)
    (stored,) = long_poll(alice, [marker])["results"]
    assert ResultEnvelope.from_dict(stored) == failed
    assert alice.ok("get", f"/v1/tasks/{task_id}")["state"] == "queued"


def test_malformed_messages_are_dead_lettered(
    app: Flask, alice: Caller, ingest: Any, amqp_channel: Any
) -> None:
    endpoint_id = alice.register_endpoint()
    (marker,) = alice.submit(endpoint_id, alice.register_function(), (1,))
    publish(amqp_channel, app, "x.result", b"this is not json")
    publish(amqp_channel, app, "x.result", b'{"v": 1, "type": "mystery"}')
    publish(amqp_channel, app, "x.result", b'{"v": 999, "type": "result"}')
    publish_result(amqp_channel, app, success(marker, endpoint_id, 1))
    assert long_poll(alice, [marker])["results"]
    dead = take(amqp_channel, app_state(app).topology.dead_queue, 3)
    assert [body for _, body in dead] == [
        b"this is not json",
        b'{"v": 1, "type": "mystery"}',
        b'{"v": 999, "type": "result"}',
    ]
    assert all(props.headers["x-death"][0]["reason"] == "rejected" for props, _ in dead)


def test_heartbeats_bring_an_endpoint_online(
    app: Flask, alice: Caller, ingest: Any, amqp_channel: Any
) -> None:
    endpoint_id = alice.register_endpoint()
    (marker,) = alice.submit(endpoint_id, alice.register_function(), (1,))
    status = EndpointStatus(endpoint_id, details={"workers": 4, "engine": "process-pool"})
    publish(amqp_channel, app, f"{endpoint_id}.status", status.to_bytes())
    publish_result(amqp_channel, app, success(marker, endpoint_id, 1))
    assert long_poll(alice, [marker])["results"]
    endpoint = alice.ok("get", f"/v1/endpoints/{endpoint_id}")
    assert endpoint["state"] == "online"
    assert endpoint["details"] == {"workers": 4, "engine": "process-pool"}
    assert endpoint["last_heartbeat"] is not None
    assert endpoint["outstanding_tasks"] == 0
    goodbye = EndpointStatus(endpoint_id, state="offline")
    publish(amqp_channel, app, f"{endpoint_id}.status", goodbye.to_bytes())
    (second,) = alice.submit(endpoint_id, alice.register_function(), (2,))
    publish_result(amqp_channel, app, success(second, endpoint_id, 2))
    assert long_poll(alice, [second])["results"]
    assert alice.ok("get", f"/v1/endpoints/{endpoint_id}")["state"] == "offline"


def test_a_message_the_database_refuses_does_not_block_ingest(
    app: Flask, alice: Caller, ingest: Any, amqp_channel: Any
) -> None:
    endpoint_id = alice.register_endpoint()
    first, marker = alice.submit(endpoint_id, alice.register_function(), (1,), (2,))
    # PostgreSQL text cannot hold NUL: storing this fails however often it is retried.
    poison = success("bad\x00id", endpoint_id, 0)
    publish_result(amqp_channel, app, success(first, endpoint_id, 1))
    publish_result(amqp_channel, app, poison)
    publish_result(amqp_channel, app, success(marker, endpoint_id, 2))
    assert len(long_poll(alice, [first, marker])["results"]) >= 1
    assert len(long_poll(alice, [marker])["results"]) == 1
    assert alice.ok("get", f"/v1/tasks/{first}")["state"] == "success"
    if app_state(app).database.dialect == "postgresql":
        ((_, body),) = take(amqp_channel, app_state(app).topology.dead_queue, 1)
        assert b"bad" in body


def test_ingest_reconnects_after_losing_the_broker(
    app: Flask, alice: Caller, ingest: Any, amqp_channel: Any
) -> None:
    endpoint_id = alice.register_endpoint()
    (task_id,) = alice.submit(endpoint_id, alice.register_function(), (1,))
    # Cut the consumer's connection under pika's feet, as a broker restart would.
    ingest._connection._impl._transport._sock.shutdown(socket.SHUT_RDWR)
    publish_result(amqp_channel, app, success(task_id, endpoint_id, 1))
    assert long_poll(alice, [task_id], 60)["results"], "ingest did not come back"


def test_large_results_are_returned_across_several_polls(make_app: Any, amqp_channel: Any) -> None:
    app = make_app(max_content_length=4000)
    state = app_state(app)
    consumer = make_ingest(state.config, state)
    consumer.start()
    try:
        alice = Caller(app.test_client(), new_token(app, "alice"))
        endpoint_id = alice.register_endpoint()
        task_ids = alice.submit(endpoint_id, alice.register_function(), *[(i,) for i in range(3)])
        for task_id in task_ids:
            publish_result(amqp_channel, app, success(task_id, endpoint_id, "x" * 1500))
        seen: list[str] = []
        wanted = list(task_ids)
        while wanted:
            answer = long_poll(alice, wanted)
            assert 1 <= len(answer["results"]) <= 2  # ~2 KiB each in a 4,000-byte budget
            seen += [r["task_id"] for r in answer["results"]]
            wanted = answer["pending"]
        assert sorted(seen) == sorted(task_ids)
    finally:
        consumer.stop()
