"""A private Outpost stack for a benchmark, started with the end-to-end tests' helpers.

Reuses :mod:`tests.e2e.stack` (real ``outpost-service serve`` and ``outpost-endpoint`` processes
on the shared RabbitMQ, each stack on its own AMQP prefix); only the bookkeeping a benchmark
needs is added here: a context manager, the endpoint daemon's pid, and peak RSS readings.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from outpost import Client
from tests.e2e.stack import (
    RunningEndpoint,
    RunningService,
    make_endpoint,
    start_service,
    stop_service,
)


@dataclass
class Stack:
    service: RunningService
    endpoint: RunningEndpoint
    client: Client

    def endpoint_pid(self) -> int:
        pidfile = self.endpoint.home / "endpoints" / self.endpoint.name / "endpoint.pid"
        return int(pidfile.read_text().strip())


@contextmanager
def outpost_stack(name: str = "bench") -> Iterator[Stack]:
    """Service on SQLite plus one started endpoint (``max_workers`` = CPU count)."""
    with tempfile.TemporaryDirectory(prefix="outpost-bench-") as tmp:
        home = Path(tmp)
        service = start_service(home, f"sqlite:///{home}/outpost.db")
        endpoint: RunningEndpoint | None = None
        try:
            endpoint = make_endpoint(service, home / "endpoint", name)
            yield Stack(service, endpoint, Client(url=service.url, token=service.token))
        finally:
            if endpoint is not None:
                endpoint.run("stop", endpoint.name, check=False)
            stop_service(service)


def peak_rss_mb(pid: int) -> float | None:
    """The peak resident set size of a live process (``VmHWM``), in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def rss_mb(pid: int) -> float | None:
    """The current resident set size (``VmRSS``), in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
