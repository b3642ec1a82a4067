"""The dashboard's routes: sign-in, endpoints, task groups, one group, one task.

Each page has a ``.../live`` twin that renders only the part that changes; ``static/live.js``
fetches it every 1.5 s.  Retry and cancel run the API views' own code (the undecorated views,
``inspect.unwrap``) with the signed-in user, so the dashboard can never do what the API would not.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from flask import Blueprint, redirect, render_template, request, send_from_directory, url_for
from flask.wrappers import Response
from werkzeug.wrappers import Response as BaseResponse

from outpost.protocol import ResultEnvelope, Strategy, deserialize, payload_strategy
from outpost_service.api import endpoints as endpoints_api
from outpost_service.api import task_groups as groups_api
from outpost_service.api import tasks as tasks_api
from outpost_service.api.bodies import RetryGroup
from outpost_service.cancellation import cancel_tasks
from outpost_service.errors import ApiError, NotFound, Unauthorized
from outpost_service.routing import page
from outpost_service.state import service_state
from outpost_service.store import access as access_store
from outpost_service.store import tasks as task_store
from outpost_service.ui import progress, queries, session
from outpost_service.validation import uuid_text

HERE = Path(__file__).parent
bp = Blueprint("ui", __name__, url_prefix="/ui", template_folder="templates")
bp.before_request(session.load)
bp.after_request(session.save)

#: Longest value or output shown on a task's page (characters).
MAX_SHOWN = 20_000


@bp.app_template_global()
def csrf_token() -> str:
    return session.csrf_token()


@bp.app_template_filter("duration")
def _duration(seconds: float | None) -> str:
    return progress.duration(seconds)


@bp.app_template_filter("clock")
def _clock(at: float | None) -> str:
    return progress.clock(at)


@bp.errorhandler(ApiError)
def _error(error: ApiError) -> BaseResponse | tuple[str, int]:
    """Errors as pages; a visitor who is not signed in goes to the sign-in form."""
    if isinstance(error, Unauthorized):
        if request.path.endswith("/live"):
            return "", 401  # live.js sends the page to the sign-in form
        return redirect(url_for("ui.login", next=request.full_path.rstrip("?")))
    return render_template("error.html", error=error), error.status


# ------------------------------------------------------------------------------ sign-in
@bp.get("/login")
@page
def login() -> str:
    return render_template("login.html", error=None, next=request.args.get("next", ""))


@bp.post("/login")
@page
def login_post() -> BaseResponse | tuple[str, int]:
    target = request.form.get("next", "")
    try:
        session.sign_in(request.form.get("token", ""))
    except Unauthorized as exc:
        return render_template("login.html", error=exc.message, next=target), 401
    if not target.startswith("/ui/") or target.startswith("/ui/login"):
        target = url_for("ui.groups")
    return redirect(target)


@bp.post("/logout")
@page
def logout() -> BaseResponse:
    session.sign_out()
    return redirect(url_for("ui.login"))


@bp.get("/")
@page
def index() -> BaseResponse:
    return redirect(url_for("ui.groups"))


@bp.get("/static/<name>")
@page
def static(name: str) -> Response:
    return send_from_directory(HERE / "static", name, max_age=300)


# ------------------------------------------------------------------------------ endpoints
@bp.get("/endpoints")
@page
def endpoints() -> str:
    return render_template("endpoints.html", **_endpoints())


@bp.get("/endpoints/live")
@page
def endpoints_live() -> str:
    return render_template("_endpoints.html", **_endpoints())


def _endpoints() -> dict[str, Any]:
    record = session.require_user()
    state = service_state()
    with state.database.read() as conn:
        rows = access_store.list_usable(conn, record.user.user_id)
        ids = [r.endpoint_id for r in rows]
        counts = queries.endpoint_states(conn, ids)
    shown = []
    for row in rows:
        at_service = counts.get(row.endpoint_id, {})
        described = endpoints_api._describe(state, row, sum(at_service.values()))
        shown.append(_endpoint_view(described, at_service))
    return {"endpoints": shown, "user": record.user}


def _endpoint_view(described: dict[str, Any], at_service: dict[str, int]) -> dict[str, Any]:
    """What the endpoints page shows of one endpoint: its state and the load its last
    heartbeat reported (``details``; the high-throughput engine's ``engine`` part)."""
    details = described["details"] or {}
    engine = details.get("engine") or {}
    managers = engine.get("managers") or []
    blocks = engine.get("blocks") or []
    block_states: dict[str, int] = {}
    for block in blocks:
        block_states[str(block.get("state"))] = block_states.get(str(block.get("state")), 0) + 1
    gpus = [a for m in managers for a in (m.get("accelerators") or [])]
    return {
        **described,
        "hostname": details.get("hostname"),
        "engine_type": engine.get("type"),
        "workers": details.get("workers"),
        "idle": details.get("idle"),
        "busy": engine.get("running"),
        "nodes": len(managers),
        "gpus": gpus,
        "blocks": block_states,
        "queued_at_endpoint": engine.get("queued"),
        "outstanding_at_endpoint": details.get("outstanding_tasks"),
        "at_service": at_service,
        "provider_error": details.get("provider_error"),
    }


# ------------------------------------------------------------------------------ groups
@bp.get("/groups")
@page
def groups() -> str:
    return render_template("groups.html", **_groups())


@bp.get("/groups/live")
@page
def groups_live() -> str:
    return render_template("_groups.html", **_groups())


def _groups() -> dict[str, Any]:
    record = session.require_user()
    with service_state().database.read() as conn:
        found = queries.groups_overview(conn, record.user.user_id)
    for group in found:
        unfinished = sum(group["states"].get(s, 0) for s in ("received", "queued", "dispatched"))
        unfinished += group["states"].get("running", 0)
        group["total"] = sum(group["states"].values())
        group["rate"], group["eta"] = progress.rate_and_eta(
            group["recent"], group["first"], unfinished
        )
        group["spark"] = progress.sparkline_svg(group["buckets"], queries.BUCKET * queries.BUCKETS)
    return {"groups": found, "states": progress.STATES, "user": record.user}


@bp.get("/groups/<task_group_id>")
@page
def group(task_group_id: str) -> str:
    return render_template("group.html", **_group(task_group_id))


@bp.get("/groups/<task_group_id>/live")
@page
def group_live(task_group_id: str) -> str:
    return render_template("_group.html", **_group(task_group_id))


def _group(task_group_id: str) -> dict[str, Any]:
    record = session.require_user()
    gid = uuid_text(task_group_id, "task_group_id")
    with service_state().database.read() as conn:
        rows = queries.group_rows(conn, gid, record.user.user_id)
    if not rows:
        raise groups_api.unknown_group(gid)
    shown = progress.progress_of(rows)
    return {
        "gid": gid,
        "p": shown,
        "plot": progress.completions_svg(shown.completions, shown.started, len(rows)),
        "tasks": [r for r in rows if r.retried_by is None][-queries.MAX_TASK_ROWS :],
        "max_rows": queries.MAX_TASK_ROWS,
        "states": progress.STATES,
        "user": record.user,
    }


@bp.post("/groups/<task_group_id>/retry")
@page
def group_retry(task_group_id: str) -> BaseResponse:
    """Retry the group's failed and lost tasks: ``POST /v1/task_groups/<gid>/retry``'s code."""
    session.require_user("submit")
    gid = uuid_text(task_group_id, "task_group_id")
    inspect.unwrap(groups_api.retry_group)(task_group_id=gid, body=RetryGroup())
    return redirect(url_for("ui.group", task_group_id=gid))


@bp.post("/groups/<task_group_id>/cancel")
@page
def group_cancel(task_group_id: str) -> BaseResponse:
    """Cancel the group's unfinished tasks, as ``POST /v1/tasks/<id>/cancel`` cancels one."""
    record = session.require_user("submit")
    gid = uuid_text(task_group_id, "task_group_id")
    state = service_state()
    with state.database.read() as conn:
        pairs = queries.unfinished_in_group(conn, gid, record.user.user_id)
        if not pairs and not task_store.group_exists(conn, gid, record.user.user_id):
            raise groups_api.unknown_group(gid)
    if pairs:
        cancel_tasks(state, pairs, "the task was cancelled", tell_endpoint=True)
    return redirect(url_for("ui.group", task_group_id=gid))


# ------------------------------------------------------------------------------ one task
@bp.get("/tasks/<task_id>")
@page
def task(task_id: str) -> str:
    return render_template("task.html", **_task(task_id))


@bp.get("/tasks/<task_id>/live")
@page
def task_live(task_id: str) -> str:
    return render_template("_task.html", **_task(task_id))


@bp.post("/tasks/<task_id>/cancel")
@page
def task_cancel(task_id: str) -> BaseResponse:
    """Cancel one task: ``POST /v1/tasks/<id>/cancel``'s code."""
    session.require_user("submit")
    tid = uuid_text(task_id, "task_id")
    inspect.unwrap(tasks_api.cancel_task)(task_id=tid)
    return redirect(url_for("ui.task", task_id=tid))


def _task(task_id: str) -> dict[str, Any]:
    record = session.require_user()
    tid = uuid_text(task_id, "task_id")
    with service_state().database.read() as conn:
        row = task_store.get_owned(conn, tid, record.user.user_id)
        if row is None:
            raise NotFound(f"no task {tid} among yours", details={"task_id": tid})
        events = task_store.events(conn, tid)
    result = ResultEnvelope.from_bytes(bytes(row.result)) if row.result is not None else None
    first = events[0].at if events else row.created_at
    return {
        "t": row,
        "events": [{"state": e.state, "at": e.at, "after": e.at - first} for e in events],
        "result": result,
        "value": _value_text(result.value) if result is not None else None,
        "terminal": row.state in task_store.TERMINAL_STATES,
        "user": record.user,
    }


def _value_text(payload: bytes | None) -> str | None:
    """A result's value as text when it is plain JSON data; pickles are never loaded here
    (loading runs code): the page says so."""
    if payload is None:
        return None
    strategy = payload_strategy(payload)
    if strategy is not Strategy.JSON:
        kind = strategy.value if strategy is not None else "sealed or unknown"
        return (
            f"({kind} payload, {len(payload):,} bytes: not opened by the service; "
            "read it with the SDK: Client().get_result(task_id))"
        )
    text = json.dumps(deserialize(payload, data_only=True), indent=2, ensure_ascii=False)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "\n... (cut)"
