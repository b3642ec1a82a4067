"""``Executor``: a ``concurrent.futures.Executor`` whose workers are an Outpost endpoint.

``submit`` serializes the arguments (so unpicklable or oversized arguments fail right there)
and queues the task; the :class:`~outpost.executor.submitter.Submitter` thread sends tasks in
batches and the :class:`~outpost.executor.watcher.Watcher` threads complete futures from the
service's results.  Every task carries the executor's ``task_group_id``, so another process can
come back for the results with :meth:`Executor.reload_tasks` (fire-and-forget).
"""

from __future__ import annotations

import concurrent.futures
import copy
import json
import os
import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from outpost.client import Client
from outpost.errors import ConfigurationError, NotFoundError, SubmitAbandonedError
from outpost.executor import unsent
from outpost.executor.arguments import foreign_owner, serialize_arguments
from outpost.executor.dependencies import find_futures, placeholder
from outpost.executor.future import OutpostFuture
from outpost.executor.outage import OutageRetry, announce, retry_for_setting
from outpost.executor.sealer import Sealer
from outpost.executor.submitter import Submission, Submitter
from outpost.executor.wait_message import why_waiting
from outpost.executor.watcher import Watcher


def _group_id(value: str | uuid.UUID | None) -> str:
    if value is None:
        return str(uuid.uuid4())
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ConfigurationError(
            f"task_group_id must be a UUID such as {uuid.uuid4()}, got {value!r}"
        ) from None


def _checked_spec(spec: dict[str, Any] | None) -> dict[str, Any]:
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise ConfigurationError(f"resource_specification must be a dict, got {spec!r}")
    try:
        json.dumps(spec)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"resource_specification must be plain JSON data ({exc}): {spec!r}"
        ) from exc
    return copy.deepcopy(spec)


