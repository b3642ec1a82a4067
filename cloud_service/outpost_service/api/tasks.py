"""``/v1/tasks``: submit batches, show one task, cancel one task."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Blueprint
from sqlalchemy.engine import Connection

from outpost_service.auth import current_user, protect
from outpost_service.cancellation import cancel_tasks
from outpost_service.errors import BrokerUnavailable, NotFound, Unprocessable
from outpost_service.result_trust import mark_result_dict
from outpost_service.state import service_state
from outpost_service.store import endpoints as endpoint_store
from outpost_service.store import groups as group_store
from outpost_service.store import tasks as task_store
from outpost_service.store.tasks import NewTask
from outpost_service.submission import submit
from outpost_service.validation import (
    function_id_text,
    get_field,
    invalid,
    json_body,
    payload_bytes,
    small_object,
    uuid_text,
)

bp = protect(Blueprint("tasks", __name__, url_prefix="/v1/tasks"))


@bp.post("")
def submit_tasks() -> dict[str, Any]:
    """Answered only after the SQL commit and RabbitMQ's confirms (see :mod:`..submission`)."""
    state = service_state()
    body = json_body()
    items = get_field(body, "tasks", list)
    if len(items) > state.config.max_batch:
        raise Unprocessable(
            f"a request may submit at most {state.config.max_batch:,} tasks, got "
            f"{len(items):,}; split the batch",
            code="batch_too_large",
            details={"count": len(items), "max": state.config.max_batch},
        )
    new = [_parse_task(item, i, state.config.payload_limit) for i, item in enumerate(items)]
    if state.config.task_expiry:
        for task in new:
            task.resource_spec.setdefault("expires_after", state.config.task_expiry)
    request_id = _request_id(body.get("request_id"))
    declared = _group_submitted(body.get("group_submitted"))
    if not new:
        return {"task_ids": []}
    owner = current_user().user_id
    try:
        task_ids = submit(state, owner, new, request_id)
    except BrokerUnavailable:  # the tasks are stored (and queued later): count them
        _declare(state, owner, declared)
        raise
    _declare(state, owner, declared)
    return {"task_ids": task_ids}


#: The largest count a client may declare for a group (far above any campaign).
MAX_DECLARED = 10**12


def _group_submitted(value: Any) -> tuple[str, str, int] | None:
    """``{"task_group_id", "client_id", "count"}``: how many tasks the submitting executor
    accepted for its group so far (see :mod:`..store.groups`)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid(
            "group_submitted",
            'must be an object {"task_group_id": UUID, "client_id": ID, "count": N}, got '
            f"{type(value).__name__}",
        )
    group = uuid_text(value.get("task_group_id"), "group_submitted.task_group_id")
    client_id = value.get("client_id")
    if not isinstance(client_id, str) or not _REQUEST_ID.fullmatch(client_id):
        raise invalid(
            "group_submitted.client_id",
            f"must be 1-64 letters, digits or '_.:-' (a uuid4 is ideal), got {client_id!r:.80}",
        )
    count = value.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_DECLARED:
        raise invalid(
            "group_submitted.count",
            f"must be a whole number of tasks from 0 to {MAX_DECLARED}, got {count!r:.80}",
        )
    return group, client_id, count


def _declare(state: Any, owner: int, declared: tuple[str, str, int] | None) -> None:
    if declared is None:
        return
    with state.database.write() as conn:
        group_store.declare(conn, owner, *declared)


_REQUEST_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def _request_id(value: Any) -> str | None:
    """The client's id for this request: a retry with the same id gets the same task ids."""
    if value is None:
        return None
    if not isinstance(value, str) or not _REQUEST_ID.fullmatch(value):
        raise invalid(
            "request_id",
            f"must be 1-64 letters, digits or '_.:-' (a uuid4 is ideal), got {value!r:.80}",
        )
    return value


def _parse_task(item: Any, index: int, limit: int) -> NewTask:
    where = f"tasks[{index}]."
    if not isinstance(item, dict):
        raise invalid(f"tasks[{index}]", "must be an object")
    group = item.get("task_group_id")
    spec = small_object(item, "resource_specification", where=where)
    expires = (spec or {}).get("expires_after")
    if expires is not None and (
        isinstance(expires, bool) or not isinstance(expires, (int, float)) or not expires > 0
    ):
        raise invalid(
            where + "resource_specification.expires_after",
            f"must be a positive number of seconds (or absent: never expires), got {expires!r:.80}",
        )
    return NewTask(
        task_id="",
        function_id=function_id_text(item.get("function_id"), where + "function_id"),
        endpoint_id=uuid_text(item.get("endpoint_id"), where + "endpoint_id"),
        args=payload_bytes(get_field(item, "args", str, where=where), where + "args", limit),
        task_group_id=None if group is None else uuid_text(group, where + "task_group_id"),
        resource_spec=spec or {},
    )


@bp.get("/<task_id>")
def get_task(task_id: str) -> dict[str, Any]:
    state = service_state()
    task_id = uuid_text(task_id, "task_id")
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
def cancel_task(task_id: str) -> dict[str, Any]:
    """Cancel an unfinished task; a finished one keeps (and reports) its state."""
    state = service_state()
    task_id = uuid_text(task_id, "task_id")
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
