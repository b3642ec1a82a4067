"""Token scopes (``outpost-service create-user NAME --scope read,submit,manage``): a token does
only what its scopes allow, refused with 403 ``insufficient_scope`` before anything is written
(real service app on SQLite, real RabbitMQ)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask

from outpost_service.cli import main
from outpost_service.store.database import Database
from outpost_service.store.users import find_token, get_or_create_user, hash_token, issue_token

from ..service.conftest import Caller, args_b64, row_counts
from .conftest import state_of


def scoped(app: Flask, name: str, *scopes: str) -> Caller:
    with state_of(app).database.write() as conn:
        token = issue_token(conn, get_or_create_user(conn, name), scopes=scopes)
    return Caller(app.test_client(), token)


def test_each_scope_allows_only_its_requests(app: Flask, alice: Caller) -> None:
    endpoint_id = alice.register_endpoint("polaris")
    function_id = alice.register_function(abs)
    [task_id] = alice.submit(endpoint_id, function_id, (-1,))
    reader = scoped(app, "alice", "read")
    submitter = scoped(app, "alice", "submit", "read")
    manager = scoped(app, "alice", "manage")
    task = {"function_id": function_id, "endpoint_id": endpoint_id, "args": args_b64(-2)}

    assert reader.ok("get", f"/v1/tasks/{task_id}")["task_id"] == task_id
    assert reader.ok("get", "/v1/endpoints")["endpoints"][0]["endpoint_id"] == endpoint_id
    assert reader.post("/v1/results", {"task_ids": [task_id], "wait": 0}).status_code == 200
    before = row_counts(app)
    refusals = [
        (reader, "post", "/v1/tasks", {"tasks": [task]}, "submit"),
        (reader, "post", f"/v1/tasks/{task_id}/cancel", None, "submit"),
        (reader, "post", "/v1/endpoints", {"name": "other"}, "manage"),
        (submitter, "delete", f"/v1/endpoints/{endpoint_id}", None, "manage"),
        (manager, "get", "/v1/endpoints", None, "read"),
        (manager, "post", "/v1/tasks", {"tasks": [task]}, "submit"),
    ]
    for who, method, path, body, needed in refusals:
        answer = (
            getattr(who, method)(path, body) if body is not None else getattr(who, method)(path)
        )
        assert answer.status_code == 403, (path, answer.get_json())
        error = answer.get_json()["error"]
        assert error["code"] == "insufficient_scope"
        assert error["details"]["required_scope"] == needed and needed in error["message"]
    answer = manager.client.put(
        f"/v1/endpoints/{endpoint_id}/policy", json={"allowed_users": []}, headers=manager.headers
    )
    assert answer.status_code == 200, answer.get_json()
    assert row_counts(app) == before
    assert len(submitter.submit(endpoint_id, function_id, (-3,))) == 1


def test_create_user_takes_scopes_and_refuses_unknown_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUTPOST_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OUTPOST_DATABASE_URL", raising=False)
    runner = CliRunner()
    made = runner.invoke(main, ["create-user", "erin", "--scope", "submit, read"])
    assert made.exit_code == 0, made.output
    token = made.output.removeprefix("token: ").strip()
    bad = runner.invoke(main, ["create-user", "erin", "--scope", "read,admin"])
    assert bad.exit_code == 2 and "admin" in bad.output and "manage" in bad.output
    database = Database(f"sqlite:///{tmp_path}/home/service/outpost.db")
    with database.read() as conn:
        record = find_token(conn, hash_token(token))
    assert record is not None and record.scopes == frozenset({"submit", "read"})
    database.dispose()
