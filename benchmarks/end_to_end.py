"""Benchmark 2, end to end: SDK -> service -> RabbitMQ -> endpoint -> engine -> back.

N no-op tasks from one client (``Executor.submit`` in a loop); the figure is N / (first submit
-> last result) and the time to the last result.  In the same run, the raw-pika physical limit
(:mod:`benchmarks.raw_pika`) moves N messages of the same sizes as Outpost's task and result
messages over the same two broker hops; the ratio Outpost / raw is reported per run.

Each run also charges CPU to the stack's processes (``/proc``: user + system seconds before and
after, divided by N): client, service, RabbitMQ (when it runs on this host), endpoint daemon and
the engine's managers and workers.  On a shared machine the rate swings with the load; CPU
milliseconds per task per process are what to compare between versions.
"""

from __future__ import annotations

import concurrent.futures
import time
import uuid
from typing import Any

from benchmarks import raw_pika
from benchmarks.common import AMQP_URL, fmt, ratios, show, summary
from benchmarks.local_stack import cpu_seconds, outpost_stack
from benchmarks.peer_runner import noop
from outpost import Executor
from outpost.protocol import ResultEnvelope, TaskEnvelope, TaskState, serialize


def message_sizes() -> tuple[int, int]:
    """Bytes of a no-op task message and of its result message, as Outpost sends them."""
    task = TaskEnvelope(
        str(uuid.uuid4()), "f" * 64, serialize(noop), serialize(((), {})), str(uuid.uuid4())
    )
    result = ResultEnvelope(
        task.task_id, task.endpoint_id, TaskState.SUCCESS, value=serialize(None)
    )
    return len(task.to_bytes()), len(result.to_bytes())


def measure(
    runs: int, tasks: int, *, engine: str | None = None, prefetch_capacity: int | None = None
) -> dict[str, Any]:
    """``runs`` runs of ``tasks`` no-ops through a local stack whose endpoint uses ``engine``
    with ``prefetch_capacity`` (None: the configure template's defaults)."""
    task_size, result_size = message_sizes()
    rates: list[float] = []
    seconds: list[float] = []
    raw_rates: list[float] = []
    cpu_ms: dict[str, list[float]] = {}
    with (
        outpost_stack("bench-e2e", engine, prefetch_capacity) as stack,
        Executor(stack.endpoint.endpoint_id, stack.client) as ex,
    ):
        ex.submit(noop).result(timeout=120)  # workers, connections, function registered
        for index in range(runs):
            processes = stack.processes()
            before = {role: sum(map(cpu_seconds, pids)) for role, pids in processes.items()}
            start = time.perf_counter()
            futures = [ex.submit(noop) for _ in range(tasks)]
            done, _ = concurrent.futures.wait(futures, timeout=max(600, tasks / 50))
            elapsed = time.perf_counter() - start
            for role, pids in processes.items():
                used = sum(map(cpu_seconds, pids)) - before[role]
                cpu_ms.setdefault(role, []).append(used * 1000 / tasks)
            failed = [f for f in futures if f not in done or f.exception() is not None]
            if failed:
                raise RuntimeError(f"{len(failed)} of {tasks} tasks failed or timed out")
            rates.append(tasks / elapsed)
            seconds.append(elapsed)
            raw_rates.append(raw_pika.measure(AMQP_URL, tasks, task_size, result_size)["rate"])
            print(f"  end-to-end run {index + 1}/{runs} done", flush=True)
    return {
        "tasks": tasks,
        "runs": runs,
        "engine": engine or "high-throughput (template default)",
        "prefetch_capacity": prefetch_capacity,
        "message_bytes": {"task": task_size, "result": result_size},
        "outpost_tasks_per_s": summary(rates),
        "outpost_seconds_to_last_result": summary(seconds),
        "raw_pika_round_trips_per_s": summary(raw_rates),
        "ratio_outpost_to_raw_pika": ratios(rates, raw_rates),
        "cpu_ms_per_task": {role: summary(values) for role, values in cpu_ms.items()},
        "cpu_ms_per_task_total": summary([sum(run) for run in zip(*cpu_ms.values(), strict=True)]),
    }


def report(result: dict[str, Any]) -> None:
    show(
        f"end to end, {result['tasks']} no-op tasks, one client",
        [
            ("outpost", fmt(result["outpost_tasks_per_s"], " tasks/s")),
            ("outpost time to last result", fmt(result["outpost_seconds_to_last_result"], " s", 2)),
            ("raw pika, same sizes + confirms", fmt(result["raw_pika_round_trips_per_s"], " /s")),
            ("ratio outpost / raw pika", fmt(result["ratio_outpost_to_raw_pika"], "x", 3)),
            *(
                (f"CPU per task: {role}", fmt(stats, " ms", 3))
                for role, stats in result.get("cpu_ms_per_task", {}).items()
            ),
            ("CPU per task: all of them", fmt(result.get("cpu_ms_per_task_total", {}), " ms", 3)),
        ],
    )
