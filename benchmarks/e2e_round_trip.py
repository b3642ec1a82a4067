"""End-to-end throughput and latency: SDK → service → RabbitMQ → endpoint → back.

Starts a private local stack (service on SQLite, one process-pool endpoint) and measures

* throughput: N no-op tasks submitted at once, time from first submit to last result;
* latency: M sequential single-task round trips (p50/p95/p99).

Run: ``.venv/bin/python -m benchmarks.e2e_round_trip [--tasks 1000] [--round-trips 200]``.
Results are printed and written to ``benchmarks/results/e2e_round_trip.json``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from outpost import Client, Executor
from tests.e2e.stack import make_endpoint, start_service, stop_service

RESULTS = Path(__file__).parent / "results"


def noop() -> None:
    return None


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(tasks: int, round_trips: int, runs: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="outpost-bench-") as tmp:
        home = Path(tmp)
        service = start_service(home, f"sqlite:///{home}/outpost.db")
        endpoint = make_endpoint(service, home / "endpoint", "bench")
        try:
            client = Client(url=service.url, token=service.token)
            with Executor(endpoint_id=endpoint.endpoint_id, client=client) as ex:
                ex.submit(noop).result(timeout=60)  # warm up workers and connections
                rates = []
                for _ in range(runs):
                    start = time.perf_counter()
                    futures = [ex.submit(noop) for _ in range(tasks)]
                    concurrent.futures.wait(futures, timeout=600)
                    elapsed = time.perf_counter() - start
                    assert all(f.done() and f.exception() is None for f in futures)
                    rates.append(tasks / elapsed)
                latencies = []
                for _ in range(round_trips):
                    start = time.perf_counter()
                    ex.submit(noop).result(timeout=60)
                    latencies.append((time.perf_counter() - start) * 1000)
        finally:
            endpoint.run("stop", endpoint.name, check=False)
            stop_service(service)
    return {
        "machine": platform.node(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        "tasks": tasks,
        "throughput_tasks_per_s": {
            "median": statistics.median(rates),
            "min": min(rates),
            "max": max(rates),
            "runs": rates,
        },
        "round_trip_ms": {
            "p50": percentile(latencies, 0.50),
            "p95": percentile(latencies, 0.95),
            "p99": percentile(latencies, 0.99),
            "n": len(latencies),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--round-trips", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    result = measure(args.tasks, args.round_trips, args.runs)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "e2e_round_trip.json").write_text(json.dumps(result, indent=2))
    rate = result["throughput_tasks_per_s"]
    latency = result["round_trip_ms"]
    print(json.dumps({"throughput_tasks_per_s": rate, "round_trip_ms": latency}, indent=2))


if __name__ == "__main__":
    main()
