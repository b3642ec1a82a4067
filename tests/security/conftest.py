"""Security test fixtures: a real service app (SQLite) on the shared RabbitMQ with its
management API, and helpers that act as a hostile endpoint straight on the broker."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
import requests
from flask import Flask

from outpost_service import ServiceConfig, create_app
from outpost_service.broker.topology import Topology
from outpost_service.state import EXTENSION, ServiceState
from outpost_service.store.users import get_or_create_user, issue_token

from ..service.conftest import Caller

AMQP_URL = os.environ.get("OUTPOST_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
MANAGEMENT_API = "http://127.0.0.1:15672/api"
GUEST = ("guest", "guest")


def management_available() -> bool:
    try:
        return requests.get(f"{MANAGEMENT_API}/overview", auth=GUEST, timeout=5).ok
    except requests.RequestException:
        return False


def state_of(app: Flask) -> ServiceState:
    state: ServiceState = app.extensions[EXTENSION]
    return state


def user_exists(name: str) -> bool:
    response = requests.get(f"{MANAGEMENT_API}/users/{name}", auth=GUEST, timeout=10)
    return response.status_code == 200


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Any]:
    """Apps on one SQLite database and a fresh prefix; queues, exchanges and users removed."""
    if not management_available():
        pytest.skip(f"RabbitMQ management API not reachable at {MANAGEMENT_API}")
    prefix = f"test-sec-{secrets.token_hex(4)}"
    apps: list[Flask] = []

    def make(**settings: Any) -> Flask:
        values = {
            "database_url": f"sqlite:///{tmp_path}/outpost.db",
            "amqp_url": AMQP_URL,
            "amqp_prefix": prefix,
            **settings,
        }
        app = create_app(ServiceConfig(**values))
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield make
    import sqlalchemy as sa

    from outpost_service.store import schema

    ids: set[str] = set()
    for app in apps:
        state = state_of(app)
        with state.database.read() as conn:
            ids |= set(conn.execute(sa.select(schema.endpoints.c.endpoint_id)).scalars())
        state.close()
    for endpoint_id in ids:
        requests.delete(f"{MANAGEMENT_API}/users/outpost-ep-{endpoint_id}", auth=GUEST, timeout=10)
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        Topology(prefix).delete_all(connection.channel(), sorted(ids))
    finally:
        connection.close()


@pytest.fixture
def app(make_app: Any) -> Flask:
    made: Flask = make_app()
    return made


def caller(app: Flask, name: str) -> Caller:
    with state_of(app).database.write() as conn:
        token = issue_token(conn, get_or_create_user(conn, name))
    return Caller(app.test_client(), token)


@pytest.fixture
def alice(app: Flask) -> Caller:
    return caller(app, "alice")


@pytest.fixture
def bob(app: Flask) -> Caller:
    return caller(app, "bob")


def connect(url: str, vhost: str | None = None) -> pika.BlockingConnection:
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.socket_timeout = 10
    if vhost is not None:
        params.virtual_host = vhost
    return pika.BlockingConnection(params)
