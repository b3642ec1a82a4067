"""Turn a failed or cancelled :class:`~outpost.protocol.ResultEnvelope` back into an exception.

The endpoint pickles the exception a task raised into ``ErrorInfo.payload``; rebuilding it here
gives the caller the *original* class (``except KeyError`` works, classes defined in
``__main__`` included since cloudpickle ships them by value).  The remote traceback is attached
like CPython's ``concurrent.futures.process._RemoteTraceback``: as ``__cause__``, so printing the
exception shows where it happened on the cluster.  The pickle is loaded only from a trusted
endpoint (``trusted``; see :mod:`outpost.result_trust`): from any other, the exception is a
:class:`RemoteExecutionError` built from the class name, message and traceback text.
"""

from __future__ import annotations

import logging

from outpost.errors import (
    DependencyError,
    ManagerLost,
    OutpostError,
    RemoteExecutionError,
    SerializationError,
    TaskCancelledError,
    TaskError,
    TaskTimeout,
    WorkerLost,
    remote_base_exception,
)
from outpost.protocol import ErrorInfo, ResultEnvelope, TaskState, deserialize

log = logging.getLogger(__name__)

#: ``ErrorInfo.reason`` → the class raised when no better (pickled) exception is available.
REASON_CLASSES: dict[str, type[OutpostError]] = {
    "timeout": TaskTimeout,
    "worker_lost": WorkerLost,
    "manager_lost": ManagerLost,
    "dependency": DependencyError,
    "cancelled": TaskCancelledError,
    "serialization": SerializationError,
}


#: BaseException classes that are not Exceptions, by the name the endpoint reports.
_BASE_ONLY: dict[str, type[BaseException]] = {
    "builtins.SystemExit": SystemExit,
    "builtins.KeyboardInterrupt": KeyboardInterrupt,
    "builtins.GeneratorExit": GeneratorExit,
}


class RemoteTraceback(Exception):
    """Carries the traceback text of an exception raised on the endpoint; ``str`` is the text."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


def _unpickle(error: ErrorInfo) -> BaseException | None:
    if not error.payload:
        return None
    try:
        value = deserialize(error.payload)
    except Exception as exc:  # the class may not exist here; fall back to a description
        log.debug("cannot rebuild remote %s: %s", error.type, exc)
        return None
    if not isinstance(value, BaseException):
        return None
    # Never hand back SystemExit/KeyboardInterrupt: raising them would end the client.
    return remote_base_exception(value, error.traceback)


def exception_from_error(
    error: ErrorInfo, task_id: str = "", trusted: bool = True, endpoint: str = ""
) -> BaseException:
    """The exception that ``error`` describes, with the remote traceback as ``__cause__``.

    Untrusted (``trusted=False``), the pickled exception is never loaded; ``endpoint``
    describes the endpoint in the message then."""
    rebuilt = _unpickle(error) if trusted else None
    expected = REASON_CLASSES.get(error.reason)
    exc: BaseException
    if error.type in _BASE_ONLY and rebuilt is None and expected is None:
        # a pickled payload was lost (too large, unloadable): still say what happened
        rebuilt = remote_base_exception(_BASE_ONLY[error.type](error.message), error.traceback)
    if rebuilt is not None and (expected is None or isinstance(rebuilt, expected)):
        exc = rebuilt
    elif expected is not None:
        exc = expected(f"task {task_id or '?'}: {error.message or error.type}")
    else:
        what = f"{error.type}: {error.message}" if error.message else error.type
        why = (
            "the class could not be rebuilt here: install the module that defines it to get the "
            "original exception"
            if trusted
            else f"the exception was not unpickled: {endpoint or 'the endpoint'} is not yours "
            "and loading its pickle could run code here (trust the endpoint to get the "
            "original class: Executor(..., trust_endpoint=True) or Client(trust_endpoints=[id]))"
        )
        exc = RemoteExecutionError(
            f"task {task_id or '?'} raised {what} (reason {error.reason!r}); {why}",
            remote_type=error.type,
            remote_traceback=error.traceback,
        )
    if error.traceback:
        exc.__cause__ = RemoteTraceback(error.traceback)
    return exc


def exception_from_result(
    envelope: ResultEnvelope, trusted: bool = True, endpoint: str = ""
) -> BaseException:
    """The exception a non-successful result stands for (``TaskCancelledError`` if cancelled);
    ``trusted`` and ``endpoint`` as for :func:`exception_from_error`."""
    if envelope.state is TaskState.SUCCESS:
        raise ValueError(f"task {envelope.task_id} succeeded; it has no exception")
    if envelope.error is not None:
        if envelope.state is TaskState.CANCELLED and envelope.error.reason != "cancelled":
            return TaskCancelledError(f"task {envelope.task_id} was cancelled")
        return exception_from_error(envelope.error, envelope.task_id, trusted, endpoint)
    if envelope.state is TaskState.CANCELLED:
        return TaskCancelledError(f"task {envelope.task_id} was cancelled")
    if envelope.state is TaskState.LOST:
        return ManagerLost(f"task {envelope.task_id} was lost by its endpoint")
    return TaskError(f"task {envelope.task_id} ended {envelope.state.value} without an error")


def is_cancellation(envelope: ResultEnvelope) -> bool:
    """True when the task ended because it was cancelled (its future should end cancelled)."""
    if envelope.state is TaskState.CANCELLED:
        return True
    return envelope.error is not None and envelope.error.reason == "cancelled"
