"""``POST /v1/results``: the long-poll through which clients collect results.

Answers at once when some requested task is finished (or ``wait`` is 0); otherwise blocks until
one finishes or ``wait`` seconds pass, woken by the :class:`ResultNotifier` only when one of
its own tasks finishes (in this process, or in another one through :mod:`..wakeups`; without
either source it re-checks the database every quarter second).  A wake-up for other tasks'
results is recognised from the notifier's record and costs no query.  A
*partial* answer to a poll for many ids lingers briefly (50 ms + 0.5 ms per id, at most
0.5 s) to gather more results, so thousands of outstanding ids are not re-read for every few
results; a poll for one task, or one whose every task is finished, is answered at once.  Results
stay readable after being read, until retention ends.

A poll about to wait takes a slot of the bounded long-poll pool (longpoll.py): over the pool or
the per-user cap it is answered 429 with ``Retry-After`` so request threads stay free for
ordinary requests.  After waiting, the token is checked again: a token revoked meanwhile gets
401, not results.

``pending`` lists every requested task whose result is not in this answer: unfinished ones, and
finished ones held back because the answer reached its size budget (``max_content_length``,
64 MiB by default), which the next poll returns.

Each result says whether the caller owns its endpoint; pickles from endpoints the caller does
not own are withheld unless ``trust_endpoints`` names them (:mod:`..result_trust`).
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from flask import Blueprint, Response

from outpost.protocol.api import Results
from outpost_service.api.bodies import CollectResults
from outpost_service.auth import current_user, recheck_token
from outpost_service.errors import NotFound, TooManyRequests
from outpost_service.result_trust import mark_result
from outpost_service.routing import declare
from outpost_service.state import service_state
from outpost_service.store import tasks as task_store
from outpost_service.store.endpoints import TERMINAL_STATES

bp = Blueprint("results", __name__, url_prefix="/v1/results")

#: A partial answer waits ``MIN_LINGER`` plus this long per requested id (at most
#: ``MAX_LINGER``) for more results.
LINGER_PER_ID = 0.0005
MIN_LINGER = 0.05
MAX_LINGER = 0.5


# The read scope: a POST only because its id list can be long.
@bp.post("")
@declare(scope="read", body=CollectResults, answers=Results)
def collect_results(body: CollectResults) -> dict[str, Any] | Response:
    """Long-poll for results: blocks up to ``wait`` seconds until one is finished.

    A poll that would wait while its user already has ``longpoll_per_user`` waiting, or the
    service its ``longpoll_slots``, gets 429 with Retry-After; a token revoked while the poll
    waited gets 401.
    """
    state = service_state()
    owner = current_user().user_id
    task_ids = list(dict.fromkeys(body.task_ids))
    trust = frozenset(body.trust_endpoints or ())
    if not task_ids:
        return {"results": [], "pending": []}
    deadline = time.monotonic() + body.wait
    notifier = state.notifier
    wanted = frozenset(task_ids)
    with notifier.awaiting(wanted) as waiter, contextlib.ExitStack() as waiting:
        generation = notifier.generation  # read before the query, so no later wake-up is missed
        rows, finished = _states(state, task_ids, owner)
        linger_until: float | None = None
        news: set[str] = set()  # ours that the notifier says finished, not yet read
        waited = False
        while not notifier.closed:
            if finished and len(finished) < len(task_ids) and linger_until is None:
                # A partial answer for many ids: gather what finishes in the next moments too,
                # so the O(len(task_ids)) cost of a poll is spread over more results (a poll for
                # one task, or whose every task is finished, is answered at once).
                linger_until = min(deadline, time.monotonic() + _linger(len(task_ids)))
            if news and (linger_until is None or len(finished) + len(news) >= len(task_ids)):
                rows, finished = _read_news(state, task_ids, owner, rows, finished, news)
                news = set()
                continue
            if finished and (linger_until is None or len(finished) == len(task_ids)):
                break
            remaining = (linger_until or deadline) - time.monotonic()
            if remaining <= 0:
                break
            if not waited:  # a slot of the bounded pool, or 429 (longpoll.py)
                try:
                    waiting.enter_context(state.longpolls.slot(owner))
                except TooManyRequests:
                    if finished:  # only lingering for more: answer what is here instead
                        break
                    raise
                waited = True
            current = waiter.wait(generation, remaining)
            if current == generation:
                # No wake-up: re-read (results ingested by another process are seen only so).
                if linger_until is None:
                    rows, finished = _states(state, task_ids, owner)
                continue
            # Woken: the notifier's record says which of ours finished, so only those are read
            # (once, when the answer is due); a wake-up for other tasks' results costs no query.
            found = notifier.finished_among(generation, wanted)
            generation = current
            if found is None:
                rows, finished = _states(state, task_ids, owner)
                news = set()
            else:
                news |= found - set(finished)
        if news:
            rows, finished = _read_news(state, task_ids, owner, rows, finished, news)
        if waited:  # the token may have been revoked while this poll waited
            recheck_token()
    chosen = _within_budget(finished, rows, state.config.max_content_length)
    with state.database.read() as conn:
        stored = task_store.results_with_origin(conn, chosen)
        others = {r.endpoint_owner for r in stored.values() if r.endpoint_owner != owner}
        names = task_store.user_names(conn, others) if others else {}
    returned = [t for t in chosen if t in stored]
    done = set(returned)
    results = [
        mark_result(
            bytes(row.result),
            row.endpoint_owner == owner,
            names.get(row.endpoint_owner, ""),
            row.endpoint_id in trust,
        )
        for row in (stored[t] for t in returned)
    ]
    return _answer(results, [t for t in task_ids if t not in done])


def _answer(results: list[bytes], pending: list[str]) -> Response:
    """``{"results": [...], "pending": [...]}`` with each stored result spliced in as the JSON
    it already is (the ingest stored ``ResultEnvelope.to_bytes()``), instead of parsing every
    result only to encode it again -- for a poll of a thousand results that was a tenth of
    the service's work per task."""
    body = b'{"results":[' + b",".join(results) + b'],"pending":'
    body += json.dumps(pending, separators=(",", ":")).encode() + b"}"
    return Response(body, mimetype="application/json")


