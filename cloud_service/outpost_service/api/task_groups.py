"""``/v1/task_groups/<gid>``: a campaign's tasks, its outcome summary, and retry of failures.

A group is a label on tasks: it exists for a user once one of their tasks carries it.  Every
route answers 404 ``no task group <id> among yours`` for a group without any of the caller's
tasks -- unknown, someone else's (its existence is not revealed), past retention, or created by
an Executor whose first batch is not stored yet -- rather than an empty, successful answer that
reads like "0 tasks" and hides a lost campaign.

* ``GET .../tasks``: every task, so another process can reload its futures (fire-and-forget);
  ``retried_by`` names the task that retried one, so a client can follow each task to its latest
  attempt.
* ``GET .../summary``: "how did my 1,000 runs go": counts per state (of all tasks and of the
  latest attempts) and the failures grouped by error type and message, most frequent first,
  with example task ids; ``submitted`` (how many tasks the SDK executors accepted for the
  group, as they declared with their submits; None from older SDKs) next to ``stored`` (the
  group's original tasks, retries not counted) shows tasks that never reached the service.
* ``POST .../retry`` ``{"states": ["failed", "lost"]}``: a NEW task (same function, arguments,
  endpoint, resource specification, group) for every latest attempt in one of those states; the
  old task records ``retried_by``.  Tasks that succeeded are never rerun, and a task already
  retried is not copied again (its retry is, if that one failed too).  Stored and published
  through :mod:`..submission`'s path, so an unpublished retry is swept like any submitted task.
"""

from __future__ import annotations

import collections
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from flask import Blueprint
from sqlalchemy.engine import Connection

from outpost.protocol.api import GroupRetried, GroupSummary, GroupTasks
from outpost_service import dependencies, submission, submitters
from outpost_service.api.bodies import RetryGroup
from outpost_service.auth import current_user
from outpost_service.errors import NotFound
from outpost_service.routing import declare
from outpost_service.state import service_state
from outpost_service.store import access as access_store
from outpost_service.store import groups as group_store
from outpost_service.store import tasks as task_store
from outpost_service.store.tasks import NewTask

bp = Blueprint("task_groups", __name__, url_prefix="/v1/task_groups")

#: error groups and example ids per group in the summary
MAX_ERROR_GROUPS = 20
EXAMPLES_PER_GROUP = 5


def _group(
    task_group_id: str, read: Callable[[Connection, str, int], list[Any]]
) -> tuple[list[Any], int | None]:
    """The group's rows as ``read`` finds them among the caller's tasks, and how many tasks
    its executors declared; 404 for a group without the caller's tasks."""
    owner = current_user().user_id
    with service_state().database.read() as conn:
        rows = read(conn, task_group_id, owner)
        submitted = group_store.submitted(conn, owner, task_group_id)
    if not rows:
        raise unknown_group(task_group_id)
    return rows, submitted


@bp.get("/<task_group_id>/tasks")
@declare(scope="read", answers=GroupTasks)
def group_tasks(task_group_id: str) -> dict[str, Any]:
    """Every task of a group (to reload futures from another process)."""
    rows, submitted = _group(task_group_id, task_store.in_group)
    return {
        "task_group_id": task_group_id,
        "submitted": submitted,
        "tasks": [
            {
                "task_id": r.task_id,
                "state": r.state,
                "function_id": r.function_id,
                "endpoint_id": r.endpoint_id,
                "retried_by": r.retried_by,
            }
            for r in rows
        ],
    }


