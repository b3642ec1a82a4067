"""MPI node packing: first fit by free nodes, no node shared by two MPI tasks (pure)."""

from __future__ import annotations

import pytest

from outpost_endpoint.engine.high_throughput.packing import is_mpi, nodes_needed, place

BLOCKS = {"b1": ["n1", "n2", "n3", "n4"], "b2": ["n5", "n6"]}


@pytest.mark.parametrize(
    ("need", "busy", "expected"),
    [
        (1, set(), ("b1", ["n1"])),
        (4, set(), ("b1", ["n1", "n2", "n3", "n4"])),
        (2, {"n1"}, ("b1", ["n2", "n3"])),
        (2, {"n1", "n2", "n3"}, ("b2", ["n5", "n6"])),  # b1 has one free node: next block
        (3, {"n2"}, ("b1", ["n1", "n3", "n4"])),  # free nodes need not be contiguous
        (3, {"n1", "n2"}, None),  # nowhere yet: wait
        (5, set(), None),
        (1, {"n1", "n2", "n3", "n4", "n5", "n6"}, None),
    ],
)
def test_place(need: int, busy: set[str], expected: tuple[str, list[str]] | None) -> None:
    assert place(need, BLOCKS, busy) == expected


def test_small_tasks_share_a_block_and_never_a_node() -> None:
    busy: dict[str, str] = {}
    placed: list[tuple[str, list[str]] | None] = []
    for task, need in enumerate([1, 2, 1, 2, 1]):
        answer = place(need, BLOCKS, set(busy))
        if answer is None:
            placed.append(None)
            continue
        for node in answer[1]:
            assert node not in busy
            busy[node] = str(task)
        placed.append(answer)
    assert placed == [
        ("b1", ["n1"]),
        ("b1", ["n2", "n3"]),
        ("b1", ["n4"]),
        ("b2", ["n5", "n6"]),
        None,  # all six nodes are held
    ]


def test_what_counts_as_mpi() -> None:
    assert is_mpi({"num_nodes": 2}) and is_mpi({"ranks_per_node": 4}) and is_mpi({"num_ranks": 8})
    assert not is_mpi({"walltime": 5})
    assert nodes_needed({"ranks_per_node": 4}) == 1
    with pytest.raises(ValueError, match="'two'"):
        nodes_needed({"num_nodes": "two"})
