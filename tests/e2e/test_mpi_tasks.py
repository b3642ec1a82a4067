"""MPIFunction tasks through an endpoint whose high-throughput engine gets 2-node blocks from the
real one-node Slurm cluster (partition ``multi``: emulated nodes fake1, fake2).

The managers report the scheduler's node names (every emulated node's host name is ``vm``), the
MPI template is the one detected inside the block (``srun ... --nodelist=NODEFILE``), and MPI
tasks are packed onto whole nodes: one 2-node task spreads its ranks 2+2, two 1-node tasks run
at the same time in one block, each on its own node.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path
from typing import Any

import pytest

from outpost import Client, Executor, MPIFunction

from ..recipes import ensure_slurm
from .stack import RunningService
from .test_schedulers import service, start_endpoint, stop_endpoint  # noqa: F401

pytestmark = pytest.mark.e2e

WAIT = 240


def _edit(data: dict[str, Any]) -> None:
    engine = data["engine"]
    engine.update(max_workers_per_node=2, max_idletime=30)
    provider = engine["provider"]
    provider.pop("account")
    provider.update(
        partition="multi",
        nodes_per_block=2,
        cpus_per_node=4,  # the block holds 4 CPUs per node: room for 2 ranks per node
        exclusive=False,
        worker_init="",
        walltime="00:05:00",
        min_blocks=1,
        max_blocks=1,
    )


def _wait_for(path_glob: Path, count: int, deadline: float) -> list[Path]:
    while time.monotonic() < deadline:
        found = sorted(path_glob.parent.glob(path_glob.name))
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"only {len(found)} of {count} files {path_glob} appeared")


def test_mpi_tasks_on_a_two_node_slurm_block(
    service: RunningService,  # noqa: F811
    tmp_path: Path,
) -> None:
    ensure_slurm()
    endpoint = start_endpoint(service, tmp_path, "mpi-ep", "slurm", _edit)
    shared = tmp_path / "shared"
    shared.mkdir()
    try:
        with Executor(
            endpoint_id=endpoint.endpoint_id,
            client=Client(url=service.url, token=service.token),
        ) as ex:
            # single quotes: each rank's shell expands the variables
            ex.resource_specification = {"num_nodes": 2, "ranks_per_node": 2}
            wide = ex.submit(MPIFunction("sh -c 'echo $SLURMD_NODENAME $SLURM_PROCID'"))
            result = wide.result(timeout=WAIT)
            assert result.returncode == 0, result.stderr
            lines = [line.split() for line in result.stdout.splitlines()]
            assert sorted(int(rank) for _, rank in lines) == [0, 1, 2, 3]
            assert collections.Counter(node for node, _ in lines) == {"fake1": 2, "fake2": 2}
            assert "--nodelist=" in result.cmd and "--ntasks=4" in result.cmd

            # two 1-node tasks at once in the same block: each holds its own node until the
            # gate opens, so both must be running together on different nodes
            ex.resource_specification = {"num_nodes": 1, "ranks_per_node": 2}
            hold = MPIFunction(
                f"sh -c 'touch {shared}/started.$SLURMD_NODENAME.$SLURM_PROCID; "
                f"while [ ! -e {shared}/gate ]; do sleep 0.05; done; "
                "echo $SLURM_JOB_ID $SLURMD_NODENAME'"
            )
            small = [ex.submit(hold), ex.submit(hold)]
            started = _wait_for(shared / "started.*", 4, time.monotonic() + WAIT)
            (shared / "gate").touch()
            outputs = [f.result(timeout=WAIT) for f in small]
    finally:
        log = stop_endpoint(endpoint)
    names = collections.Counter(p.name.split(".")[1] for p in started)
    assert names == {"fake1": 2, "fake2": 2}, log  # 2 ranks on each node, not 4 on one
    per_task = [{tuple(line.split()) for line in r.stdout.splitlines()} for r in outputs]
    assert all(r.returncode == 0 for r in outputs), [r.stderr for r in outputs]
    assert all(len(lines) == 1 for lines in per_task)  # each task's ranks on one node
    (job_a, node_a), (job_b, node_b) = (next(iter(lines)) for lines in per_task)
    assert job_a == job_b and node_a != node_b  # same block, no node shared
