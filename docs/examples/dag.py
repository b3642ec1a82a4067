"""A three-level DAG of tasks that the service holds: submit it, exit, collect later.

    OUTPOST_URL=... OUTPOST_TOKEN=... python docs/examples/dag.py ENDPOINT_ID [WIDTH]

Level 1 loads ``WIDTH`` values, level 2 squares each (one parent each), level 3 sums them in
pairs (a *list* of futures as the argument: two parents).  Futures passed as arguments are
dependencies: the service keeps each child ``waiting`` until its parents succeeded, then sends
it with their results, so this script exits as soon as the service holds every task (it prints
the task group id).  Collect the results later, from any machine::

    from outpost import Executor
    with Executor(task_group_id=GROUP_ID) as ex:
        futures = ex.reload_tasks()        # waiting tasks come back as pending futures
        print([f.result() for f in futures[-(WIDTH // 2):]])

A task whose parent failed or was cancelled fails with ``outpost.errors.DependencyError``
naming that parent, and never runs.
"""

from __future__ import annotations

import sys
import uuid

from outpost import Executor


def load(i: int) -> int:
    return i


def square(x: int) -> int:
    return x * x


def total(values: list[int]) -> int:
    return sum(values)


def main(endpoint_id: str, width: int) -> str:
    group = str(uuid.uuid4())
    ex = Executor(endpoint_id=endpoint_id, task_group_id=group)
    loaded = [ex.submit(load, i) for i in range(width)]
    squared = [ex.submit(square, value) for value in loaded]
    sums = [ex.submit(total, squared[i : i + 2]) for i in range(0, width, 2)]
    for future in loaded + squared + sums:  # the service holds every task once it has its id
        future.task_id_ready.wait()
        if future.task_id is None:
            raise SystemExit(f"a task was not submitted: {future.exception()}")
    ex.shutdown(wait=False)  # do not wait for results: they wait in the service
    return group


if __name__ == "__main__":
    print(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10), flush=True)
