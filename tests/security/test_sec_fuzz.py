"""Schemathesis fuzzing of the service against its own ``/openapi.json`` (in process, WSGI).

Each operation gets a bounded number of generated requests (``OUTPOST_FUZZ_EXAMPLES``, default
25; the whole file runs in well under a minute), sent with a valid token, checked for: no 5xx,
documented status codes, documented content types and response bodies that match the schema.
Every rejected (4xx) request is also checked to have changed nothing: the row count of every
table is the same before and after it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from outpost_service.openapi import openapi_document
from outpost_service.store import schema as tables

from ..recipes import missing
from .conftest import caller, state_of

try:
    import schemathesis
except ImportError:
    missing("schemathesis", "install the dev tools: `bash scripts/bootstrap.sh`")
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = int(os.environ.get("OUTPOST_FUZZ_EXAMPLES", "25"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

#: How many generated requests were rejected (4xx), each checked to have changed no row.
REJECTED = [0]


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Flask, str]]:
    from .conftest import AMQP_URL, management_available

    if not management_available():
        missing("the RabbitMQ management API", "start it with `bash scripts/bootstrap.sh`")
    import secrets

    from outpost_service import ServiceConfig, create_app

    home: Path = tmp_path_factory.mktemp("fuzz")
    prefix = f"test-fuzz-{secrets.token_hex(4)}"
    app = create_app(
        ServiceConfig(
            database_url=f"sqlite:///{home}/outpost.db",
            amqp_url=AMQP_URL,
            amqp_prefix=prefix,
            rate_limit=0,
            broker_auth="shared",  # endpoint users are tested in test_sec_broker_users.py
        )
    )
    app.config["TESTING"] = True
    token = caller(app, "fuzzer").token
    yield app, token
    state = state_of(app)
    with state.database.read() as conn:
        ids = sorted(conn.execute(sa.select(tables.endpoints.c.endpoint_id)).scalars())
    state.close()
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        state.topology.delete_all(connection.channel(), ids)
    finally:
        connection.close()


#: The service's own document, as served at /openapi.json (tests/service/test_openapi.py
#: checks the endpoint serves exactly this); built without a database or broker.
SCHEMA = schemathesis.openapi.from_dict(openapi_document())


@SCHEMA.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_fuzz_operation(case: Any, fuzz_app: tuple[Flask, str]) -> None:
    app, token = fuzz_app
    headers = {"Authorization": f"Bearer {token}"}
    before = row_counts(app)
    response = case.call_and_validate(headers=headers, checks=CHECKS, app=app)
    if 400 <= response.status_code < 500:
        REJECTED[0] += 1
        assert row_counts(app) == before, (
            f"{case.method} {case.formatted_path} was rejected ({response.status_code}) but "
            "changed the database"
        )


def row_counts(app: Flask) -> dict[str, int]:
    with state_of(app).database.read() as conn:
        return {
            name: int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() or 0)
            for name, table in tables.metadata.tables.items()
        }


def test_fuzzing_rejected_some_requests() -> None:
    """The no-state-change check above is not vacuous (run with the whole file)."""
    if REJECTED[0] == 0:
        pytest.skip("run the whole file: the fuzzing tests did not run first")
    assert REJECTED[0] > 10
