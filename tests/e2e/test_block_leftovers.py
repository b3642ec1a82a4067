"""A killed daemon's blocks do not outlive it (issue 11, item 3), with real daemons.

``kill -9`` of the endpoint daemon used to leave its blocks running: local managers and workers
in their own session, PBS/Slurm jobs holding nodes until their walltime.  The engine now records
each block in ``run/blocks.json`` as it submits it; the next ``start`` (or ``stop``) ends what a
previous run left, and after ``stop`` no process of the endpoint remains.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from outpost import Client, Executor, ShellFunction
from outpost_endpoint import pidfile
from outpost_endpoint.providers.local_processes import marked_processes

from ..recipes import ensure_mpich, ensure_slurm
from .stack import RunningEndpoint, RunningService, make_endpoint, start_service, stop_service

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def cube(x: int) -> int:
    return x**3


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    home = tmp_path_factory.mktemp("service-leftovers")
    running = start_service(home, f"sqlite:///{home}/outpost.db")
    yield running
    stop_service(running)


def wait_for(probe: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


def run_dir(endpoint: RunningEndpoint) -> Path:
    return endpoint.home / "endpoints" / endpoint.name / "run"


def daemon_pid(endpoint: RunningEndpoint) -> int:
    pid = pidfile.read_pid(endpoint.home / "endpoints" / endpoint.name / "endpoint.pid")
    assert pid is not None, "the endpoint daemon is not running"
    return pid


def kill_daemon(endpoint: RunningEndpoint) -> None:
    pid = daemon_pid(endpoint)
    os.kill(pid, signal.SIGKILL)
    assert pidfile.wait_gone(pid, 30)


def runs_tasks(service: RunningService, endpoint: RunningEndpoint, n: int = 3) -> bool:
    client = Client(url=service.url, token=service.token)
    with Executor(endpoint_id=endpoint.endpoint_id, client=client) as ex:
        futures = [ex.submit(cube, i) for i in range(n)]
        return [f.result(timeout=180) for f in futures] == [i**3 for i in range(n)]


def runs_shell(service: RunningService, endpoint: RunningEndpoint) -> bool:
    """A shell task (batch jobs start in $HOME, where this test module is not importable)."""
    client = Client(url=service.url, token=service.token)
    with Executor(endpoint_id=endpoint.endpoint_id, client=client) as ex:
        return ex.submit(ShellFunction("echo ok")).result(timeout=180).stdout.strip() == "ok"


def local_endpoint(service: RunningService, home: Path, name: str) -> RunningEndpoint:
    """The default template: high-throughput engine, local provider, one block from start."""
    endpoint = make_endpoint(service, home, name)
    wait_for(lambda: marked_processes(run_dir(endpoint)), 60, "the block's processes")
    return endpoint


def test_local_blocks_of_a_killed_daemon_end_at_the_next_start(
    service: RunningService, tmp_path: Path
) -> None:
    endpoint = local_endpoint(service, tmp_path, "local-kill")
    try:
        assert runs_tasks(service, endpoint)
        kill_daemon(endpoint)
        orphans = marked_processes(run_dir(endpoint))
        assert orphans, "the killed daemon's managers and workers should still be running"
        assert all(pidfile.is_alive(pid) for pid in orphans)

        endpoint.start()
        assert not any(pidfile.is_alive(pid) for pid in orphans), "old block processes remain"
        assert "ended process group(s)" in endpoint.run("logs", endpoint.name, "-n", "200").stdout
        assert runs_tasks(service, endpoint)

        daemon = daemon_pid(endpoint)
        endpoint.stop()
        assert not pidfile.is_alive(daemon)
        assert marked_processes(run_dir(endpoint)) == {}, "stop left processes behind"
    finally:
        endpoint.run("stop", endpoint.name, check=False)


def test_stop_after_kill_9_ends_the_orphaned_local_block(
    service: RunningService, tmp_path: Path
) -> None:
    endpoint = local_endpoint(service, tmp_path, "local-stop")
    try:
        kill_daemon(endpoint)
        assert marked_processes(run_dir(endpoint))
        stopped = endpoint.run("stop", endpoint.name)
        assert "ended block(s)" in stopped.stdout
        assert marked_processes(run_dir(endpoint)) == {}
    finally:
        endpoint.run("stop", endpoint.name, check=False)


def test_pbs_job_of_a_killed_daemon_is_deleted_at_the_next_start(
    service: RunningService, tmp_path: Path
) -> None:
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
        engine.update(cpu_affinity="none", max_idletime=600)
        engine["provider"].update(worker_init="", min_blocks=1)

    def job_state(job_id: str) -> str:
        import json

        return str(
            json.loads((state / "jobs" / f"{job_id.split('.')[0]}.json").read_text())["state"]
        )

    endpoint = make_endpoint(service, tmp_path, "pbs-kill", template="polaris", edit=edit,
                             env_extra=env_extra)  # fmt: skip
    try:
        assert runs_shell(service, endpoint)
        (old_job,) = [b["job_id"] for b in _recorded(endpoint)]
        kill_daemon(endpoint)
        assert job_state(old_job) == "R", "the killed daemon's job should still run"
        endpoint.start()
        wait_for(lambda: job_state(old_job) == "F", 60, f"job {old_job} to be deleted")
        assert runs_shell(service, endpoint)
        (new_job,) = [b["job_id"] for b in _recorded(endpoint)]
        endpoint.stop()
        wait_for(lambda: job_state(new_job) == "F", 60, f"job {new_job} to be deleted")
    finally:
        endpoint.run("stop", endpoint.name, check=False)
        live = [p.stem for p in (state / "jobs").glob("*.json")]
        if live:
            subprocess.run(["qdel", *live], env={**os.environ, **env_extra}, check=False)


def test_slurm_job_of_a_killed_daemon_is_cancelled_at_the_next_start(
    service: RunningService, tmp_path: Path
) -> None:
    ensure_slurm()

    def edit(data: dict[str, Any]) -> None:
        engine = data["engine"]
        engine.update(max_workers_per_node=1, max_idletime=600)
        provider = engine["provider"]
        provider.pop("account")
        provider.update(partition="multi", nodes_per_block=1, exclusive=False, worker_init="",
                        walltime="00:05:00", min_blocks=1, max_blocks=1)  # fmt: skip

    def alive(job_id: str) -> bool:
        out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True,
                             text=True, timeout=30)  # fmt: skip
        return out.stdout.strip() in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING")

    endpoint = make_endpoint(service, tmp_path, "slurm-kill", template="slurm", edit=edit)
    try:
        assert runs_shell(service, endpoint)
        (old_job,) = [b["job_id"] for b in _recorded(endpoint)]
        kill_daemon(endpoint)
        assert alive(old_job), "the killed daemon's job should still be in the queue"
        endpoint.start()
        wait_for(lambda: not alive(old_job), 60, f"job {old_job} to be cancelled")
        assert runs_shell(service, endpoint)
        (new_job,) = [b["job_id"] for b in _recorded(endpoint)]
        endpoint.stop()
        wait_for(lambda: not alive(new_job), 60, f"job {new_job} to be cancelled")
    finally:
        endpoint.run("stop", endpoint.name, check=False)


def _recorded(endpoint: RunningEndpoint) -> list[dict[str, Any]]:
    from outpost_endpoint.engine.high_throughput.block_records import read_leftovers

    return read_leftovers(run_dir(endpoint))[1]
