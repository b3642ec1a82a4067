"""Job scripts and launcher command lines, line by line: the seed's Polaris configuration."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from outpost_endpoint.config import load_config, parse_config
from outpost_endpoint.launchers.aprun import AprunLauncher
from outpost_endpoint.launchers.mpiexec import MpiExecLauncher
from outpost_endpoint.launchers.registry import launcher_from_config
from outpost_endpoint.launchers.srun import SrunLauncher
from outpost_endpoint.providers.pbspro import PBSProProvider
from outpost_endpoint.providers.registry import provider_from_config
from outpost_endpoint.providers.slurm import SlurmProvider

TEMPLATES = Path(__file__).resolve().parents[3] / "endpoint/outpost_endpoint/config_templates"
MANAGER = "outpost-manager --block 0 --url 'tcp://login:5000'"


def test_seed_polaris_config_renders_the_expected_pbs_script(tmp_path: Path) -> None:
    config = load_config(TEMPLATES / "polaris.yaml").engine.provider
    provider = provider_from_config(config, tmp_path)
    assert isinstance(provider, PBSProProvider)
    provider.tag = "a1b2c3"  # random per provider: makes job names unique to this run
    launcher = launcher_from_config(config.launcher)
    script = provider.job_script(launcher(MANAGER, 1), provider.job_name("0"))
    logs = tmp_path / "block_logs"
    assert script.splitlines() == [
        "#!/bin/bash",
        "# Outpost block outpost_0_a1b2c3, written by the PBS Pro provider of outpost-endpoint.",
        "#PBS -N outpost_0_a1b2c3",
        "#PBS -S /bin/bash",
        f"#PBS -o {logs}/outpost_0_a1b2c3.out",
        f"#PBS -e {logs}/outpost_0_a1b2c3.err",
        "#PBS -l walltime=00:10:00",
        "#PBS -l select=1:ncpus=64:ngpus=4",
        "#PBS -l place=scatter",
        "#PBS -A datascience",
        "#PBS -q debug",
        "#PBS -l filesystems=home:eagle",
        "export OUTPOST_BLOCK_JOB_NAME='outpost_0_a1b2c3'",
        "umask 077",  # managers and workers create private files (docs/SECURITY.md)
        f"cd {tmp_path}",
        "",
        "source /path/to/env; cd /path/to/rundir",
        "",
        "mpiexec -n 1 --cpu-bind depth --depth=64 --ppn 1 /bin/bash -c " + shlex.quote(MANAGER),
    ]


def test_slurm_script_has_every_option(tmp_path: Path) -> None:
    provider = SlurmProvider(
        run_dir=tmp_path,
        account="m1234",
        partition="gpu",
        qos="regular",
        constraint="gpu&hbm80g",
        gpus_per_node=4,
        cpus_per_node=128,
        walltime="1:30:00",
        nodes_per_block=2,
        scheduler_options="#SBATCH --mem=0",
        worker_init="module load python",
    )
    script = provider.job_script(SrunLauncher()(MANAGER, 2), "outpost_7")
    logs = tmp_path / "block_logs"
    assert script.splitlines() == [
        "#!/bin/bash",
        "# Outpost block outpost_7, written by the Slurm provider of outpost-endpoint.",
        "#SBATCH --job-name=outpost_7",
        f"#SBATCH --output={logs}/outpost_7.%j.out",
        f"#SBATCH --error={logs}/outpost_7.%j.err",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --time=01:30:00",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=m1234",
        "#SBATCH --qos=regular",
        "#SBATCH --constraint=gpu&hbm80g",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --cpus-per-task=128",
        "#SBATCH --exclusive",
        "#SBATCH --mem=0",
        "export OUTPOST_BLOCK_JOB_NAME='outpost_7'",
        "umask 077",  # managers and workers create private files (docs/SECURITY.md)
        f"cd {tmp_path}",
        "",
        "module load python",
        "",
        "srun --ntasks-per-node=1 --nodes=2 --ntasks=2 --kill-on-bad-exit=0 /bin/bash -c "
        + shlex.quote(MANAGER),
    ]


def test_pbs_select_without_cpus_or_options(tmp_path: Path) -> None:
    provider = PBSProProvider(run_dir=tmp_path, nodes_per_block=3, select_options=":ngpus=4")
    assert provider.select() == "3:ngpus=4"
    assert PBSProProvider(run_dir=tmp_path).select() == "1"


@pytest.mark.parametrize(
    ("launcher", "nodes", "prefix"),
    [
        (MpiExecLauncher(), 2, "mpiexec -n 2 -ppn 1"),
        (
            MpiExecLauncher("--cpu-bind", "--depth=64 --ppn 1"),
            4,
            "mpiexec -n 4 --cpu-bind depth --depth=64 --ppn 1",
        ),
        (MpiExecLauncher("-bind-to", "core"), 1, "mpiexec -n 1 -ppn 1 -bind-to core"),
        (MpiExecLauncher(None, "-launcher fork"), 2, "mpiexec -n 2 -ppn 1 -launcher fork"),
        (
            SrunLauncher("--cpu-bind=none"),
            3,
            "srun --ntasks-per-node=1 --nodes=3 --ntasks=3 --kill-on-bad-exit=0 --cpu-bind=none",
        ),
        (AprunLauncher(), 2, "aprun -n 2 -N 1"),
    ],
)
def test_launcher_command_lines(launcher: object, nodes: int, prefix: str) -> None:
    assert launcher(MANAGER, nodes) == f"{prefix} /bin/bash -c {shlex.quote(MANAGER)}"  # type: ignore[operator]


def test_walltime_is_normalised_like_qstat_prints_it() -> None:
    config = parse_config({"engine": {"provider": {"type": "pbspro", "walltime": "0:10:00"}}})
    assert config.engine.provider.walltime == "00:10:00"
