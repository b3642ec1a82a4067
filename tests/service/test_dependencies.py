"""Dependencies in the service: waiting children released or failed where results are stored,
in batches (real SQLite and PostgreSQL, real RabbitMQ for the publishes)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from flask import Flask

from outpost.protocol import ErrorInfo, ResultEnvelope, TaskState, serialize
from outpost.protocol.dependencies import ParentRef
from outpost_service.jobs.ingest import IngestJob

from .conftest import Caller, app_state, b64


def child_args(*parents: str) -> str:
    return b64(serialize(([ParentRef(p) for p in parents], {})))


def submit_children(caller: Caller, endpoint_id: str, function_id: str, parents: list[str],
                    per_child: int = 1) -> list[str]:  # fmt: skip
    tasks = [
        {
            "function_id": function_id,
            "endpoint_id": endpoint_id,
            "args": child_args(*parents[i : i + per_child]),
            "depends_on": parents[i : i + per_child],
        }
        for i in range(0, len(parents), per_child)
    ]
    return list(caller.ok("post", "/v1/tasks", {"tasks": tasks})["task_ids"])


def states(app: Flask, task_ids: list[str]) -> dict[str, str]:
    from outpost_service.store.schema import tasks

    with app_state(app).database.read() as conn:
        rows = conn.execute(
            sa.select(tasks.c.task_id, tasks.c.state).where(tasks.c.task_id.in_(task_ids))
        ).all()
    return {row.task_id: row.state for row in rows}


@contextmanager
def counting(app: Flask) -> Iterator[list[str]]:
    """The SQL statements run meanwhile."""
    engine = app_state(app).database.engine
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def test_children_of_a_batch_of_results_are_released_in_a_few_statements(
    app: Flask, alice: Caller
) -> None:
    endpoint_id = alice.register_endpoint()
    function_id = alice.register_function()
    parents = alice.submit(endpoint_id, function_id, *[(i,) for i in range(1000)])
    children = submit_children(alice, endpoint_id, function_id, parents, per_child=2)
    assert set(states(app, children).values()) == {"waiting"}
    published: list[list[str]] = []
    job = IngestJob(app_state(app).database, publish_released=published.append)
    results = [
        ResultEnvelope(p, endpoint_id, TaskState.SUCCESS, value=serialize(i))
        for i, p in enumerate(parents)
    ]
    with counting(app) as statements:
        job.store(results)
    # finish (lock, update, events) + release (children, their parents, queue, events): a
    # handful of statements for 1,000 results and 500 children, never one per task
    assert len(statements) < 20, statements
    assert sorted(published[0]) == sorted(children)
    assert set(states(app, children).values()) == {"queued"}


def test_message_of_a_released_child_carries_the_parent_values_unread(
    app: Flask, alice: Caller
) -> None:
    from outpost_service.store import tasks as task_store
    from outpost_service.submission import envelopes_for

    endpoint_id = alice.register_endpoint()
    function_id = alice.register_function()
    a, b = alice.submit(endpoint_id, function_id, (1,), (2,))
    (child,) = submit_children(alice, endpoint_id, function_id, [a, b], per_child=2)
    job = IngestJob(app_state(app).database)
    job.store([ResultEnvelope(a, endpoint_id, TaskState.SUCCESS, value=serialize("A"))])
    assert states(app, [child]) == {child: "waiting"}  # one parent still missing
    result_b = ResultEnvelope(b, endpoint_id, TaskState.SUCCESS, value=serialize("B"))
    job.store([result_b])
    with app_state(app).database.read() as conn:
        rows = task_store.unpublished(conn, 0.0, 10, task_ids=[child])
    (envelope,) = envelopes_for(app_state(app), rows)
    assert envelope.depends_on == sorted([a, b])
    assert envelope.parent_values is not None
    assert envelope.parent_values[b] == json.loads(result_b.to_bytes())["value"]


def test_a_failed_parent_fails_every_descendant_naming_it(app: Flask, alice: Caller) -> None:
    endpoint_id = alice.register_endpoint()
    function_id = alice.register_function()
    (parent,) = alice.submit(endpoint_id, function_id, (1,))
    (child,) = submit_children(alice, endpoint_id, function_id, [parent])
    (grandchild,) = submit_children(alice, endpoint_id, function_id, [child])
    failed = ResultEnvelope(
        parent, endpoint_id, TaskState.FAILED, error=ErrorInfo(type="ValueError", message="x")
    )
    IngestJob(app_state(app).database).store([failed])
    assert states(app, [child, grandchild]) == {child: "failed", grandchild: "failed"}
    answer = alice.ok("post", "/v1/results", {"task_ids": [child, grandchild]})
    errors = {r["task_id"]: r["error"] for r in answer["results"]}
    assert errors[child]["reason"] == "dependency" and parent in errors[child]["message"]
    assert child in errors[grandchild]["message"]
    # a child submitted after its parent failed fails at once
    (late,) = submit_children(alice, endpoint_id, function_id, [parent])
    assert states(app, [late]) == {late: "failed"}


def test_another_users_parent_is_refused_and_nothing_stored(
    app: Flask, alice: Caller, bob: Caller
) -> None:
    endpoint_id = alice.register_endpoint()
    (parent,) = alice.submit(endpoint_id, alice.register_function(), (1,))
    bobs = bob.register_endpoint("bobs")
    task = {
        "function_id": bob.register_function(),
        "endpoint_id": bobs,
        "args": child_args(parent),
        "depends_on": [parent],
    }
    response = bob.post("/v1/tasks", {"tasks": [task]})
    assert response.status_code == 404, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "unknown_dependency" and parent in error["message"]
    bad = bob.post("/v1/tasks", {"tasks": [{**task, "depends_on": ["not-a-uuid"]}]})
    assert bad.status_code in (400, 422) and "depends_on" in json.dumps(bad.get_json())


def test_retrying_a_group_keeps_the_dependencies(app: Flask, alice: Caller) -> None:
    """``outpost tasks retry``: the retry of a child waits for the retry of its parent."""
    group = "3f0c0000-0000-4000-8000-0000000000aa"
    endpoint_id = alice.register_endpoint()
    function_id = alice.register_function()
    (parent,) = alice.submit(endpoint_id, function_id, (1,), task_group_id=group)
    task = {
        "function_id": function_id,
        "endpoint_id": endpoint_id,
        "args": child_args(parent),
        "depends_on": [parent],
        "task_group_id": group,
    }
    (child,) = alice.ok("post", "/v1/tasks", {"tasks": [task]})["task_ids"]
    failed = ResultEnvelope(
        parent, endpoint_id, TaskState.FAILED, error=ErrorInfo(type="OSError", message="flaky")
    )
    IngestJob(app_state(app).database).store([failed])
    assert states(app, [child]) == {child: "failed"}
    retried = alice.ok("post", f"/v1/task_groups/{group}/retry", {})["retried"]
    new = {pair["old"]: pair["new"] for pair in retried}
    assert set(new) == {parent, child}
    assert states(app, [new[parent], new[child]]) == {new[parent]: "queued", new[child]: "waiting"}
    published: list[list[str]] = []
    job = IngestJob(app_state(app).database, publish_released=published.append)
    job.store([ResultEnvelope(new[parent], endpoint_id, TaskState.SUCCESS, value=serialize(5))])
    assert published == [[new[child]]]


def test_an_expired_parent_fails_its_children(app: Flask, alice: Caller) -> None:
    from outpost_service.jobs.expiry import expire_due

    endpoint_id = alice.register_endpoint()
    function_id = alice.register_function()
    (parent,) = alice.submit(
        endpoint_id, function_id, (1,), resource_specification={"expires_after": 60}
    )
    (child,) = submit_children(alice, endpoint_id, function_id, [parent])
    import time

    assert parent in expire_due(app_state(app), now=time.time() + 120)
    assert states(app, [child]) == {child: "failed"}
