"""Fixtures of the scale-out tests: a broker (the machine's RabbitMQ; a cluster fixture can take
its place, see :class:`.stack.Broker`) and a stack of HAProxy, two API processes and two ingest
processes on a fresh PostgreSQL database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..broker_cleanup import delete_topology
from ..e2e.conftest import new_postgres_database  # noqa: F401  (a fixture)
from ..e2e.stack import RunningEndpoint, make_endpoint
from .stack import Broker, ScaleStack, SingleBroker, start_stack


@pytest.fixture(scope="session")
def broker() -> Broker:
    """The broker under the stack: the machine's RabbitMQ.  To run the scale-out tests on a
    RabbitMQ cluster, override this fixture with one yielding an object with ``urls`` (one
    AMQP URL per node) and ``kill(node)``."""
    return SingleBroker()


@pytest.fixture
def scale_stack(
    request: pytest.FixtureRequest, tmp_path: Path, broker: Broker
) -> Iterator[ScaleStack]:
    database_url = request.getfixturevalue("new_postgres_database")()  # a fresh database
    stack = start_stack(tmp_path / "service", database_url, broker)
    yield stack
    stack.stop()
    delete_topology(stack.prefix, stack.endpoint_ids)


@pytest.fixture
def scale_endpoint(scale_stack: ScaleStack, tmp_path: Path) -> Iterator[RunningEndpoint]:
    """A real endpoint (local provider, the default template) registered through HAProxy."""
    running = make_endpoint(
        scale_stack.service(), tmp_path / "endpoint", f"scale{uuid.uuid4().hex[:6]}"
    )
    yield running
    running.run("stop", running.name, check=False)
