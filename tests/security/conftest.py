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

from outpost_service.store.users import get_or_create_user, issue_token

from ..recipes import missing
from ..service.conftest import Caller, app_factory
from ..service.conftest import app_state as state_of

AMQP_URL = os.environ.get("OUTPOST_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
MANAGEMENT_API = "http://127.0.0.1:15672/api"
GUEST = ("guest", "guest")


def management_available() -> bool:
    try:
        return requests.get(f"{MANAGEMENT_API}/overview", auth=GUEST, timeout=5).ok
    except requests.RequestException:
        return False


def user_exists(name: str) -> bool:
    response = requests.get(f"{MANAGEMENT_API}/users/{name}", auth=GUEST, timeout=10)
    return response.status_code == 200


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Any]:
    """Apps on one SQLite database and a fresh prefix; queues, exchanges and users removed."""
    if not management_available():
        missing(
            f"the RabbitMQ management API at {MANAGEMENT_API}",
            "start it with `bash scripts/bootstrap.sh`",
        )
    with app_factory(
        f"sqlite:///{tmp_path}/outpost.db", f"test-sec-{secrets.token_hex(4)}"
    ) as make:
        yield make


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
