"""Endpoint sharing and function allow-lists (``/v1/endpoints/<id>/policy``) on SQLite and
PostgreSQL with a real RabbitMQ: who may see and submit to an endpoint, that results stay their
submitter's, and that a refused batch writes and publishes nothing."""

# The service fixtures are imported below, so test arguments of the same names "redefine" them.
# ruff: noqa: F811

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from flask import Flask
from werkzeug.serving import make_server

from outpost import Client
from outpost.cli import cli
from outpost.errors import NotFoundError, PermissionDeniedError
from outpost.protocol import (
    ErrorInfo,
    ResultEnvelope,
    Strategy,
    TaskState,
    decode_message,
    serialize,
)
from outpost.protocol.envelopes import b64encode
from outpost_service.store import tasks as task_store
from outpost_service.store.database import Database
from outpost_service.store.schema import SCHEMA_VERSION, endpoint_access, endpoints, meta

from ..service.conftest import (  # the service fixtures: both backends, real RabbitMQ
    Caller,
    alice,  # noqa: F401
    amqp_channel,  # noqa: F401
    amqp_prefix,  # noqa: F401
    app,  # noqa: F401
    app_state,
    args_b64,
    bob,  # noqa: F401
    client,  # noqa: F401
    database_url,  # noqa: F401
    make_app,  # noqa: F401
    new_token,
    postgres_database,  # noqa: F401
    row_counts,
)
from ..service.test_tasks import take


def data_b64(*args: Any) -> str:
    """Arguments as a JSON payload: what a user an endpoint is shared with may send."""
    return b64encode(serialize([list(args), {}], Strategy.JSON)) or ""


def submit_data(
    caller: Caller, endpoint_id: str, function_id: str, *args_list: Any, **task: Any
) -> list[str]:
    """``Caller.submit`` with JSON arguments (a shared user's pickles are refused)."""
    tasks = [
        {"function_id": function_id, "endpoint_id": endpoint_id, "args": data_b64(*a), **task}
        for a in args_list
    ]
    return list(caller.ok("post", "/v1/tasks", {"tasks": tasks})["task_ids"])


def put_policy(caller: Caller, endpoint_id: str, body: Any) -> Any:
    return caller.client.put(
        f"/v1/endpoints/{endpoint_id}/policy", json=body, headers=caller.headers
    )


def test_sharing_lets_bob_use_alices_endpoint_but_not_her_results(
    app: Flask, alice: Caller, bob: Caller
) -> None:
    endpoint_id = alice.register_endpoint("polaris")
    function_id = alice.register_function(abs)
    # before sharing, bob neither sees nor submits to it
    assert bob.ok("get", "/v1/endpoints")["endpoints"] == []
    assert bob.get(f"/v1/endpoints/{endpoint_id}").status_code == 404
    task = {"function_id": function_id, "endpoint_id": endpoint_id, "args": args_b64(-1)}
    refused = bob.post("/v1/tasks", {"tasks": [task]})
    assert refused.status_code == 404, refused.get_json()
    assert refused.get_json()["error"]["details"]["endpoint_ids"] == [endpoint_id]

    policy = put_policy(alice, endpoint_id, {"allowed_users": ["bob"]})
    assert policy.status_code == 200, policy.get_json()
    assert policy.get_json() == {
        "endpoint_id": endpoint_id,
        "allowed_users": ["bob"],
        "allowed_functions": None,
    }
    assert alice.ok("get", f"/v1/endpoints/{endpoint_id}/policy") == policy.get_json()
    [shown] = bob.ok("get", "/v1/endpoints")["endpoints"]
    assert (shown["endpoint_id"], shown["shared"], shown["owner"]) == (endpoint_id, True, "alice")
    [own] = alice.ok("get", "/v1/endpoints")["endpoints"]
    assert (own["shared"], own["owner"]) == (False, "alice")

    group = str(uuid.uuid4())
    [bob_task] = submit_data(bob, endpoint_id, function_id, (-2,), task_group_id=group)
    [alice_task] = alice.submit(endpoint_id, function_id, (-3,))
    with app_state(app).database.write() as conn:
        task_store.finish(
            conn,
            [
                ResultEnvelope(
                    task_id=t, endpoint_id=endpoint_id, state=TaskState.SUCCESS, value=serialize(2)
                )
                for t in (bob_task, alice_task)
            ],
            3600.0,
        )
    assert bob.ok("get", f"/v1/tasks/{bob_task}")["state"] == "success"
    # the owner of the endpoint does not see what bob ran on it, nor bob what alice ran
    assert alice.get(f"/v1/tasks/{bob_task}").status_code == 404
    assert bob.get(f"/v1/tasks/{alice_task}").status_code == 404
    answer = alice.post("/v1/results", {"task_ids": [bob_task], "wait": 0})
    assert answer.status_code == 404 and "result" not in answer.get_data(as_text=True)
    assert alice.get(f"/v1/task_groups/{group}/tasks").status_code == 404
    # bob may not change or read the policy, nor delete the endpoint
    assert put_policy(bob, endpoint_id, {"allowed_users": ["bob"]}).status_code == 404
    assert bob.get(f"/v1/endpoints/{endpoint_id}/policy").status_code == 404
    assert bob.delete(f"/v1/endpoints/{endpoint_id}").status_code == 404

    # unsharing takes it away again
    assert put_policy(alice, endpoint_id, {"allowed_users": []}).status_code == 200
    assert bob.ok("get", "/v1/endpoints")["endpoints"] == []
    assert bob.post("/v1/tasks", {"tasks": [task]}).status_code == 404


