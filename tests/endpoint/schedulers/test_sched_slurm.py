"""The Slurm provider on a real one-node Slurm cluster (slurmctld + slurmd from Debian, started
by the fixture), plus wrappers around the real commands for the failure cases."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from outpost_endpoint.errors import ProviderError
from outpost_endpoint.launchers.srun import SrunLauncher
from outpost_endpoint.providers.base import BlockState, BlockStatus
from outpost_endpoint.providers.scheduler_command import SchedulerCommands
from outpost_endpoint.providers.slurm import (
    SlurmProvider,
    parse_exit_code,
    parse_scontrol_record,
    slurm_state,
)

from .conftest import wait_for


def make(tmp_path: Path, **kwargs: Any) -> SlurmProvider:
    options: dict[str, Any] = {
        "run_dir": tmp_path / "run",
        "walltime": "00:05:00",
        "max_blocks": 4,
        "commands": SchedulerCommands(timeout=20, retries=2, backoff_base=0.05),
    }
    options.update(kwargs)
    return SlurmProvider(**options)


def reaches(provider: SlurmProvider, job_id: str, state: BlockState) -> BlockStatus:
    def probe() -> BlockStatus | None:
        status = provider.status([job_id])[job_id]
        return status if status.state is state else None

    return wait_for(probe, what=f"Slurm job {job_id} to be {state.value}")


@pytest.fixture
def cleanup(slurm_cluster: None) -> Any:
    """Needs the real cluster; scancels what the test submitted."""
    jobs: list[str] = []
    yield jobs
    if jobs:
        os.system(f"scancel {' '.join(jobs)} 2>/dev/null")


def test_block_runs_then_completes(tmp_path: Path, cleanup: list[str]) -> None:
    provider = make(tmp_path)
    gate = tmp_path / "gate"
    seen = tmp_path / "seen"
    job_id = provider.submit(
        f'echo "$SLURM_JOB_ID $SLURM_JOB_NAME" > {seen}; while [ ! -e {gate} ]; do sleep 0.1; done',
        "b1",
    )
    cleanup.append(job_id)
    running = reaches(provider, job_id, BlockState.RUNNING)
    assert running.nodes == ("vm",)
    gate.touch()
    done = reaches(provider, job_id, BlockState.COMPLETED)
    assert done.exit_code == 0
    assert seen.read_text().split() == [job_id, provider.job_name("b1")]


def test_failing_block_is_failed_with_exit_code(tmp_path: Path, cleanup: list[str]) -> None:
    provider = make(tmp_path)
    job_id = provider.submit("exit 3", "bad")
    cleanup.append(job_id)
    assert reaches(provider, job_id, BlockState.FAILED).exit_code == 3


def test_cancel_sleeping_block(tmp_path: Path, cleanup: list[str]) -> None:
    provider = make(tmp_path)
    job_id = provider.submit("sleep 300", "s")
    cleanup.append(job_id)
    reaches(provider, job_id, BlockState.RUNNING)
    provider.cancel([job_id])
    reaches(provider, job_id, BlockState.CANCELLED)


def test_unknown_job_is_lost(tmp_path: Path, cleanup: list[str]) -> None:
    status = make(tmp_path).status(["987654"])["987654"]
    assert status.state is BlockState.LOST


def test_two_node_block_with_srun_runs_one_manager_per_node(
    tmp_path: Path, cleanup: list[str]
) -> None:
    provider = make(tmp_path, partition="multi", nodes_per_block=2)
    out = tmp_path / "managers"
    out.mkdir()
    command = SrunLauncher()(f"echo $SLURM_PROCID > {out}/$SLURMD_NODENAME", 2)
    job_id = provider.submit(command, "two")
    cleanup.append(job_id)
    done = reaches(provider, job_id, BlockState.COMPLETED)
    assert done.nodes == ("fake1", "fake2")
    assert sorted(p.name for p in out.iterdir()) == ["fake1", "fake2"]
    assert sorted(p.read_text().strip() for p in out.iterdir()) == ["0", "1"]


def _wrapper_path(tmp_path: Path, scripts: dict[str, str]) -> dict[str, str]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, body in scripts.items():
        path = bindir / name
        path.write_text(f"#!/bin/bash\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}


def test_job_forgotten_by_slurm_keeps_the_final_state_we_saw(
    tmp_path: Path, cleanup: list[str]
) -> None:
    """After MinJobAge slurmctld forgets a job and sacct needs slurmdbd: a job we saw finish
    stays COMPLETED, one we never saw finish is LOST -- never RUNNING."""
    provider = make(tmp_path)
    job_id = provider.submit("true", "f")
    cleanup.append(job_id)
    reaches(provider, job_id, BlockState.COMPLETED)
    forgetful = _wrapper_path(
        tmp_path,
        {
            "squeue": 'echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1',
            "sacct": 'echo "Slurm accounting storage is disabled" >&2; exit 1',
        },
    )
    provider.commands.env = forgetful
    assert provider.status([job_id])[job_id].state is BlockState.COMPLETED
    stranger = make(tmp_path, commands=SchedulerCommands(env=forgetful, retries=0))
    assert stranger.status([job_id])[job_id].state is BlockState.LOST


@pytest.mark.parametrize("body", ["echo '<html>proxy error'", "sleep 30", "exit 1"])
def test_garbled_or_hanging_squeue_is_unknown(
    tmp_path: Path, cleanup: list[str], body: str
) -> None:
    provider = make(tmp_path)
    job_id = provider.submit("sleep 300", "u")
    cleanup.append(job_id)
    reaches(provider, job_id, BlockState.RUNNING)
    provider.commands = SchedulerCommands(
        env=_wrapper_path(tmp_path, {"squeue": body}), timeout=1, retries=1, backoff_base=0.01
    )
    assert provider.status([job_id])[job_id].state is BlockState.UNKNOWN
    assert provider.live_jobs() == [job_id]


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("PENDING", BlockState.PENDING),
        ("RUNNING", BlockState.RUNNING),
        ("COMPLETING", BlockState.RUNNING),
        ("COMPLETED", BlockState.COMPLETED),
        ("CANCELLED by 0", BlockState.CANCELLED),
        ("CANCELLED+", BlockState.CANCELLED),
        ("TIMEOUT", BlockState.FAILED),
        ("NODE_FAIL", BlockState.FAILED),
        ("OUT_OF_MEMORY", BlockState.FAILED),
        ("BOGUS", None),
    ],
)
def test_state_mapping(text: str, state: BlockState | None) -> None:
    assert slurm_state(text) is state


def test_exit_codes_and_scontrol_records() -> None:
    assert parse_exit_code("3:0") == 3
    assert parse_exit_code("0:9") == 137
    assert parse_exit_code("garbage") is None
    record = parse_scontrol_record("JobId=5 JobState=FAILED Reason=NonZeroExitCode ExitCode=3:0")
    assert record["JobState"] == "FAILED" and record["ExitCode"] == "3:0"


def test_sbatch_refusal_is_a_provider_error_with_its_output(
    tmp_path: Path, cleanup: list[str]
) -> None:
    provider = make(tmp_path, partition="nosuch")
    with pytest.raises(ProviderError, match=r"sbatch refused .*invalid partition"):
        provider.submit("true", "toobig")
    assert provider.live_jobs() == []


def test_pending_block_says_why(tmp_path: Path, cleanup: list[str]) -> None:
    holder = make(tmp_path, partition="multi", nodes_per_block=2)
    first = holder.submit("sleep 300", "holder")
    cleanup.append(first)
    reaches(holder, first, BlockState.RUNNING)
    waiting = make(tmp_path, partition="multi", nodes_per_block=2, exclusive=True)
    second = waiting.submit("true", "waiter")
    cleanup.append(second)
    status = reaches(waiting, second, BlockState.PENDING)
    assert status.message.startswith("PENDING (")


def test_lost_sbatch_reply_adopts_the_job(tmp_path: Path, cleanup: list[str]) -> None:
    """sbatch submitted the job but its answer never arrived (timeout): the provider finds
    the job by its unique name instead of submitting a second block."""
    real = subprocess.run(["which", "sbatch"], capture_output=True, text=True).stdout.strip()
    env = _wrapper_path(tmp_path, {"sbatch": f'{real} "$@" > /dev/null; sleep 30'})
    provider = make(tmp_path, commands=SchedulerCommands(env=env, timeout=3, retries=1))
    job_id = provider.submit("sleep 300", "lost")
    cleanup.append(job_id)
    listed = subprocess.run(
        ["squeue", "-h", "-n", provider.job_name("lost"), "-o", "%i"],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert listed == [job_id]
    assert provider.live_jobs() == [job_id]
