"""``OutpostFuture``: a ``concurrent.futures.Future`` that knows its task id.

It keeps CPython's state machine and Condition untouched; what it adds is cancellation that
reaches the service.  A future not yet sent is cancelled locally (it will never be submitted);
one the service accepted is cancelled by asking the service, and ends cancelled when the
service says so.  A future stays *pending* while its task runs remotely: ``running()`` is
``False`` because this process cannot know when a worker started it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, PENDING
from typing import Any

from outpost.errors import OutpostError

log = logging.getLogger(__name__)

#: How long ``cancel()`` waits for an in-flight submission to learn its task id.
_SENDING_WAIT = 60.0


class OutpostFuture(Future[Any]):
    """The future of one Outpost task; ``task_id`` is set once the service accepted it."""

    def __init__(
        self,
        canceller: Callable[[str], str] | None = None,
        explainer: Callable[[str, float | None], str] | None = None,
    ) -> None:
        super().__init__()
        self._task_id: str | None = None
        self._sending = False
        self._canceller = canceller
        #: Says why the task is not done yet (see wait_message) when a wait times out.
        self._explainer = explainer
        #: Set when ``task_id`` is known, or when submission failed (then ``task_id`` is None).
        self.task_id_ready = threading.Event()
        self._task_id_callbacks: list[Callable[[OutpostFuture], None]] = []

    def _when_task_id(self, callback: Callable[[OutpostFuture], None]) -> None:
        """Call ``callback(self)`` once ``task_id`` is set or submission failed (at once if so
        already); how a dependent task learns its parent's id (see executor.submitter)."""
        with self._condition:
            if not self.task_id_ready.is_set():
                self._task_id_callbacks.append(callback)
                return
        callback(self)

    def _task_id_known(self) -> None:
        with self._condition:
            callbacks, self._task_id_callbacks = self._task_id_callbacks, []
            self.task_id_ready.set()
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                log.exception("task id callback %r of %r raised", callback, self)

    @property
    def task_id(self) -> str | None:
        """The service's id for this task; ``None`` until the service accepted it."""
        return self._task_id

    @task_id.setter
    def task_id(self, value: str) -> None:
        with self._condition:
            if self._task_id is not None and self._task_id != value:
                raise InvalidStateError(
                    f"task_id is already {self._task_id!r}; it cannot become {value!r}"
                )
            self._task_id = value
        self._task_id_known()

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]} task_id={self._task_id}>"

    # ------------------------------------------------------------------ waiting
    def result(self, timeout: float | None = None) -> Any:
        """Like ``Future.result``; a wait that times out raises a ``TimeoutError`` that says
        why the task is not done (its state, and the endpoint offline or failing to get
        blocks), as far as the service knows."""
        try:
            return super().result(timeout)
        except TimeoutError:
            if self.done():
                raise  # the task's own exception (a TaskTimeout), not the wait's
            raise TimeoutError(self._why_waiting(timeout)) from None

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Like ``Future.exception``, with the same timeout message as :meth:`result`."""
        try:
            return super().exception(timeout)
        except TimeoutError:
            raise TimeoutError(self._why_waiting(timeout)) from None

    def _why_waiting(self, timeout: float | None) -> str:
        task_id = self._task_id
        if task_id is None:
            return f"the task was still being submitted to the service after {timeout} s"
        if self._explainer is None:
            return f"task {task_id} did not finish within {timeout} s"
        return self._explainer(task_id, timeout)

    # ------------------------------------------------------------------ cancellation
    def cancel(self) -> bool:
        """Cancel the task if it has not produced a result; ``True`` if it is cancelled.

        Not yet sent: cancelled here, never submitted.  Sent: the service is asked
        (``POST /v1/tasks/<id>/cancel``); ``True`` when it answers ``cancelled``.  A running task
        is asked to stop: this returns ``False`` and the future ends cancelled (or with its
        result) when the service reports the outcome.
        """
        with self._condition:
            if self.cancelled():
                return True
            if self.done():
                return False
            local = self._task_id is None and not self._sending
        if local and self._cancel_locally():
            return True
        if not self.done():
            self.task_id_ready.wait(_SENDING_WAIT)
        task_id = self._task_id
        if task_id is None or self._canceller is None or self.done():
            return self.cancelled()
        try:
            state = self._canceller(task_id)
        except OutpostError as exc:
            log.warning("could not cancel task %s: %s", task_id, exc)
            return self.cancelled()
        if state == "cancelled":
            return self._cancel_locally()
        return self.cancelled()

    def _cancel_locally(self) -> bool:
        """Cancel here: CANCELLED, then notify waiters as a CPython executor does when it
        dequeues a cancelled work item (without that, ``wait()``/``as_completed()`` would not
        see it), then run callbacks outside the lock as ``Future.cancel`` does.

        Fails when the future is finished, or was claimed for sending in the meantime (then
        the caller asks the service instead).
        """
        with self._condition:
            if self._state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                return True
            if self._state != PENDING or (self._sending and self._task_id is None):
                return False
            self._state = CANCELLED
            self._condition.notify_all()
            self.set_running_or_notify_cancel()
        self._invoke_callbacks()  # type: ignore[attr-defined]
        return True

    # ------------------------------------------------------------------ used by the executor
    def _claim_for_sending(self) -> bool:
        """Atomically mark the future as being submitted; ``False`` if it was cancelled."""
        with self._condition:
            if self.done():
                return False
            self._sending = True
            return True

    def _submission_failed(self, exc: BaseException) -> None:
        self._complete(exception=exc)
        self._task_id_known()

    def _complete(self, result: Any = None, exception: BaseException | None = None) -> None:
        """Finish the future unless it already finished (e.g. cancelled meanwhile)."""
        try:
            if exception is not None:
                self.set_exception(exception)
            else:
                self.set_result(result)
        except InvalidStateError:
            pass
