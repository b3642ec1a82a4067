"""Cancelling tasks that have not finished.

The service's record is authoritative: a cancelled task gets a stored ``ResultEnvelope`` with
state ``cancelled`` (``ErrorInfo.reason == "cancelled"``), so the client sees a final result at
once and any later result from the endpoint is ignored by the duplicate rule.  The endpoint is
then told with a ``CancelRequest`` so it skips (or kills) the task; if RabbitMQ is away that
message is lost, which costs only wasted work on the endpoint, never a wrong result.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable

from outpost.protocol import CancelRequest, ErrorInfo, ResultEnvelope, TaskState
from outpost_service.dependencies import release
from outpost_service.errors import BrokerError
from outpost_service.state import ServiceState
from outpost_service.store import tasks as task_store

log = logging.getLogger(__name__)


def cancelled_result(task_id: str, endpoint_id: str, message: str) -> ResultEnvelope:
    return ResultEnvelope(
        task_id=task_id,
        endpoint_id=endpoint_id,
        state=TaskState.CANCELLED,
        error=ErrorInfo(type="TaskCancelledError", message=message, reason="cancelled"),
    )


def cancel_tasks(
    state: ServiceState, tasks: Iterable[tuple[str, str]], message: str, *, tell_endpoint: bool
) -> list[str]:
    """Cancel the unfinished ones among ``tasks`` (``(task_id, endpoint_id)`` pairs).

    Returns the ids actually cancelled (tasks that finished meanwhile keep their result).
    """
    results = [cancelled_result(task_id, endpoint_id, message) for task_id, endpoint_id in tasks]
    if not results:
        return []
    with state.database.write() as conn:
        cancelled = task_store.finish(conn, results, state.config.result_retention)
        released = release(conn, results, cancelled, state.config.result_retention)
    if cancelled:
        state.notifier.notify(cancelled + released.failed)
    if tell_endpoint and cancelled:
        per_endpoint: dict[str, list[str]] = defaultdict(list)
        endpoint_of = {r.task_id: r.endpoint_id for r in results}
        for task_id in cancelled:
            per_endpoint[endpoint_of[task_id]].append(task_id)
        for endpoint_id, task_ids in per_endpoint.items():
            try:
                state.publisher.publish_cancel(
                    CancelRequest(endpoint_id=endpoint_id, task_ids=task_ids)
                )
            except BrokerError as exc:
                log.warning(
                    "could not tell endpoint %s to cancel %s: %s", endpoint_id, task_ids, exc
                )
    return cancelled