@bp.post("/<task_group_id>/retry")
@declare(scope="submit", body=RetryGroup, answers=GroupRetried, errors=(403, 503))
def retry_group(task_group_id: str, body: RetryGroup) -> dict[str, Any]:
    """Resubmit the group's latest attempts in ``states`` as new tasks (successes are never
    rerun; a retried task is not copied twice)."""
    state = service_state()
    owner = current_user().user_id
    states = body.chosen_states()
    with state.database.read() as conn:
        candidates = task_store.retry_candidates(conn, task_group_id, owner, states)
        if not candidates and not task_store.group_exists(conn, task_group_id, owner):
            raise unknown_group(task_group_id)
        # the endpoints' current owner, sharing and function allow-list apply to retries too
        submission.check_access(conn, owner, candidates)
        # ... and so does the data-only rule for arguments sent to others' endpoints
        endpoint_owners = access_store.owners(conn, {row.endpoint_id for row in candidates})
        submitters.check_arguments(owner, candidates, endpoint_owners, label="retried tasks")
    pairs: list[dict[str, str]] = []
    new: list[NewTask] = []
    doomed: list[str] = []
    now = time.time()
    with state.database.write() as conn:
        for row in candidates:
            task = NewTask(
                task_id=str(uuid.uuid4()),
                endpoint_id=row.endpoint_id,
                function_id=row.function_id,
                args=bytes(row.args),
                task_group_id=task_group_id,
                resource_spec=dict(row.resource_spec or {}),
            )
            if task_store.claim_retry(conn, row.task_id, task.task_id):
                new.append(task)
                pairs.append({"old": row.task_id, "new": task.task_id})
        # a retried child waits for its parent's retry (outpost_service.dependencies)
        dependencies.retried_dependencies(conn, pairs, new)
        dependencies.admit(conn, owner, new, same_batch=True)
        task_store.insert_many(conn, owner, new, now)
        doomed = dependencies.fail_doomed(conn, new, state.config.result_retention)
    if doomed:
        state.notifier.notify(doomed)
    if new:
        ids = [t.task_id for t in new]
        with state.database.read() as conn:
            rows = task_store.unpublished(conn, 0.0, len(ids), task_ids=ids)
        if rows:  # waiting ones are published when their parents succeeded
            submission.publish(state, submission.envelopes_for(state, rows), ids)
    return {"task_group_id": task_group_id, "retried": pairs}


def unknown_group(task_group_id: str) -> NotFound:
    """The 404 of a group without any of the caller's tasks (the same for another user's)."""
    return NotFound(
        f"no task group {task_group_id} among yours: no task of yours carries that "
        "task_group_id (check the id: it is the Executor's task_group_id; a group exists once "
        "its first task is stored, and is gone after its tasks' retention)",
        code="task_group_not_found",
        details={"task_group_id": task_group_id},
    )


@bp.get("/<task_group_id>/summary")
@declare(scope="read", answers=GroupSummary)
def group_summary(task_group_id: str) -> dict[str, Any]:
    """Outcome of a group: counts per state, failures grouped by error."""
    rows, submitted = _group(task_group_id, task_store.group_outcomes)
    latest = [r for r in rows if r.retried_by is None]
    errors: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
    for row in latest:
        if row.result is not None:
            errors[_error_key(bytes(row.result))].append(row.task_id)
    ranked = sorted(errors.items(), key=lambda item: (-len(item[1]), item[0]))
    return {
        "task_group_id": task_group_id,
        "tasks": len(rows),
        "retried": len(rows) - len(latest),
        "submitted": submitted,
        "stored": len(latest),
        "states": dict(collections.Counter(r.state for r in rows)),
        "latest_states": dict(collections.Counter(r.state for r in latest)),
        "errors": [
            {
                "type": kind,
                "message": message,
                "count": len(ids),
                "task_ids": ids[:EXAMPLES_PER_GROUP],
            }
            for (kind, message), ids in ranked[:MAX_ERROR_GROUPS]
        ],
        "error_groups": len(ranked),
    }


def _error_key(result: bytes) -> tuple[str, str]:
    """(error type, message) of a stored failed result; the message's first line, capped, so
    the same failure with a different traceback still groups."""
    try:
        error = json.loads(result).get("error") or {}
    except (ValueError, AttributeError):
        return ("?", "unreadable result")
    message = str(error.get("message", "")).strip().splitlines()
    return (str(error.get("type") or error.get("reason") or "?"), (message or [""])[0][:300])
