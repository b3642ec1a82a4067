"""Benchmark 4, cold start: ``outpost-endpoint start`` to the first result through the service.

Each run starts the (configured, stopped) endpoint with the real CLI, which daemonizes, then
submits one no-op and waits for its result; the clock runs from before the CLI call to the
result.  The engine-alone cold start (engine built to first result, no broker) and the peers'
(Parsl ``load()``, Dask ``LocalCluster``, Ray ``init`` to first result) are measured by
:mod:`benchmarks.engine_alone` in each of its runs and shown next to it.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.common import fmt, show, summary
from benchmarks.local_stack import outpost_stack
from benchmarks.peer_runner import noop
from outpost import Executor


def measure(runs: int) -> dict[str, Any]:
    seconds: list[float] = []
    start_cli: list[float] = []
    with outpost_stack("bench-cold") as stack:
        endpoint = stack.endpoint
        for index in range(runs):
            endpoint.stop()
            begin = time.perf_counter()
            endpoint.start()
            started = time.perf_counter()
            with Executor(endpoint_id=endpoint.endpoint_id, client=stack.client) as ex:
                ex.submit(noop).result(timeout=120)
            seconds.append(time.perf_counter() - begin)
            start_cli.append(started - begin)
            print(f"  cold-start run {index + 1}/{runs} done", flush=True)
    return {
        "runs": runs,
        "endpoint_start_to_first_result_s": summary(seconds),
        "of_which_cli_start_returns_s": summary(start_cli),
    }


def report(result: dict[str, Any], engine: dict[str, Any] | None = None) -> None:
    rows = [
        (
            "outpost-endpoint start -> first result",
            fmt(result["endpoint_start_to_first_result_s"], " s", 2),
        ),
        ("  of which the start command", fmt(result["of_which_cli_start_returns_s"], " s", 2)),
    ]
    for system, row in (engine or {}).get("systems", {}).items():
        rows.append((f"{system} to first result (engine alone)", fmt(row["cold_start_s"], " s", 2)))
    show("cold start", rows)
