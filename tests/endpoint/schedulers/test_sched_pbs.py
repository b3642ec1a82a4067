"""The PBS Pro provider against the PBS Pro emulator: real qsub/qstat/qdel processes running
real job scripts, with the emulator's fault modes for the resilience rules."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from outpost_endpoint.errors import ProviderError
from outpost_endpoint.launchers.mpiexec import MpiExecLauncher
from outpost_endpoint.providers.base import BlockState, BlockStatus
from outpost_endpoint.providers.pbspro import (
    PBSProProvider,
    block_status_from_pbs,
    parse_qstat_json,
    parse_qstat_text,
)

from .conftest import PBSEmulator, wait_for


def make(pbs: PBSEmulator, tmp_path: Path, **kwargs: Any) -> PBSProProvider:
    options: dict[str, Any] = {
        "run_dir": tmp_path / "run",
        "walltime": "00:01:00",
        "max_blocks": 4,
        "commands": pbs.commands(),
    }
    options.update(kwargs)
    return PBSProProvider(**options)


def state_of(provider: PBSProProvider, job_id: str) -> BlockStatus:
    return provider.status([job_id])[job_id]


def reaches(provider: PBSProProvider, job_id: str, state: BlockState) -> BlockStatus:
    def probe() -> BlockStatus | None:
        status = state_of(provider, job_id)
        return status if status.state is state else None

    return wait_for(probe, what=f"job {job_id} to be {state.value}")


def test_block_runs_to_completion_with_pbs_environment(pbs: PBSEmulator, tmp_path: Path) -> None:
    provider = make(pbs, tmp_path, nodes_per_block=2, cpus_per_node=4, select_options="ngpus=4")
    out = tmp_path / "seen"
    gate = tmp_path / "gate"
    command = (
        f'echo "$PBS_JOBID $PBS_JOBNAME $(sort -u $PBS_NODEFILE | tr "\\n" " ")" > {out}; '
        f"while [ ! -e {gate} ]; do sleep 0.1; done"
    )
    job_id = provider.submit(command, "b1")
    assert job_id.endswith(".pbs-emulator")
    running = reaches(provider, job_id, BlockState.RUNNING)
    assert running.nodes == ("nid0001", "nid0002")
    gate.touch()
    done = reaches(provider, job_id, BlockState.COMPLETED)
    assert done.exit_code == 0
    assert out.read_text().split() == [job_id, provider.job_name("b1"), "nid0001", "nid0002"]
    assert pbs.job(job_id)["resources"]["select"] == "2:ncpus=4:ngpus=4"


def test_failing_block_is_failed_with_its_exit_code(pbs: PBSEmulator, tmp_path: Path) -> None:
    provider = make(pbs, tmp_path)
    job_id = provider.submit("echo boom >&2; exit 3", "bad")
    failed = reaches(provider, job_id, BlockState.FAILED)
    assert failed.exit_code == 3
    logs = tmp_path / "run" / "block_logs"
    assert (logs / f"{provider.job_name('bad')}.err").read_text() == "boom\n"


def test_cancel_running_block_is_cancelled(pbs: PBSEmulator, tmp_path: Path) -> None:
    provider = make(pbs, tmp_path)
    job_id = provider.submit("sleep 300", "s")
    reaches(provider, job_id, BlockState.RUNNING)
    provider.cancel([job_id])
    cancelled = reaches(provider, job_id, BlockState.CANCELLED)
    assert cancelled.exit_code == 271  # 256 + SIGTERM, as PBS reports a qdel'd job


def test_cancel_queued_block(pbs: PBSEmulator, tmp_path: Path) -> None:
    pbs.fault(hold=True)
    provider = make(pbs, tmp_path)
    job_id = provider.submit("true", "q")
    assert state_of(provider, job_id).state is BlockState.PENDING
    provider.cancel([job_id])
    assert reaches(provider, job_id, BlockState.CANCELLED).exit_code is None


def test_walltime_kill_is_failed_with_pbs_code(pbs: PBSEmulator, tmp_path: Path) -> None:
    provider = make(pbs, tmp_path, walltime="00:00:01")
    job_id = provider.submit("sleep 60", "w")
    failed = reaches(provider, job_id, BlockState.FAILED)
    assert failed.exit_code == -29
    assert "walltime" in failed.message


def test_job_unknown_to_the_server_is_lost(pbs: PBSEmulator, tmp_path: Path) -> None:
    provider = make(pbs, tmp_path)
    result = pbs.run("qstat", "-x", "-f", "-F", "json", "4242.pbs-emulator")
    assert result.returncode != 0
    assert "qstat: Unknown Job Id 4242.pbs-emulator" in result.stderr
    status = state_of(provider, "4242.pbs-emulator")
    assert status.state is BlockState.LOST


def test_garbage_once_is_retried_not_a_state_change(pbs: PBSEmulator, tmp_path: Path) -> None:
    provider = make(pbs, tmp_path)
    job_id = provider.submit("sleep 300", "g")
    reaches(provider, job_id, BlockState.RUNNING)
    pbs.fault(qstat={"mode": "garbage", "count": 1})
    assert state_of(provider, job_id).state is BlockState.RUNNING  # retried, read properly
    pbs.fault(qstat={"mode": "garbage", "count": 10})
    assert state_of(provider, job_id).state is BlockState.UNKNOWN  # retries used up: no guess
    assert provider.live_jobs() == [job_id]  # still counted against max_blocks
    pbs.fault()
    assert state_of(provider, job_id).state is BlockState.RUNNING


@pytest.mark.parametrize("mode", ["hang", "fail"])
def test_hanging_or_failing_qstat_is_unknown(
    pbs: PBSEmulator, tmp_path: Path, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    provider = make(pbs, tmp_path, commands=pbs.commands(timeout=1.0, retries=1))
    job_id = provider.submit("sleep 300", "h")
    reaches(provider, job_id, BlockState.RUNNING)
    pbs.fault(qstat={"mode": mode, "count": 2})
    status = state_of(provider, job_id)
    assert status.state is BlockState.UNKNOWN
    logged = caplog.text
    assert ("timed out" in logged) if mode == "hang" else ("cannot connect to server" in logged)


def test_max_blocks_and_queued_cap(pbs: PBSEmulator, tmp_path: Path) -> None:
    pbs.fault(hold=True)  # the "site" starts nothing: jobs stay queued
    provider = make(pbs, tmp_path, max_blocks=3, max_queued_blocks=2)
    first = provider.submit("sleep 300", "1")
    second = provider.submit("sleep 300", "2")
    with pytest.raises(ProviderError, match=r"2 block\(s\) are queued and max_queued_blocks"):
        provider.submit("sleep 300", "3")
    pbs.fault()  # the site starts them
    reaches(provider, first, BlockState.RUNNING)
    reaches(provider, second, BlockState.RUNNING)
    provider.submit("sleep 300", "3")
    with pytest.raises(ProviderError, match="max_blocks is 3"):
        provider.submit("sleep 300", "4")


def test_text_fallback_when_json_is_not_supported(pbs: PBSEmulator, tmp_path: Path) -> None:
    """An old qstat without ``-F json``: a wrapper that rejects -F like such a qstat does."""
    bindir = tmp_path / "oldbin"
    bindir.mkdir()
    wrapper = bindir / "qstat"
    real = Path(pbs.env["PATH"].split(os.pathsep)[0]) / "qstat"
    wrapper.write_text(
        "#!/bin/bash\n"
        'for a in "$@"; do [ "$a" = -F ] && { echo "qstat: invalid option -- \'F\'" >&2; '
        "exit 2; }; done\n"
        f'exec {real} "$@"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    env = {**pbs.env, "PATH": f"{bindir}{os.pathsep}{pbs.env['PATH']}"}
    commands = pbs.commands()
    commands.env = env
    provider = make(pbs, tmp_path, commands=commands)
    job_id = provider.submit("exit 4", "t")
    assert reaches(provider, job_id, BlockState.FAILED).exit_code == 4
    assert provider._json is False


def test_mpiexec_launcher_starts_one_manager_per_node(
    pbs: PBSEmulator, tmp_path: Path, mpich: str
) -> None:
    """MPICH hydra inside a 2-node emulated PBS job: hydra reads PBS_NODEFILE; the emulated
    node names are not real hosts, so ``-launcher fork`` starts their proxies here."""
    provider = make(pbs, tmp_path, nodes_per_block=2)
    launcher = MpiExecLauncher(overrides="-launcher fork")
    out = tmp_path / "managers"
    out.mkdir()
    manager = f'echo "$PMI_RANK $MPI_LOCALNRANKS" > {out}/rank.$PMI_RANK'
    job_id = provider.submit(launcher(manager, 2), "mpi")
    reaches(provider, job_id, BlockState.COMPLETED)
    lines = sorted(p.read_text().split() for p in out.iterdir())
    assert lines == [["0", "1"], ["1", "1"]]  # 2 ranks, each alone on its node


# -- parsing, without the emulator -------------------------------------------------------------


def test_json_with_raw_control_characters_parses() -> None:
    text = '{"timestamp":1,"Jobs":{"1.s":{"job_state":"R","Variable_List":{"X":"a\tb"}}}}'
    assert parse_qstat_json(text)["1.s"]["Variable_List"]["X"] == "a\tb"


def test_text_form_with_wrapped_values() -> None:
    text = (
        "Job Id: 7.server\n    Job_Name = x\n    job_state = F\n    Exit_status = 271\n"
        "    exec_host = n1/0*64+n2/0*64\n    Resource_List.walltime = 00:10:00\n"
        "    Variable_List = A=1,B=\n\t2\n"
    )
    job = parse_qstat_text(text)["7.server"]
    assert job["Variable_List"] == "A=1,B=2"
    assert job["Resource_List"] == {"walltime": "00:10:00"}
    status = block_status_from_pbs(job)
    assert status is not None
    assert (status.state, status.exit_code, status.nodes) == (BlockState.FAILED, 271, ("n1", "n2"))


@pytest.mark.parametrize(
    ("letter", "exit_status", "state"),
    [
        ("Q", None, BlockState.PENDING),
        ("H", None, BlockState.PENDING),
        ("W", None, BlockState.PENDING),
        ("T", None, BlockState.PENDING),
        ("R", None, BlockState.RUNNING),
        ("E", None, BlockState.RUNNING),
        ("B", None, BlockState.RUNNING),
        ("F", 0, BlockState.COMPLETED),
        ("X", 0, BlockState.COMPLETED),
        ("F", 1, BlockState.FAILED),
        ("F", -29, BlockState.FAILED),
        ("F", None, BlockState.FAILED),
    ],
)
def test_state_mapping(letter: str, exit_status: int | None, state: BlockState) -> None:
    job: dict[str, Any] = {"job_state": letter}
    if exit_status is not None:
        job["Exit_status"] = exit_status
    status = block_status_from_pbs(job)
    assert status is not None and status.state is state


def test_unknown_letter_is_unreadable() -> None:
    assert block_status_from_pbs({"job_state": "Z"}) is None


def test_seed_polaris_launcher_under_pals_emulator(
    pbs: PBSEmulator, tmp_path: Path, mpich: str
) -> None:
    """The seed's ``MpiExecLauncher(bind_cmd="--cpu-bind", overrides="--depth=64 --ppn 1")``
    in a 2-node block, through the PALS ``mpiexec`` stand-in: one manager per node."""
    pals = Path(__file__).resolve().parents[2] / "fixtures" / "pals_emulator"
    commands = pbs.commands()
    commands.env = {**pbs.env, "PATH": f"{pals}{os.pathsep}{pbs.env['PATH']}"}
    provider = make(pbs, tmp_path, nodes_per_block=2, cpus_per_node=64, commands=commands)
    out = tmp_path / "managers"
    out.mkdir()
    launcher = MpiExecLauncher("--cpu-bind", "--depth=64 --ppn 1")
    job_id = provider.submit(launcher(f"echo $MPI_LOCALNRANKS > {out}/$PMI_RANK", 2), "pals")
    reaches(provider, job_id, BlockState.COMPLETED)
    assert {p.name: p.read_text() for p in out.iterdir()} == {"0": "1\n", "1": "1\n"}


def test_block_larger_than_the_machine_stays_queued_with_pbs_comment(
    pbs: PBSEmulator, tmp_path: Path
) -> None:
    provider = make(pbs, tmp_path, nodes_per_block=8)  # the emulated machine has 4 nodes
    job_id = provider.submit("true", "big")

    def explained() -> BlockStatus | None:
        status = state_of(provider, job_id)
        return status if "Insufficient amount of resource" in status.message else None

    assert wait_for(explained, what="PBS's comment").state is BlockState.PENDING


def test_qsub_refusal_is_a_provider_error_with_its_output(pbs: PBSEmulator, tmp_path: Path) -> None:
    provider = make(pbs, tmp_path, scheduler_options="#PBS -l walltime=soon")
    with pytest.raises(ProviderError, match=r"qsub refused .*Resource_List\.walltime"):
        provider.submit("true", "refused")
    assert provider.live_jobs() == []


@pytest.mark.parametrize("mode", ["hang", "garbage"])
def test_lost_qsub_reply_adopts_the_job_instead_of_submitting_twice(
    pbs: PBSEmulator, tmp_path: Path, mode: str
) -> None:
    provider = make(pbs, tmp_path, max_blocks=1, commands=pbs.commands(timeout=2.0))
    pbs.fault(qsub={"mode": mode, "count": 1})
    job_id = provider.submit("sleep 300", "lost")
    assert pbs.job(job_id)["name"] == provider.job_name("lost")
    assert [j for j in pbs.state.glob("jobs/*.json")] == [pbs.state / "jobs" / "1000.json"]
    with pytest.raises(ProviderError, match="max_blocks is 1"):
        provider.submit("sleep 300", "again")


def test_failed_qsub_that_created_nothing_is_an_error(pbs: PBSEmulator, tmp_path: Path) -> None:
    provider = make(pbs, tmp_path, commands=pbs.commands(timeout=2.0))
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "qsub").write_text("#!/bin/bash\necho '<html>gateway</html>'\n")
    (fake / "qsub").chmod(0o755)
    provider.commands.env = {**pbs.env, "PATH": f"{fake}{os.pathsep}{pbs.env['PATH']}"}
    with pytest.raises(ProviderError, match="qsub printed no job id"):
        provider.submit("true", "none")
    assert provider.live_jobs() == []
