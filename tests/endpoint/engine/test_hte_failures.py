"""Lost managers and ended blocks: their tasks are retried on a new manager or failed with
``manager_lost``, never left hanging."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from outpost.protocol import TaskState
from outpost_endpoint.engine.high_throughput import HighThroughputEngine

from . import tasks
from .conftest import EngineFactory, envelope, value, wait_until


def _manager_pid(engine: HighThroughputEngine) -> int:
    managers = wait_until(lambda: engine.status()["managers"], what="a manager")
    return int(managers[0]["manager_id"].split(".")[-2])


def test_killed_manager_task_is_retried_on_a_new_manager(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    engine = make_engine(max_workers_per_node=1, max_retries=1)
    started, gate = tmp_path / "started", tmp_path / "gate"
    future = engine.submit(envelope(tasks.hold, str(gate), str(started)))
    wait_until(lambda: started.exists() and started.read_text(), what="task start")
    first = _manager_pid(engine)
    started.unlink()
    gate.touch()  # the retry must be able to finish; the first run dies with its manager
    os.kill(first, signal.SIGKILL)
    result = future.result(90)
    assert result.state == TaskState.SUCCESS, result.error
    assert value(result) != 0
    blocks = engine.status()["blocks"]
    assert blocks[0]["state"] == "failed"  # the block's job ended with its manager
    assert any(b["state"] == "running" for b in blocks[1:])


def test_killed_manager_without_retries_fails_with_manager_lost(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    engine = make_engine(max_workers_per_node=1)
    started, gate = tmp_path / "started", tmp_path / "gate"
    future = engine.submit(envelope(tasks.hold, str(gate), str(started)))
    wait_until(lambda: started.exists() and started.read_text(), what="task start")
    os.kill(_manager_pid(engine), signal.SIGKILL)
    result = future.result(90)
    gate.touch()
    assert result.state == TaskState.FAILED
    assert result.error is not None and result.error.reason == "manager_lost"
    assert result.error.type == "outpost.errors.ManagerLost"
    assert "block-1 ended" in result.error.message
    # the engine keeps serving on a fresh block
    assert value(engine.submit(envelope(pow, 5, 2)).result(90)) == 25


def test_silent_manager_is_declared_lost_after_the_threshold(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    engine = make_engine(max_workers_per_node=1, heartbeat_period=0.1, heartbeat_threshold=1.0)
    started, gate = tmp_path / "started", tmp_path / "gate"
    future = engine.submit(envelope(tasks.hold, str(gate), str(started)))
    wait_until(lambda: started.exists() and started.read_text(), what="task start")
    pid = _manager_pid(engine)
    os.kill(pid, signal.SIGSTOP)  # alive to the scheduler, silent to the interchange
    try:
        result = future.result(60)
    finally:
        os.kill(pid, signal.SIGCONT)
        gate.touch()
    assert result.error is not None and result.error.reason == "manager_lost"
    assert "no heartbeat" in result.error.message


def test_block_that_ends_frees_its_tasks(make_engine: EngineFactory, tmp_path: Path) -> None:
    engine = make_engine(max_workers_per_node=1)
    started, gate = tmp_path / "started", tmp_path / "gate"
    future = engine.submit(envelope(tasks.hold, str(gate), str(started)))
    wait_until(lambda: started.exists() and started.read_text(), what="task start")
    job = engine.status()["blocks"][0]["job_id"]
    os.killpg(int(job), signal.SIGKILL)  # the whole block's process group, as a scheduler would
    result = future.result(60)
    assert result.error is not None and result.error.reason == "manager_lost"
    assert "block-1 ended: failed" in result.error.message
