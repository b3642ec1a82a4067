"""Bearer-token authentication: every failure is a 401 that teaches, and changes nothing."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from outpost_service.store import schema
from outpost_service.store.users import hash_token, revoke_token

from .conftest import Caller, app_state, row_counts


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "unauthorized"),
        ("Basic dXNlcjpwYXNz", "unauthorized"),
        ("Bearer", "unauthorized"),
        ("Bearer op_not-a-real-token", "invalid_token"),
    ],
)
def test_bad_or_missing_token_is_401_and_changes_nothing(
    app: Flask, client: FlaskClient, header: str | None, code: str
) -> None:
    before = row_counts(app)
    headers = {"Authorization": header} if header else {}
    response = client.post("/v1/endpoints", json={"name": "ep"}, headers=headers)
    assert response.status_code == 401
    error = response.get_json()["error"]
    assert error["code"] == code
    assert "create-user" in error["message"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert row_counts(app) == before


def test_revoked_token_is_refused(app: Flask, alice: Caller) -> None:
    assert alice.get("/v1/endpoints").status_code == 200
    with app_state(app).database.write() as conn:
        assert revoke_token(conn, alice.token)
    response = alice.get("/v1/endpoints")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "token_revoked"


def test_expired_token_is_refused(app: Flask, alice: Caller) -> None:
    with app_state(app).database.write() as conn:
        conn.execute(
            schema.tokens.update()
            .where(schema.tokens.c.token_hash == hash_token(alice.token))
            .values(expires_at=time.time() - 1)
        )
    response = alice.get("/v1/endpoints")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "token_expired"


def test_tokens_are_stored_only_as_hashes(app: Flask, alice: Caller) -> None:
    assert alice.token.startswith("op_")
    with app_state(app).database.read() as conn:
        stored = list(conn.execute(sa.select(schema.tokens.c.token_hash)).scalars())
    assert stored == [hash_token(alice.token)]
    assert alice.token not in stored


def test_health_and_openapi_need_no_token(client: FlaskClient) -> None:
    health = client.get("/health").get_json()
    assert health["status"] == "ok" and health["protocol"] == 1
    assert client.get("/openapi.json").status_code == 200
