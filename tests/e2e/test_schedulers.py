"""Endpoints whose high-throughput engine gets its blocks from a batch scheduler, end to end:
SDK -> service -> RabbitMQ -> endpoint daemon -> sbatch/qsub -> manager on the "nodes" -> back.

* Slurm: the real one-node cluster of ``tests/fixtures/slurm`` (partition ``multi``: two
  emulated nodes), launcher ``srun``: one manager per node.
* PBS Pro: the ``outpost-endpoint configure --template polaris`` file, changed only where this
  machine is not Polaris (no worker_init, no CPU pinning on 2 cores), through the PBS emulator
  and the PALS ``mpiexec`` stand-in, so the seed's ``--cpu-bind``/``--depth=64 --ppn 1``
  launcher line really runs.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from outpost import Client, Executor, ShellFunction

from ..recipes import ensure_mpich, ensure_slurm
from .stack import (
    RunningEndpoint,
    RunningService,
    make_endpoint,
    start_service,
    stop_service,
)

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """SQLite only: the scheduler path does not depend on the service's database."""
    home = tmp_path_factory.mktemp("service-schedulers")
    running = start_service(home, f"sqlite:///{home}/outpost.db")
    yield running
    stop_service(running)


def start_endpoint(
    service: RunningService,
    home: Path,
    name: str,
    template: str,
    edit: Callable[[dict[str, Any]], None],
    env_extra: dict[str, str] | None = None,
) -> RunningEndpoint:
    return make_endpoint(service, home, name, template=template, edit=edit, env_extra=env_extra)


def stop_endpoint(endpoint: RunningEndpoint) -> str:
    endpoint.run("stop", endpoint.name, check=False, timeout=180)
    log = endpoint.home / "endpoints" / endpoint.name / "endpoint.log"
    return log.read_text() if log.exists() else ""


def test_slurm_endpoint_runs_tasks_on_blocks(service: RunningService, tmp_path: Path) -> None:
    ensure_slurm()

    def edit(data: dict[str, Any]) -> None:
        engine = data["engine"]
        engine.update(max_workers_per_node=2, max_idletime=5)
        provider = engine["provider"]
        provider.pop("account")
        provider.update(
            partition="multi",
            nodes_per_block=2,
            exclusive=False,
            worker_init="",
            walltime="00:05:00",
            max_blocks=1,
        )

    endpoint = start_endpoint(service, tmp_path, "slurm-ep", "slurm", edit)
    try:
        where = ShellFunction("echo $SLURM_JOB_ID $SLURMD_NODENAME")
        with Executor(
            endpoint_id=endpoint.endpoint_id,
            client=Client(url=service.url, token=service.token),
        ) as ex:
            results = [ex.submit(where).result(timeout=180) for _ in range(4)]
    finally:
        log = stop_endpoint(endpoint)
    assert all(r.returncode == 0 for r in results), log
    job_ids = {r.stdout.split()[0] for r in results}
    nodes = {r.stdout.split()[1] for r in results}
    assert len(job_ids) == 1 and job_ids.pop().isdigit()
    assert nodes <= {"fake1", "fake2"}
    assert "submitted block" in log


def test_polaris_config_on_the_pbs_emulator(service: RunningService, tmp_path: Path) -> None:
    ensure_mpich()
    state = tmp_path / "pbs-state"
    env_extra = {
        "PATH": os.pathsep.join(
            [str(FIXTURES / "pals_emulator"), str(FIXTURES / "pbs_emulator"), os.environ["PATH"]]
        ),
        "PBS_EMULATOR_STATE": str(state),
        "PBS_EMULATOR_NODES": "x3001c0s1b0n0,x3001c0s1b1n0",
    }

    def edit(data: dict[str, Any]) -> None:
        engine = data["engine"]
        engine.update(cpu_affinity="none", max_idletime=5)  # 2 cores here, 64 on Polaris
        engine["provider"]["worker_init"] = ""

    endpoint = start_endpoint(service, tmp_path, "polaris-ep", "polaris", edit, env_extra)
    try:
        where = ShellFunction("echo $PBS_JOBID $CUDA_VISIBLE_DEVICES")
        with Executor(
            endpoint_id=endpoint.endpoint_id,
            client=Client(url=service.url, token=service.token),
        ) as ex:
            result = ex.submit(where).result(timeout=180)
    finally:
        log = stop_endpoint(endpoint)
        live = [p.stem for p in (state / "jobs").glob("*.json")]
        if live:
            subprocess.run(["qdel", *live], env={**os.environ, **env_extra}, check=False)
    assert result.returncode == 0, log
    job_id, device = result.stdout.split()
    assert job_id.endswith(".pbs-emulator")
    assert device in {"0", "1", "2", "3"}  # one worker per "GPU", as on Polaris
    script = next((tmp_path / "endpoints").rglob("submit_scripts/*.sh"), None)
    assert script is not None, log
    text = script.read_text()
    assert "#PBS -l select=1:ncpus=64:ngpus=4" in text
    assert "mpiexec -n 1 --cpu-bind depth --depth=64 --ppn 1" in text
