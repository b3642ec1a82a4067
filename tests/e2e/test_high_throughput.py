"""The whole path with the high-throughput engine: SDK → service → RabbitMQ →
``outpost-endpoint`` (engine.type: high-throughput, local provider) → manager → workers."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from outpost import Client, Executor, ShellFunction
from outpost.errors import TaskTimeout, WorkerLost

from .stack import RunningEndpoint, RunningService, make_endpoint

pytestmark = pytest.mark.e2e

CONFIG = """\
shutdown_grace: 10
heartbeat_interval: 0.5
engine:
  type: high-throughput
  available_accelerators: ["0", "1"]
  cpu_affinity: block
  provider:
    type: local
    min_blocks: 1
    max_blocks: 1
    walltime: "01:00:00"
"""


@pytest.fixture(scope="module")
def hte_endpoint(
    service: RunningService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningEndpoint]:
    home = tmp_path_factory.mktemp("hte-home")
    name = f"hte{uuid.uuid4().hex[:6]}"
    endpoint = make_endpoint(service, home, name, config=CONFIG)
    yield endpoint
    endpoint.run("stop", name, check=False)
    log = home / "endpoints" / name / "endpoint.log"
    if log.exists():
        shutil.copy(log, home / "endpoint.log.kept")


def _exit_hard() -> None:
    os._exit(11)


def _square(x: int) -> int:
    return x * x


def test_tasks_run_on_gpu_pinned_workers(
    service: RunningService, hte_endpoint: RunningEndpoint
) -> None:
    client = Client(url=service.url, token=service.token)
    with Executor(endpoint_id=hte_endpoint.endpoint_id, client=client) as ex:
        futures = [ex.submit(_square, i) for i in range(50)]
        assert [f.result(timeout=120) for f in futures] == [i * i for i in range(50)]
        device = ShellFunction('echo "$CUDA_VISIBLE_DEVICES"')
        seen = {ex.submit(device).result(timeout=60).stdout.strip() for _ in range(6)}
        assert seen <= {"0", "1"} and seen  # never unpinned, never both devices
        lost = ex.submit(_exit_hard).exception(timeout=60)
        assert isinstance(lost, WorkerLost) and "exit code 11" in str(lost)
        ex.resource_specification = {"walltime": 0.5}
        slow = ex.submit(time.sleep, 30).exception(timeout=60)
        assert isinstance(slow, TaskTimeout)
        ex.resource_specification = {}
        assert ex.submit(_square, 7).result(timeout=60) == 49


def test_heartbeat_reports_managers_workers_and_blocks(
    service: RunningService, hte_endpoint: RunningEndpoint
) -> None:
    client = Client(url=service.url, token=service.token)
    deadline = time.monotonic() + 60
    engine: dict[str, object] = {}
    while time.monotonic() < deadline:
        engine = client.get_endpoint(hte_endpoint.endpoint_id)["details"].get("engine") or {}
        if engine.get("managers"):
            break
        time.sleep(0.2)
    assert engine.get("type") == "high-throughput", engine
    managers = engine["managers"]
    assert isinstance(managers, list) and managers[0]["workers"] == 2
    assert managers[0]["accelerators"] == ["0", "1"]
    blocks = engine["blocks"]
    assert isinstance(blocks, list) and blocks[0]["state"] == "running"


def test_stop_releases_the_block(hte_endpoint: RunningEndpoint) -> None:
    run_dir = hte_endpoint.home / "endpoints" / hte_endpoint.name / "run"
    assert (run_dir / "curve" / "client.secret").stat().st_mode & 0o777 == 0o600
    blocks = list((run_dir / "blocks").glob("*.log"))
    assert blocks, "no block was started"
    hte_endpoint.stop()
    managers = subprocess.run(
        ["pgrep", "-f", "--", f"--run-dir {run_dir}"], capture_output=True, text=True
    )
    assert managers.returncode == 1, f"managers still running: {managers.stdout}{managers.stderr}"
    assert Path(run_dir).exists()
