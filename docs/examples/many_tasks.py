"""Many independent tasks: submit them all, then read the results as they come.

    OUTPOST_URL=... OUTPOST_TOKEN=... python docs/examples/many_tasks.py ENDPOINT_ID [COUNT]

The executor batches the submits (many tasks per HTTP request); ``as_completed`` hands back each
result as soon as it is stored.  Prints the sum of the squares.
"""

from __future__ import annotations

import concurrent.futures
import sys

from outpost import Executor


def square(x: int) -> int:
    return x * x


def main(endpoint_id: str, count: int) -> int:
    with Executor(endpoint_id=endpoint_id) as ex:
        futures = [ex.submit(square, i) for i in range(count)]
        return sum(f.result() for f in concurrent.futures.as_completed(futures))


if __name__ == "__main__":
    print(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 100), flush=True)
