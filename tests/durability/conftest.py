"""Fixtures for the crash tests: a real service, endpoint daemon and (for broker faults) a
private throwaway RabbitMQ node, all as separate processes that the tests kill with SIGKILL."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..e2e.stack import (
    AMQP_URL,
    RunningEndpoint,
    RunningService,
    delete_topology,
    make_endpoint,
    start_service,
)
from ..recipes import ensure_private_rabbitmq, private_broker_port
from .campaign import Campaign

RABBITMQ_PRIVATE = Path(__file__).parent.parent / "fixtures" / "rabbitmq_private.sh"


class PrivateBroker:
    """A RabbitMQ node of this test only (tests/fixtures/rabbitmq_private.sh)."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.url = f"amqp://guest:guest@127.0.0.1:{port}/"

    def do(self, command: str) -> str:
        run = subprocess.run(
            ["bash", str(RABBITMQ_PRIVATE), command, str(self.root), str(self.port)],
            capture_output=True, text=True, timeout=120,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "RABBITMQ_PRIVATE_MGMT": "0"},
        )  # fmt: skip
        assert run.returncode == 0, f"rabbitmq_private.sh {command}: {run.stdout}{run.stderr}"
        return run.stdout


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    ensure_private_rabbitmq()
    broker = PrivateBroker(tmp_path / "rabbitmq", private_broker_port())
    broker.do("start")
    yield broker
    broker.do("kill")


@pytest.fixture
def service_home(tmp_path: Path) -> Path:
    return tmp_path / "service"


def stop(service: RunningService, *, shared_broker: bool) -> None:
    if service.process.poll() is None:
        service.process.terminate()
        try:
            service.process.wait(30)
        except subprocess.TimeoutExpired:
            service.process.kill()
            service.process.wait(10)
    if shared_broker:
        delete_topology(service.amqp_prefix, service.endpoint_ids)


@pytest.fixture
def service(service_home: Path) -> Iterator[RunningService]:
    """A service on SQLite and the shared broker (a test may replace its process)."""
    running = start_service(service_home, f"sqlite:///{service_home}/outpost.db")
    holder = [running]
    yield running
    stop(holder[-1], shared_broker=True)


@pytest.fixture
def endpoint(service: RunningService, tmp_path: Path) -> Iterator[RunningEndpoint]:
    running = make_endpoint(service, tmp_path / "endpoint", f"dur{uuid.uuid4().hex[:6]}")
    yield running
    running.run("stop", running.name, check=False)


@pytest.fixture
def campaign(service: RunningService, endpoint: RunningEndpoint, tmp_path: Path) -> Campaign:
    runs = tmp_path / "runs"
    runs.mkdir()
    journal = endpoint.home / "endpoints" / endpoint.name / "journal.db"
    return Campaign(service, endpoint.endpoint_id, runs, journal=journal)


__all__ = ["AMQP_URL", "PrivateBroker"]
