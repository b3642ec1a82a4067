"""The blocks a killed run left, found from ``run/blocks.json`` (issue 11, item 3).

The end-to-end tests (tests/e2e/test_block_leftovers.py) kill real daemons; this one covers
the moment they cannot hit reliably: a daemon killed while ``qsub`` ran, so that only the job's
name was recorded, not its id.
"""

from __future__ import annotations

import json
from pathlib import Path

from outpost_endpoint.engine.high_throughput.block_records import (
    RECORDS_FILE,
    BlockRecords,
    end_leftovers,
)
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
