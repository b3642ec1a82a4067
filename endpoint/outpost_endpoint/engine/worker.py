"""Running tasks in a worker process, shared by every engine, and the process-pool worker's loop.

The process-pool engine's pipe protocol is deliberately tiny: the engine sends ``(task JSON
bytes, received time, extra environment)``, the worker sets the extra variables
(``OUTPOST_RESOURCE_SPECIFICATION``, ``OUTPOST_MPI_NODEFILE``, ...) for the duration of the task,
runs it with :func:`outpost_endpoint.execution.run_task` and answers with the result's JSON
bytes; ``None`` asks the worker to exit.  Using the envelopes' own wire form means nothing but
:mod:`outpost.protocol` crosses the pipe.  The high-throughput engine's workers use their own
loop (:mod:`.high_throughput.worker`, payloads as raw frames) around the same
:func:`run_in_environment`.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from multiprocessing.connection import Connection

from outpost.protocol import ResultEnvelope, TaskEnvelope
from outpost_endpoint.execution import run_task


def task_environment(task: TaskEnvelope) -> dict[str, str]:
    """The variables every worker sets around a task (the SDK's ShellFunction/MPIFunction
    read them; see ``sdk/outpost/shell.py``)."""
    return {"OUTPOST_RESOURCE_SPECIFICATION": json.dumps(task.resource_specification)}


def prepare_process() -> None:
    """What every worker does once at start, before any task."""
    # The daemon's SIGTERM handling belongs to the daemon; a worker lives until its pipe closes
    # or the engine kills it, so a Ctrl-C in a foreground endpoint does not kill running tasks
    # before the engine decides to.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Like `python -c`, make the working directory (where the endpoint was started) importable:
    # functions pickled by reference to a module of the user's project then load here.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def run_in_environment(
    task: TaskEnvelope, received: float | None, extra: dict[str, str], payload_limit: int | None
) -> ResultEnvelope:
    """Run ``task`` with the ``extra`` variables set, restoring the environment afterwards."""
    saved = {key: os.environ.get(key) for key in extra}
    os.environ.update(extra)
    try:
        return run_task(task, received, payload_limit=payload_limit)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def serve_tasks(conn: Connection, payload_limit: int | None) -> None:
    """Run tasks from ``conn`` until told to stop or the engine goes away."""
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        body, received, extra = message
        result = run_in_environment(TaskEnvelope.from_bytes(body), received, extra, payload_limit)
        try:
            conn.send_bytes(result.to_bytes())
        except (BrokenPipeError, OSError):
            return


def worker_main(conn: Connection, payload_limit: int | None) -> None:
    """Entry point of a process-pool worker."""
    prepare_process()
    serve_tasks(conn, payload_limit)
