"""``/v1/tasks``: submit batches, show one task, cancel one task."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint
from sqlalchemy.engine import Connection

from outpost.protocol.api import CancelOutcome, Task, TaskIds
from outpost_service.api.bodies import GroupSubmitted, SubmitTasks, TaskItem
from outpost_service.auth import current_user
from outpost_service.cancellation import cancel_tasks
from outpost_service.errors import BrokerUnavailable, NotFound
from outpost_service.result_trust import mark_result_dict
from outpost_service.routing import declare
from outpost_service.state import ServiceState, service_state
from outpost_service.store import endpoints as endpoint_store
from outpost_service.store import groups as group_store
from outpost_service.store import tasks as task_store
from outpost_service.store.tasks import NewTask
from outpost_service.submission import submit

bp = Blueprint("tasks", __name__, url_prefix="/v1/tasks")


@bp.post("")
@declare(scope="submit", body=SubmitTasks, answers=TaskIds, errors=(403, 503))
def submit_tasks(body: SubmitTasks) -> dict[str, Any]:
    """Submit a batch of tasks; answered after the SQL commit and RabbitMQ's confirms.

    A retry with the same ``request_id`` returns the same task ids.
    """
    state = service_state()
    new = [_new_task(item, state.config.task_expiry) for item in body.tasks]
    if not new:
        return {"task_ids": []}
    owner = current_user().user_id
    try:
        task_ids = submit(state, owner, new, body.request_id)
    except BrokerUnavailable:  # the tasks are stored (and queued later): count them
        _declare(state, owner, body.group_submitted)
        raise
    _declare(state, owner, body.group_submitted)
    return {"task_ids": task_ids}


def _declare(state: ServiceState, owner: int, declared: GroupSubmitted | None) -> None:
    """Record how many tasks the submitting executor accepted for its group so far (see
    :mod:`..store.groups`)."""
    if declared is None:
        return
    with state.database.write() as conn:
        group_store.declare(conn, owner, declared.task_group_id, declared.client_id, declared.count)


def _new_task(item: TaskItem, expiry: float | None) -> NewTask:
    spec = dict(item.resource_specification or {})
    if expiry:
        spec.setdefault("expires_after", expiry)
    return NewTask(
        task_id="",
        function_id=item.function_id,
        endpoint_id=item.endpoint_id,
        args=item.args,
        task_group_id=item.task_group_id,
        resource_spec=spec,
        depends_on=list(dict.fromkeys(item.depends_on)),
    )


@bp.get("/<task_id>")
@declare(scope="read", answers=Task)
def get_task(task_id: str) -> dict[str, Any]:
    """Show one task with its result and events."""
    state = service_state()
    with state.database.read() as conn:
        row = task_store.get_owned(conn, task_id, current_user().user_id)
        if row is None:
            raise NotFound(f"no task {task_id} among yours", details={"task_id": task_id})
        events = task_store.events(conn, task_id)
        result = None if row.result is None else _marked(conn, row, current_user().user_id)
    return {
        "task_id": row.task_id,
        "state": row.state,
        "endpoint_id": row.endpoint_id,
        "function_id": row.function_id,
        "task_group_id": row.task_group_id,
        "created_at": row.created_at,
        "completed_at": row.completed_at,
        "result": result,
        "events": [{"state": e.state, "at": e.at} for e in events],
    }


def _marked(conn: Connection, row: Any, caller: int) -> dict[str, Any]:
    """The task's result, saying whether the caller owns its endpoint; pickles of an endpoint
    the caller does not own are withheld (the results route hands them to a caller who trusts
    the endpoint; see :mod:`..result_trust`)."""
    endpoint = endpoint_store.get(conn, row.endpoint_id)
    owner = endpoint.owner if endpoint is not None else None
    owned = owner == caller
    name = "" if owned or owner is None else task_store.user_names(conn, [owner]).get(owner, "")
    return mark_result_dict(json.loads(row.result), owned, name, trusted=False)


@bp.post("/<task_id>/cancel")
@declare(scope="submit", answers=CancelOutcome)
def cancel_task(task_id: str) -> dict[str, Any]:
    """Cancel an unfinished task (a finished one keeps, and reports, its state)."""
    state = service_state()
    owner = current_user().user_id
    with state.database.read() as conn:
        row = task_store.get_owned(conn, task_id, owner)
    if row is None:
        raise NotFound(f"no task {task_id} among yours", details={"task_id": task_id})
    if row.state not in task_store.TERMINAL_STATES:
        cancel_tasks(
            state, [(task_id, row.endpoint_id)], "the task was cancelled", tell_endpoint=True
        )
        with state.database.read() as conn:
            row = task_store.get_owned(conn, task_id, owner)
    assert row is not None  # tasks are only deleted long after they finish
    return {"task_id": task_id, "state": row.state}
