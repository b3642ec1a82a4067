"""Fixtures for the crash tests: a real service, endpoint daemon and (for broker faults) a
private throwaway RabbitMQ node, all as separate processes that the tests kill with SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..e2e.conftest import new_postgres_database  # noqa: F401  (a fixture)
from ..e2e.stack import (
    AMQP_URL,
    RunningEndpoint,
    RunningService,
    delete_topology,
    make_endpoint,
    start_service,
)
from ..fixtures.postgres_private import PrivatePostgres, can_run_private_postgres, postgres_bin
from ..fixtures.rabbitmq_cluster import broker_cluster, rabbitmq_cluster  # noqa: F401
from ..recipes import ensure_private_rabbitmq, missing, private_broker_port
from .campaign import Campaign

RABBITMQ_PRIVATE = Path(__file__).parent.parent / "fixtures" / "rabbitmq_private.sh"


class PrivateBroker:
    """A RabbitMQ node of this test only (tests/fixtures/rabbitmq_private.sh); with
    ``management`` its management API listens on ``port + 10000`` (per-endpoint users)."""

    def __init__(self, root: Path, port: int, *, management: bool = False) -> None:
        self.root, self.port, self.management = root, port, management
        self.url = f"amqp://guest:guest@127.0.0.1:{port}/"

    def do(self, command: str, *args: str) -> str:
        run = subprocess.run(
            ["bash", str(RABBITMQ_PRIVATE), command, str(self.root), str(self.port), *args],
            capture_output=True, text=True, timeout=120,
            env={
                "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                "RABBITMQ_PRIVATE_MGMT": "1" if self.management else "0",
            },
        )  # fmt: skip
        assert run.returncode == 0, f"rabbitmq_private.sh {command}: {run.stdout}{run.stderr}"
        return run.stdout

    def pid(self) -> int:
        """The node's beam.smp process id."""
        return int((self.root / "rabbit.pid").read_text().strip())

    def freeze(self) -> None:
        """SIGSTOP the node: sockets stay open, nothing is answered (a hung broker)."""
        os.kill(self.pid(), signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.pid(), signal.SIGCONT)


@pytest.fixture
def private_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PrivateBroker]:
    """A private node (indirect parametrization ``True`` adds the management plugin)."""
    ensure_private_rabbitmq()
    management = bool(getattr(request, "param", False))
    broker = PrivateBroker(tmp_path / "rabbitmq", private_broker_port(), management=management)
    broker.do("start")
    yield broker
    with contextlib.suppress(OSError, ValueError):
        broker.thaw()  # a test that failed while it was frozen: kill needs it answering
    broker.do("kill")


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster of this test only, which it may stop, kill and restart (never the
    shared server on 5432); database ``outpost`` created."""
    problem = can_run_private_postgres()
    if problem is not None:
        missing("a private PostgreSQL cluster", problem)
    bin_dir = postgres_bin()
    assert bin_dir is not None
    cluster = PrivatePostgres(bin_dir)
    try:
        cluster.start()
        cluster.create_database("outpost")
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def service_home(tmp_path: Path) -> Path:
    return tmp_path / "service"


@pytest.fixture
def service_database(request: pytest.FixtureRequest, service_home: Path) -> str:
    """The service's database URL: SQLite, unless a test module parametrizes it
    (``indirect``) with ``"postgresql"`` -- then a fresh database on the shared server."""
    kind = getattr(request, "param", "sqlite")
    if kind == "sqlite":
        return f"sqlite:///{service_home}/outpost.db"
    assert kind == "postgresql", kind
    return str(request.getfixturevalue("new_postgres_database")())


#: ``pytestmark`` of the service-side crash tests: each runs on SQLite and on PostgreSQL.
BOTH_DATABASES = pytest.mark.parametrize(
    "service_database", ["sqlite", "postgresql"], indirect=True
)


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
def service(service_home: Path, service_database: str) -> Iterator[RunningService]:
    """A service on ``service_database`` and the shared broker (a test may replace its
    process)."""
    running = start_service(service_home, service_database)
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


__all__ = ["AMQP_URL", "BOTH_DATABASES", "PrivateBroker", "PrivatePostgres"]
