"""``GET /v1/task_groups/<gid>/tasks``: every task of a group, so another process can reload
its futures (fire-and-forget).  A group is just a label on tasks: an unknown group (or someone
else's) lists no tasks."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from outpost_service.auth import current_user, protect
from outpost_service.state import service_state
from outpost_service.store import tasks as task_store
from outpost_service.validation import uuid_text

bp = protect(Blueprint("task_groups", __name__, url_prefix="/v1/task_groups"))


@bp.get("/<task_group_id>/tasks")
def group_tasks(task_group_id: str) -> dict[str, Any]:
    state = service_state()
    task_group_id = uuid_text(task_group_id, "task_group_id")
    with state.database.read() as conn:
        rows = task_store.in_group(conn, task_group_id, current_user().user_id)
    return {
        "task_group_id": task_group_id,
        "tasks": [
            {
                "task_id": r.task_id,
                "state": r.state,
                "function_id": r.function_id,
                "endpoint_id": r.endpoint_id,
            }
            for r in rows
        ],
    }
