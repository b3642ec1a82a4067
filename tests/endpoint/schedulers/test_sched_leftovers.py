"""The blocks a killed run left, found from ``run/blocks.json`` (issue 11, item 3).

The end-to-end tests (tests/e2e/test_block_leftovers.py) kill real daemons; this one covers
the moment they cannot hit reliably: a daemon killed while ``qsub`` ran, so that only the job's
name was recorded, not its id.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from outpost_endpoint.engine.high_throughput.block_records import (
    HOSTNAME,
    RECORDS_FILE,
    BlockRecords,
    end_leftovers,
)
from outpost_endpoint.providers.local import LocalProvider
from outpost_endpoint.providers.local_processes import RUN_DIR_VARIABLE
from outpost_endpoint.providers.pbspro import PBSProProvider

from .conftest import PBSEmulator, wait_for


def test_job_recorded_only_by_name_is_found_and_deleted(pbs: PBSEmulator, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    killed = PBSProProvider(run_dir=run_dir, walltime="00:10:00", commands=pbs.commands())
    records = BlockRecords(run_dir, killed.label)
    records.submitting("block-1", killed.job_name_for("block-1"))
    job_id = killed.submit("sleep 600", "block-1")  # ...and the daemon dies before added()
    assert json.loads((run_dir / RECORDS_FILE).read_text())["blocks"][0]["job_id"] is None

    fresh = PBSProProvider(run_dir=run_dir, walltime="00:10:00", commands=pbs.commands())
    assert end_leftovers(run_dir, fresh) == [job_id]
    wait_for(lambda: pbs.job(job_id)["state"] == "F", 30, f"job {job_id} to be deleted")
    assert not (run_dir / RECORDS_FILE).exists()


def test_refused_submission_leaves_no_record(pbs: PBSEmulator, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    records = BlockRecords(run_dir, "pbspro")
    records.submitting("block-1", "outpost_block-1_abcdef")
    records.abandoned("block-1")
    records.submitting("block-2", "outpost_block-2_abcdef")
    records.added("block-2", "1234.pbs-emulator")
    records.ended("1234.pbs-emulator")
    assert json.loads((run_dir / RECORDS_FILE).read_text())["blocks"] == []


def record(run_dir: Path, provider: str, pid: int, hostname: str, job_id: str) -> None:
    """A ``blocks.json`` as the run ``pid`` on ``hostname`` writes it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    blocks = [{"block_id": "block-1", "job_id": job_id, "job_name": None}]
    body = {"provider": provider, "pid": pid, "hostname": hostname, "blocks": blocks}
    (run_dir / RECORDS_FILE).write_text(json.dumps(body))


def started(extra: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """A sleeping Python process with ``extra`` arguments, returned once it runs (exec'd, so
    /proc shows its own command line and environment)."""
    code = "import time; print('up', flush=True); time.sleep(600)"
    process = subprocess.Popen(
        [sys.executable, "-c", code, *extra], stdout=subprocess.PIPE, text=True, env=env
    )
    assert process.stdout is not None and process.stdout.readline() == "up\n"
    return process


def test_blocks_of_a_run_still_alive_here_are_left_to_it(pbs: PBSEmulator, tmp_path: Path) -> None:
    """``start --force`` from a copied OUTPOST_HOME: the instance being taken over is alive on
    this host and releases its blocks itself as it stops; the new one must not end them."""
    run_dir = tmp_path / "run"
    provider = PBSProProvider(run_dir=run_dir, walltime="00:10:00", commands=pbs.commands())
    job_id = provider.submit("sleep 600", "block-1")
    alive = started(["outpost-endpoint"])  # an Outpost process by its command line
    try:
        record(run_dir, "pbspro", alive.pid, HOSTNAME, job_id)
        assert end_leftovers(run_dir, provider) == []
        assert pbs.job(job_id)["state"] != "F" and (run_dir / RECORDS_FILE).exists()
    finally:
        alive.kill()
        alive.wait()
    assert end_leftovers(run_dir, provider) == [job_id]  # its run is gone now: ended
    wait_for(lambda: pbs.job(job_id)["state"] == "F", 30, f"job {job_id} to be deleted")


def test_a_stranger_with_the_recorded_pid_does_not_keep_the_blocks(
    pbs: PBSEmulator, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    provider = PBSProProvider(run_dir=run_dir, walltime="00:10:00", commands=pbs.commands())
    job_id = provider.submit("sleep 600", "block-1")
    stranger = started([])
    try:
        record(run_dir, "pbspro", stranger.pid, HOSTNAME, job_id)  # the pid was reused
        assert end_leftovers(run_dir, provider) == [job_id]
    finally:
        stranger.kill()
        stranger.wait()


def test_local_blocks_recorded_on_another_host_are_not_touched(tmp_path: Path) -> None:
    """A home shared by login nodes: the process ids in the record are the other host's."""
    run_dir = tmp_path / "run"
    # What such a pid names on this host, marked as this run dir's: not ours to kill.
    here = started([], env={**os.environ, RUN_DIR_VARIABLE: str(run_dir.absolute())})
    try:
        record(run_dir, "local", os.getpid(), "another-login-node", str(here.pid))
        assert end_leftovers(run_dir, LocalProvider(run_dir=run_dir, kill_grace=1)) == []
        assert here.poll() is None
        assert (run_dir / RECORDS_FILE).exists()
    finally:
        here.kill()
        here.wait()
