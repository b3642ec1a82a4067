"""The submitter: a background thread that sends queued tasks to the service in batches.

``submit()`` only serializes and enqueues, so a loop of 10,000 submits is fast; this thread
gathers what is queued into one ``POST /v1/tasks`` (up to ``batch_size`` tasks, or once the
queue has been quiet for ``batch_interval`` seconds), registers each function once, sets every
future's ``task_id`` as soon as the service answered and hands the futures to the watcher.  A
batch the service refuses fails its futures with the reason; nothing waits forever.

While the service is unreachable (or answers 5xx/429) the batch is retried with the same
``request_id`` for up to ``submit_retry_for`` seconds (:mod:`.outage`); if the outage lasts
longer, or the script is interrupted, every accepted call not yet stored is saved to an
unsent-tasks file (:mod:`.unsent`), its future fails with :class:`SubmitAbandonedError` naming
the file, and later ``submit()`` calls raise it: an accepted task is never silently dropped.
Each request also tells the service how many tasks this executor accepted for the group
(``group_submitted``), so the group summary shows tasks that never arrived.

Tasks with dependencies are *held* here until their parents are done (see
:mod:`outpost.executor.dependencies`).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import signal
import sys
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from outpost.client import Client
from outpost.errors import (
    DependencyError,
    OutpostError,
    ServiceUnavailableError,
    SubmitAbandonedError,
)
from outpost.executor.arguments import serialize_arguments
from outpost.executor.dependencies import failed_parent, substitute, to_refs
from outpost.executor.future import OutpostFuture
from outpost.executor.outage import GiveUp, Interrupted, OutageRetry, announce, stop_reason
from outpost.executor.sealer import Sealer
from outpost.executor.unsent import (
    UnsentBatch,
    UnsentCall,
    UnsentWriter,
    abandoned_error,
    split,
)
from outpost.protocol import TaskRequest
from outpost.protocol.sealing import RESULT_KEY_FIELD

log = logging.getLogger(__name__)

#: Most base64 bytes of arguments per request, so a batch stays under the service's body limit.
MAX_BATCH_BYTES = 16 * 1024 * 1024
#: A batch is sent at the latest this long after its first task was queued, even in a trickle.
_MAX_BATCH_AGE = 0.5


@dataclass
class Submission:
    """One task waiting to be sent."""

    future: OutpostFuture
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    endpoint_id: str
    task_group_id: str
    resource_specification: dict[str, Any]
    payload: bytes | None = None
    queued_at: float = field(default_factory=time.monotonic)
    #: The owner's name when the endpoint is someone else's: arguments go as JSON data.
    shared_from: str | None = None
    #: The serialized function when there is no function object (a resubmitted unsent call),
    #: and the function's name then.
    function_payload: bytes | None = None
    label: str | None = None
    #: The parents' task ids when the service holds this task (see executor.dependencies).
    depends_on: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        if self.label is not None:
            return f"task {self.label}"
        return f"task {getattr(self.fn, '__name__', type(self.fn).__name__)}"


class Submitter:
    """Owns the queue of unsent tasks and the thread that sends them."""

    def __init__(
        self,
        client: Client,
        on_accepted: Callable[[OutpostFuture], None],
        *,
        batch_size: int,
        batch_interval: float,
        retry: OutageRetry,
        unsent: UnsentWriter,
        sealer: Sealer | None = None,
    ) -> None:
        self._client = client
        self._retry = retry
        self._unsent = unsent
        #: This executor's id towards the service's per-group ``submitted`` counts.
        self.client_id = unsent.record.client_id
        self._accepted: dict[str, int] = {}
        self._abandoned: SubmitAbandonedError | None = None
        self._interrupted = False
        #: Batches being prepared (functions registering) and batches being posted, by request
        #: id, so an interrupt can save them (the thread may never get to).
        self._preparing: dict[str, list[Submission]] = {}
        self._in_flight: dict[str, UnsentBatch] = {}
        #: Seals arguments for the endpoint when the executor encrypts (``encrypt=True``).
        self._sealer = sealer
        self._on_accepted = on_accepted
        self._batch_size = batch_size
        self._batch_interval = batch_interval
        self._queue: deque[Submission] = deque()
        self._held = 0
        self._stopping = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ producer side
    @property
    def abandoned(self) -> SubmitAbandonedError | None:
        """Set once submitting was given up (outage too long, or interrupted)."""
        return self._abandoned

    def _accept(self, submission: Submission) -> None:
        """Count an accepted call (with ``self._cond`` held); refuse one after giving up."""
        if self._abandoned is not None:
            raise SubmitAbandonedError(
                f"cannot submit more tasks: {self._abandoned}", path=self._abandoned.path
            )
        group = submission.task_group_id
        self._accepted[group] = self._accepted.get(group, 0) + 1
        if group == self._unsent.record.task_group_id:
            self._unsent.record.submitted = self._accepted[group]

    def put(self, submission: Submission) -> None:
        """Queue a task whose arguments are already serialized."""
        with self._cond:
            self._accept(submission)
            self._queue.append(submission)
            self._start()
            self._cond.notify()

    def hold(self, submission: Submission, parents: list[Future[Any]]) -> None:
        """Queue a task that depends on ``parents``: once they have task ids when the service
        can hold it, else once they are done (see :mod:`outpost.executor.dependencies`)."""
        if (
            self._sealer is None
            and submission.shared_from is None
            and all(isinstance(parent, OutpostFuture) for parent in parents)
        ):
            self._hold_for_ids(submission, [p for p in parents if isinstance(p, OutpostFuture)])
        else:
            self._hold_until_done(submission, parents)

    def _hold_for_ids(self, submission: Submission, parents: list[OutpostFuture]) -> None:
        """Queue the task, with references to its parents, once they all have task ids."""
        remaining = {id(parent) for parent in parents}
        lock = threading.Lock()

        def known(parent: Future[Any]) -> None:
            with lock:
                if id(parent) not in remaining:
                    return
                remaining.discard(id(parent))
                if remaining:
                    return
            self._release_to_service(submission, parents)

        with self._cond:
            self._accept(submission)
            self._held += 1
            self._start()
        for parent in parents:
            parent._when_task_id(known)
            parent.add_done_callback(known)  # done without an id: cancelled before it was sent

    def _release_to_service(self, submission: Submission, parents: list[OutpostFuture]) -> None:
        future = submission.future
        try:
            unsent = [parent for parent in parents if parent.task_id is None]
            if unsent:
                error = failed_parent(
                    list[Future[Any]](unsent), submission.name
                ) or DependencyError(
                    f"{submission.name} was not run: a task it depends on was never submitted"
                )
                future._submission_failed(error)
            elif not future.done():
                submission.payload = serialize_arguments(
                    submission.name,
                    to_refs(submission.args),
                    to_refs(submission.kwargs),
                    self._client.payload_limit,
                    shared_from=submission.shared_from,
                    endpoint_id=submission.endpoint_id,
                )
                submission.depends_on = list(dict.fromkeys(str(p.task_id) for p in parents))
                submission.queued_at = time.monotonic()
                with self._cond:
                    self._queue.append(submission)
                    self._cond.notify()
        except Exception as exc:
            future._submission_failed(exc)
        finally:
            with self._cond:
                self._held -= 1
                self._cond.notify_all()

    def _hold_until_done(self, submission: Submission, parents: list[Future[Any]]) -> None:
        """Queue a task once every future in ``parents`` is done; fail it if one failed."""
        remaining = [len(parents)]
        lock = threading.Lock()

        def parent_done(_: Future[Any]) -> None:
            with lock:
                remaining[0] -= 1
                if remaining[0]:
                    return
            self._release(submission, parents)

        with self._cond:
            self._accept(submission)
            self._held += 1
            self._start()
        for parent in parents:
            parent.add_done_callback(parent_done)

    def _release(self, submission: Submission, parents: list[Future[Any]]) -> None:
        future = submission.future
        try:
            error = failed_parent(parents, submission.name)
            if error is not None:
                future._submission_failed(error)
            elif not future.done():
                submission.args = substitute(submission.args)
                submission.kwargs = substitute(submission.kwargs)
                submission.payload = serialize_arguments(
                    submission.name,
                    submission.args,
                    submission.kwargs,
                    self._client.payload_limit,
                    shared_from=submission.shared_from,
                    endpoint_id=submission.endpoint_id,
                )
                submission.queued_at = time.monotonic()
                with self._cond:
                    self._queue.append(submission)
        except Exception as exc:
            future._submission_failed(exc)
        finally:
            with self._cond:
                self._held -= 1
                self._cond.notify()

    def stop(self) -> None:
        """Send what is queued (and what held tasks release), then let the thread end."""
        with self._cond:
            self._stopping = True
            self._cond.notify()

    def is_alive(self) -> bool:
        """True while the submitting thread runs (it ends once everything is sent)."""
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _start(self) -> None:
        if self._thread is None:
            # A daemon, so an executor that is never shut down does not keep the process alive;
            # _flush_at_exit still sends what was queued (fire-and-forget).
            self._thread = threading.Thread(target=self._run, name="outpost-submitter", daemon=True)
            _LIVE.add(self)
            self._thread.start()

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._send(batch)
            except BaseException as exc:  # never let the thread die with futures unfinished
                log.exception("submitting %d tasks failed unexpectedly", len(batch))
                for submission in batch:
                    submission.future._submission_failed(exc)

    def _next_batch(self) -> list[Submission] | None:
        with self._cond:
            while not self._queue:
                if self._stopping and not self._held:
                    return None
                self._cond.wait()
            while len(self._queue) < self._batch_size and not self._stopping:
                now = time.monotonic()
                quiet_until = self._queue[-1].queued_at + self._batch_interval
                age_limit = self._queue[0].queued_at + max(_MAX_BATCH_AGE, self._batch_interval)
                timeout = min(quiet_until, age_limit) - now
                if timeout <= 0:
                    break
                self._cond.wait(timeout)
            batch: list[Submission] = []
            size = 0
            while self._queue and len(batch) < self._batch_size:
                item_size = len(self._queue[0].payload or b"") * 4 // 3
                if batch and size + item_size > MAX_BATCH_BYTES:
                    break
                batch.append(self._queue.popleft())
                size += item_size
            return batch

    def _send(
        self,
        batch: list[Submission],
        request_id: str | None = None,
        group_submitted: dict[str, Any] | None = None,
    ) -> None:
        """Send ``batch`` in one request (retried through outages with one ``request_id``)."""
        claimed = [s for s in batch if s.future._claim_for_sending()]
        if self._abandoned is not None or self._interrupted:
            self._set_aside(claimed, None, Interrupted() if self._interrupted else None)
            return
        request_id = request_id or str(uuid.uuid4())
        sent: list[Submission] = []
        self._preparing[request_id] = claimed
        try:
            tasks, sent = self._prepare(claimed)
            if not tasks:
                return
            group = sent[0].task_group_id
            declared = group_submitted or {
                "task_group_id": group,
                "client_id": self.client_id,
                "count": self._accepted.get(group, len(sent)),
            }
            self._in_flight[request_id] = UnsentBatch(request_id, self._unsent_calls(sent))
            task_ids = self._retry.call(functools.partial(self._post, tasks, request_id, declared))
        except (GiveUp, Interrupted) as stop:
            # The request may have been stored: keep its id.  Never sent: the id is new, and
            # keeping it matches what an interrupt may have saved already (no duplicate).
            if request_id in self._in_flight:
                self._set_aside(sent, request_id, stop)
            else:
                self._set_aside([s for s in claimed if not s.future.done()], request_id, stop)
            return
        except OutpostError as exc:
            error = _with_context(exc, f"a batch of {len(sent)} tasks")
            for submission in sent:  # first, so a done-callback's cancel() never waits on us
                submission.future.task_id_ready.set()
            for submission in sent:
                submission.future._submission_failed(error)
            return
        finally:
            self._in_flight.pop(request_id, None)
            self._preparing.pop(request_id, None)
        for submission, task_id in zip(sent, task_ids, strict=True):
            submission.future.task_id = task_id
            self._on_accepted(submission.future)

    def _post(
        self, tasks: list[dict[str, Any]], request_id: str, declared: dict[str, Any]
    ) -> list[str]:
        """``POST /v1/tasks``; a 503 that says the tasks are stored (RabbitMQ is away; the
        service queues them when it is back) counts as accepted: they are on their way."""
        try:
            return self._client.submit_tasks(tasks, request_id, group_submitted=declared)
        except ServiceUnavailableError as exc:
            stored = exc.details.get("task_ids")
            if (
                isinstance(stored, list)
                and len(stored) == len(tasks)
                and all(isinstance(t, str) for t in stored)
            ):
                return stored
            raise

    def _prepare(self, claimed: list[Submission]) -> tuple[list[dict[str, Any]], list[Submission]]:
        """The request's task objects (functions registered, arguments sealed if asked)."""
        tasks: list[dict[str, Any]] = []
        sent: list[Submission] = []
        registered: dict[int, str | OutpostError] = {}  # one registration per function
        for submission in claimed:
            key = id(submission.function_payload or submission.fn)
            function_id = registered.get(key)
            if function_id is None:
                try:
                    function_id = self._retry.call(functools.partial(self._register, submission))
                except OutpostError as exc:
                    function_id = _with_context(exc, f"{submission.name} (registering it)")
                registered[key] = function_id
            if isinstance(function_id, OutpostError):
                submission.future._submission_failed(function_id)
                continue
            payload = submission.payload or b""
            spec = submission.resource_specification
            if self._sealer is not None:
                try:
                    payload = self._sealer.seal_args(
                        payload, submission.endpoint_id, function_id, submission.task_group_id
                    )
                except OutpostError as exc:
                    submission.future._submission_failed(_with_context(exc, submission.name))
                    continue
                spec = {**spec, RESULT_KEY_FIELD: self._sealer.public_key}
            task = TaskRequest(
                function_id=function_id,
                endpoint_id=submission.endpoint_id,
                args=payload,
                task_group_id=submission.task_group_id,
                resource_specification=spec,
                depends_on=submission.depends_on,
            )
            tasks.append(task.model_dump(mode="json", exclude_defaults=True))
            sent.append(submission)
        return tasks, sent

    def _register(self, submission: Submission) -> str:
        if submission.function_payload is not None:
            return self._client.register_function_payload(
                submission.function_payload, submission.name.removeprefix("task ")
            )
        return self._client.register_function(submission.fn)

    def send_now(
        self,
        submissions: list[Submission],
        request_id: str,
        group_submitted: dict[str, Any] | None,
    ) -> None:
        """Send one saved batch in the calling thread with its saved ``request_id``."""
        self._send(submissions, request_id, group_submitted)

    def adopt(self, client_id: str, submitted: int) -> None:
        """Resubmitting another executor's unsent calls: take over its id and count (unless
        this executor submitted its own tasks), so a file written if this resubmit is given up
        too still declares the original count."""
        with self._cond:
            if not self._accepted:
                self.client_id = client_id
                self._unsent.record.client_id = client_id
                self._unsent.record.submitted = submitted

    # ------------------------------------------------------------------ giving up
    def interrupt(self) -> SubmitAbandonedError | None:
        """Stop at once (Ctrl-C): nothing more is sent; queued calls and the batch in flight
        (whose answer may never come) go to the unsent file.  Returns the error naming the file,
        or None when nothing was left unsent."""
        with self._cond:
            self._interrupted = True
            self._stopping = True
            rest = [s for s in self._queue if s.future._claim_for_sending()]
            self._queue.clear()
            in_flight = list(self._in_flight.values())
            in_flight += [
                UnsentBatch(key, self._unsent_calls([s for s in claimed if not s.future.done()]))
                for key, claimed in list(self._preparing.items())
                if key not in self._in_flight
            ]
            self._cond.notify_all()
        self._retry.interrupt()
        _LIVE.discard(self)  # its thread may sit in a request; exiting must not wait for it
        if in_flight:
            path = self._unsent.add(in_flight)
            with self._cond:
                if self._abandoned is None:
                    self._abandoned = self._error(Interrupted(), str(path))
        if rest:
            self._set_aside(rest, None, Interrupted())
        return self._abandoned

    def _set_aside(
        self, submissions: list[Submission], request_id: str | None, why: Exception | None
    ) -> None:
        """Save ``submissions`` (and whatever is queued) to the unsent file and fail them."""
        with self._cond:
            rest = [s for s in self._queue if s.future._claim_for_sending()]
            self._queue.clear()
        batches = split(self._unsent_calls(submissions), request_id)
        batches += split(self._unsent_calls(rest))
        if not batches:
            return
        path = self._unsent.add(batches)
        with self._cond:
            if self._abandoned is None:
                self._abandoned = self._error(why, str(path))
            error = self._abandoned
        for submission in submissions + rest:  # first, so no cancel() waits on us
            submission.future.task_id_ready.set()
        for submission in submissions + rest:
            submission.future._submission_failed(error)

    def _error(self, why: Exception | None, path: str) -> SubmitAbandonedError:
        what = stop_reason(why, self._client.url, self._retry.retry_for)
        return abandoned_error(self._unsent.record, path, what)

    def _unsent_calls(self, submissions: list[Submission]) -> list[UnsentCall]:
        calls = []
        for submission in submissions:
            function = submission.function_payload
            if function is None:
                function = self._client.function_payload(submission.fn)
            calls.append(
                UnsentCall(
                    name=submission.name.removeprefix("task "),
                    function=function,
                    args=submission.payload or b"",
                    endpoint_id=submission.endpoint_id,
                    task_group_id=submission.task_group_id,
                    resource_specification=submission.resource_specification,
                    depends_on=submission.depends_on,
                )
            )
        return calls