def test_allow_list_refusal_writes_and_publishes_nothing(
    app: Flask, alice: Caller, bob: Caller, amqp_channel: Any
) -> None:
    endpoint_id = alice.register_endpoint("polaris")
    allowed = alice.register_function(abs)
    other = alice.register_function(len)
    answer = put_policy(
        alice, endpoint_id, {"allowed_users": ["bob"], "allowed_functions": [allowed]}
    )
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["allowed_functions"] == [allowed]
    assert bob.ok("get", "/v1/endpoints")["endpoints"][0]["allowed_functions"] == [allowed]

    before = row_counts(app)
    batch = [
        {"function_id": allowed, "endpoint_id": endpoint_id, "args": args_b64(-1)},
        {"function_id": other, "endpoint_id": endpoint_id, "args": args_b64("ab")},
    ]
    for caller in (alice, bob):  # the owner is bound by her allow-list too
        refused = caller.post("/v1/tasks", {"tasks": batch})
        assert refused.status_code == 403, refused.get_json()
        error = refused.get_json()["error"]
        assert error["code"] == "function_not_allowed"
        assert other in error["message"] and endpoint_id in error["message"]
        assert (error["details"]["function_id"], error["details"]["endpoint_id"]) == (
            other,
            endpoint_id,
        )
    assert row_counts(app) == before

    # the next message in the queue is the allowed task: the refused batches published nothing
    [task_id] = submit_data(bob, endpoint_id, allowed, (-5,))
    queue = app_state(app).topology.task_queue(endpoint_id)
    [(_properties, body)] = take(amqp_channel, queue, 1)
    assert decode_message(body).task_id == task_id
    assert amqp_channel.queue_declare(queue, passive=True).method.message_count == 0

    # back to "any function"
    assert (
        put_policy(alice, endpoint_id, {"allowed_users": [], "allowed_functions": None}).json[
            "allowed_functions"
        ]
        is None
    )
    alice.submit(endpoint_id, other, ("ab",))


def test_bad_policies_are_refused_by_name_and_change_nothing(
    app: Flask, alice: Caller, bob: Caller
) -> None:
    endpoint_id = alice.register_endpoint("polaris")
    before = row_counts(app)
    cases = [
        ({"allowed_users": ["nobody"]}, "nobody"),
        ({"allowed_users": ["bob"], "allowed_functions": ["f" * 64]}, "f" * 64),
        ({"allowed_users": ["bob"], "allowed_functions": ["xyz"]}, "allowed_functions[0]"),
        ({"allowed_users": "bob"}, "allowed_users"),
        ({"allowed_users": [], "allowed_function": []}, "allowed_function"),
        ({}, "allowed_users"),
    ]
    for body, named in cases:
        answer = put_policy(alice, endpoint_id, body)
        assert answer.status_code == 422, (body, answer.get_json())
        assert named in answer.get_json()["error"]["message"], answer.get_json()
    assert put_policy(alice, str(uuid.uuid4()), {"allowed_users": []}).status_code == 404
    assert row_counts(app) == before
    # sharing with yourself is a no-op, not an error
    new_token(app, "carol")
    answer = put_policy(alice, endpoint_id, {"allowed_users": ["alice", "carol", "carol"]})
    assert answer.get_json()["allowed_users"] == ["carol"]


