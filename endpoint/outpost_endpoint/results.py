"""Building :class:`ResultEnvelope` s for outcomes decided outside the function.

The engine (timeouts, lost workers, cancels) and the task checks (:mod:`.amqp.checks`:
cancelled before arrival, refused tasks) all describe failures the same way, so the wording
lives here once.
"""

from __future__ import annotations

import os
import socket
import time

from outpost.protocol import ErrorInfo, ResultEnvelope, TaskEnvelope, TaskState
from outpost.protocol.data_only import REASON as NOT_DATA
from outpost.protocol.data_only import RULE as DATA_RULE

HOSTNAME = socket.gethostname()


def failed_result(
    task: TaskEnvelope,
    reason: str,
    message: str,
    *,
    error_type: str = "outpost.errors.TaskError",
    state: TaskState = TaskState.FAILED,
    timing: dict[str, float] | None = None,
    worker: str = "",
) -> ResultEnvelope:
    """A result that carries no value, only :class:`ErrorInfo` with a machine-readable reason."""
    now = time.time()
    return ResultEnvelope(
        task_id=task.task_id,
        endpoint_id=task.endpoint_id,
        state=state,
        error=ErrorInfo(type=error_type, message=message, reason=reason),
        timing=timing or {"received": now, "finished": now},
        node=HOSTNAME,
        worker=worker,
    )


def cancelled_result(task: TaskEnvelope, timing: dict[str, float] | None = None) -> ResultEnvelope:
    """The answer for a task that was cancelled before (or while) it ran."""
    return failed_result(
        task,
        "cancelled",
        f"task {task.task_id} was cancelled on endpoint host {HOSTNAME} before it finished",
        error_type="outpost.errors.TaskCancelledError",
        state=TaskState.CANCELLED,
        timing=timing,
    )


def timeout_result(
    task: TaskEnvelope, walltime: float, timing: dict[str, float], worker: str
) -> ResultEnvelope:
    return failed_result(
        task,
        "timeout",
        f"task {task.task_id} ran longer than its walltime of {walltime:g} s on {HOSTNAME}; "
        "the worker was killed and replaced. Raise resource_specification['walltime'] if the "
        "task needs more time",
        error_type="outpost.errors.TaskTimeout",
        timing=timing,
        worker=worker,
    )


def worker_lost_result(
    task: TaskEnvelope, exitcode: int | None, timing: dict[str, float], worker: str
) -> ResultEnvelope:
    return failed_result(
        task,
        "worker_lost",
        f"the worker process (pid {worker}) running task {task.task_id} on {HOSTNAME} died "
        f"({describe_exit(exitcode)}); it may have crashed, run out of memory or called "
        "os._exit. The worker was replaced",
        error_type="outpost.errors.WorkerLost",
        timing=timing,
        worker=worker,
    )


def describe_exit(exitcode: int | None) -> str:
    """``killed by signal SIGKILL`` / ``exit code 3`` / ``exit status unknown``."""
    if exitcode is None:
        return "exit status unknown"
    if exitcode < 0:
        import signal

        try:
            return f"killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def this_worker() -> str:
    return str(os.getpid())


def expired_result(task: TaskEnvelope, deadline: float) -> ResultEnvelope | None:
    """The answer for a task delivered after its expiry deadline, or None if it has time.

    The deadline is the service's ``created_at`` plus ``resource_specification["expires_after"]``
    (clocks of the service and this host are assumed roughly in sync)."""
    if time.time() <= deadline:
        return None
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(deadline))
    return failed_result(
        task,
        "expired",
        f"task {task.task_id} reached endpoint host {HOSTNAME} after its deadline ({when}) "
        "and was not run; submit it again, or raise resource_specification['expires_after']",
        error_type="outpost.errors.TaskExpiredError",
    )


def deadline_of(task: TaskEnvelope) -> float | None:
    """When ``task`` expires (None: never, or no usable ``expires_after``)."""
    after = task.resource_specification.get("expires_after")
    if isinstance(after, bool) or not isinstance(after, (int, float)) or not task.created_at:
        return None
    return float(task.created_at) + float(after)


def refused_function_result(task: TaskEnvelope) -> ResultEnvelope:
    """The answer for a task whose function this endpoint's ``allowed_functions`` leaves out."""
    return failed_result(
        task,
        "function_not_allowed",
        f"function {task.function_id} is not in the allowed_functions of endpoint "
        f"{task.endpoint_id} (its config.yaml on {HOSTNAME}); the task was not run. Ask the "
        "endpoint's owner to add the function id and restart the endpoint, or use an allowed "
        "function",
        error_type="outpost.errors.FunctionNotAllowed",
    )


def function_mismatch_result(task: TaskEnvelope, actual: str) -> ResultEnvelope:
    """The answer for a task whose function bytes do not hash to its declared ``function_id``
    (a forged or corrupted message: the id is what allow-lists check, so it must be true)."""
    return failed_result(
        task,
        "function_mismatch",
        f"task {task.task_id} declares function {task.function_id} but its function payload "
        f"hashes to {actual} (sha256, as outpost.protocol.function_id_for computes ids); the "
        f"task was not run by endpoint {task.endpoint_id} on {HOSTNAME}. Submit it through the "
        "service, which sends the registered function with its own id",
        error_type="outpost.errors.FunctionMismatch",
    )


def arguments_not_data_result(task: TaskEnvelope, declared: str) -> ResultEnvelope:
    """The answer for a task from a user the endpoint is shared with whose arguments are not a
    JSON payload (``declared`` names the format they declare); nothing was deserialized."""
    return failed_result(
        task,
        NOT_DATA,
        f"task {task.task_id} comes from a user endpoint {task.endpoint_id} is shared with, and "
        f"its arguments payload has {declared}; {DATA_RULE}. The task was not run and its "
        f"arguments were not read on {HOSTNAME}. Pass plain data (the outpost SDK does so for "
        "endpoints shared with you), or ask the endpoint's owner to run it",
        error_type="outpost.errors.ArgumentsNotDataError",
    )
