"""A private Outpost stack for a benchmark, started with the end-to-end tests' helpers.

Reuses :mod:`tests.e2e.stack` (real ``outpost-service serve`` and ``outpost-endpoint`` processes
on the shared RabbitMQ, each stack on its own AMQP prefix); only the bookkeeping a benchmark
needs is added here: a context manager, the stack's processes by role with their CPU seconds
(``/proc``, so CPU per task can be charged to each process), and peak RSS readings.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from outpost import Client
from tests.e2e.stack import (
    AMQP_URL,
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

    def processes(self) -> dict[str, list[int]]:
        """The stack's processes by role, to account CPU per task to each: the service, the
        endpoint daemon, the engine's managers and workers, RabbitMQ (when it runs here) and
        this client process."""
        daemon = self.endpoint_pid()
        roles = {
            "client": [os.getpid()],
            "service": [self.service.process.pid],
            "endpoint daemon": [daemon],
            "engine managers + workers": descendants(daemon),
        }
        broker = listener_pid(urlsplit(AMQP_URL).port or 5672)
        if broker is not None:
            roles["rabbitmq"] = [broker]
        return roles


@contextmanager
def outpost_stack(
    name: str = "bench", engine: str | None = None, prefetch_capacity: int | None = None
) -> Iterator[Stack]:
    """Service on SQLite (no rate limit) plus one started endpoint (``max_workers`` = CPU
    count) with the default config, changed to ``engine.type: engine`` and
    ``engine.prefetch_capacity`` when given."""
    with tempfile.TemporaryDirectory(prefix="outpost-bench-") as tmp:
        home = Path(tmp)
        # No per-token rate limit: sequential round trips make ~200 requests/s, over the
        # service's default, and a benchmark measures the path, not the limiter.
        service = start_service(
            home, f"sqlite:///{home}/outpost.db", env_extra={"OUTPOST_RATE_LIMIT": "0"}
        )
        endpoint: RunningEndpoint | None = None
        try:
            endpoint = make_endpoint(
                service, home / "endpoint", name, edit=_engine_settings(engine, prefetch_capacity)
            )
            yield Stack(service, endpoint, Client(url=service.url, token=service.token))
        finally:
            if endpoint is not None:
                endpoint.run("stop", endpoint.name, check=False)
            stop_service(service)


def _engine_settings(
    engine: str | None, prefetch_capacity: int | None
) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        settings = config.setdefault("engine", {})
        if engine is not None:
            config["engine"] = settings = {"type": engine}
        if prefetch_capacity is not None:
            settings["prefetch_capacity"] = prefetch_capacity

    return edit


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used (all its threads), 0 once gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, grandchildren, ...)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def listener_pid(port: int) -> int | None:
    """The local process listening on TCP ``port`` (e.g. RabbitMQ's 5672), if this user may
    see it; None otherwise (a broker on another host or in a container)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                inodes.add(f"socket:[{cols[9]}]")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                return int(entry.name)
        except OSError:
            continue
    return None


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
