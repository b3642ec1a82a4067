"""Accepting a batch of tasks: check, store, publish, answer.

Order matters for the no-loss rule: every check runs before anything is written; the tasks are
inserted (state ``queued``, ``published`` false) in one transaction and committed *before*
publishing, so a result can never arrive for a row that does not exist yet; the client is
answered only after RabbitMQ confirmed every message, and the tasks are then marked published.

If publishing fails after the publisher's retries, or the process dies between the commit and
the confirms, the tasks stay stored and unpublished: the sweeper (:mod:`.jobs.sweep`)
publishes them again once RabbitMQ takes messages.  The client of a failed publish gets a 503
whose ``details.task_ids`` names the stored tasks: they *will* run, and can be watched like any
other task.  A client that retries the same request with the same ``request_id`` gets the same
task ids back instead of new tasks (the retry also publishes the ones still unpublished, so a
200 keeps meaning "confirmed by RabbitMQ").  Concurrent attempts of one request take turns in
the write transaction (:func:`.store.tasks.lock_request`), so exactly one stores the batch; a
retry that arrives while the first attempt is still publishing publishes the same messages
again, which the endpoint's journal recognises (delivered twice, run once).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Connection

from outpost.protocol import TaskEnvelope, TaskState
from outpost_service import dependencies, submitters
from outpost_service.errors import BrokerError, BrokerUnavailable, Forbidden, NotFound
from outpost_service.state import ServiceState
from outpost_service.store import access as access_store
from outpost_service.store import functions as function_store
from outpost_service.store import tasks as task_store
from outpost_service.store.tasks import NewTask

log = logging.getLogger(__name__)


def submit(
    state: ServiceState, owner: int, new: Sequence[NewTask], request_id: str | None = None
) -> list[str]:
    """Store and publish ``new`` (whose ``task_id`` is filled in here); return the ids.

    With ``request_id``, a request already stored under that id (for ``owner``) is answered
    with its task ids (after publishing any still unpublished) and nothing new is stored."""
    for task in new:
        task.task_id = str(uuid.uuid4())
    stored: list[str] = []
    with state.database.read() as conn:  # one read transaction for every check
        if request_id is not None:
            stored = task_store.by_request(conn, owner, request_id)
        if not stored:
            check_access(conn, owner, new)
            endpoint_owners = access_store.owners(conn, {t.endpoint_id for t in new})
            submitters.check_arguments(owner, new, endpoint_owners)
            payloads = _function_payloads(state, conn, {t.function_id for t in new})
    if stored:
        return _replay(state, request_id or "", stored)
    now = time.time()
    earlier: list[str] = []
    doomed: list[str] = []
    ready: list[NewTask] = []
    values: dict[str, dict[str, str]] = {}
    with state.database.write() as conn:
        if request_id is not None:  # a concurrent retry may have stored it meanwhile
            task_store.lock_request(conn, owner, request_id)  # ... or be storing it now
            earlier = task_store.by_request(conn, owner, request_id)
        if not earlier:
            dependencies.admit(conn, owner, new)  # parents checked and locked; waiting or not
            task_store.insert_many(conn, owner, new, now, request_id)
            doomed = dependencies.fail_doomed(conn, new, state.config.result_retention)
            ready = [t for t in new if t.state == TaskState.QUEUED.value]
            values = dependencies.parent_values(conn, [t.task_id for t in ready if t.depends_on])
    if earlier:
        return _replay(state, request_id or "", earlier)
    if doomed:
        state.notifier.notify(doomed)
    envelopes = [
        _envelope(
            t,
            payloads,
            now,
            submitters.submitter(owner, endpoint_owners.get(t.endpoint_id)),
            values.get(t.task_id),
        )
        for t in ready
    ]
    task_ids = [t.task_id for t in new]
    if envelopes:
        publish(state, envelopes, task_ids)
    return task_ids


def check_access(conn: Connection, user_id: int, new: Sequence[Any]) -> None:
    """Refuse the whole batch (before anything is written) if one task names an endpoint the
    user may not use (404), or a function the endpoint's allow-list leaves out (403).  ``new``
    holds anything with ``endpoint_id`` and ``function_id`` (new tasks, or rows to retry)."""
    foreign = access_store.not_usable(conn, {t.endpoint_id for t in new}, user_id)
    if foreign:
        raise NotFound(
            f"no endpoint {', '.join(foreign)} among yours or those shared with you; register "
            "it first (outpost-endpoint start), ask its owner to share it, or check the id",
            details={"endpoint_ids": foreign},
        )
    refused = access_store.refused_functions(conn, {(t.endpoint_id, t.function_id) for t in new})
    if refused:
        first = refused[0]
        raise Forbidden(
            f"function {first['function_id']} is not allowed on endpoint {first['endpoint_id']}"
            f"{f' (and {len(refused) - 1} more pair(s))' if len(refused) > 1 else ''}; its "
            "owner's allow-list (outpost endpoints policy ENDPOINT_ID) names the functions it "
            "runs; nothing of this request was stored",
            code="function_not_allowed",
            details={"refused": refused, **first},
        )


def publish(state: ServiceState, envelopes: Sequence[TaskEnvelope], task_ids: list[str]) -> None:
    """Publish stored tasks and mark them published; a 503 names them if RabbitMQ fails."""
    try:
        state.publisher.publish_tasks(envelopes)
    except BrokerError as exc:
        raise BrokerUnavailable(
            f"{exc}; the {len(task_ids)} task(s) of this request are stored and will be queued "
            "when RabbitMQ is back (watch their ids, or retry with the same request_id to get "
            "the same ids once they are queued)",
            details={"task_ids": task_ids},
        ) from exc
    with state.database.write() as conn:
        task_store.mark_published(conn, [e.task_id for e in envelopes])


def envelopes_for(state: ServiceState, rows: Sequence[Any]) -> list[TaskEnvelope]:
    """Task envelopes for stored task rows (see :func:`.store.tasks.unpublished`), each with
    its submitter's relation to the endpoint, worked out again from the rows."""
    with state.database.read() as conn:
        payloads = _function_payloads(state, conn, {row.function_id for row in rows})
        endpoint_owners = access_store.owners(conn, {row.endpoint_id for row in rows})
        values = dependencies.parent_values(conn, [row.task_id for row in rows])
    return [
        _envelope(
            row,
            payloads,
            row.created_at,
            submitters.submitter(row.owner, endpoint_owners.get(row.endpoint_id)),
            values.get(row.task_id),
        )
        for row in rows
    ]