_LIVE: weakref.WeakSet[Submitter] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    """Send every queued task before the interpreter exits, as CPython's executors finish
    their work items; tasks held for dependencies are waited for (they cannot be sent
    otherwise).  During a service outage this waits up to ``submit_retry_for``, says so once,
    and Ctrl-C then saves the unsent calls to a file (see :meth:`Submitter.interrupt`).  A
    script ended by Ctrl-C (an uncaught KeyboardInterrupt, which the interpreter leaves in
    ``sys.last_value``) is not held at all: what is unsent is saved at once."""
    live = list(_LIVE)
    if isinstance(getattr(sys, "last_value", None), KeyboardInterrupt):
        _save_unsent(live)
        return
    for submitter in live:
        with submitter._cond:
            held = submitter._held
        if held:
            log.warning("waiting for %d tasks whose dependencies have not finished", held)
        submitter.stop()
    # The wait is joined in slices under a SIGINT handler of its own: a KeyboardInterrupt
    # raised inside a lock wait, or between two atexit callbacks, could otherwise be lost and
    # leave the exit waiting out the whole outage.
    with _sigint_flag() as interrupted:
        told = False
        while waiting := [s for s in live if s.is_alive()]:
            if interrupted.is_set():
                _save_unsent(waiting)
                raise KeyboardInterrupt
            if not told and any(s._retry.in_outage for s in waiting):
                announce(
                    "outpost: waiting for the service to take the submitted tasks before "
                    "exiting; Ctrl-C saves them to a file to resubmit later"
                )
                told = True
            waiting[0].join(_EXIT_SLICE)


#: How often the exit wait looks for Ctrl-C and for the end of the submitting threads.
_EXIT_SLICE = 0.2


def _save_unsent(submitters: list[Submitter]) -> None:
    for submitter in submitters:
        error = submitter.interrupt()
        if error is not None:
            announce(f"outpost: {error}")


@contextlib.contextmanager
def _sigint_flag() -> Iterator[threading.Event]:
    """An event set by Ctrl-C while the block runs (only the main thread may take signals;
    elsewhere the event is never set and Ctrl-C keeps its usual meaning)."""
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.set())
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def _with_context(exc: OutpostError, what: str) -> OutpostError:
    """The same error, its message prefixed with what could not be submitted."""
    try:
        error = type(exc)(f"submitting {what} failed: {exc}")
    except TypeError:  # a subclass with a different constructor: keep the original
        return exc
    for attribute in ("status", "code", "details"):
        if hasattr(exc, attribute):
            setattr(error, attribute, getattr(exc, attribute))
    error.__cause__ = exc
    return error
