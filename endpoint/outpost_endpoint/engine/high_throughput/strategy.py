"""Scaling decisions as pure functions: how many blocks to ask for, which idle blocks to release.

Like Parsl's simple strategy (slots needed = outstanding tasks x ``parallelism``, minus the slots
of running and pending blocks), with three promises Parsl does not make:

* only blocks with no running or queued task on them are released (a scale-in never kills work);
* submissions are capped per time window (``max_submissions`` per ``submit_window``), so a
  scheduler blip that makes blocks look gone cannot cause a runaway scale-out;
* the site's limit on queued jobs (``max_queued_blocks``) is respected.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ScaleInput:
    outstanding: int  # tasks queued in the interchange + running on workers
    running_blocks: int
    pending_blocks: int
    min_blocks: int
    max_blocks: int
    nodes_per_block: int = 1
    workers_per_node: int = 1
    parallelism: float = 1.0
    recent_submissions: int = 0  # blocks submitted during the current submit window
    max_submissions: int | None = None  # per window; None = 2 x max_blocks
    max_queued_blocks: int | None = None
    #: running blocks within their drain period: they hold nodes (count against max_blocks)
    #: but take no new task (no capacity for the outstanding ones)
    draining_blocks: int = 0


def blocks_to_add(s: ScaleInput) -> int:
    """How many new blocks to submit now (never negative)."""
    active = s.running_blocks + s.pending_blocks
    room = s.max_blocks - active
    if room <= 0:
        return 0
    wanted = max(s.min_blocks - active, 0)
    if s.outstanding > 0 and s.parallelism > 0:
        per_block = max(s.nodes_per_block * s.workers_per_node, 1)
        needed_slots = math.ceil(s.outstanding * min(s.parallelism, 1.0))
        needed_blocks = max(math.ceil(needed_slots / per_block), 1)
        wanted = max(wanted, needed_blocks - (active - s.draining_blocks))
    add = min(wanted, room)
    # Default cap: every block may be replaced once per window (a block that ended is replaced
    # at once), but a loop of vanishing or failing blocks stalls after that.
    cap = 2 * s.max_blocks if s.max_submissions is None else s.max_submissions
    add = min(add, max(cap - s.recent_submissions, 0))
    if s.max_queued_blocks is not None:
        add = min(add, max(s.max_queued_blocks - s.pending_blocks, 0))
    return max(add, 0)


@dataclass(frozen=True)
class BlockLoad:
    """What the interchange knows about one running block."""

    busy_tasks: int  # tasks running on (or sent to) its managers
    idle_seconds: float  # how long it has had no task at all


def blocks_to_release(
    blocks: Mapping[str, BlockLoad],
    *,
    outstanding_queued: int,
    min_blocks: int,
    max_idletime: float,
) -> list[str]:
    """Ids of running blocks to cancel: idle (no task) for ``max_idletime`` seconds or more,
    never going below ``min_blocks``, and none while tasks wait in the queue (they would be
    sent to that block next).  Longest-idle first, ids sorted for determinism."""
    if outstanding_queued > 0:
        return []
    candidates = sorted(
        (
            b
            for b, load in blocks.items()
            if load.busy_tasks == 0 and load.idle_seconds >= max_idletime
        ),
        key=lambda b: (-blocks[b].idle_seconds, b),
    )
    keep = max(min_blocks, 0)
    removable = max(len(blocks) - keep, 0)
    return candidates[:removable]
