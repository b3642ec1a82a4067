"""``run_task`` in this process: every failure is a result with a reason, never an exception."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from outpost.errors import RemoteBaseException, RemoteSystemExit
from outpost.protocol import TaskEnvelope, TaskState, deserialize, serialize
from outpost.protocol.serialize import MAGIC
from outpost_endpoint.execution import run_task

from . import tasks


def envelope(fn: Any, args: bytes) -> TaskEnvelope:
    return TaskEnvelope(str(uuid.uuid4()), "f", serialize(fn), args, "ep")


def call(fn: Any, *args: Any, **kwargs: Any) -> TaskEnvelope:
    return envelope(fn, serialize((args, kwargs)))


def test_value_timing_node_and_worker() -> None:
    result = run_task(call(pow, 2, 5), received=1.0)
    assert result.state is TaskState.SUCCESS and deserialize(result.value) == 32
    assert result.timing["received"] == 1.0
    assert result.timing["started"] <= result.timing["finished"]
    assert result.worker == str(os.getpid()) and result.node


def test_kwargs_are_passed() -> None:
    assert deserialize(run_task(call(int, "ff", base=16)).value) == 255


def test_exception_info() -> None:
    error = run_task(call(tasks.fail, "boom")).error
    assert error is not None and error.reason == "exception"
    assert error.type.endswith("tasks.CampaignError") and error.message == "boom"
    assert "Traceback" in error.traceback and "fail" in error.traceback
    assert isinstance(deserialize(error.payload or b""), tasks.CampaignError)


def test_unpicklable_exception_has_no_payload() -> None:
    def raise_unpicklable() -> None:
        error = ValueError("holds a lock")
        error.lock = tasks.make_lock()  # type: ignore[attr-defined]
        raise error

    error = run_task(call(raise_unpicklable)).error
    assert error is not None and error.type == "builtins.ValueError" and error.payload is None


def test_oversized_result_is_a_serialization_failure() -> None:
    result = run_task(call(bytes, 2048), payload_limit=1024)
    assert result.state is TaskState.FAILED and result.error is not None
    assert result.error.reason == "serialization"
    assert "too large" in result.error.message and "file" in result.error.message


def test_version_mismatch_is_reported_as_serialization() -> None:
    header = json.dumps({"py": "2.7.18", "cp": "0.1"}).encode()
    bogus = MAGIC + b"P" + header + b"\n" + b"not a pickle"
    task = TaskEnvelope(str(uuid.uuid4()), "f", bogus, serialize(((), {})), "ep")
    error = run_task(task).error
    assert error is not None and error.reason == "serialization"
    assert "2.7.18" in error.message and "versions differ" in error.message


def test_args_must_be_an_args_kwargs_pair() -> None:
    error = run_task(envelope(abs, serialize([1, 2, 3]))).error
    assert error is not None and error.reason == "serialization"
    assert "(args, kwargs)" in error.message


def test_system_exit_is_a_failure_not_an_exit() -> None:
    error = run_task(call(exit, 3)).error
    assert error is not None and error.type == "builtins.SystemExit"
    # shipped as an ordinary exception, so raising it in the client cannot end the client
    shipped = deserialize(error.payload or b"")
    assert isinstance(shipped, RemoteSystemExit) and isinstance(shipped, Exception)
    assert shipped.code == 3 and shipped.remote_type == "builtins.SystemExit"
    assert "sys.exit(3)" in str(shipped)


def _interrupt() -> None:
    raise KeyboardInterrupt("stop")


def test_keyboard_interrupt_in_a_task_is_shipped_as_an_exception() -> None:
    error = run_task(call(_interrupt)).error
    assert error is not None and error.type == "builtins.KeyboardInterrupt"
    shipped = deserialize(error.payload or b"")
    assert type(shipped) is RemoteBaseException
    assert shipped.remote_type == "builtins.KeyboardInterrupt"


# ---------------------------------------------------------------------------- dependencies
def with_parents(fn: Any, args: Any, kwargs: Any, values: dict[str, Any]) -> TaskEnvelope:
    """A task whose arguments hold ParentRefs, with the parents' values as the service sends
    them (base64 text of each parent's result value)."""
    import base64

    task = envelope(fn, serialize((args, kwargs)))
    task.depends_on = sorted(values)
    task.parent_values = {
        parent: base64.b64encode(serialize(value)).decode() for parent, value in values.items()
    }
    return task


def test_parent_values_are_substituted_after_unpickling() -> None:
    from outpost.protocol.dependencies import ParentRef

    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    task = with_parents(
        tasks.add_all, ([ParentRef(a), (ParentRef(b),)],), {"extra": {"k": ParentRef(a)}},
        {a: 1, b: 20},
    )  # fmt: skip
    result = run_task(task)
    assert result.state is TaskState.SUCCESS, result.error
    assert deserialize(result.value) == 22


def test_a_reference_without_its_value_is_a_clear_failure() -> None:
    from outpost.protocol.dependencies import ParentRef

    missing = str(uuid.uuid4())
    task = with_parents(abs, (ParentRef(missing),), {}, {str(uuid.uuid4()): 1})
    error = run_task(task).error
    assert error is not None and error.reason == "serialization"
    assert missing in error.message
