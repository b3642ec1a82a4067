"""The submitter: a background thread that sends queued tasks to the service in batches.

``submit()`` only serializes and enqueues, so a loop of 10,000 submits is fast; this thread
gathers what is queued into one ``POST /v1/tasks`` (up to ``batch_size`` tasks, or once the
queue has been quiet for ``batch_interval`` seconds), registers each function once, sets every
future's ``task_id`` as soon as the service answered and hands the futures to the watcher.  A
failed batch fails its futures with the reason; nothing waits forever.

Tasks with dependencies are *held* here until their parents are done (see
:mod:`outpost.executor.dependencies`).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from outpost.client import Client
from outpost.errors import OutpostError
from outpost.executor.arguments import serialize_arguments
from outpost.executor.dependencies import failed_parent, substitute
from outpost.executor.future import OutpostFuture
from outpost.executor.sealer import Sealer
from outpost.protocol.envelopes import b64encode
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

    @property
    def name(self) -> str:
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
        sealer: Sealer | None = None,
    ) -> None:
        self._client = client
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
    def put(self, submission: Submission) -> None:
        """Queue a task whose arguments are already serialized."""
        with self._cond:
            self._queue.append(submission)
            self._start()
            self._cond.notify()

    def hold(self, submission: Submission, parents: list[Future[Any]]) -> None:
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

    def _send(self, batch: list[Submission]) -> None:
        claimed = [s for s in batch if s.future._claim_for_sending()]
        tasks: list[dict[str, Any]] = []
        sent: list[Submission] = []
        registered: dict[int, str | OutpostError] = {}  # one registration per function
        for submission in claimed:
            function_id = registered.get(id(submission.fn))
            if function_id is None:
                try:
                    function_id = self._client.register_function(submission.fn)
                except OutpostError as exc:
                    function_id = _with_context(exc, f"{submission.name} (registering it)")
                registered[id(submission.fn)] = function_id
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
            task: dict[str, Any] = {
                "function_id": function_id,
                "endpoint_id": submission.endpoint_id,
                "args": b64encode(payload),
                "task_group_id": submission.task_group_id,
            }
            if spec:
                task["resource_specification"] = spec
            tasks.append(task)
            sent.append(submission)
        if not tasks:
            return
        try:
            task_ids = self._client.submit_tasks(tasks)
        except OutpostError as exc:
            error = _with_context(exc, f"a batch of {len(tasks)} tasks")
            for submission in sent:  # first, so a done-callback's cancel() never waits on us
                submission.future.task_id_ready.set()
            for submission in sent:
                submission.future._submission_failed(error)
            return
        for submission, task_id in zip(sent, task_ids, strict=True):
            submission.future.task_id = task_id
            self._on_accepted(submission.future)


_LIVE: weakref.WeakSet[Submitter] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    """Send every queued task before the interpreter exits, as CPython's executors finish
    their work items; tasks held for dependencies are waited for (they cannot be sent
    otherwise)."""
    for submitter in list(_LIVE):
        with submitter._cond:
            held = submitter._held
        if held:
            log.warning("waiting for %d tasks whose dependencies have not finished", held)
        submitter.stop()
        submitter.join()


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
