"""Rebuilding exceptions from failed results: original class, reasons, remote traceback."""

from __future__ import annotations

import pytest

from outpost.errors import (
    DependencyError,
    ManagerLost,
    RemoteBaseException,
    RemoteExecutionError,
    RemoteSystemExit,
    SerializationError,
    SerializerVersionMismatch,
    TaskCancelledError,
    TaskTimeout,
    WorkerLost,
)
from outpost.protocol import ErrorInfo, ResultEnvelope, TaskState, serialize
from outpost.remote_errors import (
    RemoteTraceback,
    exception_from_error,
    exception_from_result,
    is_cancellation,
)

TB = "Traceback (most recent call last):\n  File \"task.py\", line 1\nKeyError: 'k'\n"


def failed(error: ErrorInfo, state: TaskState = TaskState.FAILED) -> ResultEnvelope:
    return ResultEnvelope("task-1", "ep-1", state, error=error)


def test_original_builtin_class_with_remote_traceback() -> None:
    error = ErrorInfo("builtins.KeyError", "'k'", traceback=TB, payload=serialize(KeyError("k")))
    exc = exception_from_result(failed(error))
    assert type(exc) is KeyError and exc.args == ("k",)
    assert isinstance(exc.__cause__, RemoteTraceback)
    assert str(exc.__cause__) == TB


def test_class_from_main_is_rebuilt() -> None:
    namespace: dict[str, object] = {"__name__": "__main__"}
    exec("class Custom(ValueError):\n    pass\n", namespace)
    original = namespace["Custom"]("bad value")  # type: ignore[operator]
    error = ErrorInfo("__main__.Custom", "bad value", payload=serialize(original))
    exc = exception_from_error(error, "task-1")
    assert type(exc).__name__ == "Custom" and isinstance(exc, ValueError)
    assert str(exc) == "bad value"


def test_unloadable_payload_gives_remote_execution_error() -> None:
    error = ErrorInfo("mylab.BeamError", "beam lost", traceback=TB, payload=b"\x00OP1Pnope")
    exc = exception_from_result(failed(error))
    assert isinstance(exc, RemoteExecutionError)
    assert exc.remote_type == "mylab.BeamError" and exc.remote_traceback == TB
    assert "mylab.BeamError" in str(exc) and "beam lost" in str(exc)
    assert str(exc.__cause__) == TB


def test_no_payload_gives_remote_execution_error() -> None:
    exc = exception_from_result(failed(ErrorInfo("Weird", "msg")))
    assert isinstance(exc, RemoteExecutionError) and exc.__cause__ is None


@pytest.mark.parametrize(
    "reason, cls",
    [
        ("timeout", TaskTimeout),
        ("worker_lost", WorkerLost),
        ("manager_lost", ManagerLost),
        ("dependency", DependencyError),
        ("serialization", SerializationError),
    ],
)
def test_reasons_map_to_classes(reason: str, cls: type[Exception]) -> None:
    exc = exception_from_result(failed(ErrorInfo("X", "what happened", reason=reason)))
    assert type(exc) is cls
    assert "task-1" in str(exc) and "what happened" in str(exc)


def test_task_timeout_is_a_timeout_error() -> None:
    exc = exception_from_result(failed(ErrorInfo("X", "ran 2 s", reason="timeout")))
    assert isinstance(exc, TimeoutError)


def test_pickled_error_of_the_right_family_is_kept() -> None:
    original = SerializerVersionMismatch("python 3.10 (writer) vs 3.11 (reader)")
    error = ErrorInfo("X", str(original), reason="serialization", payload=serialize(original))
    assert type(exception_from_result(failed(error))) is SerializerVersionMismatch


def test_pickled_error_of_another_family_yields_the_reason_class() -> None:
    error = ErrorInfo("X", "killed", reason="worker_lost", payload=serialize(KeyError("k")))
    assert type(exception_from_result(failed(error))) is WorkerLost


def test_cancelled() -> None:
    envelope = failed(ErrorInfo("X", "cancelled", reason="cancelled"), TaskState.CANCELLED)
    assert is_cancellation(envelope)
    assert isinstance(exception_from_result(envelope), TaskCancelledError)
    bare = ResultEnvelope("task-1", "ep-1", TaskState.CANCELLED)
    assert is_cancellation(bare) and isinstance(exception_from_result(bare), TaskCancelledError)


def test_lost_without_error() -> None:
    envelope = ResultEnvelope("task-1", "ep-1", TaskState.LOST)
    assert isinstance(exception_from_result(envelope), ManagerLost)
    assert not is_cancellation(envelope)


def test_success_has_no_exception() -> None:
    with pytest.raises(ValueError):
        exception_from_result(ResultEnvelope("task-1", "ep-1", TaskState.SUCCESS))


@pytest.mark.parametrize(
    ("original", "kind"),
    [(SystemExit(3), RemoteSystemExit), (KeyboardInterrupt(), RemoteBaseException)],
)
def test_base_exception_payload_is_never_rebuilt_as_itself(
    original: BaseException, kind: type[RemoteBaseException]
) -> None:
    """An endpoint that ships a real SystemExit (an older one) must not end the client."""
    name = f"builtins.{type(original).__name__}"
    error = ErrorInfo(name, str(original), traceback=TB, payload=serialize(original))
    exc = exception_from_result(failed(error))
    assert type(exc) is kind and isinstance(exc, Exception)
    assert exc.remote_type == name and str(exc.__cause__) == TB
    if isinstance(original, SystemExit):
        assert isinstance(exc, RemoteSystemExit) and exc.code == 3


def test_system_exit_without_payload_is_still_named() -> None:
    exc = exception_from_result(failed(ErrorInfo("builtins.SystemExit", "3", traceback=TB)))
    assert isinstance(exc, RemoteSystemExit) and exc.remote_type == "builtins.SystemExit"
