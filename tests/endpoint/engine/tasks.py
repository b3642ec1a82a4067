"""Functions the engine tests send as tasks (shipped by value, see conftest)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path


def placement() -> dict[str, object]:
    return {
        "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "rocr": os.environ.get("ROCR_VISIBLE_DEVICES"),
        "cores": sorted(os.sched_getaffinity(0)),
        "omp": os.environ.get("OMP_NUM_THREADS"),
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }


def hold(gate: str, started: str) -> int:
    """Say we started (write our pid to ``started``), then wait until ``gate`` exists."""
    Path(started).write_text(str(os.getpid()))
    while not Path(gate).exists():
        time.sleep(0.02)
    return os.getpid()


def started_then_sleep(started: str, seconds: float) -> None:
    Path(started).touch()
    time.sleep(seconds)


def exit_now(code: int) -> None:
    os._exit(code)


def resource_env() -> dict[str, str | None]:
    return {
        key: os.environ.get(key)
        for key in ("OUTPOST_RESOURCE_SPECIFICATION", "OUTPOST_MPI_NODEFILE")
    }


def report_when_released(gate: str, started: str) -> dict[str, object]:
    """Hold a worker until ``gate`` exists, then report where it ran: N such tasks in flight
    at once occupy N different workers."""
    hold(gate, started)
    return placement()


def getenv(name: str) -> str | None:
    return os.environ.get(name)


def open_sockets() -> dict[str, object]:
    """This process's pid and how many distinct sockets it holds (a forked worker: its pipe)."""
    links = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue  # the listing's own descriptor
    return {"pid": os.getpid(), "sockets": sum(link.startswith("socket:") for link in links)}


def digest(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
