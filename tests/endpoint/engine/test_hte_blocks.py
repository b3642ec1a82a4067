"""Blocks over their life: walltime end on the local provider, and a scheduler that loses track
of jobs cannot make the engine submit without bound."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from outpost_endpoint.config import parse_config
from outpost_endpoint.engine.high_throughput import HighThroughputEngine
from outpost_endpoint.engine.high_throughput.blocks import BlockBook
from outpost_endpoint.launchers.simple import SimpleLauncher
from outpost_endpoint.providers.base import BlockState, BlockStatus
from outpost_endpoint.providers.local import LocalProvider

from . import tasks
from .conftest import EngineFactory, envelope, value, wait_until


def test_local_block_ends_at_its_walltime_and_is_replaced(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    engine = make_engine(max_workers_per_node=1, drain_period=0, provider={"walltime": "00:00:02"})
    started = tmp_path / "started"
    future = engine.submit(envelope(tasks.hold, str(tmp_path / "never"), str(started)))
    result = future.result(60)
    assert result.error is not None and result.error.reason == "manager_lost"
    assert "block-1 ended: failed" in result.error.message
    assert "walltime" in engine.status()["blocks"][0]["message"]
    # the replacement block serves the next task
    assert value(engine.submit(envelope(pow, 2, 6)).result(60)) == 64


class ForgetfulProvider(LocalProvider):
    """A real local provider whose scheduler 'forgets' every job (reports LOST), as a
    scheduler blip or a purged job table would."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.submissions = 0

    def submit(self, command: str, block_id: str) -> str:
        self.submissions += 1
        return super().submit(command, block_id)

    def status(self, job_ids: Sequence[str]) -> dict[str, BlockStatus]:
        return {j: BlockStatus(BlockState.LOST, message="unknown job") for j in job_ids}


def test_jobs_the_scheduler_forgets_cannot_cause_runaway_submissions(tmp_path: Path) -> None:
    config = parse_config(
        {"engine": {"type": "high-throughput", "provider": {"min_blocks": 1, "max_blocks": 2}}}
    ).engine
    provider = ForgetfulProvider(run_dir=tmp_path, min_blocks=1, max_blocks=2)
    engine = HighThroughputEngine(
        config, tmp_path / "run", provider=provider, launcher=SimpleLauncher(), strategy_period=0.02
    )
    engine.start()
    try:
        for _ in range(3):
            engine.submit(envelope(pow, 2, 2))
        wait_until(lambda: engine.scale_rounds >= 100, what="100 scaling rounds")
        # every block looked gone on every query, yet within the window the engine submitted
        # no more than twice max_blocks
        assert provider.submissions == 4
    finally:
        engine.shutdown(wait=False)


def test_blocks_that_cannot_start_fail_the_waiting_tasks_with_the_reason(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine(provider={"worker_init": "echo 'no such env' >&2; exit 5"})
    result = engine.submit(envelope(pow, 2, 2)).result(120)
    assert result.error is not None and result.error.reason == "block_failed"
    assert "2 blocks in a row ended before their manager connected" in result.error.message
    assert "no such env" in result.error.message  # the tail of the block's log
    assert "worker_init" in result.error.message


def test_a_block_runs_once_its_manager_registers_whatever_a_late_scheduler_says() -> None:
    book = BlockBook()
    book.added("block-1", "job-1")
    block = book.blocks["block-1"]
    book.manager_registered("block-1")  # before the scheduler was asked again
    assert block.state == BlockState.RUNNING
    assert not book.update(block, BlockStatus(BlockState.PENDING))  # an answer from before
    assert block.state == BlockState.RUNNING
    assert book.update(block, BlockStatus(BlockState.COMPLETED))  # ends as usual
    book.manager_registered("block-1")  # a stale registration does not revive it
    assert block.state == BlockState.COMPLETED
    assert not book.any_serving()
