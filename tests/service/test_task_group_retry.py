"""``POST /v1/task_groups/<gid>/retry`` and ``GET .../summary``: judge a campaign's outcomes and
resubmit its failures (real database, real RabbitMQ)."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from flask import Flask

from outpost.protocol import (
    ErrorInfo,
    ResultEnvelope,
    TaskState,
    decode_message,
    deserialize,
    serialize,
)
from outpost_service.store import tasks as task_store
from outpost_service.store.database import Database
from outpost_service.store.schema import SCHEMA_VERSION, meta, tasks

from .conftest import Caller, app_state
from .test_tasks import take


def finish(app: Flask, endpoint_id: str, outcomes: dict[str, str | None]) -> None:
    """Store results as the endpoint would: None = success, a text = that ValueError."""
    results = [
        ResultEnvelope(task_id=task_id, endpoint_id=endpoint_id, state=TaskState.SUCCESS,
                       value=serialize(1))
        if message is None
        else ResultEnvelope(task_id=task_id, endpoint_id=endpoint_id, state=TaskState.FAILED,
                            error=ErrorInfo(type="ValueError", message=message))
        for task_id, message in outcomes.items()
    ]  # fmt: skip
    with app_state(app).database.write() as conn:
        assert len(task_store.finish(conn, results, 3600.0)) == len(results)


def test_retry_resubmits_only_the_failures_once(
    app: Flask, alice: Caller, amqp_channel: Any
) -> None:
    endpoint_id = alice.register_endpoint()
    function_id = alice.register_function(abs)
    group = str(uuid.uuid4())
    spec = {"walltime": 5}
    ids = alice.submit(endpoint_id, function_id, (-1,), (-2,), (-3,), task_group_id=group,
                       resource_specification=spec)  # fmt: skip
    queue = app_state(app).topology.task_queue(endpoint_id)
    take(amqp_channel, queue, 3)
    finish(app, endpoint_id, {ids[0]: None, ids[1]: "bad input 2", ids[2]: None})

    answer = alice.ok("post", f"/v1/task_groups/{group}/retry", {"states": ["failed"]})
    assert [pair["old"] for pair in answer["retried"]] == [ids[1]]
    new_id = answer["retried"][0]["new"]
    assert new_id not in ids
    # the copy is published: same function, arguments, endpoint, spec and group
    ((_properties, body),) = take(amqp_channel, queue, 1)
    envelope = decode_message(body)
    assert envelope.task_id == new_id and envelope.task_group_id == group
    assert deserialize(envelope.args) == ((-2,), {})
    assert deserialize(envelope.function) is abs and envelope.resource_specification == spec
    listing = {t["task_id"]: t for t in alice.ok("get", f"/v1/task_groups/{group}/tasks")["tasks"]}
    assert listing[ids[1]]["retried_by"] == new_id and listing[new_id]["state"] == "queued"
    assert listing[ids[0]]["retried_by"] is None

    # a second retry copies nothing: the failed task was retried and the retry has not failed
    assert alice.ok("post", f"/v1/task_groups/{group}/retry", {"states": ["failed"]}) == {
        "task_group_id": group, "retried": []}  # fmt: skip
    # ...until the retry fails too: then the retry (not the original) is copied
    finish(app, endpoint_id, {new_id: "bad input 2"})
    again = alice.ok("post", f"/v1/task_groups/{group}/retry", {"states": ["failed"]})
    assert [pair["old"] for pair in again["retried"]] == [new_id]
    take(amqp_channel, queue, 1)


def test_summary_groups_failures_by_error(app: Flask, alice: Caller, amqp_channel: Any) -> None:
    endpoint_id = alice.register_endpoint()
    group = str(uuid.uuid4())
    ids = alice.submit(endpoint_id, alice.register_function(), *[(i,) for i in range(6)],
                       task_group_id=group)  # fmt: skip
    take(amqp_channel, app_state(app).topology.task_queue(endpoint_id), 6)
    finish(app, endpoint_id, {ids[0]: None, ids[1]: "disk full", ids[2]: "disk full",
                              ids[3]: "disk full\nTraceback...", ids[4]: "no input"})  # fmt: skip
    summary = alice.ok("get", f"/v1/task_groups/{group}/summary")
    assert summary["tasks"] == 6 and summary["retried"] == 0
    assert summary["states"] == {"success": 1, "failed": 4, "queued": 1}
    assert summary["errors"] == [
        {"type": "ValueError", "message": "disk full", "count": 3, "task_ids": ids[1:4]},
        {"type": "ValueError", "message": "no input", "count": 1, "task_ids": [ids[4]]},
    ]
    alice.ok("post", f"/v1/task_groups/{group}/retry", {})  # default: failed and lost
    after = alice.ok("get", f"/v1/task_groups/{group}/summary")
    assert after["retried"] == 4 and after["latest_states"] == {"success": 1, "queued": 5}
    assert after["errors"] == []


def test_retry_refuses_states_that_would_rerun_work(alice: Caller, bob: Caller) -> None:
    group = str(uuid.uuid4())
    for states in (["success"], ["running"], [], "failed"):
        answer = alice.post(f"/v1/task_groups/{group}/retry", json={"states": states})
        assert answer.status_code == 422, answer.get_json()
        assert "states" in answer.get_json()["error"]["message"]
    # an unknown group (or someone else's) is a 404 on every group route, not an empty answer
    for route in ("retry", "tasks", "summary"):
        path = f"/v1/task_groups/{group}/{route}"
        answer = bob.post(path, {"states": ["failed"]}) if route == "retry" else bob.get(path)
        assert answer.status_code == 404, (route, answer.get_json())
        error = answer.get_json()["error"]
        assert error["code"] == "task_group_not_found"
        assert error["message"].startswith(f"no task group {group} among yours")
        assert error["details"] == {"task_group_id": group}


def test_a_version_2_database_is_upgraded_with_retried_by(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/v2.db"
    database = Database(url)
    database.ensure_schema()
    with database.write() as conn:  # make it look like version 2 wrote it
        conn.exec_driver_sql("ALTER TABLE tasks DROP COLUMN retried_by")
        conn.execute(meta.update().values(value="2"))
    database.dispose()
    upgraded = Database(url)
    upgraded.ensure_schema()
    with upgraded.read() as conn:
        assert "retried_by" in {c["name"] for c in sa.inspect(conn).get_columns("tasks")}
        assert conn.execute(sa.select(meta.c.value)).scalar() == str(SCHEMA_VERSION)  # 3, then 4
        conn.execute(sa.select(tasks.c.retried_by))
    upgraded.dispose()
