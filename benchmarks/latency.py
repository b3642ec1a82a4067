"""Benchmark 3, latency: sequential single-task round trips, p50/p95/p99.

Outpost end to end (``executor.submit(noop).result()`` through service, RabbitMQ and endpoint),
with Parsl engine-only (HighThroughputExecutor + LocalProvider, no network hop) measured in the
same run as a reference, not a like-for-like peer.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks.common import fmt, peer_python, percentiles, run_peer, show, summary
from benchmarks.local_stack import outpost_stack
from benchmarks.peer_runner import noop
from outpost import Executor


def measure(runs: int, round_trips: int, workers: int) -> dict[str, Any]:
    outpost: list[dict[str, float]] = []
    parsl: list[dict[str, float]] = []
    with (
        outpost_stack("bench-latency") as stack,
        Executor(stack.endpoint.endpoint_id, stack.client) as ex,
    ):
        ex.submit(noop).result(timeout=120)
        for index in range(runs):
            samples = []
            for _ in range(round_trips):
                start = time.perf_counter()
                ex.submit(noop).result(timeout=60)
                samples.append((time.perf_counter() - start) * 1000)
            outpost.append(percentiles(samples))
            if peer_python("parsl") is not None:
                args = ["--workers", str(workers), "--round-trips", str(round_trips)]
                parsl.append(run_peer("parsl", args, 300)["round_trip_ms"])
            print(f"  latency run {index + 1}/{runs} done", flush=True)

    def per_quantile(rows: list[dict[str, float]]) -> dict[str, Any]:
        return {q: summary([r[q] for r in rows]) for q in ("p50", "p95", "p99")} if rows else {}

    return {
        "round_trips": round_trips,
        "runs": runs,
        "outpost_end_to_end_ms": per_quantile(outpost),
        "parsl_engine_only_ms": per_quantile(parsl),
        "ratio_p50_outpost_to_parsl": (
            statistics.median([o["p50"] / p["p50"] for o, p in zip(outpost, parsl, strict=False)])
            if parsl
            else None
        ),
    }


def report(result: dict[str, Any]) -> None:
    rows = []
    for who in ("outpost_end_to_end_ms", "parsl_engine_only_ms"):
        for q, stats in result[who].items():
            rows.append((f"{who} {q}", fmt(stats, " ms", 1)))
    show(f"latency, {result['round_trips']} sequential round trips", rows)
