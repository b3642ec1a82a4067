"""Worker layout on a node: worker count, accelerators, CPU affinity (pure)."""

from __future__ import annotations

import pytest

from outpost_endpoint.engine.high_throughput.layout import (
    assign_cores,
    check_affinity,
    parse_affinity_list,
    plan_workers,
    worker_count,
)


@pytest.mark.parametrize(
    ("max_per_node", "accelerators", "cores", "expected"),
    [
        (None, [], 8, 8),
        (3, [], 8, 3),
        (None, ["0", "1", "2", "3"], 64, 4),  # the seed's Polaris node: one worker per GPU
        (2, ["0", "1", "2", "3"], 64, 2),
        (8, ["0", "1"], 64, 2),  # never more workers than devices
        (None, [], 0, 1),
    ],
)
def test_worker_count(
    max_per_node: int | None, accelerators: list[str], cores: int, expected: int
) -> None:
    assert worker_count(max_per_node, accelerators, cores) == expected


CORES = list(range(8))


@pytest.mark.parametrize(
    ("affinity", "workers", "expected"),
    [
        ("none", 2, [(), ()]),
        ("block", 2, [(0, 1, 2, 3), (4, 5, 6, 7)]),
        ("block", 3, [(0, 1), (2, 3), (4, 5)]),
        ("block-reverse", 2, [(4, 5, 6, 7), (0, 1, 2, 3)]),
        ("alternating", 2, [(0, 2, 4, 6), (1, 3, 5, 7)]),
        ("alternating", 4, [(0, 4), (1, 5), (2, 6), (3, 7)]),
        ("block", 10, [(i % 8,) for i in range(10)]),  # more workers than cores: share
        ("list:0-1:6,7", 2, [(0, 1), (6, 7)]),
        ("list:3", 2, [(3,), (3,)]),
    ],
)
def test_assign_cores(affinity: str, workers: int, expected: list[tuple[int, ...]]) -> None:
    assert assign_cores(affinity, CORES, workers) == expected


def test_plan_workers_gives_each_worker_one_device_and_its_threads() -> None:
    slots = plan_workers(
        max_workers_per_node=None,
        accelerators=["0", "1", "2", "3"],
        cpu_affinity="alternating",
        cores=range(64),
    )
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0", "1", "2", "3"]
    assert all(s.env["OMP_NUM_THREADS"] == "16" for s in slots)
    assert slots[1].cores[:3] == (1, 5, 9)
    intel = plan_workers(
        max_workers_per_node=None,
        accelerators=["0.0", "0.1"],
        cpu_affinity="none",
        cores=range(4),
        accelerator_variable="ZE_AFFINITY_MASK",
    )
    assert [s.env for s in intel] == [{"ZE_AFFINITY_MASK": "0.0"}, {"ZE_AFFINITY_MASK": "0.1"}]


@pytest.mark.parametrize("bad", ["list:", "list:a", "list:3-1", "list:0,,1", "blocky"])
def test_bad_affinity_is_refused_with_the_value(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        check_affinity(bad)
    assert bad in str(info.value) or "one of" in str(info.value)


def test_parse_affinity_list() -> None:
    assert parse_affinity_list("list:0-2,8:4") == [(0, 1, 2, 8), (4,)]
