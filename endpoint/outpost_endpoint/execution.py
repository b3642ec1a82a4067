"""Running one task inside a worker process: deserialize, call, capture the outcome.

:func:`run_task` never raises: every failure (the function raised, the arguments could not be
unpickled, the result cannot be pickled or is too large) becomes a failed
:class:`ResultEnvelope` with a machine-readable ``reason``, so the engine always has an answer to
send back and the client never waits on a task that silently vanished.  End-to-end encrypted
tasks are opened here and their results sealed (:mod:`outpost_endpoint.sealed`).  A value that
is plain data is written as JSON (``serialize_result``): the submitter can read it without
trusting this endpoint's owner (docs/SECURITY.md "Result trust").
"""

from __future__ import annotations

import base64
import time
import traceback
from typing import Any

from outpost.errors import (
    ArgumentsNotDataError,
    PayloadTooLargeError,
    SealingError,
    SerializationError,
    remote_base_exception,
)
from outpost.protocol import (
    DEFAULT_PAYLOAD_LIMIT,
    PROTOCOL_VERSION,
    ErrorInfo,
    ResultEnvelope,
    TaskEnvelope,
    TaskState,
    deserialize,
    serialize,
    serialize_result,
)
from outpost.protocol.data_only import REASON as NOT_DATA
from outpost.protocol.data_only import load_data
from outpost.protocol.dependencies import resolve
from outpost_endpoint.results import HOSTNAME, this_worker
from outpost_endpoint.sealed import open_task, seal_result


def run_task(
    task: TaskEnvelope,
    received: float | None = None,
    *,
    payload_limit: int | None = DEFAULT_PAYLOAD_LIMIT,
) -> ResultEnvelope:
    """Run ``task`` here and describe its outcome."""
    timing = {"received": received if received is not None else time.time()}
    timing["started"] = time.time()

    opened: TaskEnvelope | None = None  # set once sealed arguments are open

    def finish(state: TaskState, value: bytes | None, error: ErrorInfo | None) -> ResultEnvelope:
        timing["finished"] = time.time()
        # Built from values this worker made itself, on every task's path: not validated
        # again (``ResultEnvelope.trusted``); the result is checked where it is decoded.
        result = ResultEnvelope.trusted(
            {
                "v": PROTOCOL_VERSION,
                "type": "result",
                "task_id": task.task_id,
                "endpoint_id": task.endpoint_id,
                "state": state,
                "value": value,
                "error": error,
                "timing": timing,
                "node": HOSTNAME,
                "worker": this_worker(),
            }
        )
        return result if opened is None else seal_result(opened, result)

    try:
        task = opened = open_task(task)
    except SealingError as exc:
        message = f"cannot open the end-to-end encrypted task {task.task_id}: {exc}"
        return finish(TaskState.FAILED, None, _serialization_error(exc, "arguments", message))
    try:
        function, args, kwargs = _load(task)
    except ArgumentsNotDataError as exc:
        error = _serialization_error(exc, "arguments", f"task {task.task_id}: {exc}")
        error.reason = NOT_DATA
        return finish(TaskState.FAILED, None, error)
    except SerializationError as exc:
        return finish(TaskState.FAILED, None, _serialization_error(exc, "arguments"))
    try:
        value = function(*args, **kwargs)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt are task failures too
        return finish(TaskState.FAILED, None, exception_info(exc, payload_limit))
    try:
        payload = serialize_result(value, limit=payload_limit)
    except PayloadTooLargeError as exc:
        message = (
            f"the result of task {task.task_id} is too large to send back: {exc}; write large "
            "results to a file on the cluster and return its path"
        )
        return finish(TaskState.FAILED, None, _serialization_error(exc, "result", message))
    except SerializationError as exc:
        message = (
            f"the result of task {task.task_id} ({type(value).__name__}) cannot be pickled: "
            f"{exc}; return plain data (numbers, strings, lists, dicts, dataclasses) instead"
        )
        return finish(TaskState.FAILED, None, _serialization_error(exc, "result", message))
    return finish(TaskState.SUCCESS, payload, None)


def _load(task: TaskEnvelope) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    """The function and the arguments.  A shared user's arguments are decoded as JSON data
    only, *before* the function payload is unpickled (:mod:`outpost.protocol.data_only`):
    a pickle or source payload is refused without being read."""
    data_only = task.args_must_be_data
    packed = load_data(task.args) if data_only else None
    function = deserialize(task.function)
    if not callable(function):
        raise SerializationError(
            f"the function payload of task {task.task_id} holds a {type(function).__name__}, "
            "not a callable"
        )
    if not data_only:
        packed = deserialize(task.args)
    if (
        not isinstance(packed, (tuple, list))
        or len(packed) != 2
        or not isinstance(packed[0], (tuple, list))
        or not isinstance(packed[1], dict)
    ):
        raise SerializationError(
            f"the args payload of task {task.task_id} must be an (args, kwargs) pair, "
            f"got {type(packed).__name__}"
        )
    if task.parent_values:
        return function, *_with_parents(task, tuple(packed[0]), packed[1])
    return function, tuple(packed[0]), packed[1]


def _with_parents(
    task: TaskEnvelope, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments with the parents' values where the SDK left their references
    (:mod:`outpost.protocol.dependencies`); the values are read like the arguments (JSON data
    only for a shared user's task)."""
    data_only = task.args_must_be_data
    values: dict[str, Any] = {}
    for parent, text in (task.parent_values or {}).items():
        try:
            values[parent] = deserialize(base64.b64decode(text), data_only=data_only)
        except SerializationError as exc:
            raise SerializationError(
                f"task {task.task_id}: the result of its dependency task {parent} cannot be "
                f"read here: {exc}"
            ) from exc
    try:
        return resolve(args, values), resolve(kwargs, values)
    except KeyError as exc:
        raise SerializationError(
            f"task {task.task_id} names dependency task {exc.args[0]} whose value the service "
            "did not send"
        ) from None


def exception_info(exc: BaseException, payload_limit: int | None) -> ErrorInfo:
    """Describe an exception raised by a task, keeping the original for the SDK if it pickles.

    A ``BaseException`` that is not an ``Exception`` (``sys.exit()`` in the task) is shipped as
    :class:`outpost.errors.RemoteSystemExit` / ``RemoteBaseException``: the client re-raises the
    payload from ``future.result()``, and a real ``SystemExit`` there would end the client's
    script.  ``type`` still names the original class.
    """
    payload: bytes | None
    text = "".join(traceback.format_exception(exc))
    try:
        pickled = serialize(remote_base_exception(exc, text), limit=payload_limit)
        deserialize(pickled)  # an exception that pickles but cannot be rebuilt is no use
        payload = pickled
    except Exception:
        payload = None
    return ErrorInfo(
        type=qualified_name(type(exc)),
        message=str(exc),
        reason="exception",
        traceback=text,
        payload=payload,
    )


def qualified_name(cls: type) -> str:
    """``module.Qualname`` (``builtins.ValueError``, ``__main__.MyError``)."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _serialization_error(exc: BaseException, what: str, message: str | None = None) -> ErrorInfo:
    return ErrorInfo(
        type=qualified_name(type(exc)),
        message=message or f"cannot deserialize the task's function or {what}: {exc}",
        reason="serialization",
        traceback="".join(traceback.format_exception(exc)),
        payload=None,
    )
