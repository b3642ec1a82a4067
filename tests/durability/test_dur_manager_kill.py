"""kill -9 of a high-throughput engine manager mid-campaign loses no task.

Killed: the one manager process (``python -m outpost_endpoint.engine.high_throughput.manager``
of this endpoint's run dir) of an endpoint with ``engine.type: high-throughput`` (local provider,
one node per block, two workers, ``max_retries: 1``), with SIGKILL, once a fifth of the campaign
is stored.  The interchange notices the silence after ``heartbeat_threshold``, sends the
manager's tasks again (their one retry) and the engine starts a new block for ``min_blocks: 1``.
Counted: every task has exactly one terminal result, all ``success`` with the right value (a task
fails with ``manager_lost`` only if it is lost twice, and only one manager is killed), and a
second block was started.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..e2e.stack import RunningEndpoint, RunningService, make_endpoint
from .campaign import TASKS, Campaign, alive, wait_until

MANAGER_MODULE = "outpost_endpoint.engine.high_throughput.manager"

CONFIG = """\
shutdown_grace: 10
heartbeat_interval: 0.5
engine:
  type: high-throughput
  max_workers_per_node: 2
  max_retries: 1
  heartbeat_period: 1
  heartbeat_threshold: 3
  provider:
    type: local
    nodes_per_block: 1
    min_blocks: 1
    max_blocks: 1
    walltime: "01:00:00"
"""


@pytest.fixture
def hte_endpoint(service: RunningService, tmp_path: Path) -> Iterator[RunningEndpoint]:
    """An endpoint with the high-throughput engine (the durability ``endpoint`` fixture
    starts the default process pool, so this one writes its config before ``start``)."""
    name = f"durhte{uuid.uuid4().hex[:6]}"
    endpoint = make_endpoint(service, tmp_path / "endpoint", name, config=CONFIG)
    yield endpoint
    endpoint.run("stop", name, check=False)


def manager_pids(run_dir: Path) -> list[int]:
    """Live managers of this run dir, found by their command line in /proc (their workers are
    forked, so they share it: a process whose parent is one of them is a worker)."""
    found: dict[int, int] = {}  # pid -> parent pid
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
        words = [word.decode(errors="replace") for word in argv]
        if MANAGER_MODULE in words and str(run_dir) in words and alive(int(entry.name)):
            found[int(entry.name)] = parent
    return [pid for pid, parent in found.items() if parent not in found]


def test_kill_9_manager_mid_campaign(
    service: RunningService, hte_endpoint: RunningEndpoint, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    endpoint_dir = hte_endpoint.home / "endpoints" / hte_endpoint.name
    run_dir = endpoint_dir / "run"
    campaign = Campaign(
        service, hte_endpoint.endpoint_id, runs, journal=endpoint_dir / "journal.db"
    )
    campaign.submit(TASKS)
    campaign.wait_for(TASKS // 5)
    managers = manager_pids(run_dir)
    assert len(managers) == 1, f"expected one manager of {run_dir}, found {managers}"
    os.kill(managers[0], signal.SIGKILL)
    wait_until(lambda: not alive(managers[0]), 30, f"manager pid {managers[0]} to die")
    assert campaign.finished() < TASKS, "the campaign ended before the kill: make it longer"
    campaign.wait_for(TASKS)
    counts = campaign.verdict()  # all success: no task may fail with manager_lost here
    blocks = sorted((run_dir / "blocks").glob("*.log"))
    assert len(blocks) >= 2, f"no new block after the manager was killed: {blocks}"
    replacement = manager_pids(run_dir)
    assert replacement and managers[0] not in replacement, replacement
    print(f"manager kill -9 ({TASKS} tasks): {counts}, blocks {len(blocks)}")
