"""Benchmark 5, scale: N tasks queued while the endpoint is stopped, then drained.

The endpoint is stopped, N no-op tasks are submitted in batches of 1,000 (``POST /v1/tasks``),
then the endpoint is started and the clock runs until the service's store has every task in a
terminal state (read straight from its SQLite file, read-only).  Reported: submit rate, drain
rate, and the peak RSS (``VmHWM``) of the service process and of the endpoint daemon (its
worker processes separately).  The issue's size is 100,000 (``--scale-tasks 100000``).
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from typing import Any

from benchmarks.common import fmt, show, summary
from benchmarks.local_stack import outpost_stack, peak_rss_mb
from benchmarks.peer_runner import noop
from outpost.protocol import serialize
from outpost.protocol.envelopes import b64encode

BATCH = 1000
TERMINAL = ("success", "failed", "cancelled", "lost")


def _finished(database: str) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as conn:
        marks = ",".join("?" * len(TERMINAL))
        row = conn.execute(f"SELECT COUNT(*) FROM tasks WHERE state IN ({marks})", TERMINAL)
        return int(row.fetchone()[0])


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def measure(runs: int, tasks: int) -> dict[str, Any]:
    submit_rates: list[float] = []
    drain_rates: list[float] = []
    service_rss: list[float] = []
    endpoint_rss: list[float] = []
    worker_rss: list[float] = []
    for index in range(runs):
        with outpost_stack("bench-scale") as stack:
            client, endpoint = stack.client, stack.endpoint
            database = stack.service.database_url.removeprefix("sqlite:///")
            endpoint.stop()
            function_id = client.register_function(noop)
            args = b64encode(serialize(((), {})))
            task = {"function_id": function_id, "endpoint_id": endpoint.endpoint_id, "args": args}
            begin = time.perf_counter()
            for offset in range(0, tasks, BATCH):
                client.submit_tasks([task] * min(BATCH, tasks - offset))
            submit_rates.append(tasks / (time.perf_counter() - begin))
            before = _finished(database)
            begin = time.perf_counter()
            endpoint.start()
            pid = stack.endpoint_pid()
            workers: dict[int, float] = {}
            deadline = time.monotonic() + max(600.0, tasks / 20)
            while _finished(database) - before < tasks:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {_finished(database) - before} of {tasks} drained")
                for child in _children(pid):
                    workers[child] = peak_rss_mb(child) or workers.get(child, 0.0)
                time.sleep(0.5)  # sampling period of a measurement, not synchronisation
            drain_rates.append(tasks / (time.perf_counter() - begin))
            endpoint_rss.append(peak_rss_mb(pid) or 0.0)
            worker_rss.append(max(workers.values(), default=0.0))
            service_rss.append(peak_rss_mb(stack.service.process.pid) or 0.0)
        print(f"  scale run {index + 1}/{runs} done", flush=True)
    return {
        "tasks": tasks,
        "runs": runs,
        "submit_tasks_per_s": summary(submit_rates),
        "drain_tasks_per_s": summary(drain_rates),
        "service_peak_rss_mb": summary(service_rss),
        "endpoint_daemon_peak_rss_mb": summary(endpoint_rss),
        "largest_worker_peak_rss_mb": summary(worker_rss),
    }


def report(result: dict[str, Any]) -> None:
    show(
        f"scale, {result['tasks']:,} tasks queued while the endpoint was stopped",
        [
            ("submit (batches of 1,000)", fmt(result["submit_tasks_per_s"], " tasks/s")),
            ("drain after start", fmt(result["drain_tasks_per_s"], " tasks/s")),
            ("service peak RSS", fmt(result["service_peak_rss_mb"], " MB")),
            ("endpoint daemon peak RSS", fmt(result["endpoint_daemon_peak_rss_mb"], " MB")),
            ("largest worker peak RSS", fmt(result["largest_worker_peak_rss_mb"], " MB")),
        ],
    )
