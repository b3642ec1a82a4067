"""A DAG the service holds against the same number of independent tasks, same stack, same run.

``python -m benchmarks.dependencies [--width 400] [--repeats 3]``: the DAG is
``docs/examples/dag.py`` (``width`` loads, ``width`` squares, ``width / 2`` pair sums: 2.5 x
``width`` tasks on three levels), submitted by a separate process that exits once the service
holds every task; this process then reloads the group and waits for every result.  The flat
run submits as many independent no-ops from this process and waits for them.  Reported: the
wall time of each (median of ``repeats``, the two kinds alternating) and their ratio, which
is what dependencies cost: the extra round trips per level at submit, the children's release
in the ingest transaction and the parents' values in the children's messages.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import show
from benchmarks.local_stack import Stack, outpost_stack
from outpost import Executor

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "dag.py"


def dag(stack: Stack, width: int) -> float:
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, str(EXAMPLE), stack.endpoint.endpoint_id, str(width)],
        env=stack.service.env(),
        capture_output=True,
        text=True,
        check=True,
    )
    group = run.stdout.strip().splitlines()[-1]
    with Executor(task_group_id=group, client=stack.client) as ex:
        futures = ex.reload_tasks()
        concurrent.futures.wait(futures)
    assert len(futures) == width * 5 // 2 and all(f.exception() is None for f in futures)
    return time.perf_counter() - start


def flat(stack: Stack, count: int) -> float:
    start = time.perf_counter()
    with Executor(endpoint_id=stack.endpoint.endpoint_id, client=stack.client) as ex:
        futures = [ex.submit(abs, -i) for i in range(count)]
        concurrent.futures.wait(futures)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    count = args.width * 5 // 2
    times: dict[str, list[float]] = {"dag": [], "flat": []}
    with outpost_stack("deps") as stack:
        for _ in range(args.repeats):
            times["dag"].append(dag(stack, args.width))
            times["flat"].append(flat(stack, count))
    dag_s, flat_s = statistics.median(times["dag"]), statistics.median(times["flat"])
    show(
        f"{count} tasks: three-level DAG held by the service vs independent tasks",
        [
            ("DAG, submitter exits (median)", f"{dag_s:.2f} s  {times['dag']}"),
            ("independent (median)", f"{flat_s:.2f} s  {times['flat']}"),
            ("ratio DAG / independent", f"{dag_s / flat_s:.2f}"),
        ],
    )


if __name__ == "__main__":
    main()
