"""Run one benchmark round on an Outpost engine, in process, as :mod:`peer_runner` does on a peer.

The engine is driven exactly as the endpoint drives it: ``engine.submit(TaskEnvelope)`` returns a
future per task; no RabbitMQ or service is involved.  The task mixes are the very functions of
:mod:`benchmarks.peer_runner`, serialized once per function (the endpoint's function cache does
the same) with per-task argument payloads.  Prints one JSON object on the last line of stdout.

Run: ``.venv/bin/python -m benchmarks.outpost_engine_runner [--engine process-pool] ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import uuid
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from benchmarks.peer_runner import mix_calls, noop, percentile
from outpost.protocol import ResultEnvelope, TaskEnvelope, TaskState, serialize
from outpost_endpoint.config import EngineConfig
from outpost_endpoint.engine.base import Engine
from outpost_endpoint.engine.registry import ENGINES, build_engine

_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int | None = None) -> float:
    """User + system CPU seconds of ``root`` (this process) and every live descendant: the
    interchange thread, the block's manager and its workers.  Read from ``/proc`` so the
    figure holds on a shared machine where wall-clock rates swing with other people's load."""
    root = os.getpid() if root is None else root
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / _TICKS
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0.0)
        todo.extend(child for child, parent in parents.items() if parent == pid)
    return total


def available_engines() -> list[str]:
    """The engine types this checkout can build (the high-throughput one once it has landed)."""
    found = set(ENGINES)
    try:
        from outpost_endpoint.engine.high_throughput import HighThroughputEngine  # noqa: F401
    except ImportError:
        pass
    else:
        found.add("high-throughput")
    return sorted(found)


def make_engine(kind: str, workers: int, run_dir: str) -> Engine:
    """``kind`` with ``workers`` workers on this machine (one local block for high-throughput)."""
    config = EngineConfig(type=kind, max_workers=workers, max_workers_per_node=workers)
    try:
        return build_engine(config, Path(run_dir))  # type: ignore[call-arg, unused-ignore]
    except TypeError:  # a registry without run_dir
        return build_engine(config)


class Driver:
    """Submits tasks of one function to ``engine`` as the endpoint would."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._functions: dict[Any, bytes] = {}

    def submit(self, fn: Any, *args: Any) -> Future[ResultEnvelope]:
        function = self._functions.get(fn)
        if function is None:
            function = self._functions[fn] = serialize(fn)
        task = TaskEnvelope(
            task_id=str(uuid.uuid4()),
            function_id=fn.__name__,
            function=function,
            args=serialize((args, {})),
            endpoint_id="benchmark",
        )
        return self.engine.submit(task)

    @staticmethod
    def wait_all(futures: list[Future[ResultEnvelope]]) -> None:
        for future in futures:
            result = future.result()
            if result.state is not TaskState.SUCCESS:
                raise RuntimeError(f"task {result.task_id} ended {result.state}: {result.error}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    run_dir = tempfile.mkdtemp(prefix="outpost-bench-engine-")
    started = time.perf_counter()
    engine = make_engine(args.engine, args.workers, run_dir)
    engine.start()
    driver = Driver(engine)
    try:
        driver.wait_all([driver.submit(noop)])
        cold_start = time.perf_counter() - started
        mixes: dict[str, Any] = {}
        for spec in args.mix:
            mix, count = spec.split("=")
            fn, fn_args = mix_calls(mix)
            driver.wait_all([driver.submit(fn, *fn_args) for _ in range(args.workers)])  # warm
            cpu = tree_cpu_seconds()
            begin = time.perf_counter()
            driver.wait_all([driver.submit(fn, *fn_args) for _ in range(int(count))])
            elapsed = time.perf_counter() - begin
            cpu_ms = (tree_cpu_seconds() - cpu) * 1000 / int(count)
            mixes[mix] = {
                "tasks": int(count),
                "seconds": elapsed,
                "rate": int(count) / elapsed,
                # every process of the engine, the driver's serialization included
                "cpu_ms_per_task": cpu_ms,
            }
        latency: dict[str, float] = {}
        if args.round_trips:
            samples = []
            for _ in range(args.round_trips):
                begin = time.perf_counter()
                driver.wait_all([driver.submit(noop)])
                samples.append((time.perf_counter() - begin) * 1000)
            latency = {q: percentile(samples, v) for q, v in (("p50", 0.5), ("p95", 0.95))}
            latency["p99"] = percentile(samples, 0.99)
    finally:
        engine.shutdown(wait=True, timeout=30)
        shutil.rmtree(run_dir, ignore_errors=True)
    return {
        "peer": f"outpost-{args.engine}",
        "version": "checkout",
        "workers": args.workers,
        "cold_start_s": cold_start,
        "mixes": mixes,
        "round_trip_ms": latency,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="process-pool", choices=available_engines())
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mix", action="append", default=[], help="MIX=COUNT, repeatable")
    parser.add_argument("--round-trips", type=int, default=0)
    print("\n" + json.dumps(run(parser.parse_args())))


if __name__ == "__main__":
    main()
