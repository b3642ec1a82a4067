"""When RabbitMQ cannot confirm, the client gets a clear 503 and nothing is left half-done."""

from __future__ import annotations

from typing import Any

from .conftest import Caller, args_b64, new_token, row_counts
from .test_validation import assert_error

NO_BROKER = "amqp://guest:guest@127.0.0.1:1/"  # nothing listens on port 1


def test_registration_without_broker_is_503_and_writes_nothing(make_app: Any) -> None:
    app = make_app(amqp_url=NO_BROKER, publish_attempts=2)
    caller = Caller(app.test_client(), new_token(app, "alice"))
    before = row_counts(app)
    error = assert_error(caller.post("/v1/endpoints", {"name": "ep"}), 503, "broker_unavailable")
    assert "127.0.0.1:1" in error["message"]
    assert row_counts(app) == before


def test_submit_without_broker_is_503_and_marks_the_tasks_lost(make_app: Any) -> None:
    healthy = make_app()
    alice = Caller(healthy.test_client(), new_token(healthy, "alice"))
    endpoint_id = alice.register_endpoint()
    function_id = alice.register_function()

    broken = make_app(amqp_url=NO_BROKER, publish_attempts=2)
    stranded = Caller(broken.test_client(), alice.token)
    task = {"function_id": function_id, "endpoint_id": endpoint_id, "args": args_b64(1)}
    error = assert_error(stranded.post("/v1/tasks", {"tasks": [task, task]}), 503)
    lost = error["details"]["task_ids"]
    assert len(lost) == 2
    for task_id in lost:
        shown = alice.ok("get", f"/v1/tasks/{task_id}")
        assert shown["state"] == "lost"
        assert "could not queue" in shown["result"]["error"]["message"]
    assert alice.ok("get", f"/v1/endpoints/{endpoint_id}")["outstanding_tasks"] == 0
