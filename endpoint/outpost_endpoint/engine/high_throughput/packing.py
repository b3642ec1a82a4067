"""Placing MPI tasks on the nodes of running blocks, first fit by free nodes (like Balsam).

An MPI task asks for ``num_nodes`` whole nodes; it is placed in the first block (in block order)
with that many nodes not held by another MPI task, so several small MPI tasks share a block and
no node is given to two of them.  Pure functions over plain data; the interchange keeps the
state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MPI_KEYS = ("num_nodes", "ranks_per_node", "num_ranks")


def is_mpi(spec: Mapping[str, Any]) -> bool:
    """Whether a resource specification asks for MPI ranks (and so for whole nodes)."""
    return any(spec.get(key) is not None for key in MPI_KEYS)


def nodes_needed(spec: Mapping[str, Any]) -> int:
    """Whole nodes an MPI task needs (``num_nodes``, default 1)."""
    value = spec.get("num_nodes", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"resource_specification['num_nodes'] must be a positive integer, got {value!r}"
        )
    return value


def place(
    need: int,
    blocks: Mapping[str, Sequence[str]],
    busy: Mapping[str, str] | set[str] | frozenset[str],
) -> tuple[str, list[str]] | None:
    """``(block id, nodes)`` for a task needing ``need`` nodes, or None if no block has that
    many free nodes now.  ``blocks`` maps block id to its node names in order; ``busy`` holds
    nodes already given to MPI tasks."""
    for block_id, nodes in blocks.items():
        free = [n for n in nodes if n not in busy]
        if len(free) >= need:
            return block_id, free[:need]
    return None


def fits_anywhere(need: int, nodes_per_block: int) -> bool:
    """Whether a task needing ``need`` nodes could ever run on blocks of this size."""
    return need <= nodes_per_block
