"""End-to-end fixtures: the service, endpoints and SDK as separate real processes.

A service process (``outpost-service serve --port 0``) runs per database backend (SQLite and
PostgreSQL), each on its own AMQP prefix so parallel runs never share queues.  Endpoints are
started with the real ``outpost-endpoint`` CLI, which daemonizes.
"""

from __future__ import annotations

import os
import secrets
import shutil
import uuid
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy

from .stack import RunningEndpoint, RunningService, make_endpoint, start_service, stop_service

POSTGRES_ADMIN_URL = os.environ.get(
    "OUTPOST_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def new_postgres_database() -> Iterator[Callable[[], str]]:
    """Makes fresh PostgreSQL databases on demand; all are dropped at the end of the session."""
    admin = sqlalchemy.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    names: list[str] = []

    def create() -> str:
        name = f"outpost_e2e_{secrets.token_hex(4)}"
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
        names.append(name)
        return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name

    yield create
    with admin.connect() as conn:
        for name in names:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningService]:
    home = tmp_path_factory.mktemp(f"service-{request.param}")
    if request.param == "sqlite":
        database_url = f"sqlite:///{home}/outpost.db"
    else:
        database_url = request.getfixturevalue("new_postgres_database")()
    running = start_service(home, database_url)
    yield running
    stop_service(running)


@pytest.fixture(scope="module")
def endpoint(
    service: RunningService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningEndpoint]:
    home = tmp_path_factory.mktemp("endpoint-home")
    running = make_endpoint(service, home, f"ep{uuid.uuid4().hex[:6]}")
    yield running
    running.run("stop", running.name, check=False)
    log = home / "endpoints" / running.name / "endpoint.log"
    if log.exists():
        shutil.copy(log, home / "endpoint.log.kept")
