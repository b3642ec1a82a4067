"""Accepting a batch of tasks: check, store, publish, answer.

Order matters for the no-loss rule: every check runs before anything is written; the tasks are
inserted (state ``queued``) in one transaction and committed *before* publishing, so a result
can never arrive for a row that does not exist yet; the client is answered only after RabbitMQ
confirmed every message.

If publishing fails after the publisher's retries, the batch's tasks are marked ``lost`` (with
a stored result saying why) rather than deleted: some messages may already be confirmed, and
marking them terminal makes the endpoint's results for them harmless duplicates.  The client
gets a 503 naming the lost task ids and may simply resubmit.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence

from sqlalchemy.engine import Connection

from outpost.protocol import ErrorInfo, ResultEnvelope, TaskEnvelope, TaskState
from outpost_service.errors import BrokerError, BrokerUnavailable, NotFound
from outpost_service.state import ServiceState
from outpost_service.store import endpoints as endpoint_store
from outpost_service.store import functions as function_store
from outpost_service.store import tasks as task_store
from outpost_service.store.tasks import NewTask

log = logging.getLogger(__name__)


def submit(state: ServiceState, owner: int, new: Sequence[NewTask]) -> list[str]:
    """Store and publish ``new`` (whose ``task_id`` is filled in here); return the ids."""
    for task in new:
        task.task_id = str(uuid.uuid4())
    with state.database.read() as conn:
        foreign = endpoint_store.not_owned(conn, {t.endpoint_id for t in new}, owner)
        if foreign:
            raise NotFound(
                f"no endpoint {', '.join(foreign)} among yours; register it first "
                "(outpost-endpoint start) or check the id",
                details={"endpoint_ids": foreign},
            )
        payloads = _function_payloads(state, conn, {t.function_id for t in new})
    now = time.time()
    with state.database.write() as conn:
        task_store.insert_many(conn, owner, new, now)
    envelopes = [
        TaskEnvelope(
            task_id=t.task_id,
            function_id=t.function_id,
            function=payloads[t.function_id],
            args=t.args,
            endpoint_id=t.endpoint_id,
            task_group_id=t.task_group_id,
            resource_specification=t.resource_spec,
            created_at=now,
        )
        for t in new
    ]
    try:
        state.publisher.publish_tasks(envelopes)
    except BrokerError as exc:
        lost = _mark_lost(state, new, str(exc))
        raise BrokerUnavailable(
            f"{exc}; the {len(new)} task(s) of this request were not queued and are marked "
            "lost: submit them again",
            details={"task_ids": lost},
        ) from exc
    return [t.task_id for t in new]


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


def _mark_lost(state: ServiceState, new: Sequence[NewTask], reason: str) -> list[str]:
    results = [
        ResultEnvelope(
            task_id=t.task_id,
            endpoint_id=t.endpoint_id,
            state=TaskState.LOST,
            error=ErrorInfo(
                type="ServiceUnavailableError",
                message=f"the service could not queue the task: {reason}",
                reason="rejected",
            ),
        )
        for t in new
    ]
    try:
        with state.database.write() as conn:
            return task_store.finish(conn, results, state.config.result_retention)
    except Exception:
        log.exception("could not mark %d unpublished task(s) lost", len(new))
        return [t.task_id for t in new]
