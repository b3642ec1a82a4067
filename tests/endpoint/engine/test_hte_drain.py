"""Managers near the end of their block: they drain (start no new task) so work is not cut off
by the walltime, and the tasks go to another block; managers report the scheduler's node name."""

from __future__ import annotations

from pathlib import Path

import pytest

from outpost import MPIFunction
from outpost_endpoint.engine.high_throughput import strategy
from outpost_endpoint.errors import ConfigError

from . import tasks
from .conftest import EngineFactory, envelope, value, wait_until


def test_a_draining_block_takes_no_new_task_and_a_new_block_runs_it(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    # block-1 lives 30 s and drains for its last 25: room for one task at the start only
    engine = make_engine(
        max_workers_per_node=2,
        drain_period=25,
        provider={"walltime": "00:00:30", "min_blocks": 1, "max_blocks": 2},
    )
    gate, started = tmp_path / "gate", tmp_path / "started"
    first = engine.submit(envelope(tasks.hold, str(gate), str(started)))
    wait_until(started.exists, what="the first task to start")
    managers = wait_until(
        lambda: [m for m in engine.status()["managers"] if m["draining"]],
        what="block-1's manager to drain",
    )
    assert [m["block_id"] for m in managers] == ["block-1"]
    # block-1 has a free worker, but it drains: the task must wait for (and run on) a new block
    second = engine.submit(envelope(tasks.getenv, "OUTPOST_BLOCK_ID"))
    assert value(second.result(60)) == "block-2"
    gate.touch()
    assert value(first.result(60)) > 0  # the running task was not disturbed by the drain


def test_managers_report_the_schedulers_node_name(
    make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # under Slurm the host name ("vm" for every emulated node) can differ from the node name
    monkeypatch.setenv("SLURMD_NODENAME", "outpost-test-node7")
    engine = make_engine(max_workers_per_node=1)
    assert value(engine.submit(envelope(pow, 2, 3)).result(60)) == 8
    assert [m["hostname"] for m in engine.status()["managers"]] == ["outpost-test-node7"]


def test_a_drain_period_as_long_as_the_walltime_is_refused(make_engine: EngineFactory) -> None:
    with pytest.raises(ConfigError, match=r"engine\.drain_period of 60 s is not shorter"):
        make_engine(drain_period=60, provider={"walltime": "00:01:00"})


def test_draining_blocks_are_no_capacity_but_count_against_max_blocks() -> None:
    base = dict(outstanding=1, running_blocks=1, pending_blocks=0, min_blocks=1)
    assert strategy.blocks_to_add(strategy.ScaleInput(**base, max_blocks=2)) == 0
    draining = strategy.ScaleInput(**base, max_blocks=2, draining_blocks=1)
    assert strategy.blocks_to_add(draining) == 1
    capped = strategy.ScaleInput(**base, max_blocks=1, draining_blocks=1)
    assert strategy.blocks_to_add(capped) == 0


def test_mpi_tasks_get_the_configured_template_and_a_node_file_of_node_names(
    make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURMD_NODENAME", "outpost-test-node3")
    engine = make_engine(
        max_workers_per_node=1, mpi_launcher="env NODES={nodefile} RANKS={num_ranks}"
    )
    fn = MPIFunction("sh -c 'cat $NODES; echo ranks=$RANKS'")
    spec = {"num_nodes": 1, "ranks_per_node": 2}
    result = value(engine.submit(envelope(fn, spec=spec)).result(60))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["outpost-test-node3", "ranks=2"]
