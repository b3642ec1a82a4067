"""Generator tasks: new work made from the results of earlier work, a window at a time.

    OUTPOST_URL=... OUTPOST_TOKEN=... python docs/examples/generator.py ENDPOINT_ID [ROUNDS]

A campaign that cannot be written down in advance (adaptive sampling, a search): a generator
yields the next candidates from what came back so far, and a bounded number of tasks is kept
in flight (``WINDOW``), so a campaign of any length never floods the queue.  Each finished task
lets the generator yield more.  Prints the best value found.
"""

from __future__ import annotations

import concurrent.futures
import sys
from collections.abc import Iterator

from outpost import Executor

WINDOW = 8


def score(x: int) -> int:
    """The expensive evaluation (here: a parabola with its top at 37)."""
    return -((x - 37) ** 2)


def candidates(best: dict[str, int], rounds: int) -> Iterator[int]:
    """Yields points around the best so far (read as results arrive)."""
    for step in range(rounds):
        yield best["x"] + (step % 7) - 3


def main(endpoint_id: str, rounds: int) -> tuple[int, int]:
    best = {"x": 0, "score": score(0)}
    with Executor(endpoint_id=endpoint_id) as ex:
        points = candidates(best, rounds)
        running = {ex.submit(score, x): x for x in [next(points) for _ in range(WINDOW)]}
        while running:
            done, _ = concurrent.futures.wait(running, return_when="FIRST_COMPLETED")
            for future in done:
                x = running.pop(future)
                if future.result() > best["score"]:
                    best.update(x=x, score=future.result())
                nxt = next(points, None)
                if nxt is not None:
                    running[ex.submit(score, nxt)] = nxt
    return best["x"], best["score"]


if __name__ == "__main__":
    print(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 200), flush=True)