def _envelope(
    task: Any,
    payloads: dict[str, bytes],
    created_at: float,
    submitter: str,
    parent_values: dict[str, str] | None = None,
) -> TaskEnvelope:
    """The message of a stored task: ``task`` is a :class:`~.store.tasks.NewTask` or a task
    row (both name the stored fields alike), ``payloads`` the functions by id,
    ``parent_values`` its parents' result values (see :mod:`.dependencies`)."""
    return TaskEnvelope(
        task_id=task.task_id,
        function_id=task.function_id,
        function=payloads[task.function_id],
        args=bytes(task.args),  # a memoryview from PostgreSQL
        endpoint_id=task.endpoint_id,
        task_group_id=task.task_group_id,
        resource_specification=task.resource_spec,
        created_at=created_at,
        submitter=submitter,
        depends_on=sorted(parent_values or ()),
        parent_values=parent_values,
    )


def _replay(state: ServiceState, request_id: str, task_ids: list[str]) -> list[str]:
    """Answer a retried request: its tasks, published (again) if they were not yet."""
    log.info("request %s was already stored (%d task(s)); answering with them", request_id,
             len(task_ids))  # fmt: skip
    with state.database.read() as conn:
        rows = task_store.unpublished(conn, 0.0, len(task_ids), task_ids=task_ids)
    if rows:
        publish(state, envelopes_for(state, rows), task_ids)
    return task_ids


def _function_payloads(
    state: ServiceState, conn: Connection, function_ids: set[str]
) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for function_id in function_ids:
        payload = state.functions.get(function_id)
        if payload is not None:
            found[function_id] = payload
    wanted = function_ids - found.keys()
    if wanted:
        loaded = function_store.payloads(conn, wanted)
        missing = sorted(wanted - loaded.keys())
        if missing:
            raise NotFound(
                f"unknown function id(s) {', '.join(missing)}; register the function with "
                "POST /v1/functions first",
                details={"function_ids": missing},
            )
        for function_id, payload in loaded.items():
            state.functions.put(function_id, payload)
        found.update(loaded)
    return found