def test_a_version_3_database_is_upgraded_to_sharing(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/v3.db"
    database = Database(url)
    database.ensure_schema()
    with database.write() as conn:  # make it look like version 3 wrote it
        conn.exec_driver_sql("DROP TABLE endpoint_access")
        conn.exec_driver_sql("ALTER TABLE endpoints DROP COLUMN allowed_functions")
        conn.exec_driver_sql("ALTER TABLE tokens DROP COLUMN scopes")
        conn.exec_driver_sql("INSERT INTO users (user_id, name, created_at) VALUES (1, 'a', 0)")
        conn.exec_driver_sql(
            "INSERT INTO endpoints (endpoint_id, owner, name, metadata, created_at, details, "
            "deleted) VALUES ('e', 1, 'ep', '{}', 0, '{}', 0)"
        )
        conn.execute(meta.update().values(value="3"))
    database.dispose()
    upgraded = Database(url)
    upgraded.ensure_schema()
    with upgraded.read() as conn:
        assert sa.inspect(conn).has_table("endpoint_access")
        assert conn.execute(sa.select(meta.c.value)).scalar() == str(SCHEMA_VERSION)
        # existing endpoints keep accepting any function and are shared with nobody
        assert conn.execute(sa.select(endpoints.c.allowed_functions)).scalar_one() is None
        assert conn.execute(sa.select(sa.func.count()).select_from(endpoint_access)).scalar() == 0
        assert "scopes" in {c["name"] for c in sa.inspect(conn).get_columns("tokens")}
    upgraded.ensure_schema()  # idempotent once upgraded
    upgraded.dispose()


@pytest.fixture
def service_url(app: Flask) -> Iterator[str]:
    """The app behind a real HTTP socket, for the SDK and the CLI."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


def test_sdk_and_cli_share_an_endpoint(
    service_url: str, alice: Caller, bob: Caller, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUTPOST_HOME", str(tmp_path / "home"))  # no credentials.json of yours
    owner = Client(service_url, alice.token)
    endpoint_id = owner.register_endpoint("polaris")["endpoint_id"]
    function_id = owner.register_function(abs)
    assert owner.get_endpoint_policy(endpoint_id)["allowed_users"] == []
    policy = owner.set_endpoint_policy(endpoint_id, ["bob"], allowed_functions=[function_id])
    assert (policy["allowed_users"], policy["allowed_functions"]) == (["bob"], [function_id])
    with pytest.raises(NotFoundError):
        Client(service_url, bob.token).get_endpoint_policy(endpoint_id)
    with pytest.raises(PermissionDeniedError, match="is not allowed on endpoint"):
        owner.submit_tasks(
            [{"endpoint_id": endpoint_id, "function_id": owner.register_function(len),
              "args": args_b64("ab")}]
        )  # fmt: skip

    runner = CliRunner()
    env = {"OUTPOST_URL": service_url, "OUTPOST_TOKEN": alice.token}
    shown = runner.invoke(cli, ["endpoints", "policy", endpoint_id], env=env)
    assert shown.exit_code == 0, shown.output
    assert "bob" in shown.output and function_id in shown.output
    # no --function: the allow-list is kept; --any-function drops it
    unshared = runner.invoke(cli, ["endpoints", "share", endpoint_id], env=env)
    assert unshared.exit_code == 0, unshared.output
    assert owner.get_endpoint_policy(endpoint_id) == {
        "endpoint_id": endpoint_id,
        "allowed_users": [],
        "allowed_functions": [function_id],
    }
    shared = runner.invoke(
        cli, ["endpoints", "share", endpoint_id, "--user", "bob", "--any-function"], env=env
    )
    assert shared.exit_code == 0, shared.output
    assert "bob" in shared.output and "any" in shared.output
    # sharing without an allow-list is said loudly: bob may run any code as alice
    assert "WARNING: bob may run ANY code on this endpoint, as your Unix account" in shared.output
    assert "WARNING" not in unshared.output
    bob_env = {"OUTPOST_URL": service_url, "OUTPOST_TOKEN": bob.token}
    listing = runner.invoke(cli, ["endpoints", "list"], env=bob_env)
    assert endpoint_id in listing.output and "alice (shared)" in listing.output
    refused = runner.invoke(cli, ["endpoints", "share", endpoint_id, "--user", "bob"], env=bob_env)
    assert refused.exit_code == 1 and endpoint_id in refused.output


def test_retries_obey_the_current_policy(app: Flask, alice: Caller, bob: Caller) -> None:
    endpoint_id = alice.register_endpoint("polaris")
    function_id = alice.register_function(abs)
    assert put_policy(alice, endpoint_id, {"allowed_users": ["bob"]}).status_code == 200
    group = str(uuid.uuid4())
    [task_id] = submit_data(bob, endpoint_id, function_id, (-1,), task_group_id=group)
    failure = ErrorInfo(type="ValueError", message="no beam")
    with app_state(app).database.write() as conn:
        task_store.finish(
            conn,
            [ResultEnvelope(task_id=task_id, endpoint_id=endpoint_id, state=TaskState.FAILED,
                            error=failure)],
            3600.0,
        )  # fmt: skip
    other = alice.register_function(len)
    body = {"allowed_users": ["bob"], "allowed_functions": [other]}
    assert put_policy(alice, endpoint_id, body).status_code == 200
    tasks_before = row_counts(app)["tasks"]
    refused = bob.post(f"/v1/task_groups/{group}/retry", {"states": ["failed"]})
    assert refused.status_code == 403, refused.get_json()
    assert refused.get_json()["error"]["details"]["function_id"] == function_id
    assert put_policy(alice, endpoint_id, {"allowed_users": []}).status_code == 200
    assert bob.post(f"/v1/task_groups/{group}/retry", {"states": ["failed"]}).status_code == 404
    assert row_counts(app)["tasks"] == tasks_before
    assert put_policy(alice, endpoint_id, {"allowed_users": ["bob"]}).status_code == 200
    [pair] = bob.ok("post", f"/v1/task_groups/{group}/retry", {"states": ["failed"]})["retried"]
    assert pair["old"] == task_id
