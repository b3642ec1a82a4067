"""A small in-process fake of the Outpost service's HTTP API (docs/ARCHITECTURE.md).

A real HTTP server on a random localhost port, so the SDK is exercised over real HTTP.  It
"runs" tasks itself by deserializing and calling them in a thread pool.  Tests can hold tasks
in the ``queued`` state (``hold()``/``release()``) to exercise cancel, long-poll and reload,
and make routes fail (``fail_next``) to exercise retries and error handling.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from outpost.protocol import (
    ErrorInfo,
    ResultEnvelope,
    TaskState,
    deserialize,
    function_id_for,
    serialize,
)
from outpost.protocol import api as answers
from outpost.protocol.dependencies import resolve
from tests.json_http import JsonServer, error

TOKEN = "test-token"
ENDPOINT = "7f1c2c1e-0000-4000-8000-000000000001"


class FakeService:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.functions: dict[str, bytes] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.batches: list[int] = []
        self.fail_next: Counter[tuple[str, str]] = Counter()
        self.request_ids: list[str | None] = []  # of each POST /v1/tasks that got through
        #: the request id of every POST /v1/tasks attempt, the injected failures included
        self.attempt_request_ids: list[str | None] = []
        self.attempted_request_ids: list[str | None] = []  # of every POST /v1/tasks, failed too
        self.stored_requests: dict[str, list[str]] = {}  # request id -> its task ids (dedup)
        self.group_submitted: dict[tuple[str, str], int] = {}  # (group, client id) -> count
        self.fail_status = 503
        self.calls = 0  # task functions actually called
        self.held = False
        self.backlog: list[str] = []
        self.stopping = False
        self.pool = ThreadPoolExecutor(4)
        self.server = JsonServer(self.answer)
        self.url = self.server.url

    def start(self) -> FakeService:
        self.server.start()
        return self

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        self.server.close()
        self.pool.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------ controls for tests
    def hold(self) -> None:
        """Keep newly submitted tasks queued until ``release()``."""
        with self.cond:
            self.held = True

    def release(self) -> None:
        with self.cond:
            self.held = False
            backlog, self.backlog = self.backlog, []
        for task_id in backlog:
            self.pool.submit(self.run, task_id)

    def state(self, task_id: str) -> str:
        with self.cond:
            return str(self.tasks[task_id]["state"])

    # ------------------------------------------------------------------ running tasks
    def run(self, task_id: str) -> None:
        with self.cond:
            task = self.tasks[task_id]
            if task["state"] != "queued":
                return
            self._event(task, "running")
        try:
            fn = deserialize(self.functions[task["function_id"]])
            args, kwargs = deserialize(task["args"])
            if task["depends_on"]:  # like the worker (outpost_endpoint.execution)
                with self.cond:
                    values = {
                        p: deserialize(base64.b64decode(self.tasks[p]["result"]["value"]))
                        for p in task["depends_on"]
                    }
                args, kwargs = resolve(args, values), resolve(kwargs, values)
            with self.cond:
                self.calls += 1
            value = fn(*args, **kwargs)
            envelope = ResultEnvelope(task_id, task["endpoint_id"], TaskState.SUCCESS)
            envelope.value = serialize(value)
        except BaseException as exc:
            try:
                payload: bytes | None = serialize(exc)
            except Exception:
                payload = None
            error = ErrorInfo(
                type=f"{type(exc).__module__}.{type(exc).__qualname__}",
                message=str(exc),
                reason="exception",
                traceback=traceback.format_exc(),
                payload=payload,
            )
            envelope = ResultEnvelope(task_id, task["endpoint_id"], TaskState.FAILED, error=error)
        self.finish(task_id, envelope)

    def finish(self, task_id: str, envelope: ResultEnvelope) -> None:
        with self.cond:
            task = self.tasks[task_id]
            if task["result"] is None:
                # Like the real service: the caller owns the endpoint (outpost.result_trust).
                task["result"] = {**envelope.to_dict(), "endpoint_owned": True}
                self._event(task, envelope.state.value)
            self.cond.notify_all()
            children = [t for t in self.tasks.values() if t["state"] == "waiting"
                        and task_id in t["depends_on"]]  # fmt: skip
        for child in children:
            self._release_child(child)

    def _release_child(self, child: dict[str, Any]) -> None:
        """Like outpost_service.dependencies: queue a child whose parents all succeeded, fail
        one whose parent did not."""
        with self.cond:
            states = {p: self.tasks[p]["state"] for p in child["depends_on"]}
            bad = next((p for p, s in states.items() if s in ("failed", "cancelled", "lost")), None)
            ready = bad is None and all(s == "success" for s in states.values())
            if ready and child["state"] == "waiting":
                self._event(child, "queued")
        if bad is not None:
            error = ErrorInfo(
                type="outpost.errors.DependencyError",
                message=f"task {child['task_id']} was not run: its dependency task {bad} "
                f"{states[bad]}",
                reason="dependency",
            )
            self.finish(
                child["task_id"],
                ResultEnvelope(
                    child["task_id"], child["endpoint_id"], TaskState.FAILED, error=error
                ),
            )
        elif ready:
            self.pool.submit(self.run, child["task_id"])

    def _event(self, task: dict[str, Any], state: str) -> None:
        task["state"] = state
        task["events"].append({"state": state, "at": time.time()})
        if state in ("success", "failed", "cancelled", "lost"):
            task["completed_at"] = time.time()

    # ------------------------------------------------------------------ routes
    def answer(
        self, method: str, path: str, headers: Mapping[str, str], raw: bytes
    ) -> tuple[int, Any]:
        """One HTTP request: recorded, failed on demand (``fail_next``), checked for the
        token, then routed."""
        with self.cond:
            self.requests.append((method, path))
            if (method, path) == ("POST", "/v1/tasks"):
                self.attempt_request_ids.append(_request_id(raw))
                self.attempted_request_ids.append(_request_id(raw))
            failing = self.fail_next[(method, path)] > 0
            if failing:
                self.fail_next[(method, path)] -= 1
        if failing:
            return error(self.fail_status, "unavailable", "injected failure")
        if path != "/health" and headers.get("Authorization") != f"Bearer {TOKEN}":
            return error(401, "unauthorized", "missing or bad token")
        try:
            return self.route(method, path, json.loads(raw) if raw else {})
        except (KeyError, ValueError, TypeError) as exc:
            return error(400, "bad_request", repr(exc))

    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = [p for p in path.split("/") if p]
        if parts == ["health"] and method == "GET":
            return 200, answers.Health(status="ok", version="0.1.0", protocol=1).model_dump()
        if parts[:1] != ["v1"]:
            return error(404, "not_found", f"no route {path}")
        rest = parts[1:]
        if rest == ["functions"] and method == "POST":
            payload = base64.b64decode(body["function"])
            function_id = function_id_for(payload)
            self.functions[function_id] = payload
            return 200, {"function_id": function_id}
        if rest == ["tasks"] and method == "POST":
            return self.submit(body)
        if len(rest) == 2 and rest[0] == "tasks" and method == "GET":
            task = self.tasks.get(rest[1])
            if task is None:
                return error(404, "not_found", f"no task {rest[1]}")
            return 200, {k: v for k, v in task.items() if k != "args"}
        if len(rest) == 3 and rest[0] == "tasks" and rest[2] == "cancel" and method == "POST":
            return self.cancel(rest[1])
        if rest == ["results"] and method == "POST":
            return self.results(body["task_ids"], float(body.get("wait", 0)))
        if len(rest) == 3 and rest[0] == "task_groups" and rest[2] == "tasks":
            with self.cond:
                tasks = [
                    answers.GroupTask(**{**t, "retried_by": None})
                    for t in self.tasks.values()
                    if t["task_group_id"] == rest[1]
                ]
            if not tasks:  # like the real service: an unknown group is a 404, not []
                return error(404, "task_group_not_found", f"no task group {rest[1]} among yours")
            group = answers.GroupTasks(task_group_id=rest[1], submitted=None, tasks=tasks)
            return 200, group.model_dump()
        if rest == ["endpoints"] and method == "POST":
            endpoint_id = body.get("endpoint_id") or str(uuid.uuid4())
            self.endpoints[endpoint_id] = answers.Endpoint(
                endpoint_id=endpoint_id,
                name=body["name"],
                state="online",
                last_heartbeat=time.time(),
                details={},
                metadata=body.get("metadata") or {},
                outstanding_tasks=0,
                created_at=time.time(),
                owner="tester",
                shared=False,
                allowed_functions=None,
            ).model_dump()
            registration = answers.Registration(
                endpoint_id=endpoint_id, name=body["name"], amqp=_broker_settings(endpoint_id)
            )
            return 200, registration.model_dump()
        if rest == ["endpoints"] and method == "GET":
            return 200, {"endpoints": list(self.endpoints.values())}
        if len(rest) == 2 and rest[0] == "endpoints":
            if rest[1] not in self.endpoints:
                return error(404, "not_found", f"no endpoint {rest[1]}")
            if method == "DELETE":
                del self.endpoints[rest[1]]
                return 200, {"deleted": rest[1]}
            return 200, self.endpoints[rest[1]]
        return error(405, "method_not_allowed", f"{method} {path}")

    def submit(self, body: dict[str, Any]) -> tuple[int, Any]:
        task_ids = []
        with self.cond:
            declared = body.get("group_submitted")
            if declared:
                key = (declared["task_group_id"], declared["client_id"])
                self.group_submitted[key] = max(self.group_submitted.get(key, 0), declared["count"])
            stored = self.stored_requests.get(body.get("request_id") or "")
            if stored is not None:  # like the service: a repeated request id is answered again
                return 200, {"task_ids": stored}
            self.batches.append(len(body["tasks"]))
            self.request_ids.append(body.get("request_id"))
            for spec in body["tasks"]:
                if spec["function_id"] not in self.functions:
                    return error(422, "unknown_function", spec["function_id"])
                task_id = str(uuid.uuid4())
                parents = spec.get("depends_on") or []
                if any(p not in self.tasks for p in parents):
                    return error(404, "unknown_dependency", f"unknown parents {parents}")
                self.tasks[task_id] = {
                    "task_id": task_id,
                    "state": "waiting" if parents else "queued",
                    "depends_on": parents,
                    "endpoint_id": spec["endpoint_id"],
                    "function_id": spec["function_id"],
                    "task_group_id": spec.get("task_group_id"),
                    "resource_specification": spec.get("resource_specification") or {},
                    "args": base64.b64decode(spec["args"]),
                    "created_at": time.time(),
                    "completed_at": None,
                    "result": None,
                    "events": [{"state": "queued", "at": time.time()}],
                }
                task_ids.append(task_id)
            if body.get("request_id"):
                self.stored_requests[body["request_id"]] = task_ids
            if self.held:
                self.backlog.extend(task_ids)
                task_ids_to_run: list[str] = []
            else:
                task_ids_to_run = task_ids
        for task_id in task_ids_to_run:
            if self.tasks[task_id]["state"] == "waiting":
                self._release_child(self.tasks[task_id])
            else:
                self.pool.submit(self.run, task_id)
        return 200, {"task_ids": task_ids}

    def cancel(self, task_id: str) -> tuple[int, Any]:
        with self.cond:
            task = self.tasks.get(task_id)
            if task is None:
                return error(404, "not_found", f"no task {task_id}")
            state = task["state"]
        if state in ("queued", "waiting"):
            cancelled = ErrorInfo(type="CancelledError", message="cancelled", reason="cancelled")
            envelope = ResultEnvelope(
                task_id, task["endpoint_id"], TaskState.CANCELLED, error=cancelled
            )
            self.finish(task_id, envelope)
        return 200, {"task_id": task_id, "state": self.state(task_id)}

    def results(self, task_ids: list[str], wait: float) -> tuple[int, Any]:
        unknown = [t for t in task_ids if t not in self.tasks]
        if unknown:
            return error(404, "not_found", "unknown tasks", {"task_ids": unknown})
        deadline = time.monotonic() + wait
        with self.cond:
            while True:
                results = [
                    self.tasks[t]["result"] for t in task_ids if self.tasks[t]["result"] is not None
                ]
                remaining = deadline - time.monotonic()
                if results or remaining <= 0 or self.stopping:
                    break
                self.cond.wait(remaining)
            done = {r["task_id"] for r in results}
        return 200, {"results": results, "pending": [t for t in task_ids if t not in done]}


def _broker_settings(endpoint_id: str) -> answers.BrokerSettings:
    return answers.BrokerSettings(
        url="amqp://127.0.0.1:5672",
        task_exchange="outpost.tasks",
        task_queue=f"outpost.tasks.{endpoint_id}",
        result_exchange="outpost.results",
        result_routing_key=f"{endpoint_id}.result",
        status_routing_key=f"{endpoint_id}.status",
        heartbeat_interval=2.0,
    )


def _request_id(raw: bytes) -> str | None:
    """The ``request_id`` of a POST /v1/tasks body, None if it has none or is not JSON."""
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body.get("request_id") if isinstance(body, dict) else None
