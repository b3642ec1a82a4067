"""Why a task is still not done: the text of the ``TimeoutError`` a result wait raises.

"timed out" alone leaves the user guessing; the common causes are visible to the service: the
endpoint is offline (stopped, crashed, its host gone) or it cannot get blocks from its batch
scheduler (its heartbeat carries the scheduler's refusal).  So when a wait times out the SDK
asks the service for the task and its endpoint and says which it is, e.g. ``task T still
queued; endpoint X offline since 2026-12-04 18:16:05 UTC`` or ``task T still queued; endpoint
X: blocks failing: qsub: Job violates queue and/or server resource limits``.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from outpost.errors import OutpostError


class _Reader(Protocol):
    def get_task(self, task_id: str) -> dict[str, Any]: ...

    def get_endpoint(self, endpoint_id: str) -> dict[str, Any]: ...


def _when(epoch: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(epoch)))


def endpoint_problem(endpoint: dict[str, Any]) -> str | None:
    """``offline since T`` / ``never connected`` / ``blocks failing: ...``; None if fine."""
    if endpoint.get("state") != "online":
        seen = endpoint.get("last_heartbeat")
        return f"offline since {_when(seen)}" if seen else "offline (never connected)"
    failing = (endpoint.get("details") or {}).get("provider_error")
    if isinstance(failing, dict) and failing.get("message"):
        return f"blocks failing: {failing['message']}"
    return None


def why_waiting(client: _Reader, task_id: str, timeout: float | None) -> str:
    """The message for a wait on ``task_id`` that timed out (never raises)."""
    waited = f" after {timeout:g} s" if timeout is not None else ""
    try:
        task = client.get_task(task_id)
        state, endpoint_id = task.get("state", "?"), task.get("endpoint_id")
        if not endpoint_id:
            return f"task {task_id} still {state}{waited}"
        problem = endpoint_problem(client.get_endpoint(str(endpoint_id)))
    except (OutpostError, OSError) as exc:
        return f"task {task_id} did not finish{waited} (its state could not be read: {exc})"
    if problem is None:
        return f"task {task_id} still {state}{waited}; endpoint {endpoint_id} is online"
    separator = " " if problem.startswith("offline") else ": "
    return f"task {task_id} still {state}{waited}; endpoint {endpoint_id}{separator}{problem}"
