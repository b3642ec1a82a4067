"""One worker process of a manager: pinned once at start, then runs tasks from a pipe.

The manager sends ``(task bytes, received time, extra environment)``; the worker sets the
extra variables (``OUTPOST_RESOURCE_SPECIFICATION``, ``OUTPOST_MPI_NODEFILE``) for the duration
of the task, runs it with :func:`outpost_endpoint.execution.run_task` and answers with the
result's bytes.  ``None`` asks it to exit.
"""

from __future__ import annotations

import os
import signal
import sys
from multiprocessing.connection import Connection

from outpost.protocol import TaskEnvelope
from outpost_endpoint.execution import run_task


def pin(env: dict[str, str], cores: tuple[int, ...]) -> None:
    """Apply a worker's slot: device variables, OMP_NUM_THREADS, CPU affinity."""
    os.environ.update(env)
    if cores:
        try:
            os.sched_setaffinity(0, cores)
        except OSError as exc:  # cores outside the job's cpuset: run unpinned, say why
            print(f"outpost worker: cannot pin to cores {cores}: {exc}", file=sys.stderr)


def worker_main(
    conn: Connection, env: dict[str, str], cores: tuple[int, ...], payload_limit: int | None
) -> None:
    """Run tasks from ``conn`` until told to stop or the manager goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pin(env, cores)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        body, received, extra = message
        saved = {key: os.environ.get(key) for key in extra}
        os.environ.update(extra)
        try:
            result = run_task(TaskEnvelope.from_bytes(body), received, payload_limit=payload_limit)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        try:
            conn.send_bytes(result.to_bytes())
        except (BrokenPipeError, OSError):
            return
