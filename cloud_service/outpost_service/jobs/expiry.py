"""Task expiry: a task not finished by its deadline fails with reason ``expired``.

Off by default.  A task gets a deadline from ``resource_specification["expires_after"]``
(seconds after submission) or, when it has none, from the service's ``task_expiry`` setting
(0 = never).  The service's sweeper (in ``serve`` and ``ingest``; one process at a time,
:mod:`.sweep`) fails due tasks -- typically ones waiting for an endpoint that stayed
offline -- with a stored ``failed`` result whose ``ErrorInfo.reason == "expired"``, so the
client sees a clear final answer; then it tells the endpoint to cancel them (best effort, like
a user's cancel).  Should two processes expire at once, :func:`..store.tasks.finish` stores one
result and only the process that stored it sends the cancel.  The endpoint, for its part, does
not start a task delivered after its deadline (it answers ``expired`` itself).  A task already
running when its deadline passes is killed by that cancel; if the endpoint's result wins the
race instead, the result is kept: the first final state wins.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict

from outpost.protocol import CancelRequest, ErrorInfo, ResultEnvelope, TaskState
from outpost_service.dependencies import release
from outpost_service.errors import BrokerError
from outpost_service.state import ServiceState
from outpost_service.store import tasks as task_store

log = logging.getLogger(__name__)


def expired_result(task_id: str, endpoint_id: str, deadline: float) -> ResultEnvelope:
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(deadline))
    return ResultEnvelope(
        task_id=task_id,
        endpoint_id=endpoint_id,
        state=TaskState.FAILED,
        error=ErrorInfo(
            type="TaskExpiredError",
            message=(
                f"task {task_id} did not finish by its deadline ({when}) on endpoint "
                f"{endpoint_id} (offline or busy?); submit it again, or raise "
                "resource_specification['expires_after']"
            ),
            reason="expired",
        ),
    )


def expire_due(state: ServiceState, now: float | None = None, limit: int = 1000) -> list[str]:
    """Fail the unfinished tasks whose deadline has passed; return their ids."""
    now = time.time() if now is None else now
    with state.database.read() as conn:
        rows = task_store.due(conn, now, limit)
    if not rows:
        return []
    results = [expired_result(r.task_id, r.endpoint_id, r.deadline) for r in rows]
    with state.database.write() as conn:
        expired = task_store.finish(conn, results, state.config.result_retention)
        released = release(conn, results, expired, state.config.result_retention)
    if not expired:
        return []
    log.info("%d task(s) expired", len(expired))
    state.notifier.notify(expired + released.failed)
    per_endpoint: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        if row.task_id in expired:
            per_endpoint[row.endpoint_id].append(row.task_id)
    for endpoint_id, task_ids in per_endpoint.items():
        try:
            state.publisher.publish_cancel(
                CancelRequest(endpoint_id=endpoint_id, task_ids=task_ids)
            )
        except BrokerError as exc:
            log.warning("could not tell endpoint %s to drop expired tasks: %s", endpoint_id, exc)
    return expired