def _read_news(
    state: Any,
    task_ids: list[str],
    owner: int,
    rows: dict[str, Any],
    finished: list[str],
    news: set[str],
) -> tuple[dict[str, Any], list[str]]:
    """``rows`` and ``finished`` updated with the rows of ``news`` (a few ids), in request
    order."""
    fresh, _ = _states(state, sorted(news), owner)
    rows.update(fresh)
    done = set(finished) | {t for t, row in fresh.items() if row.state in TERMINAL_STATES}
    return rows, [t for t in task_ids if t in done]


def _linger(count: int) -> float:
    """How long a partial answer for ``count`` ids waits for more: long next to what reading
    ``count`` states costs (15-30 us per id on a small machine), so re-polling outstanding ids
    stays a small fraction of the service's work; it never delays a complete answer."""
    return min(MAX_LINGER, MIN_LINGER + LINGER_PER_ID * count) if count > 1 else 0.0


def _states(state: Any, task_ids: list[str], owner: int) -> tuple[dict[str, Any], list[str]]:
    """The state rows of ``task_ids`` (all must be ``owner``'s) and which are finished."""
    with state.database.read() as conn:
        rows = task_store.states_owned(conn, task_ids, owner)
    unknown = [t for t in task_ids if t not in rows]
    if unknown:
        raise NotFound(
            f"no task {', '.join(unknown[:10])}{' ...' if len(unknown) > 10 else ''} among "
            "yours (unknown, someone else's, or past retention)",
            details={"task_ids": unknown},
        )
    return rows, [t for t in task_ids if rows[t].state in TERMINAL_STATES]


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
