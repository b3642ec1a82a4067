"""MPI task launcher templates, run for real: MPICH hydra on emulated nodes, srun in Slurm."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from outpost.shell import MPIFunction
from outpost_endpoint.errors import ConfigError
from outpost_endpoint.launchers.mpi_tasks import (
    FLAVOURS,
    detect_flavour,
    task_environment,
    template_for,
)
from outpost_endpoint.providers.base import BlockState, BlockStatus
from outpost_endpoint.providers.scheduler_command import SchedulerCommands
from outpost_endpoint.providers.slurm import SlurmProvider

from .conftest import wait_for


def test_templates_format_with_the_sdk_placeholders() -> None:
    values = {
        "num_ranks": 8,
        "ranks_per_node": 4,
        "num_nodes": 2,
        "launcher_options": "",
        "nodefile": "/r/n",
    }
    assert [template_for(f).format(**values).split() for f in FLAVOURS] == [
        ["mpiexec", "-n", "8", "-ppn", "4", "-f", "/r/n"],
        ["mpiexec", "-n", "8", "--ppn", "4", "--hostfile", "/r/n"],
        ["srun", "--nodes=2", "--ntasks=8", "--ntasks-per-node=4", "--nodelist=/r/n", "--overlap"],
    ]
    with pytest.raises(ConfigError, match="'openmpi' is not one of: hydra, pals, srun"):
        template_for("openmpi")


def test_detect_flavour_in_slurm_job() -> None:
    assert detect_flavour({"SLURM_JOB_ID": "5", "PATH": ""}) == "srun"
    assert detect_flavour({"PATH": ""}) == "hydra"


def test_more_nodes_than_given_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="num_nodes=3 but only 2 node"):
        task_environment({"num_nodes": 3}, ["a", "b"], tmp_path / "f", template_for("hydra"))


def test_mpifunction_under_hydra_places_ranks_per_node(
    tmp_path: Path, mpich: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = {"num_nodes": 2, "ranks_per_node": 2, "launcher_options": "-launcher fork"}
    env = task_environment(
        spec, ["nid0001", "nid0002", "nid0003"], tmp_path / "task.hosts", template_for("hydra")
    )
    assert (tmp_path / "task.hosts").read_text() == "nid0001\nnid0002\n"
    for key in ("PBS_NODEFILE", "PBS_JOBID", "SLURM_JOB_ID"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = MPIFunction("sh -c 'echo $PMI_RANK $MPI_LOCALNRANKS'", walltime=60)()
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split("\n")[:-1]) == ["0 2", "1 2", "2 2", "3 2"]


def test_mpifunction_with_srun_template_inside_a_slurm_block(
    tmp_path: Path, slurm_cluster: None
) -> None:
    """A 2-node block on the emulated ``multi`` nodes runs one MPIFunction over both nodes
    with the srun template, 2 ranks per node."""
    out = tmp_path / "out"
    script = tmp_path / "task.py"
    script.write_text(
        "import os, sys\n"
        "from outpost.shell import MPIFunction\n"
        "from outpost_endpoint.launchers.mpi_tasks import task_environment, template_for\n"
        "from outpost_endpoint.launchers.nodelist import block_nodes\n"
        "spec = {'num_nodes': 2, 'ranks_per_node': 2}\n"
        f"os.environ.update(task_environment(spec, block_nodes(), {str(tmp_path / 'h')!r}, "
        "template_for('srun')))\n"
        "r = MPIFunction(\"sh -c 'echo $SLURM_PROCID $SLURMD_NODENAME'\", walltime=60)()\n"
        f"open({str(out)!r}, 'w').write(r.stdout + r.stderr)\n"
        "sys.exit(r.returncode)\n"
    )
    provider = SlurmProvider(
        run_dir=tmp_path / "run",
        partition="multi",
        nodes_per_block=2,
        walltime="00:05:00",
        commands=SchedulerCommands(timeout=20),
    )
    job_id = provider.submit(f"{sys.executable} {script}", "mpitask")
    try:

        def ended() -> BlockStatus | None:
            status = provider.status([job_id])[job_id]
            return status if status.state.is_terminal else None

        status = wait_for(ended, what="the MPI block to end")
    finally:
        subprocess.run(["scancel", job_id], check=False)
    output = out.read_text() if out.exists() else "(no output)"
    assert status.state is BlockState.COMPLETED, output
    assert sorted(output.split("\n")[:-1]) == ["0 fake1", "1 fake1", "2 fake2", "3 fake2"]
    assert os.path.exists(tmp_path / "h")
