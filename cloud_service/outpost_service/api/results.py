"""``POST /v1/results``: the long-poll through which clients collect results.

Answers at once when some requested task is finished (or ``wait`` is 0); otherwise blocks until
one finishes or ``wait`` seconds pass, woken by the in-process :class:`ResultNotifier` (or
re-checking the database every quarter second when ingest runs in another process).  Results
stay readable after being read, until retention ends.

``pending`` lists every requested task whose result is not in this answer: unfinished ones, and
finished ones held back because the answer reached its size budget (``max_content_length``,
64 MiB by default), which the next poll returns.
"""

from __future__ import annotations

import json
import time
from typing import Any

from flask import Blueprint

from outpost_service.auth import current_user, protect
from outpost_service.errors import NotFound, Unprocessable
from outpost_service.state import service_state
from outpost_service.store import tasks as task_store
from outpost_service.store.endpoints import TERMINAL_STATES
from outpost_service.validation import get_field, invalid, json_body, uuid_text

bp = protect(Blueprint("results", __name__, url_prefix="/v1/results"))

MAX_WAIT = 60.0


@bp.post("")
def collect_results() -> dict[str, Any]:
    state = service_state()
    owner = current_user().user_id
    body = json_body()
    raw_ids = get_field(body, "task_ids", list)
    if len(raw_ids) > state.config.max_batch:
        raise Unprocessable(
            f"ask for at most {state.config.max_batch:,} task ids per request, got "
            f"{len(raw_ids):,}",
            code="batch_too_large",
            details={"count": len(raw_ids), "max": state.config.max_batch},
        )
    task_ids = list(dict.fromkeys(uuid_text(t, f"task_ids[{i}]") for i, t in enumerate(raw_ids)))
    wait = body.get("wait", 0)
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= MAX_WAIT:
        raise invalid("wait", f"must be a number of seconds from 0 to {MAX_WAIT:g}, got {wait!r}")

    if not task_ids:
        return {"results": [], "pending": []}
    deadline = time.monotonic() + float(wait)
    notifier = state.notifier
    while True:
        generation = notifier.generation
        with state.database.read() as conn:
            rows = task_store.states_owned(conn, task_ids, owner)
        unknown = [t for t in task_ids if t not in rows]
        if unknown:
            raise NotFound(
                f"no task {', '.join(unknown[:10])}{' ...' if len(unknown) > 10 else ''} among "
                "yours (unknown, someone else's, or past retention)",
                details={"task_ids": unknown},
            )
        finished = [t for t in task_ids if rows[t].state in TERMINAL_STATES]
        remaining = deadline - time.monotonic()
        if finished or remaining <= 0 or notifier.closed:
            break
        notifier.wait(generation, remaining)
    chosen = _within_budget(finished, rows, state.config.max_content_length)
    with state.database.read() as conn:
        stored = task_store.results(conn, chosen)
    returned = [t for t in chosen if t in stored]
    done = set(returned)
    return {
        "results": [json.loads(stored[t]) for t in returned],
        "pending": [t for t in task_ids if t not in done],
    }


def _within_budget(finished: list[str], rows: dict[str, Any], budget: int) -> list[str]:
    """The finished ids whose results fit in ``budget`` bytes (at least one): a poll for many
    large results is answered in parts, the rest staying in ``pending`` for the next poll."""
    chosen: list[str] = []
    total = 0
    for task_id in finished:
        size = int(rows[task_id].size or 0)
        if chosen and total + size > budget:
            break
        chosen.append(task_id)
        total += size
    return chosen
