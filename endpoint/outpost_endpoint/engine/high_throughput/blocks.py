"""Block bookkeeping: which blocks the engine asked for and what the provider last said.

A block's state only moves on a definite answer: ``UNKNOWN`` (the scheduler could not be asked)
keeps the last known state, so a scheduler blip neither frees tasks nor triggers submissions.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from outpost_endpoint.providers.base import BlockState, BlockStatus


@dataclass
class Block:
    block_id: str
    job_id: str
    submitted_at: float = field(default_factory=time.monotonic)
    state: BlockState = BlockState.PENDING
    message: str = ""
    cancel_requested: bool = False


class BlockBook:
    def __init__(self, submit_window: float = 60.0) -> None:
        self.blocks: dict[str, Block] = {}
        self.submit_window = submit_window
        self._submissions: deque[float] = deque()
        self._counter = 0

    def new_id(self) -> str:
        self._counter += 1
        return f"block-{self._counter}"

    def added(self, block_id: str, job_id: str) -> None:
        self.blocks[block_id] = Block(block_id, job_id)
        self._submissions.append(time.monotonic())

    def recent_submissions(self) -> int:
        cutoff = time.monotonic() - self.submit_window
        while self._submissions and self._submissions[0] < cutoff:
            self._submissions.popleft()
        return len(self._submissions)

    # The scaling thread changes the book; heartbeats read it from another thread, so readers
    # iterate over a snapshot (list() of a dict's values is taken under the GIL at once).
    def live(self) -> list[Block]:
        return [b for b in list(self.blocks.values()) if not b.state.is_terminal]

    def any_serving(self) -> bool:
        """Whether a block is pending or running and not being released."""
        return any(
            not b.state.is_terminal and not b.cancel_requested for b in list(self.blocks.values())
        )

    def count(self, state: BlockState) -> int:
        return sum(1 for b in list(self.blocks.values()) if b.state == state)

    def update(self, block: Block, status: BlockStatus) -> bool:
        """Apply a status; True if the block has just ended."""
        if status.state == BlockState.UNKNOWN or status.state == block.state:
            return False
        if status.state == BlockState.PENDING and block.state == BlockState.RUNNING:
            return False  # a scheduler's answer older than the manager that registered
        was_terminal = block.state.is_terminal
        block.state, block.message = status.state, status.message
        return status.state.is_terminal and not was_terminal

    def manager_registered(self, block_id: str) -> None:
        """A manager of ``block_id`` registered: the block runs, even if the scheduler was
        last asked before it started (managers start faster than the scaler asks)."""
        block = self.blocks.get(block_id)
        if block is not None and block.state == BlockState.PENDING:
            block.state = BlockState.RUNNING

    def describe(self) -> list[dict[str, object]]:
        return [
            {
                "block_id": b.block_id,
                "job_id": b.job_id,
                "state": b.state.value,
                "message": b.message,
            }
            for b in list(self.blocks.values())
        ]
