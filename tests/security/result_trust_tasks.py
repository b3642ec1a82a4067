"""Task functions for ``test_sec_result_trust.py``, run by a real endpoint's workers.

They live in their own small module so a worker imports them (by reference) without the test
module's fixtures.  ``Booby`` and ``BoobyError`` pickle to a call of :func:`leave_marker`: loading
either anywhere leaves the file ``<folder>/<pid of the loading process>`` -- the sign that a
result's pickle ran code in that process.
"""

from __future__ import annotations

import os
from typing import Any


def leave_marker(folder: str) -> BoobyError:
    """What unpickling a booby-trapped value runs: proof that the pickle was loaded, and where."""
    with open(os.path.join(folder, str(os.getpid())), "w") as handle:
        handle.write("a result's pickle ran code in this process\n")
    return BoobyError(folder)


class Booby:
    """A value whose pickle runs :func:`leave_marker` when loaded."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def __reduce__(self) -> tuple[Any, ...]:
        return (leave_marker, (self.folder,))


class BoobyError(Exception):
    """An exception whose pickle runs :func:`leave_marker` when loaded."""

    def __init__(self, folder: str) -> None:
        super().__init__(f"booby-trapped exception ({folder})")
        self.folder = folder

    def __reduce__(self) -> tuple[Any, ...]:
        return (leave_marker, (self.folder,))


def booby_result(folder: str) -> Booby:
    return Booby(folder)


def booby_error(folder: str) -> None:
    raise BoobyError(folder)


def plain_result(n: int) -> dict[str, Any]:
    """Plain data: the endpoint writes it as JSON."""
    return {"n": n, "squares": [i * i for i in range(n)], "ok": True, "none": None, "x": 0.5}


def set_result(n: int) -> set[int]:
    """Not plain data (a set): the endpoint pickles it."""
    return set(range(n))


def plain_error(n: int) -> None:
    raise ValueError(f"bad n: {n}")
