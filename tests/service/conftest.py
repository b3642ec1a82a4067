"""Service test fixtures: real SQLite and PostgreSQL databases, a real RabbitMQ.

Each test gets its own AMQP prefix (derived from one per-session prefix) and deletes every
exchange and queue it declared; PostgreSQL tests share one fresh database per session, created
and dropped here, and get an empty schema per test.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pika
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from outpost.protocol import serialize, serialize_function
from outpost_service import IngestConsumer, ServiceConfig, create_app
from outpost_service.server import make_ingest
from outpost_service.state import EXTENSION, ServiceState
from outpost_service.store import schema
from outpost_service.store.users import get_or_create_user, issue_token

from ..broker_cleanup import delete_topology
from ..recipes import missing

AMQP_URL = os.environ.get("OUTPOST_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
POSTGRES_ADMIN_URL = os.environ.get(
    "OUTPOST_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test"
)
SESSION_PREFIX = f"test-svc-{secrets.token_hex(4)}"
_prefix_numbers = itertools.count()


# --------------------------------------------------------------------------- databases
@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this session, dropped at the end."""
    name = f"outpost_test_{secrets.token_hex(4)}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        missing(
            f"PostgreSQL at {POSTGRES_ADMIN_URL} ({exc.orig})",
            "start it with `OUTPOST_NEED_POSTGRES=1 bash scripts/bootstrap.sh`",
        )
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/outpost.db"
    url: str = request.getfixturevalue("postgres_database")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    return url


# --------------------------------------------------------------------------- broker
@pytest.fixture
def amqp_prefix() -> str:
    return f"{SESSION_PREFIX}-{next(_prefix_numbers)}"


@pytest.fixture
def amqp_channel() -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    """A channel with publisher confirms, for tests that talk to the broker directly."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    channel.confirm_delivery()
    yield channel
    connection.close()


# --------------------------------------------------------------------------- apps
@contextlib.contextmanager
def app_factory(database_url: str, amqp_prefix: str) -> Iterator[Any]:
    """A factory of apps on one database and AMQP prefix; on exit every app is closed and
    every queue, exchange and per-endpoint broker user they made is deleted."""
    apps: list[Flask] = []

    def make(**settings: Any) -> Flask:
        values = {"database_url": database_url, "amqp_url": AMQP_URL, "amqp_prefix": amqp_prefix}
        config = ServiceConfig(**{**values, **settings})
        app = create_app(config)
        app.config["TESTING"] = True
        apps.append(app)
        return app

    try:
        yield make
    finally:
        endpoint_ids: set[str] = set()
        for app in apps:
            state = app_state(app)
            with state.database.read() as conn:
                endpoint_ids |= set(
                    conn.execute(sa.select(schema.endpoints.c.endpoint_id)).scalars()
                )
            state.close()
        delete_topology(amqp_prefix, sorted(endpoint_ids))


@pytest.fixture
def make_app(database_url: str, amqp_prefix: str) -> Iterator[Any]:
    """A factory of apps on this test's database and prefix; everything is cleaned up."""
    with app_factory(database_url, amqp_prefix) as make:
        yield make


@pytest.fixture
def app(make_app: Any) -> Flask:
    flask_app: Flask = make_app()
    return flask_app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def app_state(app: Flask) -> ServiceState:
    state: ServiceState = app.extensions[EXTENSION]
    return state


@contextlib.contextmanager
def running_ingest(app: Flask, **batching: Any) -> Iterator[IngestConsumer]:
    """``app``'s ingest consumer, consuming until the block ends; ``batching`` sets its
    ``prefetch`` / ``max_batch_age`` / ``idle_flush``."""
    state = app_state(app)
    consumer = make_ingest(state.config, state)
    for name, value in batching.items():
        setattr(consumer, name, value)
    consumer.start()
    try:
        assert consumer.consuming.wait(10), "ingest did not start consuming"
        yield consumer
    finally:
        consumer.stop()


# --------------------------------------------------------------------------- users and helpers
def new_token(app: Flask, name: str) -> str:
    with app_state(app).database.write() as conn:
        return issue_token(conn, get_or_create_user(conn, name))


@dataclass
class Caller:
    """A user of the API: a token and a test client."""

    client: FlaskClient
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str) -> Any:
        return self.client.get(path, headers=self.headers)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> Any:
        return self.client.post(path, json=json, headers=self.headers, **kwargs)

    def delete(self, path: str) -> Any:
        return self.client.delete(path, headers=self.headers)

    def ok(self, method: str, path: str, json: Any = None) -> Any:
        response = (
            getattr(self, method)(path, json) if json is not None else getattr(self, method)(path)
        )
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def register_endpoint(self, name: str = "ep1", **extra: Any) -> str:
        return str(self.ok("post", "/v1/endpoints", {"name": name, **extra})["endpoint_id"])

    def register_function(self, fn: Any = abs) -> str:
        payload = b64(serialize_function(fn))
        return str(self.ok("post", "/v1/functions", {"function": payload})["function_id"])

    def submit(self, endpoint_id: str, function_id: str, *args_list: Any, **task: Any) -> list[str]:
        tasks = [
            {"function_id": function_id, "endpoint_id": endpoint_id, "args": args_b64(*a), **task}
            for a in args_list
        ]
        return list(self.ok("post", "/v1/tasks", {"tasks": tasks})["task_ids"])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def args_b64(*args: Any) -> str:
    return b64(serialize((args, {})))


@pytest.fixture
def alice(app: Flask, client: FlaskClient) -> Caller:
    return Caller(client, new_token(app, "alice"))


@pytest.fixture
def bob(app: Flask, client: FlaskClient) -> Caller:
    return Caller(client, new_token(app, "bob"))


def row_counts(app: Flask) -> dict[str, int]:
    """Rows per table, to assert that a rejected request changed nothing."""
    with app_state(app).database.read() as conn:
        return {
            name: int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
            for name, table in schema.metadata.tables.items()
        }
