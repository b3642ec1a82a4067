"""``group_submitted``: executors declare how many tasks they accepted for a group, so the group
summary shows tasks that never reached the service (issue 11: "submitted 300, stored 77").
Real database and RabbitMQ, through the Flask app."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Flask

from .conftest import Caller, args_b64, row_counts


def submit(
    caller: Caller, endpoint_id: str, function_id: str, group: str, n: int, **body: Any
) -> Any:
    tasks = [
        {"function_id": function_id, "endpoint_id": endpoint_id, "args": args_b64(i),
         "task_group_id": group}
        for i in range(n)
    ]  # fmt: skip
    return caller.post("/v1/tasks", {"tasks": tasks, **body})


def declared(group: str, count: int, client_id: str = "executor-1") -> dict[str, Any]:
    return {"group_submitted": {"task_group_id": group, "client_id": client_id, "count": count}}


def test_summary_shows_submitted_next_to_stored(alice: Caller, amqp_channel: Any) -> None:
    endpoint_id, function_id = alice.register_endpoint(), alice.register_function()
    group = str(uuid.uuid4())
    # an executor accepted 10 calls; only two batches (3 + 2 tasks) reached the service, the
    # second one declaring the count after all 10 were accepted
    assert (
        submit(alice, endpoint_id, function_id, group, 3, **declared(group, 3)).status_code == 200
    )
    assert (
        submit(alice, endpoint_id, function_id, group, 2, **declared(group, 10)).status_code == 200
    )
    # a late retry of an old request never lowers the count; a second executor adds its own
    assert (
        submit(alice, endpoint_id, function_id, group, 1, **declared(group, 2)).status_code == 200
    )
    other = declared(group, 1, client_id="executor-2")
    assert submit(alice, endpoint_id, function_id, group, 1, **other).status_code == 200
    summary = alice.ok("get", f"/v1/task_groups/{group}/summary")
    assert summary["submitted"] == 11 and summary["stored"] == 7 and summary["tasks"] == 7
    assert alice.ok("get", f"/v1/task_groups/{group}/tasks")["submitted"] == 11


def test_groups_of_clients_that_declare_nothing_have_no_count(
    alice: Caller, amqp_channel: Any
) -> None:
    endpoint_id, function_id = alice.register_endpoint(), alice.register_function()
    group = str(uuid.uuid4())
    assert submit(alice, endpoint_id, function_id, group, 2).status_code == 200
    summary = alice.ok("get", f"/v1/task_groups/{group}/summary")
    assert summary["submitted"] is None and summary["stored"] == 2


def test_bad_group_submitted_is_refused_and_changes_nothing(
    app: Flask, alice: Caller, amqp_channel: Any
) -> None:
    endpoint_id, function_id = alice.register_endpoint(), alice.register_function()
    group = str(uuid.uuid4())
    before = row_counts(app)
    bad = [
        ("x", "group_submitted"),
        ({"task_group_id": "nope", "client_id": "c", "count": 1}, "group_submitted.task_group_id"),
        ({"task_group_id": group, "client_id": "a b", "count": 1}, "group_submitted.client_id"),
        ({"task_group_id": group, "client_id": "c", "count": -1}, "group_submitted.count"),
        ({"task_group_id": group, "client_id": "c", "count": True}, "group_submitted.count"),
    ]
    for value, field in bad:
        answer = submit(alice, endpoint_id, function_id, group, 1, group_submitted=value)
        assert answer.status_code == 422, answer.get_json()
        error = answer.get_json()["error"]
        assert field in error["message"], error
    assert row_counts(app) == before


def test_a_refused_batch_declares_nothing(alice: Caller, bob: Caller, amqp_channel: Any) -> None:
    endpoint_id, function_id = alice.register_endpoint(), alice.register_function()
    group = str(uuid.uuid4())
    refused = submit(bob, endpoint_id, function_id, group, 1, **declared(group, 50))
    assert refused.status_code == 404  # alice's endpoint is not bob's
    assert submit(alice, endpoint_id, function_id, group, 1).status_code == 200
    assert alice.ok("get", f"/v1/task_groups/{group}/summary")["submitted"] is None
