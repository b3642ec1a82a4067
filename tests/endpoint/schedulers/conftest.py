"""Fixtures for the scheduler tests: a real one-node Slurm cluster and the PBS Pro emulator.

Slurm: ``tests/fixtures/slurm/slurm-one-node.sh`` installs slurm-wlm with apt-get if missing and
starts munged + slurmctld + slurmd (plus emulated nodes ``fake1``/``fake2`` in partition
``multi``) as root without systemd.  The fixture skips only when that cannot work here (not root,
or neither Slurm nor apt-get present); a recipe that fails otherwise fails the tests.

PBS: ``tests/fixtures/pbs_emulator`` holds ``qsub``/``qstat``/``qdel``; each test gets its own
state directory, so job ids and faults never leak between tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from outpost_endpoint.providers.scheduler_command import SchedulerCommands

from ...recipes import ensure_mpich, ensure_slurm

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
PBS_BIN = FIXTURES / "pbs_emulator"

T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout: float = 60.0, what: str = "condition") -> T:
    """Poll ``probe`` (a scheduler query) until it returns something truthy, or fail."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    ensure_slurm()


@pytest.fixture(scope="session")
def mpich() -> str:
    """MPICH's hydra ``mpiexec`` (installed by the recipe if missing)."""
    return ensure_mpich()


class PBSEmulator:
    """One private PBS "server": its state directory and the environment to reach it."""

    def __init__(self, state: Path, nodes: str = "nid0001,nid0002,nid0003,nid0004") -> None:
        self.state = state
        self.env = {
            "PATH": f"{PBS_BIN}{os.pathsep}{os.environ['PATH']}",
            "PBS_EMULATOR_STATE": str(state),
            "PBS_EMULATOR_NODES": nodes,
        }

    def commands(self, **kwargs: Any) -> SchedulerCommands:
        options: dict[str, Any] = {
            "timeout": 10.0,
            "retries": 2,
            "backoff_base": 0.05,
            "backoff_cap": 0.2,
        }
        options.update(kwargs)
        return SchedulerCommands(env=self.env, **options)

    def fault(self, **faults: Any) -> None:
        (self.state / "faults.json").write_text(json.dumps(faults))

    def job(self, job_id: str) -> dict[str, Any]:
        return json.loads((self.state / "jobs" / f"{job_id.split('.')[0]}.json").read_text())

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv), capture_output=True, text=True, env={**os.environ, **self.env}, timeout=30
        )

    def stop_all(self) -> None:
        """qdel every unfinished job, then wait until their runners recorded the end."""
        self.fault()
        live = [j["id"] for j in self._jobs() if j["state"] != "F"]
        if live:
            self.run("qdel", *live)
            wait_for(
                lambda: all(j["state"] == "F" for j in self._jobs()), 30, "emulated jobs to end"
            )

    def _jobs(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in self.state.glob("jobs/*.json")]


@pytest.fixture
def pbs(tmp_path: Path) -> Iterator[PBSEmulator]:
    emulator = PBSEmulator(tmp_path / "pbs-state")
    (emulator.state / "jobs").mkdir(parents=True)
    yield emulator
    emulator.stop_all()
