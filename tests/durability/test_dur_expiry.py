"""Task expiry (off by default): a task not finished by its deadline fails ``expired``.

Service side: the sweeper's :func:`expire_due` is called with an explicit ``now`` (no waiting).
Endpoint side: a task delivered after its deadline is answered ``expired`` without running.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from outpost.protocol import TaskEnvelope, TaskState, function_id_for, serialize
from outpost_endpoint.service import EndpointService
from outpost_service.jobs.expiry import expire_due

from ..endpoint import tasks
from ..endpoint.conftest import Topology, make_service, rabbitmq, topology
from ..service.conftest import (
    Caller,
    amqp_prefix,
    app_state,
    args_b64,
    database_url,
    make_app,
    new_token,
    postgres_database,
)
from ..service.test_validation import assert_error

__all__ = [  # fixtures used below
    "amqp_prefix", "database_url", "make_app", "make_service", "postgres_database",
    "rabbitmq", "topology",
]  # fmt: skip


def test_service_fails_tasks_past_their_deadline(make_app: Any) -> None:
    app = make_app()
    alice = Caller(app.test_client(), new_token(app, "alice"))
    endpoint_id, function_id = alice.register_endpoint(), alice.register_function()
    task = {"function_id": function_id, "endpoint_id": endpoint_id, "args": args_b64(1)}
    short = {**task, "resource_specification": {"expires_after": 5}}
    expiring, forever = alice.ok("post", "/v1/tasks", {"tasks": [short, task]})["task_ids"]
    state = app_state(app)
    created = alice.ok("get", f"/v1/tasks/{expiring}")["created_at"]

    assert expire_due(state, now=created + 1) == []
    assert expire_due(state, now=created + 3600) == [expiring]
    shown = alice.ok("get", f"/v1/tasks/{expiring}")
    assert shown["state"] == "failed"
    assert shown["result"]["error"]["reason"] == "expired"
    assert "deadline" in shown["result"]["error"]["message"]
    assert alice.ok("get", f"/v1/tasks/{forever}")["state"] == "queued"  # off by default
    assert expire_due(state, now=created + 3600) == []  # once


def test_service_default_expiry_applies_to_tasks_without_one(make_app: Any) -> None:
    app = make_app(task_expiry=60)
    alice = Caller(app.test_client(), new_token(app, "alice"))
    endpoint_id, function_id = alice.register_endpoint(), alice.register_function()
    task = {"function_id": function_id, "endpoint_id": endpoint_id, "args": args_b64(1)}
    (task_id,) = alice.ok("post", "/v1/tasks", {"tasks": [task]})["task_ids"]
    created = alice.ok("get", f"/v1/tasks/{task_id}")["created_at"]
    assert expire_due(app_state(app), now=created + 30) == []
    assert expire_due(app_state(app), now=created + 61) == [task_id]


def test_bad_expiry_is_rejected(make_app: Any) -> None:
    app = make_app()
    alice = Caller(app.test_client(), new_token(app, "alice"))
    task = {
        "function_id": alice.register_function(),
        "endpoint_id": alice.register_endpoint(),
        "args": args_b64(1),
        "resource_specification": {"expires_after": "soon"},
    }
    error = assert_error(alice.post("/v1/tasks", {"tasks": [task]}), 422)
    assert "expires_after" in error["message"] and "'soon'" in error["message"]


def test_endpoint_does_not_run_a_task_delivered_after_its_deadline(
    topology: Topology, make_service: Callable[..., EndpointService], tmp_path: Path
) -> None:
    make_service(workers=1)
    runs, gate = tmp_path / "runs", tmp_path / "gate"
    gate.touch()
    function = serialize(tasks.record_run)
    late = TaskEnvelope(
        task_id=str(uuid.uuid4()),
        function_id=function_id_for(function),
        function=function,
        args=serialize(((str(runs), str(gate)), {})),
        endpoint_id=topology.endpoint_id,
        resource_specification={"expires_after": 60},
        created_at=time.time() - 3600,  # waited an hour for an offline endpoint
    )
    topology.publish(late.to_bytes())
    result = topology.result(late.task_id)
    assert result.state is TaskState.FAILED
    assert result.error is not None and result.error.reason == "expired"
    assert not runs.exists()
    on_time = topology.task(tasks.square, 3, spec={"expires_after": 60})
    assert topology.result(on_time.task_id).state is TaskState.SUCCESS


def test_missed_heartbeats_mark_the_endpoint_offline_and_its_tasks_wait(make_app: Any) -> None:
    """Offline is decided by heartbeat age (3 missed); the endpoint's tasks stay queued (no
    expiry by default) for when it returns."""
    import sqlalchemy as sa

    from outpost_service.store import endpoints as endpoint_store
    from outpost_service.store.schema import endpoints

    app = make_app(heartbeat_interval=10)
    alice = Caller(app.test_client(), new_token(app, "alice"))
    endpoint_id, function_id = alice.register_endpoint(), alice.register_function()
    state = app_state(app)
    with state.database.write() as conn:
        endpoint_store.record_heartbeats(conn, {endpoint_id: ("online", {})})
    assert alice.ok("get", f"/v1/endpoints/{endpoint_id}")["state"] == "online"
    task = {"function_id": function_id, "endpoint_id": endpoint_id, "args": args_b64(1)}
    (task_id,) = alice.ok("post", "/v1/tasks", {"tasks": [task]})["task_ids"]
    with state.database.write() as conn:  # its last heartbeat was 31 s (3 intervals) ago
        conn.execute(
            endpoints.update()
            .where(endpoints.c.endpoint_id == endpoint_id)
            .values(last_heartbeat=sa.func.coalesce(endpoints.c.last_heartbeat, 0) - 31)
        )
    assert alice.ok("get", f"/v1/endpoints/{endpoint_id}")["state"] == "offline"
    assert expire_due(state) == []
    assert alice.ok("get", f"/v1/tasks/{task_id}")["state"] == "queued"
    assert alice.ok("get", f"/v1/endpoints/{endpoint_id}")["outstanding_tasks"] == 1
