"""Functions the endpoint tests send as tasks (shipped by value, so workers need not import us)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import cloudpickle


class CampaignError(Exception):
    """An exception class of the tests: the endpoint must keep its name and pickle it."""


def square(x: int) -> int:
    return x * x


def fail(message: str) -> None:
    raise CampaignError(message)


def exit_now(code: int) -> None:
    os._exit(code)


def make_lock() -> threading.Lock:
    return threading.Lock()


def wait_for_file(path: str, value: int = 0) -> int:
    """Block until ``path`` exists: a task the test releases when it is ready."""
    while not Path(path).exists():
        time.sleep(0.05)
    return value


def announce_and_wait(fifo: str, gate: str, value: int = 0) -> int:
    """Tell the test we are running (a byte into ``fifo``), then wait for ``gate``."""
    with open(fifo, "wb") as handle:
        handle.write(b"1")
    return wait_for_file(gate, value)


def record_run(path: str, gate: str) -> int:
    """Append a line to ``path`` each time it runs, then wait for ``gate``."""
    with open(path, "a") as handle:
        handle.write("ran\n")
    return wait_for_file(gate, 3)


def counted_square(path: str, x: int) -> int:
    """Append a line to ``path`` each time it runs (a side effect a test counts), return x*x."""
    with open(path, "a") as handle:
        handle.write("ran\n")
    return x * x


cloudpickle.register_pickle_by_value(__import__(__name__))


def resource_specification_seen() -> str | None:
    """What the worker told the task about its resource specification."""
    return os.environ.get("OUTPOST_RESOURCE_SPECIFICATION")


def add_all(values: list[Any], extra: dict[str, int]) -> int:
    """Sums ``values`` (numbers, or tuples of numbers) and ``extra``'s values."""
    flat = [v for item in values for v in (item if isinstance(item, tuple) else (item,))]
    return sum(flat) + sum(extra.values())
