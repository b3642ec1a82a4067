"""``outpost-endpoint start``/``stop`` as real processes: daemon, readiness pipe, pid file.

Registration goes over real HTTP to a stand-in service (see ``fake_service.py``) that hands out
a private topology on the real RabbitMQ.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from outpost.protocol import TaskState, deserialize
from outpost_endpoint import pidfile

from . import tasks
from .conftest import Topology
from .fake_service import FakeService

CLI = str(Path(sys.executable).parent / "outpost-endpoint")


@pytest.fixture
def fake_service(topology: Topology) -> Iterator[FakeService]:
    service = FakeService(topology.registration())
    yield service
    service.close()


@pytest.fixture
def env(home: Path, fake_service: FakeService) -> dict[str, str]:
    environment = dict(os.environ)
    environment.update(
        OUTPOST_HOME=str(home), OUTPOST_URL=fake_service.url, OUTPOST_TOKEN=fake_service.token
    )
    return environment


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=180)


@pytest.fixture
def endpoint(env: dict[str, str], home: Path) -> Iterator[str]:
    """A configured endpoint named ``ep`` (shut down at the end if a test left it running)."""
    assert cli(env, "configure", "ep").returncode == 0
    (home / "endpoints" / "ep" / "config.yaml").write_text(
        "heartbeat_interval: 0.5\nshutdown_grace: 1\nengine:\n  max_workers: 1\n"
    )
    yield "ep"
    cli(env, "stop", "ep")


def test_start_registers_serves_and_stops(
    env: dict[str, str], endpoint: str, topology: Topology, fake_service: FakeService, home: Path
) -> None:
    started = cli(env, "start", endpoint)
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == f"endpoint ep started: {topology.endpoint_id}"
    method, path, body = fake_service.requests[-1]
    assert (method, path, body["name"]) == ("POST", "/v1/endpoints", "ep")
    assert set(body["metadata"]) >= {"hostname", "python", "outpost"}

    root = home / "endpoints" / "ep"
    info = json.loads((root / "endpoint.json").read_text())
    assert info["endpoint_id"] == topology.endpoint_id
    pid = pidfile.read_pid(root / "endpoint.pid")
    assert pid is not None and pid != os.getpid()
    assert re.search(rf"running \(pid {pid}\)", cli(env, "status", endpoint).stdout)
    again = cli(env, "start", endpoint)
    assert again.returncode != 0 and "already running" in again.stderr

    task = topology.task(tasks.square, 12)
    assert deserialize(topology.result(task.task_id).value) == 144

    assert cli(env, "stop", endpoint).returncode == 0
    assert not pidfile.is_alive(pid) and not (root / "endpoint.pid").exists()
    assert "stopped" in cli(env, "status", endpoint).stdout
    assert "started: " in cli(env, "logs", endpoint, "-n", "200").stdout

    # A restart re-attaches with the id kept in endpoint.json.
    restarted = cli(env, "restart", endpoint)
    assert restarted.returncode == 0 and topology.endpoint_id in restarted.stdout
    assert fake_service.requests[-1][2]["endpoint_id"] == topology.endpoint_id


def test_stop_mid_task_keeps_the_task_in_the_journal(
    env: dict[str, str], endpoint: str, topology: Topology, tmp_path: Path
) -> None:
    assert cli(env, "start", endpoint).returncode == 0
    gate = tmp_path / "gate"
    task = topology.task(tasks.wait_for_file, str(gate), 5)
    topology.status(lambda s: s.details["engine"]["running"] == 1)
    assert cli(env, "stop", endpoint).returncode == 0  # grace 1 s: the task is still running
    assert topology.waiting() == 0  # acked: the endpoint's journal has it, and replays it
    gate.touch()
    assert cli(env, "start", endpoint).returncode == 0
    result = topology.result(task.task_id)
    assert result.state is TaskState.SUCCESS and deserialize(result.value) == 5


def test_bad_token_fails_start_with_the_reason(env: dict[str, str], endpoint: str) -> None:
    env = {**env, "OUTPOST_TOKEN": "wrong"}
    (Path(env["OUTPOST_HOME"]) / "endpoints" / "ep" / "credentials.json").unlink()
    started = cli(env, "start", endpoint)
    assert started.returncode == 1
    assert "HTTP 401" in started.stderr and "token" in started.stderr
    assert "stopped" in cli(env, "status", endpoint).stdout


def test_unreachable_service_fails_start(env: dict[str, str], endpoint: str) -> None:
    config = Path(env["OUTPOST_HOME"]) / "endpoints" / "ep" / "config.yaml"
    config.write_text("service_url: http://127.0.0.1:9\n")
    started = cli(env, "start", endpoint)
    assert started.returncode == 1
    assert "cannot reach the Outpost service at http://127.0.0.1:9" in started.stderr


def test_invalid_config_fails_start_before_detaching(env: dict[str, str], endpoint: str) -> None:
    config = Path(env["OUTPOST_HOME"]) / "endpoints" / "ep" / "config.yaml"
    config.write_text("engine:\n  type: high-throughput\n  cpu_affinity: sideways\n")
    started = cli(env, "start", endpoint)
    assert started.returncode == 1 and "engine.cpu_affinity: 'sideways'" in started.stderr


def test_delete_stops_and_deletes_on_the_service(
    env: dict[str, str], endpoint: str, topology: Topology, fake_service: FakeService, home: Path
) -> None:
    assert cli(env, "start", endpoint).returncode == 0
    deleted = cli(env, "delete", endpoint, "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert fake_service.deleted == [topology.endpoint_id]
    assert not (home / "endpoints" / "ep").exists()
    assert "ep" not in cli(env, "list").stdout
