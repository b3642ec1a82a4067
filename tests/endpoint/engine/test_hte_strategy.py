"""Scaling decisions: pure function tables."""

from __future__ import annotations

import pytest

from outpost_endpoint.engine.high_throughput.strategy import (
    BlockLoad,
    ScaleInput,
    blocks_to_add,
    blocks_to_release,
)


def scale(**kw: object) -> int:
    base: dict[str, object] = {
        "outstanding": 0, "running_blocks": 0, "pending_blocks": 0, "min_blocks": 0,
        "max_blocks": 4, "nodes_per_block": 1, "workers_per_node": 4,
    }  # fmt: skip
    base.update(kw)
    return blocks_to_add(ScaleInput(**base))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ({}, 0),  # nothing to do
        ({"min_blocks": 2}, 2),  # min_blocks at start
        ({"min_blocks": 2, "running_blocks": 1}, 1),
        ({"outstanding": 1}, 1),
        ({"outstanding": 4}, 1),  # one block of 4 workers is enough
        ({"outstanding": 5}, 2),
        ({"outstanding": 100}, 4),  # capped by max_blocks
        ({"outstanding": 100, "running_blocks": 3}, 1),
        ({"outstanding": 100, "running_blocks": 4}, 0),
        ({"outstanding": 8, "pending_blocks": 2}, 0),  # pending blocks count as capacity
        ({"outstanding": 9, "pending_blocks": 2}, 1),
        ({"outstanding": 16, "nodes_per_block": 2}, 2),  # 8 slots per block
        ({"outstanding": 16, "parallelism": 0.5}, 2),  # half a slot per task
        ({"outstanding": 16, "parallelism": 0}, 0),  # parallelism 0: only min_blocks
        ({"outstanding": 16, "parallelism": 0, "min_blocks": 1}, 1),
        ({"outstanding": 100, "recent_submissions": 7}, 1),  # cap: 2 x max_blocks per window
        ({"outstanding": 100, "recent_submissions": 8}, 0),  # a blip cannot run away
        ({"outstanding": 100, "max_submissions": 2}, 2),
        ({"outstanding": 100, "max_queued_blocks": 1}, 1),  # site queue limit
        ({"outstanding": 100, "max_queued_blocks": 2, "pending_blocks": 2}, 0),
        ({"outstanding": 3, "max_blocks": 0}, 0),
    ],
)
def test_blocks_to_add(case: dict[str, object], expected: int) -> None:
    assert scale(**case) == expected


def test_many_tasks_never_exceed_max_blocks() -> None:
    for outstanding in range(0, 200, 7):
        for running in range(0, 5):
            added = scale(outstanding=outstanding, running_blocks=running)
            assert 0 <= added <= 4 - running


IDLE = BlockLoad(busy_tasks=0, idle_seconds=300)
FRESH = BlockLoad(busy_tasks=0, idle_seconds=5)
BUSY = BlockLoad(busy_tasks=2, idle_seconds=0)


@pytest.mark.parametrize(
    ("blocks", "queued", "min_blocks", "expected"),
    [
        ({}, 0, 0, []),
        ({"a": IDLE}, 0, 0, ["a"]),
        ({"a": IDLE}, 0, 1, []),  # keep min_blocks
        ({"a": IDLE, "b": IDLE}, 0, 1, ["a"]),
        ({"a": FRESH}, 0, 0, []),  # not idle long enough
        ({"a": BUSY}, 0, 0, []),  # never release a block with running tasks
        ({"a": BUSY, "b": IDLE}, 0, 0, ["b"]),
        ({"a": BUSY, "b": IDLE}, 0, 1, ["b"]),  # the busy block counts toward min_blocks
        ({"a": IDLE}, 3, 0, []),  # queued tasks will go to it
        (
            {"a": BlockLoad(0, 200), "b": BlockLoad(0, 400), "c": BlockLoad(0, 300)},
            0,
            1,
            ["b", "c"],
        ),  # longest idle first
    ],
)
def test_blocks_to_release(
    blocks: dict[str, BlockLoad], queued: int, min_blocks: int, expected: list[str]
) -> None:
    assert (
        blocks_to_release(
            blocks, outstanding_queued=queued, min_blocks=min_blocks, max_idletime=120
        )
        == expected
    )
