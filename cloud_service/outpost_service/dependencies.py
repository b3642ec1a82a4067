"""Tasks that wait for other tasks: admitted at submit, released or failed as results land.

A task whose request names ``depends_on`` is stored ``waiting`` (or ``queued`` at once when its
parents already succeeded).  Its parents must exist and belong to the same user.  Whenever
results are committed (:mod:`.jobs.ingest`, :mod:`.cancellation`) :func:`release` runs in the
same transaction:

- a waiting child whose parents all succeeded becomes ``queued`` and unpublished; it is
  published after the commit (:func:`publish_released`), and if that fails or the process dies
  first, the sweeper publishes it (it republishes every unpublished task that is not waiting),
  so nothing released is lost;
- a child of a failed, cancelled or lost parent fails with reason ``dependency`` (the SDK raises
  :class:`outpost.errors.DependencyError`) naming the parent, and so do its own children,
  level by level (one batch of statements per level, never one per task).

The message of a released task carries its parents' result values as opaque base64 text
(``TaskEnvelope.parent_values``): the service copies them from the stored result envelopes and
never unpickles them; the worker substitutes them into the arguments.

Not done yet: when parent and child run on the same endpoint, the parent's value still travels
through the service (the endpoint could keep recent results by task id and the service send a
reference instead).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.engine import Connection

from outpost.protocol import ErrorInfo, ResultEnvelope, TaskState
from outpost_service.errors import NotFound
from outpost_service.store import dependencies as dependency_store
from outpost_service.store import tasks as task_store
from outpost_service.store.tasks import NewTask

if TYPE_CHECKING:
    from outpost_service.state import ServiceState

log = logging.getLogger(__name__)

_BAD = {TaskState.FAILED.value, TaskState.CANCELLED.value, TaskState.LOST.value}


@dataclass
class Released:
    """What a commit of results did to the tasks waiting for them."""

    #: Children now queued (unpublished), to publish after the commit.
    queued: list[str] = field(default_factory=list)
    #: Children (at any depth) failed because a parent did not succeed, to notify.
    failed: list[str] = field(default_factory=list)


def admit(
    conn: Connection, owner: int, new: Sequence[NewTask], *, same_batch: bool = False
) -> None:
    """Check the parents of ``new`` and set each task's first state; in the submit's write
    transaction, before the insert.  Raises :class:`NotFound` (nothing stored) when a parent
    is unknown or another user's.  With ``same_batch`` a parent may be one of ``new`` itself
    (a retried group: the retry of a child depends on the retry of its parent)."""
    batch = {task.task_id for task in new} if same_batch else set()
    wanted = {parent for task in new for parent in task.depends_on} - batch
    if not wanted and not batch:
        return
    parents = dependency_store.parents_locked(conn, wanted)
    missing = sorted(p for p in wanted if p not in parents or parents[p].owner != owner)
    if missing:
        raise NotFound(
            f"no task {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} among yours "
            "to depend on; a task may depend only on your own tasks that the service accepted "
            "(submit the parents first and pass their futures); nothing of this request was "
            "stored",
            code="unknown_dependency",
            details={"task_ids": missing},
        )
    for task in new:
        if task.depends_on and any(
            p in batch or parents[p].state != TaskState.SUCCESS.value for p in task.depends_on
        ):
            task.state = TaskState.WAITING.value


def retried_dependencies(conn: Connection, pairs: Sequence[dict[str, str]],
                         new: Sequence[NewTask]) -> None:  # fmt: skip
    """Give each retried task (``pairs`` of old and new ids, in the order of ``new``) the
    parents of the task it retries -- the parent's retry where the parent is retried in the
    same request, else the parent itself (a failed one fails the retry again, at once)."""
    renamed = {pair["old"]: pair["new"] for pair in pairs}
    old_parents = dependency_store.parents_of(conn, list(renamed))
    for pair, task in zip(pairs, new, strict=True):
        task.depends_on = [
            renamed.get(row.parent_task_id, row.parent_task_id)
            for row in old_parents.get(pair["old"], [])
        ]


def fail_doomed(conn: Connection, new: Sequence[NewTask], retention: float) -> list[str]:
    """Fail (with their descendants) the just inserted tasks of ``new`` that wait for a parent
    that already failed; return the failed ids.  Same transaction, after the insert."""
    waiting = [t.task_id for t in new if t.state == TaskState.WAITING.value]
    if not waiting:
        return []
    parents = dependency_store.parents_of(conn, waiting)
    endpoint_of = {t.task_id: t.endpoint_id for t in new}
    doomed = []
    for child, rows in parents.items():
        bad = next((row for row in rows if row.state in _BAD), None)
        if bad is not None:
            doomed.append(_failure(child, endpoint_of[child], bad.parent_task_id, bad.state))
    return _fail(conn, doomed, retention)


def release(
    conn: Connection, results: Sequence[ResultEnvelope], stored: Sequence[str], retention: float
) -> Released:
    """Queue or fail the waiting children of the ``stored`` ones among ``results``; in the
    transaction that stored them."""
    if not stored:
        return Released()
    kept = set(stored)
    states = {r.task_id: r.state.value for r in results if r.task_id in kept}
    succeeded = [tid for tid, s in states.items() if s == TaskState.SUCCESS.value]
    bad = {tid: s for tid, s in states.items() if s in _BAD}
    released = Released()
    if succeeded:
        children = {row.child_task_id for row in dependency_store.waiting_children(conn, succeeded)}
        ready = [
            child
            for child, rows in dependency_store.parents_of(conn, children).items()
            if all(row.state == TaskState.SUCCESS.value for row in rows)
        ]
        released.queued = dependency_store.mark_queued(conn, ready, time.time())
    if bad:
        released.failed = _fail_children(conn, bad, retention)
    return released


def _fail_children(conn: Connection, bad: dict[str, str], retention: float) -> list[str]:
    """Fail the waiting descendants of the ``bad`` parents (``{task_id: state}``)."""
    failed: list[str] = []
    frontier = bad
    while frontier:
        doomed: dict[str, ResultEnvelope] = {}
        for row in dependency_store.waiting_children(conn, frontier):
            if row.child_task_id not in doomed:
                doomed[row.child_task_id] = _failure(
                    row.child_task_id,
                    row.endpoint_id,
                    row.parent_task_id,
                    frontier[row.parent_task_id],
                )
        stored = _fail(conn, list(doomed.values()), retention)
        failed.extend(stored)
        frontier = {tid: TaskState.FAILED.value for tid in stored}
    return failed


def _fail(conn: Connection, doomed: list[ResultEnvelope], retention: float) -> list[str]:
    return task_store.finish(conn, doomed, retention, endpoint_must_match=False)


def _failure(child: str, endpoint_id: str, parent: str, parent_state: str) -> ResultEnvelope:
    how = "was cancelled" if parent_state == TaskState.CANCELLED.value else parent_state
    if parent_state == TaskState.FAILED.value:
        how = "failed"
    return ResultEnvelope(
        task_id=child,
        endpoint_id=endpoint_id,
        state=TaskState.FAILED,
        error=ErrorInfo(
            type="outpost.errors.DependencyError",
            message=f"task {child} was not run: its dependency task {parent} {how}",
            reason="dependency",
        ),
    )


def parent_values(conn: Connection, task_ids: Sequence[str]) -> dict[str, dict[str, str]]:
    """``{child: {parent: base64 value}}`` for the tasks among ``task_ids`` that have parents
    (what their messages carry)."""
    parents = dependency_store.parents_of(conn, task_ids)
    if not parents:
        return {}
    values = dependency_store.values(conn, {row.parent_task_id for rows in parents.values()
                                            for row in rows})  # fmt: skip
    return {
        child: {row.parent_task_id: values.get(row.parent_task_id) or "" for row in rows}
        for child, rows in parents.items()
    }


def publish_released(state: ServiceState, task_ids: Sequence[str]) -> None:
    """Publish the children :func:`release` queued (after its commit).  A failure is logged
    only: they stay unpublished, and the sweeper publishes them."""
    if not task_ids:
        return
    from outpost_service.submission import envelopes_for, publish  # submission imports us

    try:
        with state.database.read() as conn:
            rows = task_store.unpublished(conn, 0.0, len(task_ids), task_ids=task_ids)
        if rows:
            publish(state, envelopes_for(state, rows), [row.task_id for row in rows])
    except Exception as exc:  # BrokerUnavailable, a database error: the sweeper publishes them
        log.warning(
            "could not publish %d released task(s) now (the sweeper will): %s", len(task_ids), exc
        )