class Executor(concurrent.futures.Executor):
    """Runs functions on an Outpost endpoint and returns :class:`OutpostFuture` objects.

    ``client`` defaults to ``Client()`` (``OUTPOST_URL``/``OUTPOST_TOKEN``, or
    ``outpost login``).  ``task_group_id`` may be chosen by the caller (a UUID) to find the
    tasks again later; by default each executor gets a new one.  ``batch_size`` and
    ``batch_interval`` (seconds of quiet) bound how long tasks wait to be batched; by default
    (0) a task is sent as soon as the submitter is free, and the tasks queued while one request
    is in flight form the next batch, so a lone task pays no linger and a loop still batches.
    ``resource_specification`` (e.g. ``{"num_nodes": 2, "ranks_per_node": 4, "walltime": 60}``)
    is copied into each task at submit time.  ``result_wait`` is how long one result poll may
    wait at the service.  ``encrypt=True`` seals each task's arguments for the endpoint and has
    the endpoint seal the result for this task group's key, kept in
    ``$OUTPOST_HOME/sealing_keys/<task_group_id>`` (see docs/SECURITY.md, "Sealed tasks").
    The endpoint's key comes from the service and is pinned on first use in
    ``$OUTPOST_HOME/known_endpoints``; ``endpoint_key`` (its base64 public key or
    ``sha256:`` fingerprint, or a dict of them by endpoint id) pins it explicitly instead.
    ``trust_endpoint=True`` accepts pickled results and exceptions from this executor's
    endpoint when it is someone else's (shared with you): without it only plain JSON values
    load from such an endpoint, and a pickled one raises ``UntrustedResultError`` (see
    :mod:`outpost.result_trust`).  Your own endpoints are always trusted.

    ``submit_retry_for`` (seconds; default ``$OUTPOST_SUBMIT_RETRY_FOR``, else 900) is how long
    submits keep being retried while the service is unreachable or answers 5xx: the tasks wait
    here meanwhile, with one warning line when the outage starts and one when it ends.  If it
    lasts longer, the calls not yet stored are saved to ``$OUTPOST_HOME/unsent/...json``, their
    futures fail with :class:`~outpost.errors.SubmitAbandonedError` naming that file, and
    ``submit()`` and ``shutdown()`` raise it; :meth:`resubmit_unsent` (or ``outpost tasks
    resubmit FILE``) submits them later.  Ctrl-C in a ``with Executor(...)`` block leaves at
    once: submitted tasks stay at the service (the group id to collect them is printed), and
    unsent ones are saved the same way.
    """

    def __init__(
        self,
        endpoint_id: str | None = None,
        client: Client | None = None,
        task_group_id: str | uuid.UUID | None = None,
        *,
        batch_size: int = 1000,
        batch_interval: float = 0.0,
        resource_specification: dict[str, Any] | None = None,
        result_wait: float = 20.0,
        encrypt: bool = False,
        endpoint_key: str | Mapping[str, str] | None = None,
        trust_endpoint: bool = False,
        submit_retry_for: float | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigurationError(f"batch_size must be at least 1, got {batch_size!r}")
        if not 0 < result_wait <= 60:
            raise ConfigurationError(
                f"result_wait is the long-poll time in seconds (0 < s <= 60), got {result_wait!r}"
            )
        retry_for = retry_for_setting(submit_retry_for)
        self._client = client if client is not None else Client()
        self.endpoint_id = endpoint_id
        self._task_group_id = _group_id(task_group_id)
        self._resource_specification = _checked_spec(resource_specification)
        self._futures: set[OutpostFuture] = set()
        # Re-entrant: a done-callback (_forget) can run inside submit() when a dependency
        # already failed.
        self._lock = threading.RLock()
        self._shutdown = False
        if endpoint_key is not None and not encrypt:
            raise ConfigurationError(
                "endpoint_key pins the key tasks are sealed for; it needs encrypt=True"
            )
        self._sealer = Sealer(self._client, self._task_group_id, endpoint_key) if encrypt else None
        opener = self._sealer.open_result if self._sealer is not None else None
        self.trust_endpoint = trust_endpoint
        self._watcher = Watcher(
            self._client, wait=result_wait, opener=opener, trust=self._trusted_endpoints
        )
        record = unsent.UnsentRecord(
            task_group_id=self._task_group_id,
            service_url=self._client.url,
            encrypt=encrypt,
            client_id=str(uuid.uuid4()),
            submitted=0,
        )
        self._submitter = Submitter(
            self._client,
            self._watcher.watch,
            batch_size=batch_size,
            batch_interval=batch_interval,
            retry=OutageRetry(retry_for, self._client.url),
            unsent=unsent.UnsentWriter(record),
            sealer=self._sealer,
        )

    def __repr__(self) -> str:
        return (
            f"Executor(endpoint_id={self.endpoint_id!r}, task_group_id={self._task_group_id!r}, "
            f"client={self._client!r})"
        )

    def _trusted_endpoints(self) -> frozenset[str]:
        """The endpoint this executor trusts beyond the client's list and the caller's own."""
        if self.trust_endpoint and self.endpoint_id:
            return frozenset({str(self.endpoint_id)})
        return frozenset()

    @property
    def client(self) -> Client:
        return self._client

    @property
    def task_group_id(self) -> str:
        """The group every task of this executor belongs to; keep it to reload the tasks."""
        return self._task_group_id

    @property
    def resource_specification(self) -> dict[str, Any]:
        """A copy of the resources each new task asks for; assign a new dict to change it."""
        return copy.deepcopy(self._resource_specification)

    @resource_specification.setter
    def resource_specification(self, spec: dict[str, Any] | None) -> None:
        self._resource_specification = _checked_spec(spec)

    # ------------------------------------------------------------------ submitting
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> OutpostFuture:
        """Run ``fn(*args, **kwargs)`` on the endpoint; futures among the arguments are
        dependencies (their values are passed once they are done)."""
        if not callable(fn):
            raise TypeError(f"submit() needs a callable, got {type(fn).__name__}")
        self._raise_if_abandoned("cannot submit more tasks")
        if not self.endpoint_id:
            raise ConfigurationError(
                "this executor has no endpoint: pass Executor(endpoint_id=...) or set "
                "ex.endpoint_id (see `outpost endpoints list`)"
            )
        self._client.function_payload(fn)  # fail here if the function cannot be serialized
        if self._sealer is not None:  # fail here if the endpoint cannot take sealed tasks
            self._sealer.endpoint_key(str(self.endpoint_id))
        future = OutpostFuture(self._client.cancel_task, self._explain_wait)
        submission = Submission(
            future=future,
            fn=fn,
            args=args,
            kwargs=kwargs,
            endpoint_id=str(self.endpoint_id),
            task_group_id=self._task_group_id,
            resource_specification=copy.deepcopy(self._resource_specification),
        )
        # someone else's endpoint takes JSON data only (see outpost.executor.arguments)
        submission.shared_from = foreign_owner(self._client, submission.endpoint_id)
        parents = find_futures((args, kwargs))
        limit = self._client.payload_limit
        shared_from, endpoint = submission.shared_from, submission.endpoint_id
        # with parents, check now what can be checked; the real payload is built once they finish
        checked_args, checked_kwargs = (
            (placeholder(args), placeholder(kwargs)) if parents else (args, kwargs)
        )
        payload = serialize_arguments(
            submission.name,
            checked_args,
            checked_kwargs,
            limit,
            shared_from=shared_from,
            endpoint_id=endpoint,
        )
        if not parents:
            submission.payload = payload
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._track(future)
            if parents:
                self._submitter.hold(submission, parents)
            else:
                self._submitter.put(submission)
        return future

    def reload_tasks(self, *, attempts: str = "latest") -> list[OutpostFuture]:
        """Futures for the tasks of ``task_group_id`` (``GET /v1/task_groups/<gid>/tasks``).

        With ``attempts="latest"`` (the default) a task that was retried
        (:meth:`Client.retry_task_group`, ``outpost tasks retry``) is represented by its latest
        attempt only, so after a retry the futures are one per original task, in submission
        order of the originals; ``attempts="all"`` returns every attempt.  Works from any
        process that can reach the service; the futures complete like those of ``submit``
        (results stay readable at the service after being read).

        Raises :class:`~outpost.errors.NotFoundError` when the service has no task of yours in
        the group: a wrong id, someone else's group, one past retention, or a group whose
        executor has not had its first batch stored yet (it exists once a task is stored).
        """
        if attempts not in ("latest", "all"):
            raise ValueError(f"attempts must be 'latest' or 'all', got {attempts!r}")
        try:
            tasks = self._client.get_task_group(self._task_group_id)
        except NotFoundError as exc:
            raise NotFoundError(
                f"cannot reload the tasks of group {self._task_group_id}: {exc}",
                status=exc.status,
                code=exc.code,
                details=exc.details,
            ) from exc
        if attempts == "latest":
            tasks = latest_attempts(tasks)
        futures = []
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot reload tasks after shutdown")
            for task in tasks:
                future = OutpostFuture(self._client.cancel_task, self._explain_wait)
                future.task_id = str(task["task_id"])
                self._track(future)
                futures.append(future)
        for future in futures:
            self._watcher.watch(future)
        return futures

    def _explain_wait(self, task_id: str, timeout: float | None) -> str:
        return why_waiting(self._client, task_id, timeout)

    def _track(self, future: OutpostFuture) -> None:
        self._futures.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._futures.discard(future)

    # ------------------------------------------------------------------ shutting down
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting tasks; queued tasks are still sent.

        ``wait=True`` returns once every future of this executor is done.
        ``cancel_futures=True`` first cancels every future that has not finished: unsent ones
        locally, sent ones through the service.
        """
        with self._lock:
            self._shutdown = True
            futures = list(self._futures)
        if cancel_futures:
            for future in futures:
                future.cancel()
        self._submitter.stop()
        self._watcher.stop()
        if wait:
            concurrent.futures.wait(futures)
            self._submitter.join()
        self._raise_if_abandoned("some tasks were never submitted")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self.interrupt()
            return
        self.shutdown(wait=True)

    def interrupt(self) -> None:
        """Leave at once (what Ctrl-C in the ``with`` block does): wait for no result, send
        nothing more, save unsent calls to a file, and say how to come back for the results.
        Tasks the service already accepted stay there and keep running."""
        with self._lock:
            self._shutdown = True
        error = self._submitter.interrupt()
        self._watcher.stop()
        group = self._task_group_id
        lines = [
            f"outpost: interrupted; the tasks already submitted in group {group} stay at the "
            "service and keep running: collect their results later with "
            f"Executor(task_group_id='{group}').reload_tasks() or `outpost tasks group {group}`"
        ]
        if error is not None:
            lines.append(f"outpost: {error}")
        for line in lines:
            announce(line)

    def _raise_if_abandoned(self, what: str) -> None:
        error = self._submitter.abandoned
        if error is not None:
            raise SubmitAbandonedError(f"{what}: {error}", path=error.path, details=error.details)

    # ------------------------------------------------------------------ unsent calls
    def resubmit_unsent(self, path: str | os.PathLike[str]) -> list[OutpostFuture]:
        """Submit the calls saved in an unsent-tasks file (see :class:`SubmitAbandonedError`)
        and return their futures, completed by this executor like those of ``submit``.

        Each batch is sent with the request id it was saved with, so calls the service stored
        before the connection dropped (or an earlier resubmit of the same file) are answered
        with their existing tasks instead of being stored twice.  The calls keep their own
        endpoint and task group; an encrypted executor's file needs ``encrypt=True`` here.
        """
        record = unsent.read(path)
        if record.encrypt and self._sealer is None:
            raise ConfigurationError(
                f"{path} holds tasks of an executor with encrypt=True; resubmit them with "
                f"Executor(task_group_id='{record.task_group_id}', encrypt=True)"
            )
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot resubmit tasks after shutdown")
        self._submitter.adopt(record.client_id, record.submitted)
        declared = {
            "task_group_id": record.task_group_id,
            "client_id": record.client_id,
            "count": record.submitted,
        }
        futures: list[OutpostFuture] = []
        for batch in record.batches:
            submissions = []
            for call in batch.calls:
                future = OutpostFuture(self._client.cancel_task)
                with self._lock:
                    self._track(future)
                submissions.append(
                    Submission(
                        future=future,
                        fn=len,  # never called: the function travels as function_payload
                        args=(),
                        kwargs={},
                        endpoint_id=call.endpoint_id,
                        task_group_id=call.task_group_id,
                        resource_specification=call.resource_specification,
                        payload=call.args,
                        function_payload=call.function,
                        label=call.name,
                        depends_on=call.depends_on,
                    )
                )
                futures.append(future)
            group = declared if batch.calls[0].task_group_id == record.task_group_id else None
            self._submitter.send_now(submissions, batch.request_id, group)
        self._raise_if_abandoned(f"resubmitting {Path(path)} was given up")
        return futures


def latest_attempts(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each task that is not itself a retry, its last retry (following ``retried_by``),
    in the originals' order; a service without retries (no ``retried_by``) gives ``tasks``."""
    by_id = {str(t["task_id"]): t for t in tasks}
    retries = {str(t["retried_by"]) for t in tasks if t.get("retried_by")}
    latest = []
    for task in tasks:
        if str(task["task_id"]) in retries:
            continue  # reached from the task it retried
        seen = {str(task["task_id"])}
        while task.get("retried_by") and str(task["retried_by"]) in by_id:
            task = by_id[str(task["retried_by"])]
            if str(task["task_id"]) in seen:  # a cycle cannot come from the service; stop
                break
            seen.add(str(task["task_id"]))
        latest.append(task)
    return latest
