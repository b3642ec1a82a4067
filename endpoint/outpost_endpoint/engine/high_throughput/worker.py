"""One worker process of a manager: pinned once at start, then runs tasks from a pipe.

The pipe protocol and the task loop are the shared ones of :mod:`outpost_endpoint.engine.worker`;
what is particular here is the pinning: device variables, OMP_NUM_THREADS and CPU affinity are
applied once, when the worker starts.
"""

from __future__ import annotations

import os
import sys
from multiprocessing.connection import Connection

from outpost_endpoint.engine.worker import prepare_process, serve_tasks


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
    prepare_process()
    pin(env, cores)
    serve_tasks(conn, payload_limit)
