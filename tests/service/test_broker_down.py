"""When RabbitMQ cannot confirm, the client gets a clear 503 and nothing is lost or doubled."""

from __future__ import annotations

from typing import Any

import pika

from outpost_service.jobs.sweep import Sweeper

from .conftest import Caller, app_state, args_b64, new_token, row_counts
from .test_validation import assert_error

NO_BROKER = "amqp://guest:guest@127.0.0.1:1/"  # nothing listens on port 1


def test_registration_without_broker_is_503_and_writes_nothing(make_app: Any) -> None:
    app = make_app(amqp_url=NO_BROKER, publish_attempts=2)
    caller = Caller(app.test_client(), new_token(app, "alice"))
    before = row_counts(app)
    error = assert_error(caller.post("/v1/endpoints", {"name": "ep"}), 503, "broker_unavailable")
    assert "127.0.0.1:1" in error["message"]
    assert row_counts(app) == before


def waiting_in_queue(app: Any, endpoint_id: str) -> int:
    """Messages ready in the endpoint's task queue on the real broker."""
    connection = pika.BlockingConnection(pika.URLParameters(app_state(app).config.amqp_url))
    try:
        queue = app_state(app).topology.task_queue(endpoint_id)
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


def test_submit_without_broker_is_503_and_the_sweeper_queues_the_tasks_later(
    make_app: Any,
) -> None:
    healthy = make_app()
    alice = Caller(healthy.test_client(), new_token(healthy, "alice"))
    endpoint_id = alice.register_endpoint()
    function_id = alice.register_function()

    broken = make_app(amqp_url=NO_BROKER, publish_attempts=2)
    stranded = Caller(broken.test_client(), alice.token)
    task = {"function_id": function_id, "endpoint_id": endpoint_id, "args": args_b64(1)}
    error = assert_error(stranded.post("/v1/tasks", {"tasks": [task, task]}), 503)
    stored = error["details"]["task_ids"]
    assert len(stored) == 2 and "will be queued when RabbitMQ is back" in error["message"]
    for task_id in stored:
        assert alice.ok("get", f"/v1/tasks/{task_id}")["state"] == "queued"
    assert waiting_in_queue(healthy, endpoint_id) == 0

    sweeper = Sweeper(app_state(healthy), republish_after=0.0)
    assert sweeper.sweep() == 2
    assert waiting_in_queue(healthy, endpoint_id) == 2
    assert sweeper.sweep() == 0  # marked published: not sent again


def test_retried_request_id_returns_the_same_tasks(make_app: Any) -> None:
    healthy = make_app()
    alice = Caller(healthy.test_client(), new_token(healthy, "alice"))
    endpoint_id = alice.register_endpoint()
    function_id = alice.register_function()
    task = {"function_id": function_id, "endpoint_id": endpoint_id, "args": args_b64(1)}
    body = {"tasks": [task, task, task], "request_id": "req-1"}

    broken = make_app(amqp_url=NO_BROKER, publish_attempts=1)
    stored = assert_error(Caller(broken.test_client(), alice.token).post("/v1/tasks", body), 503)
    first = stored["details"]["task_ids"]
    again = alice.ok("post", "/v1/tasks", body)["task_ids"]  # the retry, broker back
    assert again == first
    assert waiting_in_queue(healthy, endpoint_id) == 3  # published by the retry, once
    assert alice.ok("post", "/v1/tasks", body)["task_ids"] == first
    assert waiting_in_queue(healthy, endpoint_id) == 3
    other = alice.ok("post", "/v1/tasks", {**body, "request_id": "req-2"})["task_ids"]
    assert len(set(other) | set(first)) == 6


def test_bad_request_id_is_rejected(make_app: Any) -> None:
    app = make_app()
    alice = Caller(app.test_client(), new_token(app, "alice"))
    endpoint_id = alice.register_endpoint()
    task = {"function_id": alice.register_function(), "endpoint_id": endpoint_id,
            "args": args_b64(1)}  # fmt: skip
    error = assert_error(alice.post("/v1/tasks", {"tasks": [task], "request_id": "a b"}), 422)
    assert "request_id" in error["message"]
