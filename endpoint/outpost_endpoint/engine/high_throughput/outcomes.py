"""Results for outcomes the interchange decides: lost workers and managers, rejected tasks."""

from __future__ import annotations

import time

from outpost.protocol import ResultEnvelope, TaskEnvelope
from outpost_endpoint.results import describe_exit, failed_result


def worker_lost(
    task: TaskEnvelope, hostname: str, exitcode: int | None, worker: str, attempts: int
) -> ResultEnvelope:
    return failed_result(
        task,
        "worker_lost",
        f"the worker process (pid {worker}) running task {task.task_id} on {hostname} died "
        f"({describe_exit(exitcode)}); it may have crashed, run out of memory or called "
        f"os._exit. The worker was replaced; the task ran {attempts} time(s)",
        error_type="outpost.errors.WorkerLost",
        worker=worker,
        timing={"received": time.time(), "finished": time.time()},
    )


def manager_lost(task: TaskEnvelope, hostname: str, why: str, attempts: int) -> ResultEnvelope:
    return failed_result(
        task,
        "manager_lost",
        f"the manager on {hostname} running task {task.task_id} was lost ({why}); the task "
        f"ran {attempts} time(s). Raise engine.max_retries to retry such tasks on another node",
        error_type="outpost.errors.ManagerLost",
    )
