"""The README demo: what a scientist writes on a laptop, run against the local endpoint."""

from __future__ import annotations

import sys
import time

from outpost import Client, Executor, ShellFunction


def square(x: int) -> int:
    return x * x


def fails() -> None:
    raise ValueError("this task failed on purpose")


def main(endpoint_id: str) -> None:
    client = Client()  # from OUTPOST_URL / OUTPOST_TOKEN
    with Executor(endpoint_id=endpoint_id, client=client) as ex:
        start = time.perf_counter()
        print("pow(2, 10) =", ex.submit(pow, 2, 10).result(timeout=60))
        print("squares:", list(ex.map(square, range(10), timeout=60)))
        shell = ex.submit(ShellFunction("echo hello from $(hostname)")).result(timeout=60)
        print(f"shell: returncode={shell.returncode} stdout={shell.stdout.strip()!r}")
        failing = ex.submit(fails)
        print("a failing task raised:", repr(failing.exception(timeout=60)))
        futures = [ex.submit(square, i) for i in range(200)]
        total = sum(f.result(timeout=120) for f in futures)
        elapsed = time.perf_counter() - start
        print(f"sum of 200 squares = {total}; all tasks done in {elapsed:.2f} s")
        print("task group (collect later with Executor(task_group_id=...).reload_tasks()):")
        print("   ", ex.task_group_id)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: demo.py ENDPOINT_ID")
    main(sys.argv[1])
