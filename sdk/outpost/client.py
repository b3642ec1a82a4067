"""``Client``: the SDK's typed view of the service's HTTP API (docs/ARCHITECTURE.md).

One method per route.  The client is thread-safe (one HTTP session per thread) because the
executor's submitter and result watchers call it from their own threads.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from outpost.credentials import normalize_url, resolve_credentials
from outpost.errors import (
    ConfigurationError,
    MalformedMessageError,
    ResultNotReady,
    ServiceError,
)
from outpost.protocol import (
    DEFAULT_PAYLOAD_LIMIT,
    ResultEnvelope,
    Strategy,
    TaskState,
    decode_message,
    serialize_function,
)
from outpost.protocol.api import (
    CancelOutcome,
    Endpoint,
    EndpointDeleted,
    EndpointPolicy,
    Endpoints,
    FunctionRegistered,
    GroupRetried,
    GroupSummary,
    GroupTasks,
    Health,
    Registration,
    Results,
    Task,
    TaskIds,
)
from outpost.protocol.envelopes import b64encode
from outpost.remote_errors import exception_from_result
from outpost.result_trust import describe, is_trusted, load_value, origin_of
from outpost.runtime.http import Transport

#: The longest long-poll the service accepts (seconds).
MAX_RESULT_WAIT = 60.0

Answer = TypeVar("Answer", bound=BaseModel)


class _FunctionCache:
    """Function object → value, by identity when possible (functions, lambdas, methods).

    A weak mapping lets a lambda created in a loop be collected; callables that cannot be weakly
    referenced are kept in a plain dict; unhashable callables are not cached.
    """

    def __init__(self) -> None:
        self._weak: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._strong: dict[Any, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            for mapping in (self._weak, self._strong):
                try:
                    value = mapping.get(key)
                except TypeError:  # not weakly referenceable, or unhashable
                    continue
                if value is not None:
                    return value
            return None

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            try:
                self._weak[key] = value
            except TypeError:
                with contextlib.suppress(TypeError):
                    self._strong[key] = value


class Client:
    """Talks to one Outpost service as one user.

    ``url`` and ``token`` default to ``OUTPOST_URL``/``OUTPOST_TOKEN``, then to the
    ``credentials.json`` written by ``outpost login``.  ``timeout`` bounds each HTTP request
    (long-polls add their wait to it); ``retries`` is how often idempotent calls are retried on
    connection errors and 502/503/504, with exponential backoff and jitter.  ``verify`` is the
    CA bundle (PEM path) that HTTPS answers must be signed by, or False to switch checking off
    (tests only); by default ``OUTPOST_CA_BUNDLE``, then ``REQUESTS_CA_BUNDLE``, then the
    bundled CAs.  ``trust_endpoints`` lists endpoints *not yours* (shared with you) whose
    pickled results and exceptions you accept: from any other endpoint not yours only plain
    JSON values load (see :mod:`outpost.result_trust`); your own endpoints are always trusted.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        payload_limit: int | None = DEFAULT_PAYLOAD_LIMIT,
        verify: str | bool | None = None,
        trust_endpoints: Iterable[str] = (),
    ) -> None:
        credentials = resolve_credentials(url, token)
        self.url = credentials.url
        if isinstance(trust_endpoints, str):
            raise ConfigurationError(
                f"trust_endpoints must be a list of endpoint ids, got the string "
                f"{trust_endpoints!r}; write trust_endpoints=[{trust_endpoints!r}]"
            )
        #: Endpoints not yours whose pickled results this client loads.
        self.trust_endpoints = frozenset(str(e) for e in trust_endpoints)
        self.payload_limit = payload_limit
        self._http = Transport(
            credentials.url, credentials.token, timeout=timeout, retries=retries, verify=verify
        )
        self._payloads = _FunctionCache()
        self._function_ids = _FunctionCache()

    @classmethod
    def anonymous(
        cls,
        url: str,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        verify: str | bool | None = None,
    ) -> Client:
        """A client without a token, for ``health()`` only (``outpost login`` checks a URL)."""
        client = cls.__new__(cls)
        client.url = normalize_url(url)
        client.payload_limit = DEFAULT_PAYLOAD_LIMIT
        client._http = Transport(client.url, None, timeout=timeout, retries=retries, verify=verify)
        client._payloads = _FunctionCache()
        client._function_ids = _FunctionCache()
        client.trust_endpoints = frozenset()
        return client

    def __repr__(self) -> str:
        return f"Client(url={self.url!r})"

    def close(self) -> None:
        """Close the HTTP connections this client opened."""
        self._http.close()

    # ------------------------------------------------------------------ service
    def health(self) -> dict[str, Any]:
        """``GET /health``: ``{"status", "version", "protocol"}``; needs no token."""
        answer = self._http.request("GET", "/health", idempotent=True, auth=False)
        return _checked(answer, Health, "GET /health")

    # ------------------------------------------------------------------ functions
    def function_payload(
        self, fn: Callable[..., Any], strategy: Strategy = Strategy.PICKLE
    ) -> bytes:
        """Serialize ``fn`` once (cached by function object); raises if it cannot be."""
        cached = self._payloads.get(fn)
        if cached is not None and cached[0] is strategy:
            return bytes(cached[1])
        payload = serialize_function(fn, strategy, limit=self.payload_limit)
        self._payloads.put(fn, (strategy, payload))
        return payload

    def register_function(
        self,
        fn: Callable[..., Any],
        strategy: Strategy = Strategy.PICKLE,
        *,
        name: str | None = None,
    ) -> str:
        """Register ``fn`` (``POST /v1/functions``) and return its content-addressed id.

        Registration is idempotent (the id is the payload's sha256), so it is retried on
        transient errors and done once per function object.
        """
        cached = self._function_ids.get(fn)
        if cached is not None and cached[0] is strategy:
            return str(cached[1])
        payload = self.function_payload(fn, strategy)
        label = name or getattr(fn, "__name__", None)
        function_id = self.register_function_payload(
            payload, label if isinstance(label, str) else None
        )
        self._function_ids.put(fn, (strategy, function_id))
        return function_id

    def register_function_payload(self, payload: bytes, name: str | None = None) -> str:
        """Register an already serialized function (as saved in an unsent-tasks file) and
        return its id; the same bytes always get the same id."""
        body: dict[str, Any] = {"function": b64encode(payload)}
        if name:
            body["name"] = name[:64]
        answer = self._http.request("POST", "/v1/functions", json=body, idempotent=True)
        return _parsed(answer, FunctionRegistered, "POST /v1/functions").function_id

    # ------------------------------------------------------------------ tasks
    def submit_tasks(
        self,
        tasks: list[dict[str, Any]],
        request_id: str | None = None,
        *,
        group_submitted: dict[str, Any] | None = None,
    ) -> list[str]:
        """``POST /v1/tasks``; returns the task ids in the order of ``tasks``.

        ``group_submitted`` (``{"task_group_id", "client_id", "count"}``) tells the service how
        many tasks this client (an executor) has accepted for the group so far, so the group
        summary can show ``submitted N, stored M`` when some never arrived.

        Each task is ``{"function_id", "endpoint_id", "args": base64, "task_group_id"?,
        "resource_specification"?}``.  The request carries ``request_id`` (a fresh uuid4 when not
        given); the service answers a repeat of the same id with the same task ids instead of
        new tasks, which is what lets this call be retried (with backoff) on connection errors
        and 502/503/504 like the idempotent calls.
        """
        if not tasks:
            return []
        body: dict[str, Any] = {"tasks": tasks, "request_id": request_id or str(uuid.uuid4())}
        if group_submitted is not None:
            body["group_submitted"] = group_submitted
        answer = self._http.request("POST", "/v1/tasks", json=body, idempotent=True)
        task_ids = _parsed(answer, TaskIds, "POST /v1/tasks").task_ids
        if len(task_ids) != len(tasks):
            raise ServiceError(
                f"POST {self.url}/v1/tasks answered {len(task_ids)} task ids for {len(tasks)} "
                "tasks; the service does not follow the Outpost API",
                code="bad_response",
            )
        return task_ids

    def get_task(self, task_id: str) -> dict[str, Any]:
        """``GET /v1/tasks/<id>``: state, events and the result envelope (or ``None``)."""
        answer = self._http.request("GET", f"/v1/tasks/{task_id}", idempotent=True)
        return _checked(answer, Task, "GET /v1/tasks/<id>")

    def get_result(self, task_id: str, *, trust_endpoint: bool = False) -> Any:
        """The task's value; raises the remote exception, or ``ResultNotReady`` if pending.

        A result from an endpoint you do not own loads only if it is plain JSON data, unless
        the endpoint is in ``trust_endpoints`` or ``trust_endpoint`` is true (trust whichever
        endpoint ran this task); otherwise :class:`~outpost.errors.UntrustedResultError`."""
        task = self.get_task(task_id)
        item = task.get("result")
        if item is None:
            state = task.get("state", "?")
            raise ResultNotReady(
                f"task {task_id} is {state}: it has no result yet; try again later or wait with "
                "Executor.reload_tasks()"
            )
        origin = origin_of(item) if isinstance(item, dict) else origin_of({})
        trust = self.trust_endpoints | ({origin.endpoint_id} if trust_endpoint else set())
        trusted = is_trusted(origin, trust)
        if trusted and origin.withheld:
            # The task view withholds untrusted pickles; the results route hands them to a
            # caller who names the endpoint as trusted.
            results, _ = self.poll_results([task_id], 0, trust=trust)
            item = next((r for r in results if isinstance(r, dict)), item)
        envelope = result_envelope(item)
        if envelope.state is TaskState.SUCCESS:
            return load_value(envelope, origin, trusted)
        raise exception_from_result(envelope, trusted, describe(origin))

    def get_results(
        self, task_ids: Iterable[str], wait: float = 0
    ) -> tuple[dict[str, ResultEnvelope], list[str]]:
        """``POST /v1/results``: results of finished tasks and the ids still pending.

        ``wait`` (0 to 60 s) makes the service hold the request until at least one of the tasks
        has a result (long-poll).  Safe to retry: reading a result does not consume it.
        """
        results, pending = self.poll_results(task_ids, wait)
        envelopes = {}
        for item in results:
            envelope = result_envelope(item)
            envelopes[envelope.task_id] = envelope
        return envelopes, pending

    def poll_results(
        self, task_ids: Iterable[str], wait: float = 0, trust: Iterable[str] = ()
    ) -> tuple[list[Any], list[str]]:
        """Like :meth:`get_results` but the results stay undecoded JSON objects.

        The executor's watcher uses it so that one malformed result fails one future, not the
        whole poll.  The service withholds pickled values and exceptions of endpoints the
        caller does not own unless they are in ``trust`` or ``trust_endpoints``.
        """
        ids = list(task_ids)
        wait = max(0.0, min(float(wait), MAX_RESULT_WAIT))
        body: dict[str, Any] = {"task_ids": ids, "wait": wait}
        trusted = sorted(self.trust_endpoints.union(trust))
        if trusted:
            body["trust_endpoints"] = trusted
        answer = self._http.request(
            "POST",
            "/v1/results",
            json=body,
            idempotent=True,
            timeout=self._http.timeout + wait,
        )
        parsed = _parsed(answer, Results, "POST /v1/results")
        return parsed.results, parsed.pending

    def get_task_group(self, task_group_id: str) -> list[dict[str, Any]]:
        """``GET /v1/task_groups/<gid>/tasks``: ``[{"task_id", "state", ...}]``."""
        answer = self._http.request(
            "GET", f"/v1/task_groups/{task_group_id}/tasks", idempotent=True
        )
        return list(_checked(answer, GroupTasks, "GET /v1/task_groups/<gid>/tasks")["tasks"])

    def retry_task_group(
        self, task_group_id: str, states: Iterable[str] = ("failed", "lost")
    ) -> list[dict[str, str]]:
        """``POST /v1/task_groups/<gid>/retry``: resubmit the group's latest attempts that
        ended in ``states`` (of failed, lost, cancelled) as new tasks; returns
        ``[{"old": id, "new": id}]``.  Tasks that succeeded are never rerun, and a task already
        retried is not copied again (its retry is, if that one ended in ``states`` too), so
        repeating the call is safe."""
        answer = self._http.request(
            "POST",
            f"/v1/task_groups/{task_group_id}/retry",
            json={"states": list(states)},
            idempotent=True,
        )
        checked = _checked(answer, GroupRetried, "POST /v1/task_groups/<gid>/retry")
        return list(checked["retried"])

    def task_group_summary(self, task_group_id: str) -> dict[str, Any]:
        """``GET /v1/task_groups/<gid>/summary``: counts per state (``states`` over every
        attempt, ``latest_states`` over the latest attempt of each task) and the failures
        grouped by error (``errors``: type, message, count, example task ids)."""
        answer = self._http.request(
            "GET", f"/v1/task_groups/{task_group_id}/summary", idempotent=True
        )
        return _checked(answer, GroupSummary, "GET /v1/task_groups/<gid>/summary")

    def cancel_task(self, task_id: str) -> str:
        """``POST /v1/tasks/<id>/cancel``; returns the task's state after the request."""
        answer = self._http.request("POST", f"/v1/tasks/{task_id}/cancel", idempotent=True)
        return _parsed(answer, CancelOutcome, "POST /v1/tasks/<id>/cancel").state

    # ------------------------------------------------------------------ endpoints
    def list_endpoints(self) -> list[dict[str, Any]]:
        """``GET /v1/endpoints``: the endpoints this user may use (their own, then those shared
        with them, marked ``"shared": True`` with the ``"owner"``'s name)."""
        answer = self._http.request("GET", "/v1/endpoints", idempotent=True)
        return list(_checked(answer, Endpoints, "GET /v1/endpoints")["endpoints"])

    def get_endpoint(self, endpoint_id: str) -> dict[str, Any]:
        """``GET /v1/endpoints/<id>``."""
        answer = self._http.request("GET", f"/v1/endpoints/{endpoint_id}", idempotent=True)
        return _checked(answer, Endpoint, "GET /v1/endpoints/<id>")

    def register_endpoint(
        self,
        name: str,
        endpoint_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        force: bool = False,
    ) -> dict[str, Any]:
        """``POST /v1/endpoints``: creates or re-attaches (same name or id) an endpoint.

        Returns ``{"endpoint_id", "name", "amqp": {...}}``; re-attaching is idempotent.  While
        the endpoint heartbeats the service refuses (409: re-registering cuts the running
        instance off) unless ``force``.
        """
        body: dict[str, Any] = {"name": name}
        if force:
            body["force"] = True
        if endpoint_id is not None:
            body["endpoint_id"] = endpoint_id
        if metadata is not None:
            body["metadata"] = metadata
        answer = self._http.request("POST", "/v1/endpoints", json=body, idempotent=True)
        return _checked(answer, Registration, "POST /v1/endpoints")

    def get_endpoint_policy(self, endpoint_id: str) -> dict[str, Any]:
        """``GET /v1/endpoints/<id>/policy`` (owner only): ``{"endpoint_id", "allowed_users",
        "allowed_functions"}``; ``allowed_functions`` None means any function may run."""
        answer = self._http.request("GET", f"/v1/endpoints/{endpoint_id}/policy", idempotent=True)
        return _checked(answer, EndpointPolicy, "GET /v1/endpoints/<id>/policy")

    def set_endpoint_policy(
        self,
        endpoint_id: str,
        allowed_users: Iterable[str] = (),
        allowed_functions: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """``PUT /v1/endpoints/<id>/policy`` (owner only): share the endpoint with
        ``allowed_users`` (user names; they may see it and submit to it, but never see your
        tasks) and, with ``allowed_functions``, refuse any other function id on it -- yours
        too.  Replaces the whole policy: ``allowed_users=()`` unshares, ``None`` allows any
        function.  Returns the policy now in force."""
        body = {
            "allowed_users": list(allowed_users),
            "allowed_functions": None if allowed_functions is None else list(allowed_functions),
        }
        answer = self._http.request(
            "PUT", f"/v1/endpoints/{endpoint_id}/policy", json=body, idempotent=True
        )
        return _checked(answer, EndpointPolicy, "PUT /v1/endpoints/<id>/policy")

    def delete_endpoint(self, endpoint_id: str) -> str:
        """``DELETE /v1/endpoints/<id>`` (its queue too); returns the deleted id."""
        answer = self._http.request("DELETE", f"/v1/endpoints/{endpoint_id}", idempotent=False)
        return _parsed(answer, EndpointDeleted, f"DELETE /v1/endpoints/{endpoint_id}").deleted


def _parsed(answer: Any, model: type[Answer], route: str) -> Answer:
    """``answer`` read through ``model`` (outpost.protocol.api), or a ``bad_response``
    :class:`ServiceError` naming the first field that is missing or wrongly typed."""
    try:
        return model.model_validate(answer)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in error["loc"]) or "the answer"
        raise ServiceError(
            f"{route} answered with {field}: {error['msg'].lower()}; the service does not "
            "follow the Outpost API (is the SDK much older or newer than the service?)",
            code="bad_response",
        ) from None


def _checked(answer: Any, model: type[BaseModel], route: str) -> dict[str, Any]:
    """``answer`` as it came, once ``model`` found every field it names in it: callers get
    fields a newer service added too."""
    _parsed(answer, model, route)
    return dict(answer)


def result_envelope(data: Any) -> ResultEnvelope:
    """Decode one result the service sent, checking its protocol version and type."""
    if not isinstance(data, dict):
        raise MalformedMessageError("a result from the service is not a JSON object")
    message = decode_message(data)
    if not isinstance(message, ResultEnvelope):
        raise MalformedMessageError(f"expected a result envelope, got a {message.TYPE!r} message")
    return message
